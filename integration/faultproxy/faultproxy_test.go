package faultproxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The proxy's own behaviour against a plain HTTP server: requests are told
// apart on a kept-alive connection, and each fault strikes the request it
// was meant for, once, and is counted.
func TestProxyFaults(t *testing.T) {
	body := bytes.Repeat([]byte("walvault"), 64<<10) // 512 KiB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || (r.Method == http.MethodPut && n != int64(len(body))) {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	p := Start(t, strings.TrimPrefix(srv.URL, "http://"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	do := func(method string) (int, int, error) {
		req, _ := http.NewRequest(method, p.URL()+"/k", bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, len(b), err
	}

	// Two plain requests share one connection and count as two requests.
	for range 2 {
		if code, n, err := do("PUT"); err != nil || code != 200 || n != len(body) {
			t.Fatalf("clean PUT: %d %d %v", code, n, err)
		}
	}
	if s := p.Stats(); s.Requests != 2 || s.Conns != 1 || s.Faults() != 0 {
		t.Fatalf("after two clean requests: %+v", s)
	}

	cases := []struct {
		fault   Fault
		wantErr bool
		slow    time.Duration
	}{
		{Fault{Kind: Reset, Dir: Up, After: 1000}, true, 0},
		{Fault{Kind: Cut, Dir: Up, After: 100 << 10}, true, 0},
		{Fault{Kind: Reset, Dir: Down, After: 0}, true, 0},
		{Fault{Kind: Cut, Dir: Down, After: 200 << 10}, true, 0},
		{Fault{Kind: Stall, Dir: Up, After: 10 << 10, Duration: 300 * time.Millisecond}, false, 300 * time.Millisecond},
		{Fault{Kind: Throttle, Dir: Down, Rate: 2 << 20}, false, 200 * time.Millisecond},
	}
	for _, tc := range cases {
		before := p.Stats().Fired[tc.fault.Kind]
		p.SetRule(Once(Match("PUT", "/k"), tc.fault))
		start := time.Now()
		code, n, err := do("PUT")
		took := time.Since(start)
		failed := err != nil || code != 200 || n != len(body)
		if failed != tc.wantErr {
			t.Errorf("%s: code %d, %d bytes, err %v; want failure %v", tc.fault.Describe(), code, n, err, tc.wantErr)
		}
		if took < tc.slow {
			t.Errorf("%s: took %s, want at least %s", tc.fault.Describe(), took, tc.slow)
		}
		if got := p.Stats().Fired[tc.fault.Kind] - before; got != 1 {
			t.Errorf("%s: fired %d times, want 1", tc.fault.Describe(), got)
		}
		// The next request is untouched.
		if code, n, err := do("PUT"); err != nil || code != 200 || n != len(body) {
			t.Errorf("after %s: clean PUT: %d %d %v", tc.fault.Describe(), code, n, err)
		}
	}

	p.SetRule(nil)
	p.SetConnRule(func(int) Fault { return Fault{Kind: Reset} })
	client.CloseIdleConnections()
	if _, _, err := do("GET"); err == nil {
		t.Error("connection reset at accept: request succeeded")
	}
}
