// Package wal is wal-push, wal-fetch and the prefetcher: PostgreSQL's
// archive_command and restore_command, one file at a time, over the repo's
// object layer. Neither ever touches PostgreSQL's own files beyond the one
// it was handed; walvault's working files live in a spool directory.
package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/walvault/walvault/archive"
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
}

// PushResult says what happened to one file.
type PushResult struct {
	Name        string
	Already     bool // the archive already held identical content
	Ahead       bool // an earlier wal-push had pushed it ahead
	RawBytes    int64
	StoredBytes int64
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
	wait := pushAhead(ctx, r, walDir, pushedDir, spool, others)
	res, err := pushFile(ctx, r, path, wf, spool)
	wait()
	return res, err
}

// pushFile stores one pg_wal file, idempotently.
func pushFile(ctx context.Context, r *repo.Repo, path string, wf archive.WALFile, spool string) (PushResult, error) {
	res := PushResult{Name: wf.Name}
	f, size, head, err := openWAL(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	res.RawBytes = size

	// The checksum travels as metadata, which most stores need before the
	// body. One pass over the file hashes it and, in the compressor's own
	// goroutines, encodes it into memory; WAL compresses several-fold, so
	// the encoded object is small. Only when it is not (no compression,
	// random data) is the file encoded again, streaming, during the upload.
	// The pass runs while the store answers the cluster and existence checks,
	// which on a cloud store are round trips.
	pass := startEncodePass(f, size, r.Codec)
	defer pass.wait() // never leave the pass reading a closed file

	if err := checkSegment(ctx, r, path, wf, size, head, spool); err != nil {
		return res, err
	}

	key := repo.WALKey(wf)
	info, statErr := r.Store.Stat(ctx, key)
	pass.wait()
	if pass.err != nil {
		return res, fmt.Errorf("%w: cannot read %s: %w", archive.ErrBadInput, path, pass.err)
	}
	sum := pass.sum
	if already, err := alreadyStored(r.Store, wf.Name, sum, info, statErr); already || err != nil {
		res.Already = already
		return res, err
	}

	opts := cloud.PutOptions{
		Metadata: map[string]string{repo.MetaSHA256: sum, repo.MetaSize: strconv.FormatInt(size, 10)},
		IfAbsent: true,
		SizeHint: size,
	}
	stored, err := upload(ctx, r, key, f, size, pass.encoded, opts)
	if errors.Is(err, cloud.ErrExists) {
		// Another writer won the race; it is fine if it wrote the same thing.
		same, cerr := compareStored(ctx, r.Store, key, sum)
		if cerr != nil {
			return res, cerr
		}
		if !same {
			return res, conflictError(r.Store, wf.Name)
		}
		res.Already = true
		return res, nil
	}
	if err != nil {
		return res, archive.StoreErr(fmt.Errorf("uploading %s: %w", wf.Name, err))
	}
	res.StoredBytes = stored
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
func alreadyStored(st cloud.Store, name, sum string, info cloud.ObjectInfo, statErr error) (bool, error) {
	switch {
	case statErr == nil && info.Metadata[repo.MetaSHA256] == sum:
		return true, nil
	case statErr == nil:
		return false, conflictError(st, name)
	case !errors.Is(statErr, cloud.ErrNotFound):
		return false, archive.StoreErr(statErr)
	}
	return false, nil
}

// upload stores the file under key: the encoded copy when the pass kept
// one, else the file encoded again as it streams (a retry re-reads it).
// It returns the stored size.
func upload(ctx context.Context, r *repo.Repo, key string, f *os.File, size int64, encoded []byte, opts cloud.PutOptions) (int64, error) {
	if encoded != nil {
		return int64(len(encoded)), r.PutBytes(ctx, key, encoded, opts)
	}
	src := func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(f, 0, size)), nil }
	st, err := r.Put(ctx, key, src, repo.PutOptions{PutOptions: opts})
	return st.StoredSize, err
}

func conflictError(st cloud.Store, name string) error {
	return fmt.Errorf("%w: %s already has %s with a different checksum: the stored copy is kept; if this server was restored or re-initialized, archive it to a new store prefix", archive.ErrConflict, st, name)
}

// compareStored reports whether key holds content with checksum sum; a
// stored object with another checksum is a conflict error.
func compareStored(ctx context.Context, st cloud.Store, key, sum string) (bool, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return false, err
		}
		return false, archive.StoreErr(err)
	}
	if info.Metadata[repo.MetaSHA256] == sum {
		return true, nil
	}
	return false, conflictError(st, filepath.Base(key))
}
