package archive

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

	"github.com/walvault/walvault/cloud"
)

// ClusterInfo is cluster.json: the first push records which cluster owns a
// store prefix, and every later push checks it, so two clusters can never
// interleave their WAL under one prefix.
type ClusterInfo struct {
	SystemIdentifier string    `json:"system_identifier"`
	Created          time.Time `json:"created"`
}

// readCluster returns the recorded owner, or ok=false if none yet.
func readCluster(ctx context.Context, st cloud.Store) (ClusterInfo, bool, error) {
	rc, _, err := st.Get(ctx, ClusterKey)
	if errors.Is(err, cloud.ErrNotFound) {
		return ClusterInfo{}, false, nil
	}
	if err != nil {
		return ClusterInfo{}, false, asStoreErr(err)
	}
	defer rc.Close()
	var ci ClusterInfo
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&ci); err != nil {
		return ClusterInfo{}, false, fmt.Errorf("%w: %s in %s does not parse: %v", ErrIntegrity, ClusterKey, st, err)
	}
	return ci, true, nil
}

// ensureCluster checks that sysid owns the store, claiming it if nobody
// does. The answer is cached in the spool directory (keyed by store) so the
// hot path of wal-push costs no round trip after the first push.
func ensureCluster(ctx context.Context, st cloud.Store, sysid uint64, spool string) error {
	want := strconv.FormatUint(sysid, 10)
	sum := sha256.Sum256([]byte(st.String()))
	cache := ""
	if spool != "" {
		cache = filepath.Join(spool, "cluster-"+hex.EncodeToString(sum[:8]))
		if b, err := os.ReadFile(cache); err == nil && string(bytes.TrimSpace(b)) == want { // #nosec G304 -- our spool
			return nil
		}
	}
	ci, ok, err := readCluster(ctx, st)
	if err != nil {
		return err
	}
	if !ok {
		ci = ClusterInfo{SystemIdentifier: want, Created: time.Now().UTC()}
		body, _ := json.MarshalIndent(ci, "", "  ")
		err := st.Put(ctx, ClusterKey, bytes.NewReader(body), cloud.PutOptions{IfAbsent: true})
		if errors.Is(err, cloud.ErrExists) {
			if ci, ok, err = readCluster(ctx, st); err != nil || !ok {
				return fmt.Errorf("re-reading %s after a concurrent claim: %w", ClusterKey, err)
			}
		} else if err != nil {
			return asStoreErr(err)
		}
	}
	if ci.SystemIdentifier != want {
		return fmt.Errorf("%w: %s holds WAL of the cluster with system identifier %s, this is %s: give this cluster its own store prefix", ErrOtherCluster, st, ci.SystemIdentifier, want)
	}
	if cache != "" {
		_ = writeFileAtomic(cache, []byte(want+"\n"), false)
	}
	return nil
}

// writeFileAtomic writes data to path through a temp file and a rename, so
// readers see all of it or nothing.
func writeFileAtomic(path string, data []byte, durable bool) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // #nosec G304 -- our own files
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if durable {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- a directory we write to
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
