package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/cloud"
)

// ClusterInfo is cluster.json: the first push records which cluster owns a
// store prefix, and every later push checks it, so two clusters can never
// interleave their WAL under one prefix.
type ClusterInfo struct {
	SystemIdentifier string    `json:"system_identifier"`
	Created          time.Time `json:"created"`
}

// maxClusterBytes bounds what is read of cluster.json.
const maxClusterBytes = 1 << 20

// ReadCluster returns the recorded owner, or ok=false if none yet.
func (r *Repo) ReadCluster(ctx context.Context) (ClusterInfo, bool, error) {
	st := r.Store
	rc, _, err := st.Get(ctx, ClusterKey)
	if errors.Is(err, cloud.ErrNotFound) {
		return ClusterInfo{}, false, nil
	}
	if err != nil {
		return ClusterInfo{}, false, archive.StoreErr(err)
	}
	defer rc.Close()
	var ci ClusterInfo
	if err := json.NewDecoder(io.LimitReader(rc, maxClusterBytes)).Decode(&ci); err != nil {
		return ClusterInfo{}, false, fmt.Errorf("%w: %s in %s does not parse: %v", archive.ErrIntegrity, ClusterKey, st, err)
	}
	return ci, true, nil
}

// EnsureCluster checks that sysid owns the store, claiming it if nobody
// does. With a cache directory the answer is remembered there (keyed by
// store), so the hot path of wal-push costs no round trip after the first
// push.
func (r *Repo) EnsureCluster(ctx context.Context, sysid uint64, cacheDir string) error {
	st := r.Store
	want := strconv.FormatUint(sysid, 10)
	sum := sha256.Sum256([]byte(st.String()))
	cache := ""
	if cacheDir != "" {
		cache = filepath.Join(cacheDir, "cluster-"+hex.EncodeToString(sum[:8]))
		if b, err := os.ReadFile(cache); err == nil && string(bytes.TrimSpace(b)) == want { // #nosec G304 -- our spool
			return nil
		}
	}
	ci, ok, err := r.ReadCluster(ctx)
	if err != nil {
		return err
	}
	if !ok {
		ci = ClusterInfo{SystemIdentifier: want, Created: time.Now().UTC()}
		body, _ := json.MarshalIndent(ci, "", "  ")
		err := st.Put(ctx, ClusterKey, bytes.NewReader(body), cloud.PutOptions{IfAbsent: true})
		if errors.Is(err, cloud.ErrExists) {
			if ci, ok, err = r.ReadCluster(ctx); err != nil || !ok {
				return fmt.Errorf("re-reading %s after a concurrent claim: %w", ClusterKey, err)
			}
		} else if err != nil {
			return archive.StoreErr(err)
		}
	}
	if ci.SystemIdentifier != want {
		return fmt.Errorf("%w: %s holds WAL of the cluster with system identifier %s, this is %s: give this cluster its own store prefix", archive.ErrOtherCluster, st, ci.SystemIdentifier, want)
	}
	if cache != "" {
		_ = fsutil.WriteFileAtomic(cache, []byte(want+"\n"), false)
	}
	return nil
}
