package backuptest

import (
	"context"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// flakyStore cuts the first download of every part short, as a connection
// reset would, after 80% of its bytes.
type flakyStore struct {
	cloud.Store
	mu     sync.Mutex
	broken map[string]bool
}

// Broken is how many downloads were cut short.
func (f *flakyStore) Broken() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.broken)
}

// BrokenDownloads says how many downloads st (a NewFlakyStore, under the
// retry decorator) cut short.
func BrokenDownloads(st cloud.Store) int {
	return st.(interface{ Unwrap() cloud.Store }).Unwrap().(*flakyStore).Broken()
}

// NewFlakyStore wraps st: see flakyStore.
func NewFlakyStore(st cloud.Store) cloud.Store {
	return cloud.WithRetry(&flakyStore{Store: st, broken: map[string]bool{}}, cloud.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond})
}

func (f *flakyStore) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	rc, info, err := f.Store.Get(ctx, key)
	if err != nil || !strings.Contains(key, "/part-") || strings.HasSuffix(key, repo.SumsSuffix) {
		return rc, info, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken[key] {
		return rc, info, nil
	}
	f.broken[key] = true
	return &cutReader{rc: rc, left: info.Size * 8 / 10}, info, nil
}

type cutReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, syscall.ECONNRESET
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }
