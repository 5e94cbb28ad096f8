package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// copyBufSize is the read size for data files: large enough that the
// per-call cost vanishes, small enough to keep memory bounded per worker.
const copyBufSize = 1 << 20

// extractor writes the parts of one backup.
type extractor struct {
	r     *repo.Repo
	m     *repo.Manifest
	files repo.FileIndex
	force bool
	roots map[uint32]*os.Root // 0: DEST; else a tablespace's directory
	// newRoots are the roots this restore created; the others existed
	// and keep their mode and owner.
	newRoots map[uint32]bool
	prog     archive.Progress

	mu   sync.Mutex
	seen map[string]bool // entries of the parts extracted so far
	// deferred are the files of deferredFiles written so far (under
	// tempName), put in place by placeDeferred.
	deferred map[string]bool
	dirs     sync.Map // dirKey: exists as a directory
	// created are the directories this restore made (dirKey): only
	// they get the manifest's mode and the data directory's owner.
	created sync.Map
	// delta: what a delta restore keeps (nil for another restore).
	delta *deltaPlan
}

// dirKey names a directory within one root.
type dirKey struct {
	oid uint32
	rel string
}

func (x *extractor) openRoots(dest string, spcs []repo.Tablespace) error {
	open := func(oid uint32, dir string) error {
		// Parents as a packaged PostgreSQL has them (traversable), the
		// directory itself private; one that exists is left as it is.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { // #nosec G301 -- the parent of a tablespace directory: other users may need to traverse it, as for any directory above PGDATA
			return err
		}
		switch err := os.Mkdir(dir, 0o700); {
		case err == nil:
			x.newRoots[oid] = true
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		r, err := os.OpenRoot(dir)
		if err != nil {
			return err
		}
		x.roots[oid] = r
		return nil
	}
	if err := open(0, dest); err != nil {
		return fmt.Errorf("creating DEST %s: %w", dest, err)
	}
	for _, ts := range spcs {
		if err := open(ts.OID, ts.Location); err != nil {
			return fmt.Errorf("creating tablespace directory %s: %w", ts.Location, err)
		}
	}
	return nil
}

func (x *extractor) closeRoots() {
	for _, r := range x.roots {
		_ = r.Close()
	}
}

// extractAll downloads and extracts the parts, largest first, concurrency
// at a time; every written file is fsynced by a small pool while the next
// one is written.
func (x *extractor) extractAll(ctx context.Context, concurrency int) error {
	sy := startSyncer(concurrency)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, i := range largestFirst(x.m.Parts) {
		if !x.readsPart(i) {
			continue
		}
		g.Go(func() error {
			buf := make([]byte, copyBufSize)
			return x.extractPart(gctx, i, buf, sy.q)
		})
	}
	err := g.Wait()
	if serr := sy.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	return x.checkAllSeen()
}

// largestFirst orders the parts by size, largest first, so one big part
// does not start last and run alone.
func largestFirst(parts []repo.Part) []int {
	order := make([]int, len(parts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return parts[order[a]].Size > parts[order[b]].Size })
	return order
}

// checkAllSeen fails when a file the manifest lists was in no part.
func (x *extractor) checkAllSeen() error {
	var missing []string
	for _, f := range x.m.Files {
		if !x.seen[f.Path] && x.readsPart(f.Part) {
			missing = append(missing, f.Path)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	f := x.files[missing[0]]
	return fmt.Errorf("%w: %s (and %d more) listed in the manifest of %s is not in %s", archive.ErrIntegrity, missing[0], len(missing)-1, x.m.Name, repo.BackupKey(x.m.Name, x.m.Parts[f.Part].Name))
}

// syncer flushes and closes written files on a few goroutines.
type syncer struct {
	q   chan *os.File
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error // the first failure
}

func startSyncer(workers int) *syncer {
	s := &syncer{q: make(chan *os.File, 64)}
	for range workers {
		s.wg.Go(func() {
			for f := range s.q {
				s.flush(f)
			}
		})
	}
	return s
}

func (s *syncer) flush(f *os.File) {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.mu.Lock()
		if s.err == nil {
			s.err = fmt.Errorf("flushing %s: %w", f.Name(), err)
		}
		s.mu.Unlock()
	}
}

// stop waits for the queued files and returns the first failure.
func (s *syncer) stop() error {
	close(s.q)
	s.wg.Wait()
	return s.err
}

// partOptions: a part of an older backup, which can only be authenticated
// whole, is staged and checked in DEST before its first file is written.
func (x *extractor) partOptions() repo.PartOptions {
	return repo.PartOptions{StageDir: x.roots[0].Name()}
}

// extractPart streams part idx from the store into place; the part reader
// checks the stored object against its SHA-256, partWriter every file
// against the manifest.
func (x *extractor) extractPart(ctx context.Context, idx int, buf []byte, syncq chan<- *os.File) error {
	p := x.m.Parts[idx]
	where := fmt.Sprintf("%s in %s", repo.BackupKey(x.m.Name, p.Name), x.r.Store)
	root := x.roots[p.Tablespace]
	if root == nil {
		return fmt.Errorf("%w: %s belongs to tablespace %d, which the manifest does not list", archive.ErrIntegrity, where, p.Tablespace)
	}
	prefix := ""
	if p.Tablespace != 0 {
		prefix = fmt.Sprintf("pg_tblspc/%d/", p.Tablespace)
	}
	var w *partWriter
	err := x.r.ReadPart(ctx, x.m, idx, x.files, x.partOptions(), func() repo.EntryFunc {
		// A download that broke midway starts over: the files it wrote
		// are written again.
		again := w != nil
		w = &partWriter{x: x, idx: idx, oid: p.Tablespace, root: root, prefix: prefix, where: where,
			buf: buf, syncq: syncq, rewrite: again, seen: map[string]bool{}}
		return w.entry
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return fmt.Errorf("%w: %s is missing", archive.ErrIntegrity, where)
	}
	if err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for name := range w.seen {
		x.seen[name] = true
	}
	return nil
}

// partWriter writes the entries of one part (one attempt at reading it).
type partWriter struct {
	x       *extractor
	idx     int
	oid     uint32 // the tablespace; 0: DEST
	root    *os.Root
	prefix  string // of the entries' paths: pg_tblspc/<oid>/ for a tablespace
	where   string // the part, for messages
	buf     []byte
	syncq   chan<- *os.File
	rewrite bool // files may exist from an earlier attempt
	seen    map[string]bool
}

// entry puts one tar entry in place, if the manifest lists it in this part
// with the same type.
func (w *partWriter) entry(hdr *tar.Header, f *repo.File, body io.Reader) error {
	name := repo.EntryPath(hdr)
	if err := w.claim(name, f); err != nil {
		return fmt.Errorf("%w: %s: %w", archive.ErrIntegrity, w.where, err)
	}
	rel, ok := strings.CutPrefix(name, w.prefix)
	if !ok || !repo.SafeRelPath(rel) {
		return fmt.Errorf("%w: %s: entry %q is outside its tablespace", archive.ErrIntegrity, w.where, name)
	}
	switch {
	case f.Type == repo.TypeDir && hdr.Typeflag == tar.TypeDir:
		return w.x.mkdirAll(w.oid, w.root, rel)
	case f.Type == repo.TypeSymlink && hdr.Typeflag == tar.TypeSymlink:
		return nil // created in finish, once no file is written through a path
	case f.Type == repo.TypeFile && hdr.Typeflag == tar.TypeReg && w.x.delta.kept(name):
		return nil // a delta restore keeps the file there
	case f.Type == repo.TypeFile && hdr.Typeflag == tar.TypeReg:
		return w.writeFile(rel, f, hdr, body)
	default:
		return fmt.Errorf("%w: %s: entry %q has type %q, the manifest says %q", archive.ErrIntegrity, w.where, name, hdr.Typeflag, f.Type)
	}
}

// claim marks a tar entry as seen; it must be listed in this part, once.
func (w *partWriter) claim(name string, f *repo.File) error {
	if f == nil || f.Part != w.idx {
		return fmt.Errorf("entry %q is not in the manifest for this part", name)
	}
	if w.seen[name] {
		return fmt.Errorf("entry %q appears twice", name)
	}
	w.seen[name] = true
	return nil
}

// damaged is a file of the part that does not match its manifest record.
func (w *partWriter) damaged(format string, a ...any) error {
	return fmt.Errorf("%s: %w", w.where, fmt.Errorf("%w: "+format, append([]any{archive.ErrIntegrity}, a...)...))
}

// mkdirAll makes directory rel of a root and its parents, 0700, and
// notes which it created. One that is there (an earlier attempt, another
// worker, or DEST's own with --force) must be a directory, not a symlink.
func (x *extractor) mkdirAll(oid uint32, root *os.Root, rel string) error {
	k := dirKey{oid, rel}
	if _, ok := x.dirs.Load(k); ok {
		return nil
	}
	if parent := path.Dir(rel); parent != "." {
		if err := x.mkdirAll(oid, root, parent); err != nil {
			return err
		}
	}
	switch err := root.Mkdir(rel, 0o700); {
	case err == nil:
		x.created.Store(k, true)
	case errors.Is(err, fs.ErrExist):
		if fi, err := root.Lstat(rel); err != nil || !fi.IsDir() {
			return fmt.Errorf("creating %s: %w: it exists and is not a directory", filepath.Join(root.Name(), rel), archive.ErrBadInput)
		}
	default:
		return fmt.Errorf("creating %s: %w", filepath.Join(root.Name(), rel), err)
	}
	x.dirs.Store(k, true)
	return nil
}

// wasCreated says whether this restore made directory rel of root oid.
func (x *extractor) wasCreated(oid uint32, rel string) bool {
	_, ok := x.created.Load(dirKey{oid, rel})
	return ok
}

// writeFile writes one regular file under its temporary name, checks it
// against its CRC-32C, puts it in place and hands it to the syncer.
func (w *partWriter) writeFile(rel string, f *repo.File, hdr *tar.Header, body io.Reader) error {
	if hdr.Size != f.Size {
		return w.damaged("%s is %d bytes in the part, %d in the manifest", f.Path, hdr.Size, f.Size)
	}
	if dir := path.Dir(rel); dir != "." {
		if err := w.x.mkdirAll(w.oid, w.root, dir); err != nil {
			return err
		}
	}
	// Permission bits only: set-uid, set-gid and sticky never come from
	// the bucket.
	perm := fs.FileMode(f.Perm() & 0o777)
	tmp := tempName(rel)
	out, err := createTemp(w.root, tmp, perm)
	if err != nil {
		return err
	}
	if err := w.copyChecked(out, f, body); err != nil {
		_ = out.Close()
		return err
	}
	if perm&0o077 != 0 {
		if err := out.Chmod(perm); err != nil { // the umask may have taken bits
			_ = out.Close()
			return err
		}
	}
	if err := w.root.Chtimes(tmp, f.MTime, f.MTime); err != nil {
		_ = out.Close()
		return err
	}
	if err := w.x.place(w.oid, w.root, tmp, rel); err != nil {
		_ = out.Close()
		return err
	}
	w.syncq <- out
	return nil
}

// createTemp creates a file restore writes into before it takes its name.
// One left by an earlier attempt (or an interrupted restore, with --force)
// is replaced, never written through.
func createTemp(root *os.Root, tmp string, perm fs.FileMode) (*os.File, error) {
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing %s: %w", filepath.Join(root.Name(), tmp), err)
	}
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Join(root.Name(), tmp), err)
	}
	return out, nil
}

// place gives a written and checked file its name: at once, or for the
// files of deferredFiles once every part was read (placeDeferred). What is
// there already (with --force) is replaced, a symlink included, never
// written through.
func (x *extractor) place(oid uint32, root *os.Root, tmp, rel string) error {
	if oid == 0 && deferredFiles[rel] {
		x.mu.Lock()
		x.deferred[rel] = true
		x.mu.Unlock()
		return nil
	}
	if err := root.Rename(tmp, rel); err != nil {
		return fmt.Errorf("putting %s in place: %w", filepath.Join(root.Name(), rel), err)
	}
	return nil
}

// placeDeferred puts the deferred files in place: pg_control when control
// is set, else the others.
func (x *extractor) placeDeferred(control bool) error {
	dest := x.roots[0]
	for rel := range x.deferred {
		if (rel == controlFile) != control {
			continue
		}
		if err := dest.Rename(tempName(rel), rel); err != nil {
			return fmt.Errorf("putting %s in place: %w", rel, err)
		}
	}
	return nil
}

// copyChecked copies a file's content from the part to out, summing it.
func (w *partWriter) copyChecked(out *os.File, f *repo.File, body io.Reader) error {
	var crc repo.CRC32C
	for {
		k, rerr := body.Read(w.buf)
		if k > 0 {
			_, _ = crc.Write(w.buf[:k])
			if _, err := out.Write(w.buf[:k]); err != nil {
				return fmt.Errorf("writing %s: %w", out.Name(), err)
			}
			w.x.prog.AddRead(int64(k))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if !crc.Matches(f) {
		return w.damaged("%s fails its checksum (CRC-32C %s over %d bytes, the manifest says %s over %d)", f.Path, crc.Hex(), crc.Len(), f.CRC32C, f.Size)
	}
	return nil
}
