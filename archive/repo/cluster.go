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
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// ClusterInfo is cluster.json: the first push records which cluster owns a
// store prefix, and every later push checks it, so two clusters can never
// interleave their WAL under one prefix. It also records the cluster's WAL
// segment size, the cap on what a WAL object may decode to.
type ClusterInfo struct {
	SystemIdentifier string    `json:"system_identifier"`
	Created          time.Time `json:"created"`
	// WALSegmentSize is absent (0) in cluster.json files written before
	// walvault recorded it.
	WALSegmentSize int64 `json:"wal_segment_size,omitempty"`
}

// check refuses what no walvault writes: the identifier is printed and
// compared, the segment size bounds reads.
func (ci ClusterInfo) check() error {
	if !digits(ci.SystemIdentifier, 20) {
		return errors.New("bad system_identifier")
	}
	if ci.WALSegmentSize != 0 && !archive.ValidSegmentSize(ci.WALSegmentSize) {
		return fmt.Errorf("bad wal_segment_size %d", ci.WALSegmentSize)
	}
	return nil
}

// ReadCluster returns the recorded owner, or ok=false if none yet.
// cluster.json is authenticated like every object (its proof, by the
// verify keys or a writer's own signing key), unless unsigned objects are
// allowed: it decides which cluster's objects a reader accepts.
func (r *Repo) ReadCluster(ctx context.Context) (ClusterInfo, bool, error) {
	ci, _, ok, err := r.readCluster(ctx)
	return ci, ok, err
}

// readCluster is ReadCluster that also says whether cluster.json carries
// a proof.
func (r *Repo) readCluster(ctx context.Context) (ci ClusterInfo, signed, ok bool, err error) {
	strict := *r
	strict.Cluster = "" // cluster.json says which cluster it is
	err = strict.Load(ctx, ClusterKey, Want{Proof: true, MaxSize: MaxClusterBytes}, func(rd io.Reader, info cloud.ObjectInfo) error {
		signed = info.Metadata[MetaProof] != ""
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		err = json.Unmarshal(b, &ci)
		if err == nil {
			err = ci.check()
		}
		if c, bound := info.Metadata[MetaCluster]; err == nil && bound && c != ci.SystemIdentifier {
			err = fmt.Errorf("it records system identifier %s, its proof %s", ci.SystemIdentifier, c)
		}
		if err != nil {
			return fmt.Errorf("%w: %s in %s does not parse: %v", archive.ErrIntegrity, ClusterKey, r.Store, err)
		}
		return nil
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return ClusterInfo{}, false, false, nil
	}
	if err != nil {
		return ClusterInfo{}, false, false, err
	}
	return ci, signed, true, nil
}

// BindCluster sets r.Cluster from the authenticated cluster.json, once:
// from then on a proof that names another cluster is refused, and so is a
// manifest of another cluster. A store without cluster.json (nothing was
// archived yet) leaves it unset.
func (r *Repo) BindCluster(ctx context.Context) error {
	if r.Cluster != "" {
		return nil
	}
	ci, ok, err := r.ReadCluster(ctx)
	if err != nil {
		return err
	}
	if ok {
		r.Cluster = ci.SystemIdentifier
	}
	return nil
}

// SegmentSizeCap is the most a WAL object of this archive may decode to:
// the segment size cluster.json records, or PostgreSQL's largest when it
// records none (archives written before walvault recorded it) or cannot
// be read.
func (r *Repo) SegmentSizeCap(ctx context.Context) int64 {
	ci, ok, err := r.ReadCluster(ctx)
	if err != nil || !ok || ci.WALSegmentSize == 0 {
		return MaxWALSegmentBytes
	}
	return ci.WALSegmentSize
}

// EnsureCluster checks that sysid owns the store, claiming it if nobody
// does, and that its WAL segment size (segSize; 0 when unknown) is the one
// recorded. With a cache directory the answer is remembered there (keyed
// by store, for clusterCacheLife), so the hot path of wal-push costs no
// round trip after the first push; that first push also learns whether the
// store refuses a second create of one key (RefusesSecondCreate).
func (r *Repo) EnsureCluster(ctx context.Context, sysid uint64, segSize int64, cacheDir string) error {
	st := r.Store
	want := strconv.FormatUint(sysid, 10)
	if segSize != 0 && !archive.ValidSegmentSize(segSize) {
		return fmt.Errorf("%w: WAL segment size %d is not one PostgreSQL uses", archive.ErrBadInput, segSize)
	}
	sum := sha256.Sum256([]byte(st.String()))
	cache, cached := "", fmt.Sprintf("%s %d", want, segSize)
	if cacheDir != "" {
		cache = filepath.Join(cacheDir, "cluster-v2-"+hex.EncodeToString(sum[:8]))
		if b, err := readFresh(cache, clusterCacheLife); err == nil {
			line := string(bytes.TrimSpace(b))
			refuses := strings.HasSuffix(line, " "+refusesWord)
			if strings.TrimSuffix(line, " "+refusesWord) == cached {
				r.bind(want)
				r.noteRefusal(refuses)
				return nil
			}
		}
	}
	allow := *r
	allow.AllowUnsigned = true // an unsigned one of ours is signed below
	ci, signed, ok, err := allow.readCluster(ctx)
	if err != nil {
		return err
	}
	if !ok {
		ci = ClusterInfo{SystemIdentifier: want, Created: time.Now().UTC(), WALSegmentSize: segSize}
		err := r.writeCluster(ctx, ci, true)
		if errors.Is(err, cloud.ErrExists) {
			if ci, ok, err = r.ReadCluster(ctx); err != nil || !ok {
				return fmt.Errorf("re-reading %s after a concurrent claim: %w", ClusterKey, err)
			}
		} else if err != nil {
			return err
		}
	} else if !signed && !r.AllowUnsigned {
		if ci.SystemIdentifier != want {
			return fmt.Errorf("%w: %s in %s carries no proof and names the cluster with system identifier %s, this is %s: someone else wrote it; remove it if this prefix is this cluster's", crypto.ErrBadProof, ClusterKey, st, ci.SystemIdentifier, want)
		}
		// Written before walvault signed objects: the same record, signed,
		// so that readers can authenticate it.
		if err := r.writeCluster(ctx, ci, false); err != nil {
			return err
		}
	}
	if ci.SystemIdentifier != want {
		return fmt.Errorf("%w: %s holds WAL of the cluster with system identifier %s, this is %s: give this cluster its own store prefix", archive.ErrOtherCluster, st, ci.SystemIdentifier, want)
	}
	if ci.WALSegmentSize != 0 && segSize != 0 && ci.WALSegmentSize != segSize {
		// Restores cap WAL at the recorded size: segments of another size
		// under this prefix could never be fetched.
		return fmt.Errorf("%w: %s holds WAL segments of %d bytes, this cluster writes %d-byte segments (changed by pg_resetwal --wal-segsize?): give it a new store prefix", archive.ErrOtherCluster, st, ci.WALSegmentSize, segSize)
	}
	r.bind(want)
	if cache != "" {
		// Only a push with a cache asks: once per store and data directory
		// (and day). No answer (an error) leaves what this process knew.
		if refuses, ok := r.probeRefusal(ctx); ok {
			r.noteRefusal(refuses)
		}
		if r.RefusesSecondCreate {
			cached += " " + refusesWord
		}
		_ = fsutil.WriteFileAtomic(cache, []byte(cached+"\n"), false)
	}
	return nil
}

// clusterCacheLife is how long EnsureCluster trusts its cache: a day, so
// that a store changed under the same name (another server behind the
// same bucket and prefix) is asked again within one.
const clusterCacheLife = 24 * time.Hour

// readFresh reads a small cache file written less than life ago.
func readFresh(name string, life time.Duration) ([]byte, error) {
	f, err := os.Open(name) // #nosec G304 -- our spool
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if age := time.Since(fi.ModTime()); age < 0 || age > life {
		return nil, fmt.Errorf("%s is %s old", name, age.Round(time.Second))
	}
	return io.ReadAll(io.LimitReader(f, 1<<10))
}

// refusesWord marks, in EnsureCluster's cache, a store seen refusing a
// second create-if-absent write of one key.
const refusesWord = "refuses-second-create"

// noteRefusal records what probeRefusal found. Like bind, it writes r
// only when that changes: concurrent pushes of a bound repository only
// read it.
func (r *Repo) noteRefusal(refuses bool) {
	if r.RefusesSecondCreate != refuses {
		r.RefusesSecondCreate = refuses
	}
}

// probeRefusal asks the store to create cluster.json again, byte for byte
// and with the same metadata as it holds it, only if absent: a store that
// keeps its word answers ErrExists, and the existing object is untouched.
// One that ignores the condition (some S3-compatible servers do) rewrites
// the very same object, which is harmless, and the answer is false: its
// writes are then looked at before they are made. ok is false when there
// is no answer (an error).
func (r *Repo) probeRefusal(ctx context.Context) (refuses, ok bool) {
	rc, info, err := r.Store.Get(ctx, ClusterKey)
	if err != nil {
		return false, false
	}
	body, err := io.ReadAll(io.LimitReader(rc, MaxClusterBytes+1))
	_ = rc.Close()
	if err != nil || len(body) > MaxClusterBytes {
		return false, false
	}
	err = r.Store.Put(ctx, ClusterKey, cloud.Bytes(body), cloud.PutOptions{IfAbsent: true, Metadata: info.Metadata, SizeHint: int64(len(body))})
	switch {
	case errors.Is(err, cloud.ErrExists):
		return true, true
	case err == nil:
		return false, true
	}
	return false, false
}

// bind records the cluster r writes for. It writes r only when that
// changes: concurrent pushes of a bound repository only read it.
func (r *Repo) bind(sysid string) {
	if r.Cluster != sysid {
		r.Cluster = sysid
	}
}

// writeCluster stores cluster.json for ci, signed: write-once when it
// claims the prefix, else replacing an unsigned record of the same
// content.
func (r *Repo) writeCluster(ctx context.Context, ci ClusterInfo, ifAbsent bool) error {
	body, _ := json.MarshalIndent(ci, "", "  ")
	h := sha256.Sum256(body)
	signer := *r
	signer.Cluster = ci.SystemIdentifier
	opts := cloud.PutOptions{IfAbsent: ifAbsent, Metadata: contentMeta(hex.EncodeToString(h[:]), int64(len(body)))}
	return signer.PutBytes(ctx, ClusterKey, body, opts)
}

// digits says whether s is 1 to n decimal digits.
func digits(s string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// WantWAL is what an archived pg_wal file must be when read back: signed
// by the database host, encrypted when an identity is configured, and no
// larger than its kind can be, so that a decompression bomb stops at the
// cap.
func (r *Repo) WantWAL(ctx context.Context, wf archive.WALFile) Want {
	w := Want{Proof: true, ContentFromMeta: true, Encrypted: true}
	switch wf.Kind {
	case archive.KindHistory:
		w.MaxSize = MaxHistoryBytes
	case archive.KindBackup:
		w.MaxSize = MaxBackupFileBytes
	case archive.KindSegment, archive.KindPartial:
		// With a proof, the proven size is exact and Load holds the object
		// to it: this is only the outer bound, without a round trip.
		// Without one, the metadata's size is no one's word: the cluster's
		// segment size (one read of cluster.json) is the cap.
		w.MaxSize = MaxWALSegmentBytes
		if r.AllowUnsigned {
			w.MaxSize = r.SegmentSizeCap(ctx)
		}
	}
	return w
}
