package archive

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/walvault/walvault/archive/codec"
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

// FetchWAL restores one archived file to dest (restore_command's %p): from
// the prefetch spool when a verified copy is there, else from the store. A
// file that is not archived yields ErrNotInArchive. dest appears only whole,
// verified and fsynced.
func FetchWAL(ctx context.Context, cfg *Config, name, dest string, opts FetchOptions) (FetchResult, error) {
	wf, err := ParseWALName(name)
	if err != nil {
		return FetchResult{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	res := FetchResult{Name: name}
	destDir := filepath.Dir(dest)
	spool := opts.SpoolDir
	if spool == "" {
		spool = filepath.Join(destDir, ".walvault")
	}
	pre := filepath.Join(spool, "prefetch")
	if size, ok := servePrefetched(pre, cfg.Store, name, dest); ok {
		res.Prefetched, res.Size = true, size
		return res, syncDir(destDir)
	}
	tmp := tempBeside(dest)
	var size int64
	// Only a download the network cut short is tried again (a stall has
	// already waited out the I/O timeout): PostgreSQL takes a failed
	// restore_command for the end of the archive.
	err = cloud.Retry(ctx, cloud.DefaultRetry, "fetch "+name, func() error {
		var e error
		_, size, e = download(ctx, cfg, WALKey(wf), name, tmp)
		if e != nil && (!errors.Is(e, errInterrupted) || errors.Is(e, os.ErrDeadlineExceeded)) {
			return cloud.Permanent(e)
		}
		return e
	})
	if err != nil {
		return res, err
	}
	if err := os.Rename(tmp, dest); err != nil {
		_ = os.Remove(tmp)
		return res, err
	}
	res.Size = size
	return res, syncDir(destDir)
}

func tempBeside(path string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return filepath.Join(filepath.Dir(path), ".walvault-tmp-"+filepath.Base(path)+"-"+hex.EncodeToString(b[:]))
}

// download fetches key, decodes it into the new file tmp, checks it against
// the checksum stored with the object, and fsyncs it. On any error tmp is
// removed.
func download(ctx context.Context, cfg *Config, key, name, tmp string) (sum string, size int64, err error) {
	rc, info, err := cfg.Store.Get(ctx, key)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return "", 0, fmt.Errorf("%s: %w", name, ErrNotInArchive)
		}
		return "", 0, asStoreErr(fmt.Errorf("%s: fetching %s: %w", cfg.Store, name, err))
	}
	defer rc.Close()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- a temp file beside DEST
	if err != nil {
		return "", 0, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	body := &transportReader{r: rc}
	dec, err := codec.NewReader(body, cfg.Identities)
	if err != nil {
		if body.broke(ctx) {
			return "", 0, interrupted(cfg.Store, name, body.err)
		}
		return "", 0, fmt.Errorf("%s in %s: %w", name, cfg.Store, err)
	}
	defer dec.Close()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), dec)
	if err != nil {
		if body.broke(ctx) {
			return "", 0, interrupted(cfg.Store, name, body.err)
		}
		if errors.Is(err, codec.ErrCorrupt) {
			return "", 0, fmt.Errorf("%w: %s in %s: %w", ErrIntegrity, name, cfg.Store, err)
		}
		return "", 0, asStoreErr(fmt.Errorf("%s: reading %s: %w", cfg.Store, name, err))
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if want := info.Metadata[MetaSHA256]; want == "" {
		// Every object walvault writes has one; without it nothing can vouch
		// for the content (a damaged frame header reads as raw data).
		return "", 0, fmt.Errorf("%w: %s in %s has no %s metadata: it was not written by walvault or its metadata was lost in a copy", ErrIntegrity, name, cfg.Store, MetaSHA256)
	} else if want != sum {
		return "", 0, fmt.Errorf("%w: %s in %s: content checksum %.12s… does not match the recorded %.12s…: the stored object is damaged", ErrIntegrity, name, cfg.Store, sum, want)
	}
	if err = f.Sync(); err != nil {
		return "", 0, err
	}
	if err = f.Close(); err != nil {
		return "", 0, err
	}
	return sum, size, nil
}

// errInterrupted marks a download the network cut short, as opposed to an
// object that does not decode: the decoder sees both as an early end.
var errInterrupted = errors.New("the download was interrupted")

func interrupted(st cloud.Store, name string, err error) error {
	return asStoreErr(fmt.Errorf("%s: reading %s: %w: %w", st, name, errInterrupted, err))
}

// transportReader remembers the error of the stream under a decoder, so a
// network failure is not taken for a damaged object.
type transportReader struct {
	r   io.Reader
	err error
}

func (t *transportReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// broke reports whether the network cut the stream short or reset it (not
// a cancellation, nor a checksum mismatch, which is the object's fault).
func (t *transportReader) broke(ctx context.Context) bool {
	if t.err == nil || ctx.Err() != nil {
		return false
	}
	var ne net.Error
	return errors.Is(t.err, io.ErrUnexpectedEOF) || errors.As(t.err, &ne) ||
		errors.Is(t.err, syscall.ECONNRESET) || errors.Is(t.err, syscall.EPIPE)
}

// Prefetched files are named NAME.SHA256 in the prefetch directory and
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
		if !ok || len(want) != 64 {
			continue
		}
		p := filepath.Join(dir, e.Name())
		got, size, err := hashFile(p)
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

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path) // #nosec G304 -- our spool
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// Prefetch downloads up to n segments following name (same timeline) into
// the prefetch directory, a few at a time. It runs in a detached process
// started by wal-fetch; only one runs per spool (a lock), and it stops at
// the first segment that is not archived yet. Errors are logged, not fatal:
// wal-fetch falls back to the store.
func Prefetch(ctx context.Context, cfg *Config, name string, segSize int64, n, concurrency int, spool string) error {
	wf, err := ParseWALName(name)
	if err != nil || wf.Kind != KindSegment || !ValidSegmentSize(segSize) || n <= 0 {
		return nil
	}
	dir := filepath.Join(spool, "prefetch")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- our spool
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil { // #nosec G115 -- a file descriptor
		return nil // another prefetcher is at work
	}
	cleanPrefetchDir(dir, cfg.Store, wf, segSize)

	next := wf.SegNo(segSize) + 1
	names := make([]string, n)
	for i := range names {
		names[i] = SegmentName(wf.Timeline, next+uint64(i), segSize) // #nosec G115 -- i < n
	}
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
			if err := prefetchOne(ctx, cfg, dir, nm); err != nil {
				if errors.Is(err, ErrNotInArchive) {
					missing.Do(func() { close(stop) })
					return
				}
				slog.Warn("prefetch failed", "file", nm, "err", err)
			}
		}()
	}
	wg.Wait()
	return nil
}

func prefetchOne(ctx context.Context, cfg *Config, dir, name string) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+".") {
			return nil // already here
		}
	}
	wf, _ := ParseWALName(name)
	tmp := filepath.Join(dir, ".tmp-"+name)
	_ = os.Remove(tmp)
	sum, _, err := download(ctx, cfg, WALKey(wf), name, tmp)
	if err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name+"."+sum))
}

// cleanPrefetchDir drops leftovers: partial downloads, files from another
// store, and segments at or before the one just served on its timeline.
func cleanPrefetchDir(dir string, st cloud.Store, served WALFile, segSize int64) {
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
		if wf, err := ParseWALName(strings.SplitN(nm, ".", 2)[0]); err == nil && wf.Timeline == served.Timeline && wf.SegNo(segSize) <= served.SegNo(segSize) {
			drop = true
		}
		if drop {
			_ = os.Remove(filepath.Join(dir, nm))
		}
	}
	if !sameStore {
		_ = writeFileAtomic(storeFile, []byte(st.String()), false)
	}
}
