package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// openSpool returns wal-push's spool directory and the pushed/ directory
// of markers in it; both are empty when it cannot be used, and wal-push
// then works without it.
func openSpool(walDir, spool string) (string, string) {
	if spool == "" {
		spool = filepath.Join(walDir, ".walvault")
	}
	pushedDir := filepath.Join(spool, "pushed")
	if err := os.MkdirAll(pushedDir, 0o700); err != nil {
		slog.Warn("spool directory unusable, pushing without it", "dir", spool, "err", err)
		return "", ""
	}
	return spool, pushedDir
}

// pushAhead starts pushing the files others of walDir, each in its own
// goroutine, and returns the function that waits for them. A file pushed
// gets a marker in pushedDir; a failure is only logged.
func pushAhead(ctx context.Context, r *repo.Repo, walDir, pushedDir, spool string, others []string, keep keepMode, onStored func(StoredObject)) (wait func()) {
	var wg sync.WaitGroup
	for _, other := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := filepath.Join(walDir, other)
			owf, err := archive.ParseWALName(other)
			var res PushResult
			if err == nil {
				res, err = pushFile(ctx, r, p, owf, spool, keep)
			}
			if err != nil {
				// PostgreSQL will ask for it in its turn and see the error then.
				slog.Warn("push ahead failed", "file", other, "err", err)
				return
			}
			if res.Object != nil {
				onStored(*res.Object)
			}
			if ost, err := os.Stat(p); err == nil {
				writeMarker(pushedDir, other, ost, r.Store)
			}
		}()
	}
	return wg.Wait
}

// A marker in pushed/ says "this file, with this size and mtime, is whole in
// the store". It is written only after the upload returned, so a crash can
// lose a marker (and cost a re-check) but never create a false one.
// It also names the store, so a changed --store never trusts old markers.
func markerText(st os.FileInfo, store cloud.Store) string {
	return fmt.Sprintf("%d %d %s\n", st.Size(), st.ModTime().UnixNano(), store)
}

func writeMarker(dir, name string, st os.FileInfo, store cloud.Store) {
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, name), []byte(markerText(st, store)), false); err != nil {
		slog.Warn("cannot record pushed-ahead file", "file", name, "err", err)
	}
}

func consumeMarker(dir, name string, st os.FileInfo, store cloud.Store) bool {
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p) // #nosec G304 -- our spool
	if err != nil {
		return false
	}
	_ = os.Remove(p)
	return string(b) == markerText(st, store)
}

// readyToPushAhead lists up to n files PostgreSQL has marked ready, oldest
// first, that are not the current one and not already pushed ahead. It only
// reads archive_status: PostgreSQL's own files are never touched. Markers
// whose file is gone are removed.
func readyToPushAhead(walDir, pushedDir, current string, n int) []string {
	ents, err := os.ReadDir(filepath.Join(walDir, "archive_status"))
	if err != nil {
		return nil
	}
	pushed := map[string]bool{}
	if ms, err := os.ReadDir(pushedDir); err == nil {
		for _, m := range ms {
			if strings.Contains(m.Name(), ".tmp") {
				continue
			}
			pushed[m.Name()] = true
		}
	}
	var ready []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok || name == current || pushed[name] {
			continue
		}
		if _, err := archive.ParseWALName(name); err != nil {
			continue
		}
		ready = append(ready, name)
	}
	// History files first (a new timeline is useless without one), then by
	// name, which orders segments by timeline and position.
	sort.Slice(ready, func(i, j int) bool {
		hi, hj := strings.HasSuffix(ready[i], ".history"), strings.HasSuffix(ready[j], ".history")
		if hi != hj {
			return hi
		}
		return ready[i] < ready[j]
	})
	// Forget markers of files PostgreSQL has since recycled or removed.
	for m := range pushed {
		if _, err := os.Stat(filepath.Join(walDir, m)); errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(filepath.Join(pushedDir, m))
		}
	}
	if len(ready) > n {
		ready = ready[:n]
	}
	return ready
}
