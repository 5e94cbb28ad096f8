package wal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Prefetched files are named NAME.CRC32C in the prefetch directory (NAME.SHA256
// from older versions is still served), checked again when served, and
// appear there only by rename, whole. The directory also records which store
// they came from (.store); nothing is served for another store.
const prefetchStoreFile = ".store"

func servePrefetched(dir string, st cloud.Store, name, dest string) (int64, bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	if b, err := os.ReadFile(filepath.Join(dir, prefetchStoreFile)); err != nil || string(b) != st.String() { // #nosec G304 -- our spool
		return 0, false
	}
	for _, e := range ents {
		want, ok := strings.CutPrefix(e.Name(), name+".")
		if !ok || (len(want) != 64 && len(want) != 8) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		got, size, err := hashFile(p, len(want) == 8)
		if err != nil || got != want {
			slog.Warn("discarding a damaged prefetched file", "file", e.Name())
			_ = os.Remove(p)
			return 0, false
		}
		if err := os.Rename(p, dest); err != nil {
			return 0, false
		}
		return size, true
	}
	return 0, false
}

// hashFile returns the CRC-32C (crc) or SHA-256 of the file at path, in
// hex, and its size. The spool is walvault's own: the checksum only tells
// a damaged or torn copy, which CRC-32C is made for.
func hashFile(path string, crc bool) (string, int64, error) {
	f, err := os.Open(path) // #nosec G304 -- our spool
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = f.Close() }()
	if crc {
		h := newCRC32C()
		n, err := io.Copy(h, f)
		return fmt.Sprintf("%08x", h.Sum32()), n, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// Prefetch downloads up to n segments following name (same timeline) into
// the prefetch directory, a few at a time. It runs in a detached process
// started by wal-fetch; only one runs per spool (a lock), and it stops at
// the first segment that is not archived yet. Errors are logged, not fatal:
// wal-fetch falls back to the store.
func Prefetch(ctx context.Context, r *repo.Repo, name string, segSize int64, n, concurrency int, spool string) error {
	wf, err := archive.ParseWALName(name)
	if err != nil || wf.Kind != archive.KindSegment || !archive.ValidSegmentSize(segSize) || n <= 0 {
		return nil
	}
	dir := filepath.Join(spool, "prefetch")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lock, err := lockPrefetchDir(dir)
	if err != nil || lock == nil {
		return err
	}
	defer func() { _ = lock.Close() }()
	// Bound before the downloads run side by side: the data directory of
	// the default spool (pg_wal/.walvault), else cluster.json.
	if err := bindForFetch(ctx, r, filepath.Dir(filepath.Dir(spool))); err != nil {
		return err
	}
	cleanPrefetchDir(dir, r.Store, wf, segSize)
	prefetchAll(ctx, r, dir, segmentsAfter(wf, segSize, n), concurrency)
	return nil
}

// lockPrefetchDir takes the prefetcher's lock on dir; nil, nil when
// another prefetcher holds it.
func lockPrefetchDir(dir string) (*os.File, error) {
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- our spool
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil { // #nosec G115 -- a file descriptor
		_ = lock.Close()
		return nil, nil // another prefetcher is at work
	}
	return lock, nil
}

// segmentsAfter names the n segments that follow wf on its timeline.
func segmentsAfter(wf archive.WALFile, segSize int64, n int) []string {
	next := wf.SegNo(segSize) + 1
	names := make([]string, n)
	for i := range names {
		names[i] = archive.SegmentName(wf.Timeline, next+uint64(i), segSize) // #nosec G115 -- i < n
	}
	return names
}

// prefetchAll downloads names into dir, concurrency at a time, and starts
// none after the first that is not in the archive.
func prefetchAll(ctx context.Context, r *repo.Repo, dir string, names []string, concurrency int) {
	sem := make(chan struct{}, max(1, concurrency))
	var wg sync.WaitGroup
	var missing sync.Once
	stop := make(chan struct{})
loop:
	for _, nm := range names {
		select {
		case <-stop: // the archive ends here; nothing after it exists yet
			break loop
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := prefetchOne(ctx, r, dir, nm); err != nil {
				if errors.Is(err, archive.ErrNotInArchive) {
					missing.Do(func() { close(stop) })
					return
				}
				slog.Warn("prefetch failed", "file", nm, "err", err)
			}
		}()
	}
	wg.Wait()
}

func prefetchOne(ctx context.Context, r *repo.Repo, dir, name string) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+".") {
			return nil // already here
		}
	}
	wf, _ := archive.ParseWALName(name)
	tmp := filepath.Join(dir, ".tmp-"+name)
	_ = os.Remove(tmp)
	sum, _, err := download(ctx, r, wf, tmp)
	if err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name+"."+sum))
}

// cleanPrefetchDir drops leftovers: partial downloads, files from another
// store, and segments at or before the one just served on its timeline.
func cleanPrefetchDir(dir string, st cloud.Store, served archive.WALFile, segSize int64) {
	storeFile := filepath.Join(dir, prefetchStoreFile)
	b, _ := os.ReadFile(storeFile) // #nosec G304 -- our spool
	sameStore := string(b) == st.String()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		nm := e.Name()
		if nm == ".lock" || nm == prefetchStoreFile {
			continue
		}
		drop := !sameStore || strings.HasPrefix(nm, ".tmp-")
		if wf, err := archive.ParseWALName(strings.SplitN(nm, ".", 2)[0]); err == nil && wf.Timeline == served.Timeline && wf.SegNo(segSize) <= served.SegNo(segSize) {
			drop = true
		}
		if drop {
			_ = os.Remove(filepath.Join(dir, nm))
		}
	}
	if !sameStore {
		_ = fsutil.WriteFileAtomic(storeFile, []byte(st.String()), false)
	}
}
