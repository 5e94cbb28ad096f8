package agent

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/cloud"
)

// Stats are the agent's counters since it started, and its view of the
// backlog at the last scan.
type Stats struct {
	PID               int              `json:"pid"`
	PGData            string           `json:"pgdata"`
	Store             string           `json:"store"`
	Started           time.Time        `json:"started"`
	Updated           time.Time        `json:"updated"`
	SegmentsArchived  int64            `json:"segments_archived"`
	BytesArchived     int64            `json:"bytes_archived"`
	BytesStored       int64            `json:"bytes_stored"`
	AlreadyArchived   int64            `json:"already_archived"`
	UploadErrors      int64            `json:"upload_errors"`
	Retries           int64            `json:"retries"`
	PushRequests      int64            `json:"push_requests"`
	FetchRequests     int64            `json:"fetch_requests"`
	PrefetchHits      int64            `json:"prefetch_hits"`
	NotInArchive      int64            `json:"fetch_not_in_archive"`
	FetchSeconds      float64          `json:"fetch_seconds"`
	Uploading         int64            `json:"uploading"`
	ReadyCount        int64            `json:"ready_count"`
	ReadyBytes        int64            `json:"ready_bytes"`
	OldestReadyAgeSec float64          `json:"oldest_ready_age_seconds"`
	LastArchived      string           `json:"last_archived,omitempty"`
	LastArchivedTime  time.Time        `json:"last_archived_time,omitzero"`
	LastError         string           `json:"last_error,omitempty"`
	LastErrorTime     time.Time        `json:"last_error_time,omitzero"`
	StoreRequests     map[string]int64 `json:"store_requests"`
	// CopyStores are the second stores kept in step (copy-store).
	CopyStores []CopyStoreStats `json:"copy_stores,omitempty"`
}

// StateFile is the agent's state in its spool, rewritten every few
// seconds, for walvault status.
const StateFile = "state.json"

// ReadState reads an agent's state file from its spool directory (the
// agent/ directory's parent).
func ReadState(spool string) (Stats, error) {
	var s Stats
	b, err := os.ReadFile(filepath.Join(spool, "agent", StateFile)) // #nosec G304 -- walvault's spool
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (a *Agent) writeState() {
	b, err := json.MarshalIndent(a.Stats(), "", "  ")
	if err == nil {
		err = fsutil.WriteFileAtomic(filepath.Join(a.agentDir, StateFile), append(b, '\n'), false)
	}
	if err != nil {
		a.log.Warn("cannot write the state file", "err", err)
	}
}

// countingStore counts the store's requests by kind.
type countingStore struct {
	cloud.Store
	put, get, stat, list, del atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, key string, r cloud.Body, opts cloud.PutOptions) error {
	c.put.Add(1)
	return c.Store.Put(ctx, key, r, opts)
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	c.get.Add(1)
	return c.Store.Get(ctx, key)
}

// Load counts as a get, and is the wrapped store's own (its retries).
func (c *countingStore) Load(ctx context.Context, key string, fn func(io.Reader, cloud.ObjectInfo) error) error {
	c.get.Add(1)
	return c.Store.Load(ctx, key, fn)
}

func (c *countingStore) Stat(ctx context.Context, key string) (cloud.ObjectInfo, error) {
	c.stat.Add(1)
	return c.Store.Stat(ctx, key)
}

func (c *countingStore) List(ctx context.Context, prefix string, opts cloud.ListOptions, fn func(cloud.ObjectInfo) error) error {
	c.list.Add(1)
	return c.Store.List(ctx, prefix, opts, fn)
}

func (c *countingStore) Delete(ctx context.Context, key string) error {
	c.del.Add(1)
	return c.Store.Delete(ctx, key)
}

// Close passes on to the store's own, if any.
func (c *countingStore) Close() error { return cloud.Close(c.Store) }

func (c *countingStore) counts() map[string]int64 {
	return map[string]int64{"put": c.put.Load(), "get": c.get.Load(), "stat": c.stat.Load(), "list": c.list.Load(), "delete": c.del.Load()}
}
