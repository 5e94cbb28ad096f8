package restore

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// A delta restore of a full backup whose parts have a block index reads
// those parts with range reads (repo.PartRanges): only the blocks that
// hold a file to write, each authenticated against the index, which the
// signed manifest proves, before it is decoded.
//
// A relation file with range checksums in the manifest (its per-MiB
// CRC-32Cs) is compared with the local copy range by range, and only the
// ranges that differ are fetched; each is checked against its CRC-32C
// and written in place (the file is then cut to its size, given its mode
// and mtime, and flushed). Writing in place, not under a temporary name,
// is safe because a delta restore removes pg_control before it writes
// anything and puts it back last: until then the directory cannot start,
// and a delta restore run again compares and repairs what an interrupted
// one left. Every other file to write is fetched whole through the index
// and written as a normal restore writes it (temporary name, CRC-32C
// check, rename).

// castagnoli is the CRC-32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// patchFile is a local file to patch: the ranges of the backup's file
// that differ from it.
type patchFile struct {
	f    *repo.File
	l    localEntry
	crcs []uint32 // the manifest's, per range
	rs   int64    // the range size
	diff []int    // ranges to write
}

// rangeLen is the length of range i of the file.
func (p *patchFile) rangeLen(i int, rs int64) int64 {
	return min(rs, p.f.Size-int64(i)*rs)
}

// bytes is what patching writes.
func (p *patchFile) bytes(rs int64) int64 {
	var n int64
	for _, i := range p.diff {
		n += p.rangeLen(i, rs)
	}
	return n
}

// rangedPart is a part read through its block index.
type rangedPart struct {
	idx   int
	whole []*repo.File // written whole
	patch []*patchFile // patched in place
	pr    *repo.PartRanges
}

// minRangedPart is the smallest part read through its block index: for
// a smaller one, the index and a request per run of blocks cost about
// what reading it whole does.
var minRangedPart int64 = 1 << 20

// indexed says whether part i is read through its block index: a full
// backup's part that has one, and is not small.
func (x *extractor) indexed(i int) bool {
	p := x.m.Parts[i]
	return !x.m.Incremental() && p.Index != "" && p.StoredSize >= minRangedPart
}

// maxPatchRange bounds the range size a delta restore patches by (each
// range is held in memory to be checked before it is written): backups
// record 1 MiB ranges; a manifest that says more has its files written
// whole.
const maxPatchRange = 16 << 20

// patchable says whether f can be compared range by range and patched in
// place: a relation file with range checksums, in an indexed part, and
// none of the files restore always writes anew.
func (x *extractor) patchable(f *repo.File) bool {
	return f.RangeCRCs != "" && x.m.RangeSize > 0 && x.m.RangeSize <= maxPatchRange && f.TarOffset > 0 && f.Stored == repo.StoredWhole &&
		x.indexed(f.Part) && !deferredFiles[f.Path] && !archive.SelfChecked(f.Path)
}

// compareStride is how many ranges one worker compares at a time.
const compareStride = 16

// rangeCompare compares a local file with the backup's range by range,
// in pieces that run concurrently.
type rangeCompare struct {
	pf     patchFile
	crcs   []uint32
	differ []bool // per range; each piece sets its own
}

// newRangeCompare prepares comparing the local copy l of f.
func (x *extractor) newRangeCompare(f *repo.File, l localEntry) (*rangeCompare, error) {
	crcs, err := repo.DecodeRangeCRCs(f.RangeCRCs, f.Size, x.m.RangeSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", archive.ErrIntegrity, f.Path, err)
	}
	return &rangeCompare{pf: patchFile{f: f, l: l, crcs: crcs, rs: x.m.RangeSize}, crcs: crcs, differ: make([]bool, len(crcs))}, nil
}

// compare reads ranges [from, to) of the local file (a range past its end
// differs).
func (c *rangeCompare) compare(from, to int, buf []byte) error {
	l, rs := c.pf.l, c.pf.rs
	where := filepath.Join(l.root.Name(), l.rel)
	in, err := l.root.Open(l.rel)
	if err != nil {
		return fmt.Errorf("reading %s: %w", where, err)
	}
	defer func() { _ = in.Close() }()
	if int64(len(buf)) < rs {
		buf = make([]byte, rs)
	}
	for i := from; i < to; i++ {
		lo, n := int64(i)*rs, c.pf.rangeLen(i, rs)
		if lo+n > l.size {
			c.differ[i] = true
			continue
		}
		got, err := in.ReadAt(buf[:n], lo)
		if err != nil && !(err == io.EOF && int64(got) == n) {
			if err == io.EOF {
				c.differ[i] = true // shorter than it was listed
				continue
			}
			return fmt.Errorf("reading %s: %w", where, err)
		}
		c.differ[i] = crc32.Checksum(buf[:n], castagnoli) != c.crcs[i]
	}
	return nil
}

// result is the file to patch, or nil when every range matches and the
// sizes do.
func (c *rangeCompare) result() *patchFile {
	for i, d := range c.differ {
		if d {
			c.pf.diff = append(c.pf.diff, i)
		}
	}
	if len(c.pf.diff) == 0 && c.pf.l.size == c.pf.f.Size {
		return nil
	}
	return &c.pf
}

// openRanged opens the block index of every part to read by ranges. A
// part whose index cannot be read (missing, damaged) is read whole
// instead, as an older backup's: nothing of it is used unauthenticated
// either way.
func (x *extractor) openRanged(ctx context.Context, d *deltaPlan) error {
	for i, rp := range d.ranged {
		err := x.checkTarOffsets(rp)
		if err == nil {
			rp.pr, err = x.r.OpenPartRanges(ctx, x.m, i, &d.fetched)
		}
		if err == nil {
			continue
		}
		if archive.IsContextErr(err) || repo.IsKeyErr(err) {
			return err
		}
		slog.Warn("delta restore: reading the part whole instead of the blocks it needs", "part", x.m.Parts[i].Name, "err", err)
		for _, pf := range rp.patch {
			d.stats.FetchedBytes += pf.f.Size - pf.bytes(x.m.RangeSize)
			d.stats.PatchedFiles--
		}
		delete(d.ranged, i)
		d.parts[i] = true
	}
	return nil
}

// checkTarOffsets: every file a part writes whole says where it is.
func (x *extractor) checkTarOffsets(rp *rangedPart) error {
	for _, f := range rp.whole {
		if f.TarOffset == 0 {
			return fmt.Errorf("%s has no tar offset in the manifest", f.Path)
		}
	}
	return nil
}

// fetchRanged writes the files of the parts read by ranges, concurrency
// parts at a time.
func (x *extractor) fetchRanged(ctx context.Context, concurrency int) error {
	if x.delta == nil || len(x.delta.ranged) == 0 {
		return nil
	}
	sy := startSyncer(concurrency)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, rp := range x.delta.ranged {
		g.Go(func() error { return x.readRanged(gctx, rp, sy.q) })
	}
	err := g.Wait()
	if serr := sy.stop(); err == nil {
		err = serr
	}
	return err
}

// rangedWriter writes the files of one part read by ranges; it holds at
// most one file open at a time (the ranges come in tar order, and each
// file's are together).
type rangedWriter struct {
	x      *extractor
	oid    uint32
	root   *os.Root
	prefix string
	where  string
	syncq  chan<- *os.File
	open   *os.File // the file being written, closed on failure
}

func (x *extractor) readRanged(ctx context.Context, rp *rangedPart, syncq chan<- *os.File) error {
	p := x.m.Parts[rp.idx]
	w := &rangedWriter{x: x, oid: p.Tablespace, root: x.roots[p.Tablespace], syncq: syncq,
		where: fmt.Sprintf("%s in %s", repo.BackupKey(x.m.Name, p.Name), x.r.Store)}
	if w.root == nil {
		return fmt.Errorf("%w: %s belongs to tablespace %d, which the manifest does not list", archive.ErrIntegrity, w.where, p.Tablespace)
	}
	if p.Tablespace != 0 {
		w.prefix = fmt.Sprintf("pg_tblspc/%d/", p.Tablespace)
	}
	defer func() {
		if w.open != nil {
			_ = w.open.Close()
		}
	}()
	// The part's directories: a part read whole makes them from its tar
	// entries.
	for i := range x.m.Files {
		if f := &x.m.Files[i]; f.Part == rp.idx && f.Type == repo.TypeDir {
			rel, err := w.rel(f)
			if err != nil {
				return err
			}
			if err := x.mkdirAll(w.oid, w.root, rel); err != nil {
				return err
			}
		}
	}
	var ranges []repo.TarRange
	done := 0
	want := 0
	for _, f := range rp.whole {
		rel, err := w.rel(f)
		if err != nil {
			return err
		}
		s := &wholeSink{w: w, f: f, rel: rel, done: &done}
		want++
		if f.Size == 0 {
			if err := s.write(f.TarOffset, nil); err != nil {
				return err
			}
			continue
		}
		ranges = append(ranges, repo.TarRange{Off: f.TarOffset, N: f.Size, Sink: s.write})
	}
	rs := x.m.RangeSize
	for _, pf := range rp.patch {
		s := &patchSink{w: w, pf: pf, left: len(pf.diff), done: &done}
		want++
		if len(pf.diff) == 0 {
			if err := s.finish(); err != nil {
				return err
			}
			continue
		}
		for _, i := range pf.diff {
			ranges = append(ranges, repo.TarRange{Off: pf.f.TarOffset + int64(i)*rs, N: pf.rangeLen(i, rs), Sink: s.sink(i)})
		}
	}
	if err := rp.pr.Read(ctx, ranges); err != nil {
		return err
	}
	if done != want {
		return fmt.Errorf("%w: %s: %d of the %d files to write were not complete after reading their ranges", archive.ErrIntegrity, w.where, want-done, want)
	}
	return nil
}

// rel is where f goes in the writer's root.
func (w *rangedWriter) rel(f *repo.File) (string, error) {
	rel, ok := strings.CutPrefix(f.Path, w.prefix)
	if !ok || !repo.SafeRelPath(rel) {
		return "", fmt.Errorf("%w: %s: %q is outside its tablespace", archive.ErrIntegrity, w.where, f.Path)
	}
	return rel, nil
}

// wholeSink writes one file whole, as a normal restore does: under its
// temporary name, checked against its CRC-32C, then put in place.
type wholeSink struct {
	w       *rangedWriter
	f       *repo.File
	rel     string
	tmp     string
	out     *os.File
	crc     repo.CRC32C
	written int64
	done    *int
}

func (s *wholeSink) write(_ int64, b []byte) error {
	w := s.w
	if s.out == nil {
		if dir := path.Dir(s.rel); dir != "." {
			if err := w.x.mkdirAll(w.oid, w.root, dir); err != nil {
				return err
			}
		}
		s.tmp = tempName(s.rel)
		out, err := createTemp(w.root, s.tmp, fs.FileMode(s.f.Perm()&0o777))
		if err != nil {
			return err
		}
		s.out, w.open = out, out
	}
	if len(b) > 0 {
		_, _ = s.crc.Write(b)
		if _, err := s.out.Write(b); err != nil {
			return fmt.Errorf("writing %s: %w", s.out.Name(), err)
		}
		s.written += int64(len(b))
		w.x.prog.AddRead(int64(len(b)))
	}
	if s.written < s.f.Size {
		return nil
	}
	if !s.crc.Matches(s.f) {
		return fmt.Errorf("%s: %w: %s fails its checksum (CRC-32C %s over %d bytes, the manifest says %s over %d)", w.where, archive.ErrIntegrity, s.f.Path, s.crc.Hex(), s.crc.Len(), s.f.CRC32C, s.f.Size)
	}
	perm := fs.FileMode(s.f.Perm() & 0o777)
	if perm&0o077 != 0 {
		if err := s.out.Chmod(perm); err != nil {
			return err
		}
	}
	if err := w.root.Chtimes(s.tmp, s.f.MTime, s.f.MTime); err != nil {
		return err
	}
	if err := w.x.place(w.oid, w.root, s.tmp, s.rel); err != nil {
		return err
	}
	w.open = nil
	w.syncq <- s.out
	*s.done++
	return nil
}

// patchSink writes the ranges of one file that differ, in place: each
// range gathered, checked against its CRC-32C, then written at its
// offset; after the last, the file is cut to its size and given its mode
// and mtime.
type patchSink struct {
	w    *rangedWriter
	pf   *patchFile
	out  *os.File
	buf  []byte
	left int // ranges still to write
	done *int
}

// openLocal opens the local file for writing: the regular file that was
// compared, not whatever a link there would lead to.
func (s *patchSink) openLocal() error {
	if s.out != nil {
		return nil
	}
	l := s.pf.l
	where := filepath.Join(l.root.Name(), l.rel)
	out, err := l.root.OpenFile(l.rel, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening %s to write the ranges that differ: %w", where, err)
	}
	got, err1 := out.Stat()
	was, err2 := l.root.Lstat(l.rel)
	if err := errors.Join(err1, err2); err != nil || !got.Mode().IsRegular() || !os.SameFile(got, was) {
		_ = out.Close()
		return fmt.Errorf("%w: %s is no longer the regular file that was compared: %v", archive.ErrBadInput, where, err)
	}
	s.out, s.w.open = out, out
	return nil
}

func (s *patchSink) sink(i int) func(int64, []byte) error {
	rs := s.w.x.m.RangeSize
	n := s.pf.rangeLen(i, rs)
	return func(_ int64, b []byte) error {
		if s.buf == nil {
			s.buf = make([]byte, 0, n)
		}
		s.buf = append(s.buf, b...)
		if int64(len(s.buf)) < n {
			return nil
		}
		if got := crc32.Checksum(s.buf, castagnoli); int64(len(s.buf)) != n || got != s.pf.crcs[i] {
			return fmt.Errorf("%s: %w: %s: bytes %d to %d fail their checksum (CRC-32C %08x, the manifest says %08x)", s.w.where, archive.ErrIntegrity, s.pf.f.Path, int64(i)*rs, int64(i)*rs+n, got, s.pf.crcs[i])
		}
		if err := s.openLocal(); err != nil {
			return err
		}
		if _, err := s.out.WriteAt(s.buf, int64(i)*rs); err != nil {
			return fmt.Errorf("writing %s: %w", s.out.Name(), err)
		}
		s.w.x.prog.AddRead(n)
		s.buf = nil
		s.left--
		if s.left == 0 {
			return s.finish()
		}
		return nil
	}
}

// finish cuts the file to its size, sets its mode and mtime, and hands it
// to the syncer.
func (s *patchSink) finish() error {
	if err := s.openLocal(); err != nil {
		return err
	}
	f, l := s.pf.f, s.pf.l
	if err := s.out.Truncate(f.Size); err != nil {
		return fmt.Errorf("cutting %s to %d bytes: %w", s.out.Name(), f.Size, err)
	}
	if err := s.out.Chmod(fs.FileMode(f.Perm() & 0o777)); err != nil {
		return err
	}
	if err := l.root.Chtimes(l.rel, f.MTime, f.MTime); err != nil {
		return err
	}
	s.w.open = nil
	s.w.syncq <- s.out
	*s.done++
	return nil
}
