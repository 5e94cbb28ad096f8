package cloud

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseConnectionString(t *testing.T) {
	const key = "c2VjcmV0LWtleS1ieXRlcw=="
	for _, tc := range []struct {
		in, endpoint, account string
		wantErr               string
	}{
		{in: "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + key + ";EndpointSuffix=core.chinacloudapi.cn",
			endpoint: "https://acct.blob.core.chinacloudapi.cn", account: "acct"},
		{in: "AccountName=acct;AccountKey=" + key, endpoint: "https://acct.blob.core.windows.net", account: "acct"},
		{in: "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;SharedAccessSignature=sv=1&sig=abc",
			endpoint: "http://127.0.0.1:1/devstoreaccount1"},
		{in: "UseDevelopmentStorage=true", endpoint: "http://127.0.0.1:10000/devstoreaccount1", account: "devstoreaccount1"},
		{in: "AccountName=acct", wantErr: "neither AccountKey nor SharedAccessSignature"},
		{in: "garbage;AccountKey=" + key, wantErr: "malformed"},
		{in: "AccountKey=" + key, wantErr: "neither AccountName nor BlobEndpoint"},
	} {
		cs, err := parseConnectionString(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v; want %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), key) {
				t.Errorf("error quotes the key: %v", err)
			}
			continue
		}
		if err != nil || cs.endpoint != tc.endpoint || cs.account != tc.account {
			t.Errorf("%q: %+v, %v; want endpoint %s account %s", tc.in, cs, err, tc.endpoint, tc.account)
		}
	}
}

func TestAzureMetadataNames(t *testing.T) {
	in := map[string]string{"walvault-format": "1", "a-b-c": "x", "plain": "y"}
	out := azureMetaOut(in)
	for k := range out {
		for _, c := range k {
			if c == '-' {
				t.Errorf("Azure metadata name %q is not an identifier", k)
			}
		}
	}
	// Azure may hand names back with other case (HTTP header canonicalisation).
	back := map[string]*string{}
	for k, v := range out {
		back[strings.ToUpper(k[:1])+k[1:]] = v
	}
	got := azureMetaIn(back)
	if len(got) != len(in) {
		t.Fatalf("round trip %v -> %v", in, got)
	}
	for k, v := range in {
		if got[k] != v {
			t.Errorf("round trip %v -> %v", in, got)
		}
	}
}

func TestReadFirst(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 100000) // 1 MB
	for _, tc := range []struct {
		n, limit, hint int64
		eof            bool
	}{
		{0, 100, 0, true},
		{10, 100, 0, true},
		{100, 100, 0, false}, // exactly full: more may follow
		{1000000, 2 << 20, 0, true},
		{1000000, 2 << 20, 10, true},      // wrong hint
		{1000000, 2 << 20, 1000000, true}, // right hint
		{1000000, 300000, 0, false},
	} {
		r := iotest.HalfReader(bytes.NewReader(data[:tc.n]))
		buf, eof, err := readFirst(ctx, r, tc.limit, tc.hint)
		want := data[:min(tc.n, tc.limit)]
		if err != nil || eof != tc.eof || !bytes.Equal(buf, want) {
			t.Errorf("n=%d limit=%d hint=%d: %d bytes, eof %v, %v; want %d bytes, eof %v", tc.n, tc.limit, tc.hint, len(buf), eof, err, len(want), tc.eof)
		}
	}
	boom := errors.New("boom")
	if _, _, err := readFirst(ctx, iotest.ErrReader(boom), 100, 0); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
}

func TestS3PartSize(t *testing.T) {
	s := &s3Store{partSize: s3DefaultPartSize}
	for _, hint := range []int64{0, 1 << 20, 1 << 30, 100 << 30, 1 << 40, 5 << 40} {
		got := s.partSizeFor(hint)
		if got < s3DefaultPartSize || got%(1<<20) != 0 || got > s3MaxPartSize {
			t.Errorf("partSizeFor(%d) = %d", hint, got)
		}
		if hint <= 1<<30 && got != s3DefaultPartSize {
			t.Errorf("partSizeFor(%d) = %d MiB; want the default", hint, got>>20)
		}
		// A hint up to 10% low still fits in S3's 10,000 parts.
		if parts := (hint + hint/10 + got - 1) / got; parts > s3MaxParts {
			t.Errorf("hint %d: %d parts of %d MiB", hint, parts, got>>20)
		}
	}
}

func TestCheckMetadata(t *testing.T) {
	if err := checkMetadata(map[string]string{"a": "b", "walvault-x9": "v a l"}); err != nil {
		t.Error(err)
	}
	if err := checkMetadata(nil); err != nil {
		t.Error(err)
	}
}

// stallServer answers like an object store, badly: an upload (PUT) is read
// for 64 KiB and never answered; a download (GET) sends 1 MiB in 64 KiB
// pieces 40 ms apart (slow but steady), or with stall set, 64 KiB and then
// nothing.
func stallServer(t *testing.T, stall bool) string {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
			<-release
		case http.MethodGet:
			w.Header().Set("Content-Length", "1048576")
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("ETag", `"x"`)
			w.Header().Set("x-ms-blob-type", "BlockBlob")
			w.WriteHeader(http.StatusOK)
			chunk := make([]byte, 64<<10)
			for i := 0; i < 16; i++ {
				if i == 1 && stall {
					<-release
					return
				}
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				time.Sleep(40 * time.Millisecond)
			}
		default:
			http.Error(w, "unexpected", http.StatusBadRequest)
		}
	}))
	t.Cleanup(func() { close(release); srv.CloseClientConnections(); srv.Close() })
	return srv.URL
}

// TestStalledConnection: an upload the server stops taking, or a download
// it stops sending, fails after about ioTimeout instead of hanging; a
// download that trickles for longer than ioTimeout in total succeeds.
func TestStalledConnection(t *testing.T) {
	old := ioTimeout
	ioTimeout = 300 * time.Millisecond
	t.Cleanup(func() { ioTimeout = old })
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	t.Setenv("AZURE_STORAGE_ACCOUNT", "devstoreaccount1")
	t.Setenv("AZURE_STORAGE_KEY", "c2VjcmV0LWtleS1ieXRlcw==")
	open := map[string]func(endpoint string) (Store, error){
		"s3": func(ep string) (Store, error) {
			return Open(context.Background(), "s3://bucket/p", Options{S3Endpoint: ep, S3PathStyle: true})
		},
		"azure": func(ep string) (Store, error) {
			return Open(context.Background(), "azure://container/p", Options{AzureEndpoint: ep + "/devstoreaccount1"})
		},
	}
	data := bytes.Repeat([]byte{1}, 6<<20) // well beyond the socket buffers
	for name, openStore := range open {
		t.Run(name+"/upload-stall", func(t *testing.T) {
			st, err := openStore(stallServer(t, true))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = st.Put(context.Background(), "k", bytes.NewReader(data), PutOptions{})
			d := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "no data moved") {
				t.Fatalf("stalled Put: %v; want a 'no data moved' error", err)
			}
			t.Logf("%s after %s", err, d.Round(time.Millisecond))
			if d > 5*time.Second {
				t.Errorf("stalled Put took %s", d)
			}
		})
		t.Run(name+"/download-stall", func(t *testing.T) {
			st, err := openStore(stallServer(t, true))
			if err != nil {
				t.Fatal(err)
			}
			rc, _, err := st.Get(context.Background(), "k")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			start := time.Now()
			n, err := io.Copy(io.Discard, rc)
			if err == nil || time.Since(start) > 3*time.Second {
				t.Fatalf("stalled download: %d bytes, %v after %s; want an error after about %s", n, err, time.Since(start), ioTimeout)
			}
		})
		t.Run(name+"/download-trickle", func(t *testing.T) {
			st, err := openStore(stallServer(t, false))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			rc, _, err := st.Get(context.Background(), "k")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if n, err := io.Copy(io.Discard, rc); err != nil || n != 1<<20 {
				t.Fatalf("slow but steady download: %d bytes, %v", n, err)
			}
			if d := time.Since(start); d < 2*ioTimeout {
				t.Errorf("trickle took only %s: the test tests nothing", d)
			}
		})
	}
}
