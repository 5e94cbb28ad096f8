package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/archive/wal"
)

// The agent's prefetch: after serving segment S it keeps S+1 .. S+N
// downloaded, decoded and verified (wal.Fetch: proof, checksum, fsync) in
// agent/prefetch/, and remembers each file it wrote there by inode, size
// and mtime. A fetch of one of them renames it into DEST without reading
// it again: the agent verified it itself and sees it is the same file. A
// file that changed is dropped and the store is asked.

type prefetchedFile struct {
	id  fileID
	ino uint64
}

type prefetchState struct {
	mu       sync.Mutex
	dir      string
	files    map[string]prefetchedFile
	inflight map[string]chan struct{}
	want     chan prefetchWant
}

type prefetchWant struct {
	wf      archive.WALFile
	segSize int64
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func (a *Agent) initPrefetch() error {
	dir := filepath.Join(a.agentDir, "prefetch")
	// What an earlier agent left is not known to this one: start empty.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	a.pf = &prefetchState{dir: dir, files: map[string]prefetchedFile{}, inflight: map[string]chan struct{}{}, want: make(chan prefetchWant, 1)}
	return nil
}

// handleFetch writes DEST, inside this agent's pg_wal only.
func (a *Agent) handleFetch(ctx context.Context, name, dest string) proto.Response {
	a.st.fetchReqs.Add(1)
	wf, err := archive.ParseWALName(name)
	if err != nil {
		return a.fail(fmt.Errorf("%w: %w", archive.ErrBadInput, err))
	}
	if !a.inWALDir(dest) {
		return proto.Response{Code: proto.CodeFallback, Message: "destination outside this agent's pg_wal (" + a.walDir + ")"}
	}
	dest = filepath.Join(a.walDir, filepath.Base(dest))
	start := time.Now()
	size, hit, err := a.servePrefetched(ctx, name, dest)
	if !hit && err == nil {
		var res wal.FetchResult
		res, err = wal.Fetch(ctx, a.r, name, dest, wal.FetchOptions{SpoolDir: a.spool})
		size, hit = res.Size, res.Prefetched
	}
	took := time.Since(start)
	a.st.fetchMicros.Add(took.Microseconds())
	ms := float64(took.Microseconds()) / 1000
	if err != nil {
		if errors.Is(err, archive.ErrNotInArchive) {
			a.st.notInArchive.Add(1)
			a.log.Debug("not in the archive", "file", name)
		} else {
			a.log.Warn("fetch failed", "file", name, "err", archive.OneLine(err.Error()))
		}
		if wal.StopsRecovery(err, a.cfg.PGData) {
			// As wal-fetch: present but unusable must not pass for absent.
			return proto.Response{Code: proto.CodeStopRecovery, Message: archive.OneLine(err.Error()) + wal.StopRecoveryHint}
		}
		return a.fail(err)
	}
	if hit {
		a.st.prefetchHits.Add(1)
	}
	a.log.Info("fetched", "file", name, "bytes", size, "prefetched", hit, "ms", ms)
	if wf.Kind == archive.KindSegment && a.cfg.Prefetch > 0 && archive.ValidSegmentSize(size) {
		a.queuePrefetch(prefetchWant{wf: wf, segSize: size})
	}
	return proto.Response{Code: 0, Message: "fetched"}
}

// servePrefetched moves a prefetched copy of name to dest, waiting for
// its download when one is in flight.
func (a *Agent) servePrefetched(ctx context.Context, name, dest string) (int64, bool, error) {
	pf := a.pf
	pf.mu.Lock()
	wait := pf.inflight[name]
	pf.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
	pf.mu.Lock()
	defer pf.mu.Unlock()
	rec, ok := pf.files[name]
	if !ok {
		return 0, false, nil
	}
	delete(pf.files, name)
	p := filepath.Join(pf.dir, name)
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || idOf(fi) != rec.id || inode(fi) != rec.ino {
		a.log.Warn("a prefetched file changed on disk: fetching it again", "file", name)
		_ = os.Remove(p)
		return 0, false, nil
	}
	if err := os.Rename(p, dest); err != nil {
		_ = os.Remove(p)
		return 0, false, nil
	}
	// No fsync of pg_wal here: the rename makes DEST whole or absent, and
	// that is all restore_command owes. A crash before PostgreSQL used the
	// file makes recovery ask for it again, and a restored file PostgreSQL
	// keeps it renames durably itself (durable_rename). The fsync cost a
	// journal commit per segment, most of the agent's time per fetch.
	return rec.id.size, true, nil
}

// queuePrefetch hands the prefetcher the latest segment served, replacing
// one it has not started on.
func (a *Agent) queuePrefetch(w prefetchWant) {
	for {
		select {
		case a.pf.want <- w:
			return
		default:
		}
		select {
		case <-a.pf.want:
		default:
		}
	}
}

// prefetcher keeps the segments after the last one served downloaded.
func (a *Agent) prefetcher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-a.pf.want:
			a.prefetchAfter(ctx, w)
		}
	}
}

// prefetchAfter drops what is not among the N segments after w and
// downloads the missing ones, a few at a time, starting none after the
// first that is not archived yet.
func (a *Agent) prefetchAfter(ctx context.Context, w prefetchWant) {
	pf := a.pf
	next := w.wf.SegNo(w.segSize) + 1
	wanted := map[string]bool{}
	var names []string
	for i := range a.cfg.Prefetch {
		n := archive.SegmentName(w.wf.Timeline, next+uint64(i), w.segSize) // #nosec G115 -- i < Prefetch
		wanted[n] = true
		names = append(names, n)
	}
	pf.mu.Lock()
	for n := range pf.files {
		if !wanted[n] {
			delete(pf.files, n)
			_ = os.Remove(filepath.Join(pf.dir, n))
		}
	}
	var todo []string
	for _, n := range names {
		if _, ok := pf.files[n]; !ok && pf.inflight[n] == nil {
			todo = append(todo, n)
		}
	}
	pf.mu.Unlock()

	sem := make(chan struct{}, max(1, a.cfg.DownloadConcurrency))
	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
loop:
	for _, n := range todo {
		select {
		case <-stop:
			break loop
		case <-ctx.Done():
			break loop
		case sem <- struct{}{}:
		}
		done := make(chan struct{})
		pf.mu.Lock()
		pf.inflight[n] = done
		pf.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := a.prefetchOne(ctx, n)
			pf.mu.Lock()
			delete(pf.inflight, n)
			pf.mu.Unlock()
			close(done)
			switch {
			case errors.Is(err, archive.ErrNotInArchive):
				once.Do(func() { close(stop) }) // the archive ends here for now
			case err != nil && ctx.Err() == nil:
				a.log.Warn("prefetch failed", "file", n, "err", archive.OneLine(err.Error()))
			}
		}()
	}
	wg.Wait()
}

// prefetchOne downloads name into the prefetch directory with wal.Fetch
// (verified, fsynced, renamed into place) and records the file.
func (a *Agent) prefetchOne(ctx context.Context, name string) error {
	p := filepath.Join(a.pf.dir, name)
	// No spool: wal.Fetch must go to the store, not to another prefetch.
	if _, err := wal.Fetch(ctx, a.r, name, p, wal.FetchOptions{SpoolDir: filepath.Join(a.pf.dir, ".none")}); err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	a.pf.mu.Lock()
	a.pf.files[name] = prefetchedFile{id: idOf(fi), ino: inode(fi)}
	a.pf.mu.Unlock()
	return nil
}

// prefetchLeftovers lists temporary files in the prefetch directory.
func (a *Agent) prefetchLeftovers() []string {
	ents, _ := os.ReadDir(a.pf.dir)
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), "tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}
