package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and how patiently to retry transient failures.
type RetryPolicy struct {
	Attempts int           // total tries, including the first
	Base     time.Duration // first back-off; doubles each time
	Max      time.Duration // cap on one back-off
}

// The retry budget. An operation through the retry decorator (every store
// Open returns has it) makes at most RetryAttempts attempts, and in each
// the backend's SDK makes at most SDKAttempts requests (its first and its
// own retries, with a short back-off): RequestBudget requests in all, a few
// seconds of network trouble ridden out, and a server that is down failing
// the command within seconds. cloud/storetest checks it of every backend.
const (
	RetryAttempts = 4
	SDKAttempts   = 3
	RequestBudget = RetryAttempts * SDKAttempts
)

// DefaultRetry is the policy Open's stores retry with.
var DefaultRetry = RetryPolicy{Attempts: RetryAttempts, Base: 250 * time.Millisecond, Max: 4 * time.Second}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (bad request, wrong bucket...).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsTransient reports whether err may go away on a retry.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var p permanentError
	switch {
	case errors.As(err, &p),
		errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrAccess),
		errors.Is(err, ErrBadURL),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

// Retry calls op until it succeeds, fails permanently, or the policy runs
// out. Callers that can regenerate a stream (wal-push re-reads the file) use
// it directly around a whole upload.
func Retry(ctx context.Context, p RetryPolicy, what string, op func() error) error {
	var err error
	delay := p.Base
	for attempt := 1; ; attempt++ {
		err = op()
		if err == nil || !IsTransient(err) || attempt >= p.Attempts {
			return err
		}
		sleep := delay/2 + rand.N(delay/2+1) // #nosec G404 -- back-off jitter, not a secret
		slog.Debug("transient store error, retrying", "op", what, "attempt", attempt, "in", sleep.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(sleep):
		}
		delay = min(delay*2, p.Max)
	}
}

type retryStore struct {
	Store
	p RetryPolicy
}

// WithRetry decorates s so that transient failures are retried. A Put is
// retried while its body rewinds (Body); a Load while the connection
// breaks under fn, never for fn's own errors; a List only when no entry
// has been delivered yet; a Get only while opening.
//
// The budget: an operation makes at most p.Attempts attempts, and each
// backend's SDK at most SDKAttempts requests per attempt, so at most
// p.Attempts × SDKAttempts requests (RequestBudget for DefaultRetry).
func WithRetry(s Store, p RetryPolicy) Store {
	if _, ok := s.(*retryStore); ok {
		return s
	}
	return &retryStore{Store: s, p: p}
}

// Unwrap gives the decorated store.
func (r *retryStore) Unwrap() Store { return r.Store }

func (r *retryStore) Close() error { return Close(r.Store) }

func (r *retryStore) Put(ctx context.Context, key string, body Body, opts PutOptions) error {
	if !rewindable(body) {
		return r.Store.Put(ctx, key, body, opts)
	}
	first := true
	var last error
	return Retry(ctx, r.p, "put "+key, func() error {
		if !first {
			if err := body.Rewind(); err != nil {
				if errors.Is(err, ErrNoRewind) {
					// A body that hides its kind (a decorator's) and
					// cannot start over: the upload's own failure.
					return Permanent(last)
				}
				return Permanent(err)
			}
		}
		first = false
		last = r.Store.Put(ctx, key, body, opts)
		return last
	})
}

// rewindable tells the bodies that cannot start over (Once, a Seekable
// that cannot tell its offset) from the others before a first attempt, so
// that a failure is returned at once rather than after a back-off.
func rewindable(body Body) bool {
	switch b := body.(type) {
	case onceBody:
		return false
	case *seekBody:
		return b.err == nil
	}
	return true
}

// Load is Store.Load with retries: a connection that broke while fn read
// is opened again and fn called anew.
func (r *retryStore) Load(ctx context.Context, key string, fn func(io.Reader, ObjectInfo) error) error {
	err := Retry(ctx, r.p, "load "+key, func() error {
		var fnErr error
		err := r.Store.Load(ctx, key, func(body io.Reader, info ObjectInfo) error {
			fnErr = fn(body, info)
			return fnErr
		})
		if err != nil && fnErr != nil && !errors.Is(err, ErrInterrupted) {
			return Permanent(fnError{err}) // fn's own: returned as it is
		}
		return err
	})
	if fe, ok := asFnErr(err); ok {
		return fe
	}
	return err
}

func (r *retryStore) Get(ctx context.Context, key string) (rc io.ReadCloser, info ObjectInfo, err error) {
	err = Retry(ctx, r.p, "get "+key, func() error {
		var e error
		rc, info, e = r.Store.Get(ctx, key)
		return e
	})
	return rc, info, err
}

// GetRange retries the opening, and a body whose connection breaks midway
// is opened again where it broke, for what is left, within the same
// budget of attempts.
func (r *retryStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rr := &rangeReader{ctx: ctx, s: r, key: key, off: off, left: n}
	if err := rr.open(); err != nil {
		return nil, err
	}
	return rr, nil
}

func (r *retryStore) Stat(ctx context.Context, key string) (info ObjectInfo, err error) {
	err = Retry(ctx, r.p, "stat "+key, func() error {
		var e error
		info, e = r.Store.Stat(ctx, key)
		return e
	})
	return info, err
}

func (r *retryStore) List(ctx context.Context, prefix string, opts ListOptions, fn func(ObjectInfo) error) error {
	delivered := false
	var fnErr error
	return Retry(ctx, r.p, "list "+prefix, func() error {
		err := r.Store.List(ctx, prefix, opts, func(o ObjectInfo) error {
			delivered = true
			if e := fn(o); e != nil {
				fnErr = e
				return e
			}
			return nil
		})
		if err != nil && (delivered || fnErr != nil) {
			return Permanent(err)
		}
		return err
	})
}

func (r *retryStore) Delete(ctx context.Context, key string) error {
	return Retry(ctx, r.p, "delete "+key, func() error { return r.Store.Delete(ctx, key) })
}

// rangeReader is a range body that resumes after a broken connection.
type rangeReader struct {
	ctx      context.Context
	s        *retryStore
	key      string
	off      int64 // of the next byte
	left     int64 // bytes still wanted (an object that ends first ends it)
	rc       io.ReadCloser
	attempts int // opened so far
}

func (r *rangeReader) open() error {
	return Retry(r.ctx, r.s.p, "get range of "+r.key, func() error {
		r.attempts++
		rc, err := r.s.Store.GetRange(r.ctx, r.key, r.off, r.left)
		if err == nil {
			r.rc = rc
		}
		return err
	})
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if r.rc == nil {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	if len(p) == 0 {
		return 0, io.EOF
	}
	w := &watchedReader{r: r.rc}
	n, err := w.Read(p)
	r.off += int64(n)
	r.left -= int64(n)
	if err == nil || err == io.EOF || !w.broke(r.ctx) || r.attempts >= r.s.p.Attempts {
		return n, err
	}
	_ = r.rc.Close()
	r.rc = nil
	if oerr := r.open(); oerr != nil {
		return n, fmt.Errorf("%s: reading %s: %w: %w", r.s, r.key, ErrInterrupted, oerr)
	}
	return n, nil
}

func (r *rangeReader) Close() error {
	if r.rc == nil {
		return nil
	}
	return r.rc.Close()
}
