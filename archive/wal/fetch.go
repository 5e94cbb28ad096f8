package wal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// FetchOptions tune wal-fetch.
type FetchOptions struct {
	// SpoolDir holds prefetched segments; default .walvault beside DEST
	// (pg_wal/.walvault).
	SpoolDir string
}

// FetchResult says where the file came from.
type FetchResult struct {
	Name       string
	Prefetched bool  // served from the spool directory
	Size       int64 // bytes written to DEST
}

// Fetch restores one archived file to dest (restore_command's %p): from
// the prefetch spool when a verified copy is there, else from the store. A
// file that is not archived yields archive.ErrNotInArchive. dest appears
// only whole, verified and fsynced.
func Fetch(ctx context.Context, r *repo.Repo, name, dest string, opts FetchOptions) (FetchResult, error) {
	wf, err := archive.ParseWALName(name)
	if err != nil {
		return FetchResult{}, fmt.Errorf("%w: %w", archive.ErrBadInput, err)
	}
	res := FetchResult{Name: name}
	if err := bindForFetch(ctx, r, DataDirOf(dest)); err != nil {
		return res, err
	}
	destDir := filepath.Dir(dest)
	spool := opts.SpoolDir
	if spool == "" {
		spool = filepath.Join(destDir, ".walvault")
	}
	if size, ok := servePrefetched(filepath.Join(spool, "prefetch"), r.Store, name, dest); ok {
		res.Prefetched, res.Size = true, size
		return res, fsutil.SyncDir(destDir)
	}
	tmp := tempBeside(dest)
	_, size, err := download(ctx, r, wf, tmp)
	if err != nil {
		return res, err
	}
	if err := os.Rename(tmp, dest); err != nil {
		_ = os.Remove(tmp)
		return res, err
	}
	res.Size = size
	return res, fsutil.SyncDir(destDir)
}

func tempBeside(path string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return filepath.Join(filepath.Dir(path), ".walvault-tmp-"+filepath.Base(path)+"-"+hex.EncodeToString(b[:]))
}

// download fetches wf's object into the new file tmp, decoded and checked
// against the digest stored with it, and fsyncs it. It returns the CRC-32C
// of what it wrote (8 hex digits), which names a prefetched copy. On any
// error tmp is removed. A download the connection cut short is started
// over by the repo (PostgreSQL takes a failed restore_command for the end
// of the archive); each attempt rewrites tmp from its start.
func download(ctx context.Context, r *repo.Repo, wf archive.WALFile, tmp string) (sum string, size int64, err error) {
	var f *os.File
	defer func() {
		if err != nil && f != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	err = r.Load(ctx, repo.WALKey(wf), want(ctx, r, wf), func(rd io.Reader, info cloud.ObjectInfo) error {
		var ferr error
		if f, ferr = startOver(f, tmp); ferr != nil {
			return ferr
		}
		// Load checks the content against its stored digest as it ends,
		// the CRC-32C among them when the object states one.
		if sum = info.Metadata[repo.MetaCRC32C]; sum != "" && info.Metadata[repo.MetaEncodedSHA256] != "" {
			size, ferr = io.Copy(f, rd)
			return ferr
		}
		crc := newCRC32C()
		size, ferr = io.Copy(io.MultiWriter(f, crc), rd)
		sum = fmt.Sprintf("%08x", crc.Sum32())
		return ferr
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return "", 0, fmt.Errorf("%s: %w", wf.Name, archive.ErrNotInArchive)
	}
	if err != nil {
		return "", 0, err
	}
	if err = sameCluster(f, wf, r.Cluster); err != nil {
		return "", 0, fmt.Errorf("%w: %s in %s: %w", archive.ErrIntegrity, wf.Name, r.Store, err)
	}
	if err = f.Sync(); err != nil {
		return "", 0, err
	}
	if err = f.Close(); err != nil {
		return "", 0, err
	}
	return sum, size, nil
}

// bindForFetch binds r to the cluster being recovered: the one whose
// pg_control is in pgdata (the restored backup's, authenticated when it
// was restored), else the one the store's cluster.json names. Every
// object fetched must have been written for it.
func bindForFetch(ctx context.Context, r *repo.Repo, pgdata string) error {
	if r.Cluster != "" {
		return nil
	}
	if sysid, err := pg.ControlSystemID(pgdata); err == nil {
		r.Cluster = strconv.FormatUint(sysid, 10)
		return nil
	}
	return r.BindCluster(ctx)
}

// sameCluster checks that a fetched segment's first page header names the
// cluster r is bound to (a segment written by an older walvault has no
// proof that names its cluster; its header does). Other files, and a
// repository bound to no cluster, pass.
func sameCluster(f *os.File, wf archive.WALFile, cluster string) error {
	if cluster == "" || wf.Kind != archive.KindSegment && wf.Kind != archive.KindPartial {
		return nil
	}
	var buf [archive.LongHeaderLen]byte
	if _, err := f.ReadAt(buf[:], 0); err != nil {
		return fmt.Errorf("it is shorter than a WAL page header: %w", err)
	}
	ph, err := archive.ParsePageHeader(buf[:])
	if err != nil {
		return fmt.Errorf("it is not a WAL segment: %w", err)
	}
	if got := strconv.FormatUint(ph.SystemID, 10); got != cluster {
		return fmt.Errorf("it is a segment of the cluster with system identifier %s, and the cluster being recovered is %s", got, cluster)
	}
	return nil
}

// startOver gives an empty tmp to write a download into: created on the
// first attempt (it must not exist), truncated on the next ones.
func startOver(f *os.File, tmp string) (*os.File, error) {
	if f == nil {
		return os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- a temp file beside DEST or in our spool
	}
	if err := f.Truncate(0); err != nil {
		return f, err
	}
	_, err := f.Seek(0, io.SeekStart)
	return f, err
}

// want is what an archived pg_wal file must be (repo.WantWAL).
func want(ctx context.Context, r *repo.Repo, wf archive.WALFile) repo.Want { return r.WantWAL(ctx, wf) }
