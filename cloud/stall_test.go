package cloud_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

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
// it stops sending, fails after about the I/O timeout instead of hanging; a
// download that trickles for longer than the I/O timeout in total succeeds.
func TestStalledConnection(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	t.Setenv("AZURE_STORAGE_ACCOUNT", "devstoreaccount1")
	t.Setenv("AZURE_STORAGE_KEY", "c2VjcmV0LWtleS1ieXRlcw==")
	open := map[string]func(endpoint string) (cloud.Store, error){
		"s3": func(ep string) (cloud.Store, error) {
			return cloud.Open(context.Background(), "s3://bucket/p", cloud.Options{Settings: cloud.Values{"s3-endpoint": ep, "s3-path-style": "true"}, IOTimeout: ioTimeout})
		},
		"azure": func(ep string) (cloud.Store, error) {
			return cloud.Open(context.Background(), "azure://container/p", cloud.Options{Settings: cloud.Values{"azure-endpoint": ep + "/devstoreaccount1"}, IOTimeout: ioTimeout})
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
			err = st.Put(context.Background(), "k", cloud.Bytes(data), cloud.PutOptions{})
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
