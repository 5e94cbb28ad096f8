package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
)

// A delta restore (--delta) rebuilds an existing, stopped data directory
// of the same cluster as the backup: a file whose size and CRC-32C (with
// --delta-by-time: size and modification time) match the backup's record
// is kept untouched, every other file is written from the backup exactly
// as a normal restore writes it (authenticated, under a temporary name,
// then renamed; an incremental's blocks from its chain), and what the
// backup does not have is removed, except the server's log directories.
// Only the parts that hold a file to rewrite are downloaded; of a full
// backup's part with a block index, only the blocks that hold what must be
// written (deltaranges.go): a relation file is compared range by range
// against the manifest's per-range CRC-32Cs and only the ranges that
// differ are fetched and written in place.

// DeltaStats say what a delta restore kept, fetched and removed.
type DeltaStats struct {
	KeptFiles    int   `json:"kept_files"`
	KeptBytes    int64 `json:"kept_bytes"`
	FetchedFiles int   `json:"fetched_files"`
	FetchedBytes int64 `json:"fetched_bytes"` // bytes written
	// PatchedFiles are the fetched files of which only the ranges that
	// differ were written, in place.
	PatchedFiles int  `json:"patched_files"`
	Removed      int  `json:"removed"` // files, links and directories
	ByTime       bool `json:"by_time"`
	// CompareSeconds is how long comparing the local files took.
	CompareSeconds float64 `json:"compare_seconds"`
}

// deltaMarker stands in DEST, with the system identifier it was checked
// against, while a delta restore runs: the old pg_control goes first, and
// a delta restore run again after a failure recognises the directory by
// it.
const deltaMarker = ".walvault-delta"

// deltaKept are what a delta restore never removes although no backup
// holds them: the server's log directories (log_directory's default, and
// its name before PostgreSQL 10) and the marker.
var deltaKept = map[string]bool{"log": true, "pg_log": true, deltaMarker: true}

// checkDeltaDest refuses a DEST a delta restore must not touch: one that
// is not there, one a server runs in, and one of another cluster than
// the backup (its pg_control's system identifier, or the marker of an
// interrupted delta restore).
func checkDeltaDest(dest string, m *repo.Manifest) error {
	st, err := os.Stat(dest)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("%w: --delta: DEST %s is not an existing data directory: restore into a new directory without --delta", archive.ErrBadInput, dest)
	}
	if pid, alive := postmasterAlive(dest); alive {
		return fmt.Errorf("%w: --delta: a server (postmaster.pid, process %d) is running in %s: stop it first (pg_ctl -D %s stop)", archive.ErrBadInput, pid, dest, dest)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "pg_wal")); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		// Restore writes no file through a link; replacing it with a
		// directory would leave the WAL disk behind without a word.
		return fmt.Errorf("%w: --delta: %s/pg_wal is a symbolic link (initdb --waldir): restore writes nothing through links; remove the link (and the old WAL it leads to) and run the delta restore again, then move pg_wal back with the server stopped", archive.ErrBadInput, dest)
	}
	want, _ := strconv.ParseUint(m.SystemIdentifier, 10, 64)
	got, err := pg.ControlSystemID(dest)
	if errors.Is(err, fs.ErrNotExist) {
		b, merr := os.ReadFile(filepath.Join(dest, deltaMarker)) // #nosec G304 -- inside DEST
		if merr != nil {
			return fmt.Errorf("%w: --delta: %s has no global/pg_control, so which cluster it belongs to cannot be checked: restore into an empty directory, or with --force", archive.ErrBadInput, dest)
		}
		got, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	if err != nil {
		return fmt.Errorf("%w: --delta: reading the system identifier of %s: %w", archive.ErrBadInput, dest, err)
	}
	if got != want {
		return fmt.Errorf("%w: --delta: %s belongs to the cluster with system identifier %d, backup %s to %d: a delta restore only rebuilds a directory of the same cluster (restore into an empty directory instead)", archive.ErrBadInput, dest, got, m.Name, want)
	}
	return nil
}

// postmasterAlive reads DEST's postmaster.pid: a process with that pid
// that exists (or that we may not signal) is a running server.
func postmasterAlive(dest string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dest, "postmaster.pid")) // #nosec G304 -- inside DEST
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, false // not a pid file PostgreSQL wrote: a stale leftover
	}
	err = syscall.Kill(pid, 0)
	return pid, err == nil || errors.Is(err, syscall.EPERM)
}

// localEntry is one thing found in DEST or a tablespace directory.
type localEntry struct {
	oid   uint32
	root  *os.Root
	rel   string // in root
	typ   fs.FileMode
	size  int64
	mtime time.Time
}

// deltaPlan is the outcome of comparing DEST with the backup.
type deltaPlan struct {
	keep map[string]bool // manifest paths of files kept as they are
	// inTheWay are removed before anything is written (where the backup
	// has something else, or under a name restore writes to), remove
	// (what the backup does not have) while the backup is written.
	inTheWay, remove []localEntry
	removed          chan error   // the removal's outcome, once
	parts            map[int]bool // parts of the restored backup read whole
	// ranged are the parts read through their block index: the files
	// they hold to write, whole or (patch) in changed ranges.
	ranged map[int]*rangedPart
	// fetched counts the stored bytes range reads fetched.
	fetched atomic.Int64
	stats   DeltaStats
}

// kept says whether the file at manifest path p stays as it is.
func (d *deltaPlan) kept(p string) bool { return d != nil && d.keep[p] }

// planDelta lists DEST and the tablespace directories, compares every
// file of the backup with what is there, and says what to keep and to
// remove.
func (x *extractor) planDelta(ctx context.Context, byTime bool, concurrency int) (*deltaPlan, error) {
	began := time.Now()
	local, err := x.listLocal()
	if err != nil {
		return nil, err
	}
	d := &deltaPlan{keep: map[string]bool{}, parts: map[int]bool{}, ranged: map[int]*rangedPart{}, stats: DeltaStats{ByTime: byTime}}
	inBackup := make(map[string]bool, len(x.m.Files))
	// The tablespace links restore makes itself, and every directory a
	// path of the backup lies in (a manifest need not list them).
	for _, ts := range x.m.Tablespaces {
		inBackup[fmt.Sprintf("pg_tblspc/%d", ts.OID)] = true
	}
	var candidates []*repo.File
	for i := range x.m.Files {
		f := &x.m.Files[i]
		for dir := path.Dir(f.Path); dir != "." && !inBackup[dir]; dir = path.Dir(dir) {
			inBackup[dir] = true
		}
		inBackup[f.Path] = true
		l, ok := local[f.Path]
		switch {
		case !ok:
		case f.Type == repo.TypeDir && l.typ.IsDir():
		case f.Type == repo.TypeFile && l.typ.IsRegular():
			if (l.size == f.Size || x.patchable(f)) && !deferredFiles[f.Path] {
				candidates = append(candidates, f)
			}
		default:
			d.inTheWay = append(d.inTheWay, l) // a file where the backup has a directory, a link, ...
		}
	}
	for p, l := range local {
		switch {
		case inBackup[p] || l.oid == 0 && deltaKept[topDir(l.rel)]:
		case isTempName(l.rel):
			d.inTheWay = append(d.inTheWay, l) // restore writes under such names
		default:
			d.remove = append(d.remove, l)
		}
	}
	// From here on DEST changes: the marker goes in, the old pg_control
	// out, and what the backup lacks is removed while the files are
	// compared (nothing removed is compared).
	if err := x.markDelta(); err != nil {
		return nil, err
	}
	if err := removeEntries(d.inTheWay); err != nil {
		return nil, err
	}
	// What is in nobody's way goes while the files are compared and
	// written (slow on a file system that discards freed blocks): its
	// paths are not the backup's, nor under one of them; finish waits.
	d.stats.Removed = len(d.inTheWay) + len(d.remove)
	d.removed = make(chan error, 1)
	go func() {
		t := time.Now()
		err := removeEntries(d.remove)
		slog.Debug("delta restore: what the backup lacks removed", "entries", len(d.remove), "seconds", time.Since(t).Seconds())
		d.removed <- err
	}()
	same, patches, err := compareFiles(ctx, x, candidates, local, byTime, concurrency)
	if err != nil {
		_ = d.waitRemoved()
		return nil, err
	}
	for _, f := range same {
		d.keep[f.Path] = true
	}
	for i := range x.m.Files {
		f := &x.m.Files[i]
		if f.Type != repo.TypeFile {
			continue
		}
		if d.keep[f.Path] {
			d.stats.KeptFiles++
			d.stats.KeptBytes += f.Size
			continue
		}
		d.stats.FetchedFiles++
		if !x.indexed(f.Part) {
			d.stats.FetchedBytes += f.Size
			d.parts[f.Part] = true
			continue
		}
		rp := d.ranged[f.Part]
		if rp == nil {
			rp = &rangedPart{idx: f.Part}
			d.ranged[f.Part] = rp
		}
		if pf := patches[f.Path]; pf != nil {
			rp.patch = append(rp.patch, pf)
			d.stats.PatchedFiles++
			d.stats.FetchedBytes += pf.bytes(x.m.RangeSize)
			continue
		}
		rp.whole = append(rp.whole, f)
		d.stats.FetchedBytes += f.Size
	}
	if err := x.openRanged(ctx, d); err != nil {
		_ = d.waitRemoved()
		return nil, err
	}
	d.stats.CompareSeconds = time.Since(began).Seconds()
	slog.Debug("delta restore: compared, block indexes read", "seconds", d.stats.CompareSeconds)
	return d, nil
}

// topDir is the first element of a slash path.
func topDir(rel string) string {
	first, _, _ := strings.Cut(rel, "/")
	return first
}

// listLocal lists DEST (not following symlinks: a tablespace link is an
// entry like any other) and, in each tablespace directory, the version
// directories the backup has there: what is removed from a tablespace
// stays within those. Keys are manifest paths.
func (x *extractor) listLocal() (map[string]localEntry, error) {
	out := map[string]localEntry{}
	walk := func(oid uint32, root *os.Root, start, prefix string) error {
		err := fs.WalkDir(root.FS(), start, func(rel string, de fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && rel == start {
					return fs.SkipDir
				}
				return err
			}
			if rel == "." {
				return nil
			}
			info, err := de.Info()
			if err != nil {
				return err
			}
			out[prefix+rel] = localEntry{oid: oid, root: root, rel: rel, typ: info.Mode().Type(), size: info.Size(), mtime: info.ModTime()}
			return nil
		})
		if err != nil {
			return fmt.Errorf("listing %s: %w", filepath.Join(root.Name(), start), err)
		}
		return nil
	}
	if err := walk(0, x.roots[0], ".", ""); err != nil {
		return nil, err
	}
	for oid, root := range x.roots {
		if oid == 0 {
			continue
		}
		prefix := fmt.Sprintf("pg_tblspc/%d/", oid)
		tops := map[string]bool{}
		for _, f := range x.m.Files {
			if rel, ok := strings.CutPrefix(f.Path, prefix); ok && rel != "" {
				tops[topDir(rel)] = true
			}
		}
		for top := range tops {
			if fi, err := root.Lstat(top); err == nil {
				out[prefix+top] = localEntry{oid: oid, root: root, rel: top, typ: fi.Mode().Type(), size: fi.Size(), mtime: fi.ModTime()}
				if !fi.IsDir() {
					continue
				}
			}
			if err := walk(oid, root, top, prefix); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// compareFiles returns the files whose local copy is the backup's: same
// CRC-32C (read in full, concurrency at a time; never a file that ends
// with its own CRC-32C, archive.SelfChecked), or with byTime the same
// modification time to the second. A file that can be patched
// (x.patchable) is compared range by range instead: the same when every
// range matches, else patched in the ranges that differ. Sizes were
// compared already, but for those.
func compareFiles(ctx context.Context, x *extractor, files []*repo.File, local map[string]localEntry, byTime bool, concurrency int) ([]*repo.File, map[string]*patchFile, error) {
	var mu sync.Mutex
	var same []*repo.File
	patches := map[string]*patchFile{}
	if byTime {
		var rest []*repo.File
		for _, f := range files {
			if l := local[f.Path]; l.size == f.Size && l.mtime.Unix() == f.MTime.Unix() {
				same = append(same, f)
			} else if x.patchable(f) {
				rest = append(rest, f) // compared by ranges, to patch
			}
		}
		files = rest
	}
	g, gctx := errgroup.WithContext(ctx)
	// Reading and summing is CPU work: a worker per core at least.
	g.SetLimit(max(concurrency, runtime.GOMAXPROCS(0), 1))
	bufs := sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
	var ranged []*rangeCompare
	for _, f := range files {
		if archive.SelfChecked(f.Path) {
			continue // same CRC-32C whatever it holds: always written
		}
		l := local[f.Path]
		if x.patchable(f) {
			rc, err := x.newRangeCompare(f, l)
			if err != nil {
				return nil, nil, err
			}
			ranged = append(ranged, rc)
			// The ranges in pieces, so one big file is compared on
			// every worker.
			for from := 0; from < len(rc.crcs); from += compareStride {
				g.Go(func() error {
					if err := gctx.Err(); err != nil {
						return err
					}
					buf := bufs.Get().(*[]byte)
					defer bufs.Put(buf)
					return rc.compare(from, min(from+compareStride, len(rc.crcs)), *buf)
				})
			}
			continue
		}
		if byTime {
			continue
		}
		if l.size != f.Size {
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			in, err := l.root.Open(l.rel)
			if err != nil {
				return fmt.Errorf("reading %s: %w", filepath.Join(l.root.Name(), l.rel), err)
			}
			defer func() { _ = in.Close() }()
			buf := bufs.Get().(*[]byte)
			defer bufs.Put(buf)
			var crc repo.CRC32C
			if _, err := io.CopyBuffer(&crc, in, *buf); err != nil {
				return fmt.Errorf("reading %s: %w", filepath.Join(l.root.Name(), l.rel), err)
			}
			if crc.Matches(f) {
				mu.Lock()
				same = append(same, f)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for _, rc := range ranged {
		if pf := rc.result(); pf != nil {
			patches[rc.pf.f.Path] = pf
		} else {
			same = append(same, rc.pf.f)
		}
	}
	return same, patches, nil
}

// removeEntries removes local entries: the files first, a few at a time
// (a file system that discards freed blocks makes each unlink wait for
// its discard), then the directories deepest first, each after what it
// held.
func removeEntries(ents []localEntry) error {
	var dirs []localEntry
	g := new(errgroup.Group)
	g.SetLimit(removers)
	for _, l := range ents {
		if l.typ.IsDir() {
			dirs = append(dirs, l)
			continue
		}
		g.Go(func() error { return removeEntry(l) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	sort.Slice(dirs, func(i, j int) bool {
		a, b := dirs[i], dirs[j]
		if da, db := strings.Count(a.rel, "/"), strings.Count(b.rel, "/"); da != db {
			return da > db
		}
		return a.rel > b.rel
	})
	for _, l := range dirs {
		if err := removeEntry(l); err != nil {
			return err
		}
	}
	return nil
}

// removers is how many files removeEntries removes at a time.
const removers = 4

func removeEntry(l localEntry) error {
	var err error
	if l.typ.IsDir() {
		err = l.root.RemoveAll(l.rel)
	} else {
		err = l.root.Remove(l.rel)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--delta: removing %s, which the backup does not have: %w", filepath.Join(l.root.Name(), l.rel), err)
	}
	return nil
}

// waitRemoved waits for the removal of what the backup does not have.
func (d *deltaPlan) waitRemoved() error {
	if d == nil || d.removed == nil {
		return nil
	}
	err := <-d.removed
	d.removed = nil
	return err
}

// markDelta, before DEST changes, leaves the marker and removes the old
// pg_control: from then on the directory cannot start until the delta
// restore (or a re-run of it) has written everything.
func (x *extractor) markDelta() error {
	dest := x.roots[0].Name()
	if err := os.WriteFile(filepath.Join(dest, deltaMarker), []byte(x.m.SystemIdentifier+"\n"), 0o600); err != nil {
		return fmt.Errorf("--delta: writing %s: %w", filepath.Join(dest, deltaMarker), err)
	}
	return removeControl(dest)
}

// startDelta, once the plan is made (the marker written, pg_control and
// what the backup lacks removed), logs it; the backup's files come next.
func (x *extractor) startDelta(d *deltaPlan) error {
	x.delta = d
	s := d.stats
	slog.Info("delta restore: compared DEST with the backup", "kept_files", s.KeptFiles, "kept", archive.HumanBytes(s.KeptBytes),
		"fetch_files", s.FetchedFiles, "fetch", archive.HumanBytes(s.FetchedBytes), "removed", s.Removed,
		"by", map[bool]string{true: "size and mtime", false: "size and CRC-32C"}[s.ByTime],
		"seconds", fmt.Sprintf("%.2f", s.CompareSeconds))
	return nil
}

// readsPart says whether the restore of a full backup downloads part i:
// every part, but for a delta restore only those with a file to write.
func (x *extractor) readsPart(i int) bool { return x.delta == nil || x.delta.parts[i] }

// endDelta removes the marker once pg_control is in place.
func endDelta(dest string) error {
	err := os.Remove(filepath.Join(dest, deltaMarker))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
