package cloud_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/integration/testenv"
)

// recordingProxy forwards to a server and remembers each request's method,
// URL and headers, to check what a backend sends where the emulator does
// not report it back (storage classes, KMS keys, encryption scopes).
type recordingProxy struct {
	mu   sync.Mutex
	reqs []string // "METHOD URL\nHeader: value\n..."
}

func startProxy(t *testing.T, target string, keepHost bool) (*recordingProxy, string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &recordingProxy{}
	fwd := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		b.WriteString(r.Method + " " + r.URL.String() + "\n")
		for k, v := range r.Header {
			b.WriteString(strings.ToLower(k) + ": " + strings.Join(v, ",") + "\n")
		}
		rp.mu.Lock()
		rp.reqs = append(rp.reqs, b.String())
		rp.mu.Unlock()
		if !keepHost {
			r.Host = u.Host
		}
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return rp, srv.URL
}

// count returns how many write requests contain all of want.
func (rp *recordingProxy) count(want ...string) int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	n := 0
	for _, r := range rp.reqs {
		if strings.HasPrefix(r, "GET ") || strings.HasPrefix(r, "HEAD ") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(r, w)
		}
		if ok {
			n++
		}
	}
	return n
}

// putBoth writes a small and a multipart object and reads them back.
func putBoth(t *testing.T, st cloud.Store) {
	t.Helper()
	ctx := context.Background()
	for _, n := range []int{100, 18 << 20} {
		data := make([]byte, n)
		_, _ = rand.Read(data)
		if err := st.Put(ctx, "obj", cloud.Bytes(data), cloud.PutOptions{}); err != nil {
			t.Fatalf("Put %d bytes: %v", n, err)
		}
		rc, _, err := st.Get(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(rc)
		rc.Close()
		if err != nil || !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("read back %d bytes: %v", buf.Len(), err)
		}
	}
}

// TestUploadOptions checks that storage class, KMS key, access tier and
// encryption scope reach the server on single and multipart uploads.
func TestUploadOptions(t *testing.T) {
	cases := []struct {
		kind testenv.Kind
		name string
		set  func(*cloud.Options)
		want []string // in at least one request per upload (2 uploads)
		// check looks at the stored object, where the request does not show it.
		check func(t *testing.T, tg *testenv.Target)
	}{
		{testenv.S3, "storage class", func(o *cloud.Options) { *o = o.With("s3-storage-class", "STANDARD_IA") },
			[]string{"x-amz-storage-class: STANDARD_IA"}, nil},
		{testenv.S3, "sse-kms", func(o *cloud.Options) { *o = o.With("s3-sse-kms-key-id", "alias/walvault") },
			[]string{"x-amz-server-side-encryption: aws:kms", "x-amz-server-side-encryption-aws-kms-key-id: alias/walvault"}, nil},
		{testenv.GCS, "storage class", func(o *cloud.Options) { *o = o.With("gcs-storage-class", "NEARLINE") }, nil,
			func(t *testing.T, tg *testenv.Target) {
				resp, err := http.Get(tg.Server.Endpoint + "/storage/v1/b/" + tg.Bucket + "/o/" + url.PathEscape(tg.Prefix+"/obj"))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var attrs struct{ StorageClass string }
				if err := json.NewDecoder(resp.Body).Decode(&attrs); err != nil || attrs.StorageClass != "NEARLINE" {
					t.Errorf("stored storage class %q, %v; want NEARLINE", attrs.StorageClass, err)
				}
			}},
		{testenv.GCS, "kms", func(o *cloud.Options) {
			*o = o.With("gcs-kms-key-name", "projects/p/locations/l/keyRings/r/cryptoKeys/k")
		},
			[]string{"kmsKeyName=projects%2Fp%2Flocations%2Fl%2FkeyRings%2Fr%2FcryptoKeys%2Fk"}, nil},
		{testenv.Azure, "tier", func(o *cloud.Options) { *o = o.With("azure-access-tier", "Cool") }, []string{"x-ms-access-tier: Cool"}, nil},
		{testenv.Azure, "scope", func(o *cloud.Options) { *o = o.With("azure-encryption-scope", "walvault-scope") },
			[]string{"x-ms-encryption-scope: walvault-scope"}, nil},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind)+"/"+tc.name, func(t *testing.T) {
			srv := server(t, tc.kind)
			tg := srv.NewTarget(t)
			// S3 signs the Host header: keep the proxy's. fake-gcs-server
			// serves reads only for the host it was told it has.
			rp, proxyURL := startProxy(t, "http://"+srv.Addr, tc.kind == testenv.S3)
			opts := tg.Options
			switch tc.kind {
			case testenv.S3:
				opts = opts.With("s3-endpoint", proxyURL)
			case testenv.GCS:
				opts = opts.With("gcs-endpoint", proxyURL+"/storage/v1/")
			case testenv.Azure:
				opts = opts.With("azure-endpoint", proxyURL+"/"+testenv.AzureAccount)
			}
			tc.set(&opts)
			putBoth(t, openURL(t, tg.URL, opts))
			if tc.want != nil {
				if n := rp.count(tc.want...); n < 2 {
					t.Errorf("%d write requests carry %q; want one per upload (2)\n%s", n, tc.want, strings.Join(rp.reqs, "\n"))
				}
			}
			if tc.check != nil {
				tc.check(t, tg)
			}
		})
	}
}

// TestS3EndpointPrecedence: the endpoint option (walvault's flag) beats
// AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, which the SDK reads by itself.
func TestS3EndpointPrecedence(t *testing.T) {
	srv := server(t, testenv.S3)
	tg := srv.NewTarget(t)
	dead := "http://" + closedPort(t)
	t.Setenv("AWS_ENDPOINT_URL_S3", dead)
	t.Setenv("AWS_ENDPOINT_URL", dead)
	if err := openURL(t, tg.URL, tg.Options).Put(context.Background(), "k", cloud.Bytes([]byte("x")), cloud.PutOptions{}); err != nil {
		t.Fatalf("with the endpoint option set: %v", err)
	}
	opts := tg.Options
	opts = opts.With("s3-endpoint", "")
	err := openURL(t, tg.URL, opts).Put(context.Background(), "k", cloud.Bytes([]byte("x")), cloud.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("without the option, AWS_ENDPOINT_URL_S3 should be used: %v", err)
	}
}

// TestS3ChecksumWhenRequired: S3-compatible servers that reject the SDK's
// default checksums are used with AWS_REQUEST_CHECKSUM_CALCULATION=
// when_required; multipart uploads must work that way too.
func TestS3ChecksumWhenRequired(t *testing.T) {
	tg := server(t, testenv.S3).NewTarget(t)
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
	t.Setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
	putBoth(t, openURL(t, tg.URL, tg.Options))
}
