package cloud_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

// TestTLSResumes: against a server that closes the connection after each
// request, the second request resumes the first one's TLS session, with
// ResumeTLS (S3's SDK transport) and NewHTTPTransport (Azure's).
func TestTLSResumes(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
	}))
	srv.StartTLS()
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	plain := &http.Transport{}
	cloud.ResumeTLS(plain)
	built := cloud.NewHTTPTransport(time.Minute)
	for name, tr := range map[string]*http.Transport{"ResumeTLS": plain, "NewHTTPTransport": built} {
		tr.TLSClientConfig.RootCAs = pool
		c := &http.Client{Transport: tr}
		for i := range 3 {
			resp, err := c.Head(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resumed := resp.TLS.DidResume; resumed != (i > 0) {
				t.Errorf("%s, request %d: resumed %v", name, i+1, resumed)
			}
		}
	}
}
