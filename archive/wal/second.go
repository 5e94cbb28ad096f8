package wal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// A second store kept in step (copy-store): every WAL file made durable in
// the primary store is copied to it afterwards, in the background, as the
// primary stored it (the same bytes and metadata, so its proof holds
// there). What is still to copy is recorded in the spool, one record per
// file and second store (SPOOL/copy/<store id>/<name>.json), written
// before the file counts as archived, so neither a crash nor a second store
// that is down for hours loses one. A record holds the stored object's
// SHA-256 as the database host computed it when it uploaded the object:
// with it, the object read back from the primary store is authenticated
// without decrypting it (the host holds no identity).

// StoredObject is one object as a push stored it.
type StoredObject struct {
	Key  string
	Name string // the pg_wal file name
	// Path is the pg_wal file it was stored from.
	Path string
	// Meta is its metadata as stored, its proof included.
	Meta map[string]string
	// SHA256 and Size are the stored bytes' digest and size; SHA256 is ""
	// when the store held the object already (nobody here read its bytes).
	SHA256 string
	Size   int64
	// Body are the stored bytes, when the push kept them.
	Body []byte
}

type keepMode int

const (
	keepNone   keepMode = iota
	keepRecord          // key, metadata, digest
	keepBody            // and the bytes
)

// storedObject describes what upload stored.
func storedObject(r *repo.Repo, key, name, path string, d digest, up uploaded, body bool) (*StoredObject, error) {
	meta, err := r.Proven(key, d.meta())
	if err != nil {
		return nil, err
	}
	so := &StoredObject{Key: key, Name: name, Path: path, Meta: meta, SHA256: up.sha256, Size: up.size}
	if up.encoded != nil {
		sum := sha256.Sum256(up.encoded)
		so.SHA256 = hex.EncodeToString(sum[:])
		if body {
			so.Body = bytes.Clone(up.encoded)
		}
	}
	return so, nil
}

// alreadyObject describes an object the store held already.
func alreadyObject(key, name string, info cloud.ObjectInfo, path string) *StoredObject {
	return &StoredObject{Key: key, Name: name, Path: path, Meta: info.Metadata, Size: info.Size}
}

// CopyRecord is one object still to copy to a second store.
type CopyRecord struct {
	Key    string            `json:"key"`
	Name   string            `json:"name"`
	Meta   map[string]string `json:"meta"`
	SHA256 string            `json:"sha256,omitempty"`
	Size   int64             `json:"size"`
	// Path, FileSize and FileMTime are the pg_wal file it was stored from,
	// as it was: while it is still there, unchanged, it can be pushed to
	// the second store anew.
	Path      string    `json:"path"`
	FileSize  int64     `json:"file_size"`
	FileMTime int64     `json:"file_mtime"`
	Time      time.Time `json:"time"` // when it became durable in the primary store
}

// MaxCopyBacklog bounds a second store's records: past it (the second
// store down for days), new files are not recorded, and walvault copy
// catches the second store up.
const MaxCopyBacklog = 100000

// CopyQueue is one second store's records in the spool.
type CopyQueue struct {
	Dir string
}

// OpenCopyQueue opens (creating) the records of the second store id under
// spool.
func OpenCopyQueue(spool, id string) (*CopyQueue, error) {
	dir := filepath.Join(spool, "copy", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: the spool directory: %w", archive.ErrBadInput, err)
	}
	return &CopyQueue{Dir: dir}, nil
}

// CopyStoreID names a second store in the spool: from its identity (its
// name and the endpoint it is reached through).
func CopyStoreID(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return hex.EncodeToString(sum[:8])
}

// Record makes the record of so, durably. It fails with ErrBacklogFull
// when the queue holds MaxCopyBacklog records already.
func (q *CopyQueue) Record(so StoredObject, now time.Time) (CopyRecord, error) {
	rec := CopyRecord{Key: so.Key, Name: so.Name, Meta: so.Meta, SHA256: so.SHA256, Size: so.Size, Path: so.Path, Time: now.UTC()}
	if fi, err := os.Stat(so.Path); err == nil {
		rec.FileSize, rec.FileMTime = fi.Size(), fi.ModTime().UnixNano()
	}
	if n, err := q.count(); err == nil && n >= MaxCopyBacklog {
		return rec, ErrBacklogFull
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	return rec, fsutil.WriteFileAtomic(filepath.Join(q.Dir, so.Name+".json"), b, true)
}

// ErrBacklogFull: a second store's records reached MaxCopyBacklog.
var ErrBacklogFull = fmt.Errorf("the second store's backlog holds %d files already: it is not recorded; catch the second store up with walvault copy --wal-only", MaxCopyBacklog)

func (q *CopyQueue) count() (int, error) {
	ents, err := os.ReadDir(q.Dir)
	return len(ents), err
}

// List reads the records, history files first, then oldest first by name.
// A record that does not parse is removed (it is walvault's own file; a
// half-written one cannot exist, so it is garbage).
func (q *CopyQueue) List() ([]CopyRecord, error) {
	ents, err := os.ReadDir(q.Dir)
	if err != nil {
		return nil, err
	}
	var out []CopyRecord
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(q.Dir, e.Name())) // #nosec G304 -- our spool
		var rec CopyRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.Name != name || !strings.HasSuffix(rec.Key, "/"+name) {
			_ = os.Remove(filepath.Join(q.Dir, e.Name()))
			continue
		}
		out = append(out, rec)
	}
	SortRecords(out)
	return out, nil
}

// SortRecords orders records as they are copied: history files first (a
// timeline is useless without its history), then by name.
func SortRecords(recs []CopyRecord) {
	sort.Slice(recs, func(i, j int) bool {
		hi, hj := strings.HasSuffix(recs[i].Name, ".history"), strings.HasSuffix(recs[j].Name, ".history")
		if hi != hj {
			return hi
		}
		return recs[i].Name < recs[j].Name
	})
}

// Done removes the record of name: the second store has it.
func (q *CopyQueue) Done(name string) error {
	err := os.Remove(filepath.Join(q.Dir, name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// CopySource says where CopyStored found the object.
type CopySource string

// Where a copy came from.
const (
	FromMemory  CopySource = "memory"
	FromPrimary CopySource = "primary store"
	FromFile    CopySource = "pg_wal file"
)

// CopyStored copies the object rec describes into dst, write-once: from
// body (the bytes just uploaded to the primary) when given; else read back
// from src and checked against the SHA-256 the record holds; else pushed
// anew from its pg_wal file while that is still there, unchanged (dst's
// repository signs it as the primary's would: the same content, the same
// proof); else read from src and authenticated by its proof and content,
// which for an encrypted archive needs an identity (src.Identities).
func CopyStored(ctx context.Context, src, dst *repo.Repo, rec CopyRecord, body []byte, spool string) (CopySource, error) {
	switch {
	case body != nil:
		err := dst.Store.Put(ctx, rec.Key, cloud.Bytes(body), cloud.PutOptions{Metadata: rec.Meta, IfAbsent: true, SizeHint: int64(len(body))})
		if errors.Is(err, cloud.ErrExists) {
			err = sameIn(ctx, dst, rec)
		}
		if err != nil {
			return FromMemory, archive.StoreErr(err)
		}
		return FromMemory, nil
	case rec.SHA256 != "":
		_, err := src.CopyObject(ctx, dst.Store, rec.Key, repo.CopyCheck{SHA256: rec.SHA256, Size: rec.Size, Meta: rec.Meta}, nil)
		return FromPrimary, err
	case fileUnchanged(rec):
		_, err := PushOne(ctx, dst, rec.Path, spool)
		return FromFile, err
	}
	segCap := src.SegmentSizeCap(ctx)
	_, err := src.CopyWAL(ctx, dst.Store, rec.Key, segCap, repo.CopyOptions{})
	if repo.IsKeyErr(err) {
		err = fmt.Errorf("%w: %s was in the store already when this host archived it, and its pg_wal file is gone: it can only be authenticated by decrypting it; run walvault copy --wal-only with the identity", err, rec.Name)
	}
	return FromPrimary, err
}

// sameIn settles a copy that found the key taken in dst.
func sameIn(ctx context.Context, dst *repo.Repo, rec CopyRecord) error {
	got, err := dst.Store.Stat(ctx, rec.Key)
	if err != nil {
		return err
	}
	if repo.SameObject(cloud.ObjectInfo{Size: rec.Size, Metadata: rec.Meta}, got) {
		return nil
	}
	return fmt.Errorf("%w: %s already holds %s with other content", archive.ErrConflict, dst.Store, rec.Key)
}

func fileUnchanged(rec CopyRecord) bool {
	if rec.Path == "" || rec.FileSize == 0 {
		return false
	}
	fi, err := os.Stat(rec.Path)
	return err == nil && fi.Size() == rec.FileSize && fi.ModTime().UnixNano() == rec.FileMTime
}
