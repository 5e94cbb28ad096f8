// Package ratelimit caps the bytes a process moves to and from its store:
// a cloud.Store decorator over two token buckets (golang.org/x/time/rate),
// one for uploads and one for downloads, shared by every store and worker
// that is handed the same Limits. It knows nothing of walvault's objects.
package ratelimit

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/walvault/walvault/cloud"
)

// Bucket is one direction's budget: Rate bytes per second, taken by every
// reader it wraps, whichever goroutine reads. Its burst is a tenth of a
// second of traffic (at least 16 KiB), so that over any window of a few
// seconds the bytes let through stay within a few percent of the rate.
type Bucket struct {
	lim   *rate.Limiter
	burst int
	// now and sleep are the clock; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// MinBurst is the smallest burst a bucket has: one read of at most this
// much waits for its tokens at once.
const MinBurst = 16 << 10

// NewBucket is a bucket of bytesPerSec; nil (no limit) when bytesPerSec
// is 0 or less.
func NewBucket(bytesPerSec int64) *Bucket {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := int(min(max(bytesPerSec/10, MinBurst), 1<<30))
	return &Bucket{lim: rate.NewLimiter(rate.Limit(bytesPerSec), burst), burst: burst, now: time.Now, sleep: sleepCtx}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Burst is the most one wait takes at once: readers cut their reads to it.
func (b *Bucket) Burst() int { return b.burst }

// Wait blocks until n bytes (at most Burst) may pass, or ctx ends.
func (b *Bucket) Wait(ctx context.Context, n int) error {
	if b == nil || n <= 0 {
		return nil
	}
	now := b.now()
	r := b.lim.ReserveN(now, min(n, b.burst))
	if !r.OK() {
		return errors.New("rate limit: a read larger than the burst") // cannot happen: n is cut to the burst
	}
	if err := b.sleep(ctx, r.DelayFrom(now)); err != nil {
		r.CancelAt(b.now())
		return err
	}
	return nil
}

// Limits are a process's two buckets; either may be nil (no limit).
type Limits struct {
	Upload, Download *Bucket
}

// Wrap decorates s so that what it uploads takes tokens from l.Upload and
// what it downloads from l.Download. With no limit at all it returns s.
func Wrap(s cloud.Store, l Limits) cloud.Store {
	if l.Upload == nil && l.Download == nil {
		return s
	}
	return &store{Store: s, l: l}
}

type store struct {
	cloud.Store
	l Limits
}

// Unwrap gives the decorated store.
func (s *store) Unwrap() cloud.Store { return s.Store }

// Close closes the decorated store.
func (s *store) Close() error { return cloud.Close(s.Store) }

// Put paces the body: the backend reads it no faster than the upload
// bucket allows, so what it sends cannot be faster either (beyond the one
// part an SDK buffers).
func (s *store) Put(ctx context.Context, key string, body cloud.Body, opts cloud.PutOptions) error {
	if s.l.Upload == nil {
		return s.Store.Put(ctx, key, body, opts)
	}
	return s.Store.Put(ctx, key, &pacedBody{Body: body, r: reader{ctx: ctx, r: body, b: s.l.Upload}}, opts)
}

// Get paces the object's body.
func (s *store) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	rc, info, err := s.Store.Get(ctx, key)
	if err != nil || s.l.Download == nil {
		return rc, info, err
	}
	return readCloser{reader: &reader{ctx: ctx, r: rc, b: s.l.Download}, c: rc}, info, nil
}

// GetRange paces the range's body.
func (s *store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Store.GetRange(ctx, key, off, n)
	if err != nil || s.l.Download == nil {
		return rc, err
	}
	return readCloser{reader: &reader{ctx: ctx, r: rc, b: s.l.Download}, c: rc}, nil
}

// Load paces what fn reads; the decorated store's own Load (and its
// retries) runs underneath.
func (s *store) Load(ctx context.Context, key string, fn func(io.Reader, cloud.ObjectInfo) error) error {
	if s.l.Download == nil {
		return s.Store.Load(ctx, key, fn)
	}
	return s.Store.Load(ctx, key, func(r io.Reader, info cloud.ObjectInfo) error {
		return fn(&reader{ctx: ctx, r: r, b: s.l.Download}, info)
	})
}

// reader takes a token per byte before handing the bytes on.
type reader struct {
	ctx context.Context
	r   io.Reader
	b   *Bucket
}

func (r *reader) Read(p []byte) (int, error) {
	if len(p) > r.b.Burst() {
		p = p[:r.b.Burst()]
	}
	n, err := r.r.Read(p)
	if n > 0 {
		if werr := r.b.Wait(r.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

type readCloser struct {
	*reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }

// pacedBody is an upload body that takes tokens as the backend reads it; it
// starts over when the body does. It is never a *cloud.BytesBody, so a
// backend reads it as a stream, through the bucket.
type pacedBody struct {
	cloud.Body
	r reader
}

func (b *pacedBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// Rewind starts the body over.
func (b *pacedBody) Rewind() error { return b.Body.Rewind() }

// process is the limits every store of this process shares: the agent's
// workers, a backup's parallel parts and a restore's downloads draw on
// the same two buckets.
var (
	processMu     sync.Mutex
	processLimits = map[[2]int64]Limits{}
)

// Shared returns the process's Limits for these rates: every caller with
// the same rates gets the same buckets.
func Shared(upload, download int64) Limits {
	processMu.Lock()
	defer processMu.Unlock()
	k := [2]int64{max(upload, 0), max(download, 0)}
	if l, ok := processLimits[k]; ok {
		return l
	}
	l := Limits{Upload: NewBucket(upload), Download: NewBucket(download)}
	processLimits[k] = l
	return l
}
