// Package wal is wal-push, wal-fetch and the prefetcher: PostgreSQL's
// archive_command and restore_command, one file at a time, over the repo's
// object layer. Neither ever touches PostgreSQL's own files beyond the one
// it was handed; walvault's working files live in a spool directory.
package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// PushOptions tune wal-push.
type PushOptions struct {
	// Concurrency is how many files one wal-push uploads at once: the one
	// PostgreSQL asked for plus up to Concurrency-1 others already marked
	// .ready in archive_status.
	Concurrency int
	// SpoolDir is walvault's own directory for "pushed ahead" markers;
	// default: .walvault beside the file (pg_wal/.walvault).
	SpoolDir string
	// OnStored, when set, is told of every file this push made durable
	// (the one asked for and those pushed ahead), before Push returns, with
	// what a second store's copy needs (never its bytes).
	OnStored func(StoredObject)
	// KeepBody returns the stored bytes of the file asked for in
	// PushResult.Object (when they were encoded in memory).
	KeepBody bool
}

// PushResult says what happened to one file.
type PushResult struct {
	Name        string
	Already     bool // the archive already held identical content
	Ahead       bool // an earlier wal-push had pushed it ahead
	RawBytes    int64
	StoredBytes int64
	// Object is what was stored, when the push was asked for it.
	Object *StoredObject
}

// Push archives the file at path (as archive_command's %p), and while
// doing so pushes ahead other segments PostgreSQL has marked ready. It
// returns nil only once path's content is durable in the store.
func Push(ctx context.Context, r *repo.Repo, path string, opts PushOptions) (PushResult, error) {
	name := filepath.Base(path)
	wf, err := archive.ParseWALName(name)
	if err != nil {
		return PushResult{}, fmt.Errorf("%w: %s: %w", archive.ErrBadInput, path, err)
	}
	walDir := filepath.Dir(path)
	spool, pushedDir := openSpool(walDir, opts.SpoolDir)

	st, err := os.Stat(path)
	if err != nil {
		return PushResult{}, fmt.Errorf("%w: cannot read %s: %w", archive.ErrBadInput, path, err)
	}
	if pushedDir != "" && consumeMarker(pushedDir, name, st, r.Store) {
		return PushResult{Name: name, Ahead: true, RawBytes: st.Size()}, nil
	}

	// Bound once, before any other file is pushed beside this one.
	if err := BindCluster(ctx, r, path, wf, spool); err != nil {
		return PushResult{Name: name}, err
	}
	var others []string
	if opts.Concurrency > 1 && pushedDir != "" {
		others = readyToPushAhead(walDir, pushedDir, name, opts.Concurrency-1)
	}
	if len(others) > 0 {
		// Parallelism comes from the files; one compressor goroutine per
		// file keeps memory (and peak RSS) in proportion.
		c := *r
		c.Codec.Concurrency = 1
		r = &c
	}
	keep := keepNone
	if opts.OnStored != nil {
		keep = keepRecord
	}
	wait := pushAhead(ctx, r, walDir, pushedDir, spool, others, keep, opts.OnStored)
	if opts.KeepBody {
		keep = keepBody
	}
	res, err := pushFile(ctx, r, path, wf, spool, keep)
	wait()
	if err == nil && res.Object != nil && opts.OnStored != nil {
		opts.OnStored(*res.Object)
	}
	return res, err
}

// PushOne stores the pg_wal file at path, idempotently, and returns nil
// only once its content is durable in the store: Push without push-ahead
// and without markers, for a caller that schedules files itself (the
// agent). It reads the file once (compressing, hashing and encrypting as it
// goes), reuses pooled encoders and buffers, and is safe to call from many
// goroutines. spool is walvault's working directory (where the cluster
// check keeps its note); "" works without one.
func PushOne(ctx context.Context, r *repo.Repo, path, spool string) (PushResult, error) {
	return pushOne(ctx, r, path, spool, keepNone)
}

// PushOneStored is PushOne that also returns what was stored, its bytes
// included (when they were encoded in memory), for a second store.
func PushOneStored(ctx context.Context, r *repo.Repo, path, spool string) (PushResult, error) {
	return pushOne(ctx, r, path, spool, keepBody)
}

func pushOne(ctx context.Context, r *repo.Repo, path, spool string, keep keepMode) (PushResult, error) {
	wf, err := archive.ParseWALName(filepath.Base(path))
	if err != nil {
		return PushResult{}, fmt.Errorf("%w: %s: %w", archive.ErrBadInput, path, err)
	}
	if err := BindCluster(ctx, r, path, wf, spool); err != nil {
		return PushResult{Name: wf.Name}, err
	}
	return pushFile(ctx, r, path, wf, spool, keep)
}

// BindCluster makes sure r knows the cluster whose pg_wal file path is,
// and that the store is that cluster's (claiming it if nobody does):
// every proof it writes names the cluster. A segment says which cluster it
// is of in its page header; other files (history, .backup) are of the
// cluster whose data directory holds pg_wal, or failing that the one
// cluster.json names. A repository already bound is left as it is (the
// agent binds once, before it pushes files concurrently). Concurrent first
// pushes on one repository (PushOne, push-ahead) bind it one at a time:
// the first binds, the others find it bound.
func BindCluster(ctx context.Context, r *repo.Repo, path string, wf archive.WALFile, spool string) error {
	bindMu.Lock()
	defer bindMu.Unlock()
	if r.Cluster != "" {
		return nil
	}
	if wf.Kind == archive.KindSegment || wf.Kind == archive.KindPartial {
		f, _, head, err := openWAL(path)
		if err != nil {
			return err
		}
		_ = f.Close()
		ph, err := archive.ParsePageHeader(head)
		if err != nil {
			return fmt.Errorf("%w: %s is not a WAL segment: %v", archive.ErrBadInput, path, err)
		}
		return r.EnsureCluster(ctx, ph.SystemID, ph.SegmentSize, spool)
	}
	if sysid, err := pg.ControlSystemID(filepath.Dir(filepath.Dir(path))); err == nil {
		return r.EnsureCluster(ctx, sysid, 0, spool)
	}
	if err := r.BindCluster(ctx); err != nil {
		return err
	}
	if r.Cluster == "" {
		return fmt.Errorf("%w: cannot tell which cluster %s is of: the data directory's global/pg_control is not beside its pg_wal, and the store has no cluster.json yet", archive.ErrBadInput, path)
	}
	return nil
}

// bindMu makes BindCluster's check and write of Repo.Cluster one step.
var bindMu sync.Mutex

// pushFile stores one pg_wal file, idempotently; keep says what of the
// stored object res.Object holds.
func pushFile(ctx context.Context, r *repo.Repo, path string, wf archive.WALFile, spool string, keep keepMode) (PushResult, error) {
	res := PushResult{Name: wf.Name}
	f, size, head, err := openWAL(path)
	if err != nil {
		return res, err
	}
	defer func() { _ = f.Close() }()
	res.RawBytes = size

	// The digest travels as metadata, which most stores need before the
	// body. One pass over the file encodes it into memory, in the
	// compressor's own goroutines, hashing the encoded stream (WAL
	// compresses several-fold, so there is far less of it) and CRC-32C'ing
	// the plain bytes. Only when it does not fit (no compression, random
	// data) is the plain file hashed and encoded again, streaming, during
	// the upload. The pass runs while the store answers the cluster and
	// existence checks, which on a cloud store are round trips.
	pass := startEncodePass(f, size, r.Codec)
	defer func() {
		pass.wait() // never leave the pass reading a closed file
		pass.release()
	}()

	if err := checkSegment(ctx, r, path, wf, size, head, spool); err != nil {
		return res, err
	}

	key := repo.WALKey(wf)
	// A store known to refuse a second create of one key needs no look
	// before the conditional upload: a segment archived before (the same,
	// or not) makes the upload fail with ErrExists, settled below. Any
	// other store is asked first, so that no upload can replace an object.
	// A missing bucket needs no request of its own here: the upload that
	// follows a "not found" reports it.
	var (
		info    cloud.ObjectInfo
		statErr error
	)
	look := !r.RefusesSecondCreate
	if look {
		info, statErr = r.Store.Stat(cloud.WriteNext(ctx), key)
	}
	pass.wait()
	if pass.err != nil {
		return res, fmt.Errorf("%w: cannot read %s: %w", archive.ErrBadInput, path, pass.err)
	}
	d := pass.digest
	if look {
		if already, err := alreadyStored(ctx, r, key, f, d, info, statErr); already || err != nil {
			res.Already = already
			if already && keep != keepNone {
				res.Object = alreadyObject(key, wf.Name, info, path)
			}
			return res, err
		}
	}

	opts := cloud.PutOptions{Metadata: d.meta(), IfAbsent: true, SizeHint: size}
	up, err := upload(ctx, r, key, f, size, pass.encoded, opts)
	if errors.Is(err, cloud.ErrExists) {
		// Archived before (a store that refuses a second create is not
		// asked first) or another writer won the race: fine if it is the
		// same content.
		info, statErr := r.Store.Stat(ctx, key)
		if errors.Is(statErr, cloud.ErrNotFound) {
			return res, archive.StoreErr(fmt.Errorf("uploading %s: %w", wf.Name, err))
		}
		if _, err := alreadyStored(ctx, r, key, f, d, info, statErr); err != nil {
			return res, err
		}
		res.Already = true
		if keep != keepNone {
			res.Object = alreadyObject(key, wf.Name, info, path)
		}
		return res, nil
	}
	if err != nil {
		return res, archive.StoreErr(fmt.Errorf("uploading %s: %w", wf.Name, err))
	}
	res.StoredBytes = up.size
	if keep != keepNone {
		if res.Object, err = storedObject(r, key, wf.Name, path, d, up, keep == keepBody); err != nil {
			return res, err
		}
	}
	return res, nil
}

// openWAL opens the file PostgreSQL asked to archive and reads the start
// of it (the page header of a segment; less if the file is shorter).
func openWAL(path string) (f *os.File, size int64, head []byte, err error) {
	f, err = os.Open(path) // #nosec G304 -- the file PostgreSQL asked us to archive
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%w: cannot read %s: %w", archive.ErrBadInput, path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, nil, fmt.Errorf("%w: %s is not a regular file", archive.ErrBadInput, path)
	}
	var buf [archive.LongHeaderLen]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, 0, nil, fmt.Errorf("%w: cannot read %s: %w", archive.ErrBadInput, path, err)
	}
	return f, fi.Size(), buf[:n], nil
}

// checkSegment refuses a segment (or .partial) whose page header does not
// match its name or size, and one of a cluster that does not own the store.
func checkSegment(ctx context.Context, r *repo.Repo, path string, wf archive.WALFile, size int64, head []byte, spool string) error {
	if wf.Kind != archive.KindSegment && wf.Kind != archive.KindPartial {
		return nil
	}
	ph, err := archive.ParsePageHeader(head)
	if err != nil {
		return fmt.Errorf("%w: %s is not a WAL segment: %v", archive.ErrBadInput, path, err)
	}
	if wf.Kind == archive.KindSegment && size != ph.SegmentSize {
		return fmt.Errorf("%w: %s is %d bytes, its header says segments are %d: refusing a truncated segment", archive.ErrBadInput, path, size, ph.SegmentSize)
	}
	if want := wf.StartLSN(ph.SegmentSize); ph.PageAddr != want {
		return fmt.Errorf("%w: %s holds WAL from %s, its name says %s: refusing a misnamed segment", archive.ErrBadInput, path, ph.PageAddr, want)
	}
	return r.EnsureCluster(ctx, ph.SystemID, ph.SegmentSize, spool)
}

// alreadyStored reads the answer of a Stat of the file's key: true when
// the store holds the same content; other content there is a conflict.
func alreadyStored(ctx context.Context, r *repo.Repo, key string, f *os.File, d digest, info cloud.ObjectInfo, statErr error) (bool, error) {
	switch {
	case statErr == nil:
		same, err := sameContent(ctx, r, key, f, d, info.Metadata)
		if err != nil {
			return false, err
		}
		if !same {
			return false, conflictError(r.Store, path.Base(key))
		}
		return true, nil
	case !errors.Is(statErr, cloud.ErrNotFound):
		return false, archive.StoreErr(statErr)
	}
	return false, nil
}

// sameContent decides from the stored object's metadata whether it holds
// the file's content (digest d), as strongly as a SHA-256 comparison of the
// plain bytes: equal SHA-256s of the encoded streams mean equal content (the
// decoder is deterministic); a different size or CRC-32C means different
// content. What is left (same CRC-32C, encoded differently: the compression
// settings changed since) is settled by reading the stored object back.
func sameContent(ctx context.Context, r *repo.Repo, key string, f *os.File, d digest, meta map[string]string) (bool, error) {
	if meta[repo.MetaSize] != strconv.FormatInt(d.size, 10) {
		return false, nil
	}
	switch {
	case meta[repo.MetaEncodedSHA256] != "":
		if d.encoded != "" && meta[repo.MetaEncodedSHA256] == d.encoded {
			return true, nil
		}
		if meta[repo.MetaCRC32C] != d.crc32c {
			return false, nil
		}
		return compareContent(ctx, r, key, f, d.size)
	case meta[repo.MetaSHA256] != "":
		// Written by an older walvault: its digest is of the plain bytes.
		sum := d.plainSHA
		if sum == "" {
			pd, err := hashPlain(io.NewSectionReader(f, 0, d.size), d.size)
			if err != nil {
				return false, fmt.Errorf("%w: cannot read %s: %w", archive.ErrBadInput, f.Name(), err)
			}
			sum = pd.plainSHA
		}
		return meta[repo.MetaSHA256] == sum, nil
	}
	return false, nil
}

// compareContent reads the object at key back, checked as wal-fetch
// checks it, and compares it with the file byte for byte.
func compareContent(ctx context.Context, r *repo.Repo, key string, f *os.File, size int64) (bool, error) {
	c := *r
	if r.Sign != nil {
		// Whoever signs can check their own proofs.
		c.Verify = append(c.Verify[:len(c.Verify):len(c.Verify)], r.Sign.Verify())
	} else if len(r.Verify) == 0 {
		c.AllowUnsigned = true
	}
	same := false
	err := c.Load(ctx, key, repo.Want{Proof: true, ContentFromMeta: true, MaxSize: size}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		var err error
		same, err = equalReaders(rd, io.NewSectionReader(f, 0, size))
		return err
	})
	if repo.IsKeyErr(err) {
		return false, fmt.Errorf("%w: %s has %s encrypted and encoded with other compression settings, so its content may well be the same: give --identity-file to let wal-push compare it, or archive with the settings it was stored with", archive.ErrConflict, r.Store, path.Base(key))
	}
	return same, err
}

// equalReaders reports whether a and b hold the same bytes; it reads a to
// its end either way, so that its checks run.
func equalReaders(a, b io.Reader) (bool, error) {
	ca, cb := chunks.Get().(*[]byte), chunks.Get().(*[]byte)
	defer chunks.Put(ca)
	defer chunks.Put(cb)
	same := true
	for {
		n, aerr := io.ReadFull(a, *ca)
		if aerr != nil && aerr != io.EOF && aerr != io.ErrUnexpectedEOF {
			return false, aerr
		}
		if same {
			m, berr := io.ReadFull(b, (*cb)[:n])
			if berr != nil && berr != io.EOF && berr != io.ErrUnexpectedEOF {
				return false, berr
			}
			same = m == n && bytes.Equal((*ca)[:n], (*cb)[:n])
		}
		if aerr != nil {
			break
		}
	}
	if same {
		// b must end where a did.
		var one [1]byte
		if n, _ := b.Read(one[:]); n > 0 {
			same = false
		}
	}
	return same, nil
}

// uploaded is what upload stored: its size and SHA-256 ("" when not
// computed), and the encoded bytes when they were in memory.
type uploaded struct {
	size    int64
	sha256  string
	encoded []byte
}

// upload stores the file under key: the encoded copy when the pass kept
// one, else the file encoded again as it streams (a retry re-reads it).
func upload(ctx context.Context, r *repo.Repo, key string, f *os.File, size int64, encoded []byte, opts cloud.PutOptions) (uploaded, error) {
	if encoded != nil {
		return uploaded{size: int64(len(encoded)), encoded: encoded}, r.PutBytes(ctx, key, encoded, opts)
	}
	src := func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(f, 0, size)), nil }
	st, err := r.Put(ctx, key, src, repo.PutOptions{PutOptions: opts})
	return uploaded{size: st.StoredSize, sha256: st.SHA256}, err
}

func conflictError(st cloud.Store, name string) error {
	return fmt.Errorf("%w: %s already has %s with a different checksum: the stored copy is kept; if this server was restored or re-initialized, archive it to a new store prefix", archive.ErrConflict, st, name)
}
