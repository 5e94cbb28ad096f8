package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

// testLoad: Load hands fn the whole object and its info, from the start;
// fn's own error comes back as fn returned it, after one call.
func testLoad(t *testing.T, s cloud.Store, h Hooks) {
	ctx := ctxT(t)
	data := patternBytes(21, 300<<10)
	put(t, s, "obj", data, cloud.PutOptions{Metadata: map[string]string{"kind": "load"}})
	var got []byte
	err := s.Load(ctx, "obj", func(r io.Reader, info cloud.ObjectInfo) error {
		if info.Size != int64(len(data)) || info.Metadata["kind"] != "load" {
			return fmt.Errorf("info %+v", info)
		}
		var err error
		got, err = io.ReadAll(r)
		return err
	})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load: %v, %d bytes of %d", err, len(got), len(data))
	}
	if err := s.Load(ctx, "no/such/key", func(io.Reader, cloud.ObjectInfo) error { return nil }); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("Load of a missing key: %v; want ErrNotFound", err)
	}
	errMine := errors.New("fn's own failure")
	calls := 0
	err = s.Load(ctx, "obj", func(r io.Reader, _ cloud.ObjectInfo) error {
		calls++
		_, _ = io.CopyN(io.Discard, r, 1000)
		return errMine
	})
	if err != errMine || calls != 1 { // returned as fn returned it, not wrapped
		t.Fatalf("Load whose fn fails: %v after %d calls; want fn's own error after 1", err, calls)
	}
}

// testLoadRetry: under the retry decorator, a download the connection cuts
// short is read again from the start, and fn sees the whole object; one
// cut every time fails with ErrInterrupted; the store's own checksum
// failure is fn's error, not retried.
func testLoadRetry(t *testing.T, s cloud.Store, h Hooks) {
	ctx := ctxT(t)
	f := NewFaults(s)
	r := cloud.WithRetry(f, cloud.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond})
	data := patternBytes(22, 200<<10)
	put(t, s, "obj", data, cloud.PutOptions{})
	read := func() ([]byte, int, error) {
		calls := 0
		var got []byte
		err := r.Load(ctx, "obj", func(body io.Reader, _ cloud.ObjectInfo) error {
			calls++
			var err error
			got, err = io.ReadAll(body)
			return err
		})
		return got, calls, err
	}
	f.Set(Rule{Op: Get, PerKey: true, Times: 1, Cut: 0.5})
	if got, calls, err := read(); err != nil || calls != 2 || !bytes.Equal(got, data) {
		t.Fatalf("Load through a cut download: %v, %d calls, %d bytes of %d; want the object after 2 calls", err, calls, len(got), len(data))
	}
	f.Set(Rule{Op: Get, Cut: 0.5})
	if _, calls, err := read(); !errors.Is(err, cloud.ErrInterrupted) || calls != 3 {
		t.Fatalf("Load of a download cut every time: %v after %d calls; want ErrInterrupted after 3", err, calls)
	}
	errSum := fmt.Errorf("%w: checksum did not match (injected)", cloud.ErrChecksum)
	f.Set(Rule{Op: Get, AtEnd: true, Err: errSum})
	if _, calls, err := read(); !errors.Is(err, cloud.ErrChecksum) || calls != 1 {
		t.Fatalf("Load of an object failing the store's checksum: %v after %d calls; want ErrChecksum after 1", err, calls)
	}
}

// testRetryBudget: one operation makes at most cloud.RetryAttempts
// attempts (walvault's retries), and, against a server that answers 503
// to everything, each attempt at most cloud.SDKAttempts requests (the
// SDK's own): cloud.RequestBudget in all.
func testRetryBudget(t *testing.T, s cloud.Store, h Hooks) {
	ctx := ctxT(t)
	fast := cloud.RetryPolicy{Attempts: cloud.RetryAttempts, Base: time.Millisecond, Max: time.Millisecond}
	f := NewFaults(s)
	f.Set(Rule{Op: Stat, Err: errFlaky})
	if _, err := cloud.WithRetry(f, fast).Stat(ctx, "k"); !errors.Is(err, errFlaky) || f.Calls(Stat) != cloud.RetryAttempts {
		t.Fatalf("Stat failing every time: %v after %d attempts; want %d", err, f.Calls(Stat), cloud.RetryAttempts)
	}
	if h.Unavailable == nil {
		return // no SDK: an attempt is one request
	}
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.Header().Set("Retry-After", "0")
		http.Error(w, "unavailable (injected)", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	st := h.Unavailable(t, srv.URL)
	if u, ok := st.(interface{ Unwrap() cloud.Store }); ok {
		st = u.Unwrap() // the suite's fast policy, with the same attempts
	}
	if _, err := cloud.WithRetry(st, fast).Stat(ctx, "k"); err == nil {
		t.Fatal("Stat on a server answering 503 succeeded")
	}
	if n := int(requests.Load()); n != cloud.RequestBudget {
		t.Errorf("Stat on a server answering 503 made %d requests; the budget is %d (%d attempts × %d requests)",
			n, cloud.RequestBudget, cloud.RetryAttempts, cloud.SDKAttempts)
	}
}
