package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

var errFlaky = errors.New("flaky: connection reset (injected)")

// flaky fails the next n calls of each operation before passing them on. A
// failing Put first consumes part of its reader, as a real upload would.
type flaky struct {
	cloud.Store
	mu    sync.Mutex
	fails map[string]int
	calls map[string]int
	err   error
}

func newFlaky(s cloud.Store) *flaky {
	return &flaky{Store: s, fails: map[string]int{}, calls: map[string]int{}, err: errFlaky}
}

func (f *flaky) failNext(op string, n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails[op], f.calls[op], f.err = n, 0, err
}

func (f *flaky) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.fails[op] > 0 {
		f.fails[op]--
		return f.err
	}
	return nil
}

func (f *flaky) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, opts cloud.PutOptions) error {
	if err := f.fail("put"); err != nil {
		_, _ = io.CopyN(io.Discard, r, 3)
		return err
	}
	return f.Store.Put(ctx, key, r, opts)
}

func (f *flaky) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	if err := f.fail("get"); err != nil {
		return nil, cloud.ObjectInfo{}, err
	}
	return f.Store.Get(ctx, key)
}

func (f *flaky) Stat(ctx context.Context, key string) (cloud.ObjectInfo, error) {
	if err := f.fail("stat"); err != nil {
		return cloud.ObjectInfo{}, err
	}
	return f.Store.Stat(ctx, key)
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if err := f.fail("delete"); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

// List fails after delivering the first entry when armed.
func (f *flaky) List(ctx context.Context, prefix string, opts cloud.ListOptions, fn func(cloud.ObjectInfo) error) error {
	armed := f.fail("list")
	n := 0
	err := f.Store.List(ctx, prefix, opts, func(o cloud.ObjectInfo) error {
		if n++; armed != nil && n == 2 {
			return armed
		}
		return fn(o)
	})
	return err
}

// testRetry checks the retry decorator around the backend: transient
// failures are ridden out, permanent ones are not retried, and a retried
// Put re-sends the whole stream.
func testRetry(t *testing.T, s cloud.Store, h Hooks) {
	ctx := ctxT(t)
	f := newFlaky(s)
	r := cloud.WithRetry(f, cloud.RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond})
	if cloud.WithRetry(r, cloud.DefaultRetry) != r {
		t.Error("WithRetry wraps a store twice")
	}
	data := patternBytes(11, 5000)

	// A rewindable body is retried and arrives whole.
	f.failNext("put", 2, errFlaky)
	if err := r.Put(ctx, "r", bytes.NewReader(data), cloud.PutOptions{}); err != nil {
		t.Fatalf("Put through 2 transient failures: %v", err)
	}
	if got, _ := get(t, s, "r"); !bytes.Equal(got, data) {
		t.Fatalf("retried Put stored %d bytes, not the %d sent", len(got), len(data))
	}
	if n := f.count("put"); n != 3 {
		t.Errorf("Put made %d attempts; want 3", n)
	}
	// A stream that cannot be rewound is not retried.
	f.failNext("put", 1, errFlaky)
	if err := r.Put(ctx, "r2", struct{ io.Reader }{bytes.NewReader(data)}, cloud.PutOptions{}); !errors.Is(err, errFlaky) {
		t.Fatalf("Put of a non-seekable stream after a failure: %v; want the failure", err)
	}
	if n := f.count("put"); n != 1 {
		t.Errorf("non-seekable Put made %d attempts; want 1", n)
	}
	// Too many failures: the last error comes back.
	f.failNext("stat", 10, errFlaky)
	if _, err := r.Stat(ctx, "r"); !errors.Is(err, errFlaky) {
		t.Fatalf("Stat after too many failures: %v", err)
	}
	if n := f.count("stat"); n != 4 {
		t.Errorf("Stat made %d attempts; want 4", n)
	}
	// Get retries while opening.
	f.failNext("get", 1, errFlaky)
	rc, info, err := r.Get(ctx, "r")
	if err != nil {
		t.Fatalf("Get through a transient failure: %v", err)
	}
	_ = rc.Close()
	if info.Size != int64(len(data)) {
		t.Errorf("Get info size %d", info.Size)
	}
	// Permanent answers from the backend are not retried.
	f.failNext("stat", 0, nil)
	if _, err := r.Stat(ctx, "missing"); !errors.Is(err, cloud.ErrNotFound) || f.count("stat") != 1 {
		t.Errorf("Stat of a missing key: %v after %d attempts; want ErrNotFound after 1", err, f.count("stat"))
	}
	put(t, s, "taken", []byte("x"), cloud.PutOptions{})
	f.failNext("put", 0, nil)
	if err := r.Put(ctx, "taken", strings.NewReader("y"), cloud.PutOptions{IfAbsent: true}); !errors.Is(err, cloud.ErrExists) || f.count("put") != 1 {
		t.Errorf("IfAbsent Put over a key: %v after %d attempts; want ErrExists after 1", err, f.count("put"))
	}
	f.failNext("delete", 2, cloud.Permanent(errFlaky))
	if err := r.Delete(ctx, "r"); !errors.Is(err, errFlaky) || f.count("delete") != 1 {
		t.Errorf("Delete with a permanent error: %v after %d attempts; want 1 attempt", err, f.count("delete"))
	}
	f.failNext("delete", 1, errFlaky)
	if err := r.Delete(ctx, "r"); err != nil {
		t.Errorf("Delete through a transient failure: %v", err)
	}
	// A List that already delivered entries is not restarted (fn would see
	// them twice); one that failed before any entry is.
	put(t, s, "l/1", nil, cloud.PutOptions{})
	put(t, s, "l/2", nil, cloud.PutOptions{})
	f.failNext("list", 1, errFlaky)
	var seen []string
	err = r.List(ctx, "l/", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		seen = append(seen, o.Key)
		return nil
	})
	if !errors.Is(err, errFlaky) || len(seen) != 1 || f.count("list") != 1 {
		t.Errorf("List failing mid-way: %v, saw %v in %d attempts; want the error, 1 entry, 1 attempt", err, seen, f.count("list"))
	}
	// Cancellation stops the retrying at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	f.failNext("stat", 10, errFlaky)
	slow := cloud.WithRetry(f, cloud.RetryPolicy{Attempts: 4, Base: time.Hour, Max: time.Hour})
	start := time.Now()
	if _, err := slow.Stat(cctx, "r"); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("Stat with a cancelled context: %v after %s", err, time.Since(start))
	}
}
