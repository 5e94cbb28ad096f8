package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

var errFlaky = errors.New("flaky: connection reset (injected)")

// testRetry checks the retry decorator around the backend: transient
// failures are ridden out, permanent ones are not retried, and a retried
// Put re-sends the whole stream.
func testRetry(t *testing.T, s cloud.Store, h Hooks) {
	ctx := ctxT(t)
	f := NewFaults(s)
	r := cloud.WithRetry(f, cloud.RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond})
	if cloud.WithRetry(r, cloud.DefaultRetry) != r {
		t.Error("WithRetry wraps a store twice")
	}
	data := patternBytes(11, 5000)

	// A rewindable body is retried and arrives whole.
	f.Set(Rule{Op: Put, Times: 2, Err: errFlaky})
	if err := r.Put(ctx, "r", cloud.Bytes(data), cloud.PutOptions{}); err != nil {
		t.Fatalf("Put through 2 transient failures: %v", err)
	}
	if got, _ := get(t, s, "r"); !bytes.Equal(got, data) {
		t.Fatalf("retried Put stored %d bytes, not the %d sent", len(got), len(data))
	}
	if n := f.Calls(Put); n != 3 {
		t.Errorf("Put made %d attempts; want 3", n)
	}
	// A stream that cannot be rewound is not retried.
	f.Set(Rule{Op: Put, Times: 1, Err: errFlaky})
	if err := r.Put(ctx, "r2", cloud.Once(bytes.NewReader(data)), cloud.PutOptions{}); !errors.Is(err, errFlaky) {
		t.Fatalf("Put of a stream read once after a failure: %v; want the failure", err)
	}
	if n := f.Calls(Put); n != 1 {
		t.Errorf("Put of a stream read once made %d attempts; want 1", n)
	}
	// A seekable one is, from where it stood.
	f.Set(Rule{Op: Put, Times: 1, Err: errFlaky})
	rs := bytes.NewReader(append([]byte("skip"), data...))
	_, _ = rs.Seek(4, io.SeekStart)
	if err := r.Put(ctx, "r3", cloud.Seekable(rs), cloud.PutOptions{}); err != nil {
		t.Fatalf("Put of a seekable stream through a failure: %v", err)
	}
	if got, _ := get(t, s, "r3"); !bytes.Equal(got, data) || f.Calls(Put) != 2 {
		t.Fatalf("retried seekable Put stored %d bytes in %d attempts, want %d in 2", len(got), f.Calls(Put), len(data))
	}
	// A body whose source cannot be read again stops the retries with
	// that cause.
	f.Set(Rule{Op: Put, Err: errFlaky})
	if err := r.Put(ctx, "r4", &noSecondRead{cloud.Bytes(data)}, cloud.PutOptions{}); !errors.Is(err, errGone) || f.Calls(Put) != 1 {
		t.Fatalf("Put whose body cannot start over: %v after %d attempts; want its cause after 1", err, f.Calls(Put))
	}
	// Too many failures: the last error comes back.
	f.Set(Rule{Op: Stat, Err: errFlaky})
	if _, err := r.Stat(ctx, "r"); !errors.Is(err, errFlaky) {
		t.Fatalf("Stat after too many failures: %v", err)
	}
	if n := f.Calls(Stat); n != 4 {
		t.Errorf("Stat made %d attempts; want 4", n)
	}
	// Get retries while opening.
	f.Set(Rule{Op: Get, Times: 1, Err: errFlaky})
	rc, info, err := r.Get(ctx, "r")
	if err != nil {
		t.Fatalf("Get through a transient failure: %v", err)
	}
	_ = rc.Close()
	if info.Size != int64(len(data)) {
		t.Errorf("Get info size %d", info.Size)
	}
	// Permanent answers from the backend are not retried.
	f.Set()
	if _, err := r.Stat(ctx, "missing"); !errors.Is(err, cloud.ErrNotFound) || f.Calls(Stat) != 1 {
		t.Errorf("Stat of a missing key: %v after %d attempts; want ErrNotFound after 1", err, f.Calls(Stat))
	}
	put(t, s, "taken", []byte("x"), cloud.PutOptions{})
	f.Set()
	if err := r.Put(ctx, "taken", cloud.Bytes([]byte("y")), cloud.PutOptions{IfAbsent: true}); !errors.Is(err, cloud.ErrExists) || f.Calls(Put) != 1 {
		t.Errorf("IfAbsent Put over a key: %v after %d attempts; want ErrExists after 1", err, f.Calls(Put))
	}
	f.Set(Rule{Op: Delete, Times: 2, Err: cloud.Permanent(errFlaky)})
	if err := r.Delete(ctx, "r"); !errors.Is(err, errFlaky) || f.Calls(Delete) != 1 {
		t.Errorf("Delete with a permanent error: %v after %d attempts; want 1 attempt", err, f.Calls(Delete))
	}
	f.Set(Rule{Op: Delete, Times: 1, Err: errFlaky})
	if err := r.Delete(ctx, "r"); err != nil {
		t.Errorf("Delete through a transient failure: %v", err)
	}
	// A List that already delivered entries is not restarted (fn would see
	// them twice); one that failed before any entry is.
	put(t, s, "l/1", nil, cloud.PutOptions{})
	put(t, s, "l/2", nil, cloud.PutOptions{})
	f.Set(Rule{Op: List, Times: 1, Err: errFlaky})
	var seen []string
	err = r.List(ctx, "l/", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		seen = append(seen, o.Key)
		return nil
	})
	if !errors.Is(err, errFlaky) || len(seen) != 1 || f.Calls(List) != 1 {
		t.Errorf("List failing mid-way: %v, saw %v in %d attempts; want the error, 1 entry, 1 attempt", err, seen, f.Calls(List))
	}
	// Cancellation stops the retrying at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	f.Set(Rule{Op: Stat, Err: errFlaky})
	slow := cloud.WithRetry(f, cloud.RetryPolicy{Attempts: 4, Base: time.Hour, Max: time.Hour})
	start := time.Now()
	if _, err := slow.Stat(cctx, "r"); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("Stat with a cancelled context: %v after %s", err, time.Since(start))
	}
}

var errGone = errors.New("the source is gone (injected)")

// noSecondRead is a body whose source cannot be read again.
type noSecondRead struct{ cloud.Body }

func (noSecondRead) Rewind() error { return errGone }
