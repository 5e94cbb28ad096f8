package backup

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/pgwal"
	"github.com/walvault/walvault/archive/repo"
)

const tbs = 8192

// parentStart is the crafted parent's start LSN.
const parentStart = archive.LSN(0x3_00001000)

// page is a valid heap-like page with LSN lsn, filled with fill.
func page(lsn uint64, fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, tbs)
	le := binary.LittleEndian
	le.PutUint32(p[0:], uint32(lsn>>32))
	le.PutUint32(p[4:], uint32(lsn))
	le.PutUint16(p[8:], 0)      // checksum
	le.PutUint16(p[10:], 0)     // flags
	le.PutUint16(p[12:], 40)    // lower
	le.PutUint16(p[14:], 4000)  // upper
	le.PutUint16(p[16:], tbs)   // special
	le.PutUint16(p[18:], tbs|4) // size and version
	return p
}

func TestNeedStore(t *testing.T) {
	old, cur := uint64(parentStart)-1, uint64(parentStart)
	bad := func(off int, v uint16) []byte {
		p := page(old, 1)
		binary.LittleEndian.PutUint16(p[off:], v)
		return p
	}
	for _, tc := range []struct {
		name string
		page []byte
		want bool
	}{
		{"LSN before the parent's start", page(old, 1), false},
		{"LSN at the parent's start", page(cur, 1), true},
		{"LSN after the parent's start", page(cur+1<<32, 1), true},
		{"LSN 0: written without WAL", page(0, 1), true},
		{"all zeros: the parent's, unless truncated since", make([]byte, tbs), false},
		{"pd_upper 0: new", bad(14, 0), true},
		{"unknown flag bits", bad(10, 0x10), true},
		{"pd_lower past pd_upper", bad(12, 5000), true},
		{"pd_special past the block", bad(16, 9000), true},
		{"pd_special not aligned", bad(16, 8190), true},
		{"another page size", bad(18, 4096|4), true},
		{"another layout version", bad(18, tbs|3), true},
	} {
		if got := needStore(tc.page, parentStart, tbs); got != tc.want {
			t.Errorf("%s: needStore %v, want %v", tc.name, got, tc.want)
		}
	}
}

func crcOf(b []byte) string { return crcHex(crc32.Checksum(b, castagnoli)) }

func cat(pages ...[]byte) []byte { return bytes.Join(pages, nil) }

// TestIncrementalFiles runs the change detection on crafted files against
// a crafted parent and checks what it stores and the CRC it records,
// which must be that of the file as a restore assembles it.
func TestIncrementalFiles(t *testing.T) {
	old, now := uint64(parentStart)-0x100, uint64(parentStart)+0x100
	p0, p1, p2 := page(old, 'a'), page(old, 'b'), page(old, 'c')
	zero := make([]byte, tbs)
	rel := pgwal.RelFork{Rel: pgwal.Rel{Tablespace: defaultTablespace, Database: 5, Relation: 16384}}
	created := func(cm *changeMap) { cm.limit(rel, 0) }
	truncated := func(n uint32) func(*changeMap) { return func(cm *changeMap) { cm.limit(rel, n) } }
	newDB := func(cm *changeMap) {
		cm.dbs[pgwal.DBDir{Tablespace: defaultTablespace, Database: 5}] = pgwal.Event{What: "created"}
	}
	for _, tc := range []struct {
		name    string
		path    string
		parent  []byte // nil: the parent has no such file
		pCRC    string // the parent's CRC when not that of parent
		now     []byte
		blocks  bool             // block mode
		changes func(*changeMap) // what the WAL says
		stored  string           // want
		entry   []byte           // the tar entry's content (nil: none)
		wantCRC string           // "" : that of now
	}{
		{name: "unchanged: the parent's, with the parent's CRC", path: "base/5/16384", parent: cat(p0, p1), pCRC: "0badc0de", now: cat(p0, p1), blocks: true,
			stored: repo.StoredParent, wantCRC: "0badc0de"},
		{name: "a page with a newer LSN", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, page(now, 'B'), p2), blocks: true,
			stored: repo.StoredBlocks, entry: page(now, 'B')},
		{name: "a page with LSN 0; a zero page the parent has", path: "base/5/16384", parent: cat(p0, p1, zero), now: cat(page(0, 'a'), p1, zero), blocks: true,
			stored: repo.StoredBlocks, entry: page(0, 'a')},
		{name: "a page new but not empty", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, p1, append(make([]byte, tbs-1), 1)), blocks: true,
			stored: repo.StoredBlocks, entry: append(make([]byte, tbs-1), 1)},
		{name: "grown: blocks past the parent's size", path: "base/5/16384.1", parent: cat(p0), now: cat(p0, p1, p2), blocks: true,
			stored: repo.StoredBlocks, entry: cat(p1, p2)},
		{name: "grown with zero pages", path: "base/5/16384", parent: cat(p0), now: cat(p0, zero, zero), blocks: true,
			stored: repo.StoredBlocks, entry: cat(zero, zero)},
		{name: "shrunk by vacuum, nothing changed", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, p1), blocks: true,
			stored: repo.StoredParent},
		{name: "shrunk and changed", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, page(now, 'B')), blocks: true,
			stored: repo.StoredBlocks, entry: page(now, 'B')},
		{name: "truncated since the parent, then grown again with zeros", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, zero, zero), blocks: true,
			changes: truncated(1), stored: repo.StoredBlocks, entry: cat(zero, zero)},
		{name: "truncated in its second segment", path: "base/5/16384.1", parent: cat(p0, p1, p2), now: cat(p0, p1, zero), blocks: true,
			changes: truncated(3 + 2), stored: repo.StoredBlocks, entry: zero},
		{name: "every page changed: whole", path: "base/5/16384", parent: cat(p0, p1), now: cat(page(now, 1), page(now, 2)), blocks: true,
			stored: repo.StoredWhole, entry: cat(page(now, 1), page(now, 2))},
		{name: "a new file: whole", path: "base/5/16385", now: cat(p0, p1), blocks: true,
			stored: repo.StoredWhole, entry: cat(p0, p1)},
		{name: "file mode: a changed page stores the file whole", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, page(now, 'B'), p2),
			stored: repo.StoredWhole, entry: cat(p0, page(now, 'B'), p2)},
		{name: "file mode: hint bits only, the parent's", path: "base/5/16384", parent: cat(p0, p1), pCRC: "0badc0de", now: cat(p0, page(old, 'h')),
			stored: repo.StoredParent, wantCRC: "0badc0de"},
		{name: "file mode: shrunk, whole", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, p1),
			stored: repo.StoredWhole, entry: cat(p0, p1)},
		{name: "a relation file created since the parent at the same path: whole", path: "base/5/16384", parent: cat(p0, p1), now: cat(p0, p1), blocks: true,
			changes: created, stored: repo.StoredWhole, entry: cat(p0, p1)},
		{name: "a database created or dropped since the parent (FILE_COPY, old LSNs): whole", path: "base/5/16384", parent: cat(p0, p1), now: cat(p0, p1), blocks: true,
			changes: newDB, stored: repo.StoredWhole, entry: cat(p0, p1)},
		{name: "another database's file: the parent's", path: "base/6/16384", parent: cat(p0, p1), now: cat(p0, p1), blocks: true,
			changes: newDB, stored: repo.StoredParent},
		{name: "not a multiple of the block size: whole", path: "base/5/16384", parent: cat(p0), now: append(cat(p0), 1, 2, 3), blocks: true,
			stored: repo.StoredWhole, entry: append(cat(p0), 1, 2, 3)},
		{name: "visibility map with old LSNs but other bits: whole", path: "base/5/16384_vm", parent: cat(p0), now: cat(page(old, 'v')), blocks: true,
			stored: repo.StoredWhole, entry: page(old, 'v')},
		{name: "free space map unchanged: the parent's", path: "base/5/16384_fsm", parent: cat(p0), now: cat(p0), blocks: true,
			stored: repo.StoredParent},
		{name: "free space map of a database made since: whole", path: "base/5/16384_fsm", parent: cat(p0), now: cat(p0), blocks: true,
			changes: newDB, stored: repo.StoredWhole, entry: p0},
		{name: "other file unchanged: the parent's", path: "pg_xact/0000", parent: []byte("clog"), now: []byte("clog"), blocks: true,
			stored: repo.StoredParent},
		// Two relation maps of the same CRC-32C (each ends with its own):
		// a file that does is always stored whole.
		{name: "relation map changed, same CRC-32C: whole", path: "global/pg_filenode.map", parent: selfCRC(1), now: selfCRC(2), blocks: true,
			stored: repo.StoredWhole, entry: selfCRC(2)},
		{name: "pg_control unchanged: whole all the same", path: "global/pg_control", parent: selfCRC(3), now: selfCRC(3), blocks: true,
			stored: repo.StoredWhole, entry: selfCRC(3)},
		{name: "other file changed: whole", path: "pg_xact/0000", parent: []byte("clog1"), now: []byte("clog2"), blocks: true,
			stored: repo.StoredWhole, entry: []byte("clog2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			abs := filepath.Join(dir, filepath.FromSlash(tc.path))
			if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(abs, tc.now, 0o600); err != nil {
				t.Fatal(err)
			}
			pm := &repo.Manifest{StartLSN: parentStart, RangeSize: rangeSize}
			if tc.parent != nil {
				c := tc.pCRC
				if c == "" {
					c = crcOf(tc.parent)
				}
				pm.Files = append(pm.Files, repo.File{Path: tc.path, Size: int64(len(tc.parent)), CRC32C: c})
			}
			pm.FileCount = len(pm.Files)
			cm := newChangeMap("the WAL", false, 3)
			if tc.changes != nil {
				tc.changes(cm)
			}
			inc := newIncremental(&parentRef{m: pm, files: pm.Index(), blocks: tc.blocks}, tbs, cm)
			f, entry := runTarFile(t, inc, tc.path, abs)
			if f.Stored != tc.stored {
				t.Fatalf("stored %q, want %q", f.Stored, tc.stored)
			}
			want := tc.wantCRC
			if want == "" {
				want = crcOf(tc.now)
			}
			if f.CRC32C != want || f.Size != int64(len(tc.now)) {
				t.Errorf("CRC %s over %d, want %s over %d", f.CRC32C, f.Size, want, len(tc.now))
			}
			if !bytes.Equal(entry, tc.entry) {
				t.Errorf("entry of %d bytes, want %d", len(entry), len(tc.entry))
			}
			if f.Stored == repo.StoredBlocks {
				bm, err := repo.DecodeBlockMap(f.Blocks, f.Size/tbs)
				if err != nil || bm.Count()*tbs != int64(len(tc.entry)) {
					t.Errorf("block map %q: %v", f.Blocks, err)
				}
			}
			if kindOf(tc.path) == kindPages && f.Stored != repo.StoredParent || f.Stored == repo.StoredWhole && hasRanges(tc.path, f.Size) {
				crcs, err := repo.DecodeRangeCRCs(f.RangeCRCs, f.Size, rangeSize)
				if err != nil || crcHex(combineRanges(crcs, f.Size)) != f.CRC32C {
					t.Errorf("range checksums %q do not make the file's CRC (%v)", f.RangeCRCs, err)
				}
			}
		})
	}
}

// runTarFile runs inc.tarFile on one file and returns its record and the
// content of its tar entry (nil: none).
func runTarFile(t *testing.T, inc *incremental, p, abs string) (repo.File, []byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var f repo.File
	ok, err := inc.tarFile(tw, walkEntry{Path: p, Abs: abs, Type: repo.TypeFile}, &f, make([]byte, copyBufSize), func(int64) {})
	if err != nil || !ok {
		t.Fatalf("tarFile: %v, %v", ok, err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	if _, err := tr.Next(); err == io.EOF {
		return f, nil
	} else if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(tr)
	return f, got
}

// TestSummaryDrivenRead: with the WAL summaries' blocks, an incremental
// reads only the ranges holding a changed block (or past the parent's
// size), stores the same blocks the page scan stores, and records the
// same CRC.
func TestSummaryDrivenRead(t *testing.T) {
	old, now := uint64(parentStart)-0x100, uint64(parentStart)+0x100
	per := int(rangeSize / tbs)
	const n = 300 // blocks: ranges of 128, 128 and 44
	var parent, cur [][]byte
	for i := 0; i < n; i++ {
		parent = append(parent, page(old, byte(i)))
	}
	cur = append(cur, parent...)
	cur[5] = page(now, 1)   // range 0
	cur[260] = page(now, 2) // range 2
	cur = append(cur, page(now, 3), page(now, 4))
	dir := t.TempDir()
	abs := filepath.Join(dir, "base", "5", "16384")
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(abs, cat(cur...), 0o600); err != nil {
		t.Fatal(err)
	}
	var rs rangeSummer
	_, _ = rs.Write(cat(parent...))
	pf := repo.File{Path: "base/5/16384", Size: n * tbs, CRC32C: crcOf(cat(parent...)), RangeCRCs: repo.EncodeRangeCRCs(rs.sums())}
	pm := &repo.Manifest{StartLSN: parentStart, RangeSize: rangeSize, Files: []repo.File{pf}, FileCount: 1}
	rel := pgwal.RelFork{Rel: pgwal.Rel{Tablespace: defaultTablespace, Database: 5, Relation: 16384}}

	scanInc := newIncremental(&parentRef{m: pm, files: pm.Index(), blocks: true}, tbs, newChangeMap("the WAL", false, 1<<17))
	fScan, eScan := runTarFile(t, scanInc, pf.Path, abs)

	cm := newChangeMap("the WAL summaries", true, 1<<17)
	for _, b := range []uint32{5, 260, 300, 301} {
		cm.addSummary(pg.SummaryEntry{Tablespace: rel.Tablespace, Database: rel.Database, Relation: rel.Relation, Block: b})
	}
	sumInc := newIncremental(&parentRef{m: pm, files: pm.Index(), blocks: true}, tbs, cm)
	fSum, eSum := runTarFile(t, sumInc, pf.Path, abs)

	if fSum.Stored != repo.StoredBlocks || fSum.Blocks != fScan.Blocks || !bytes.Equal(eSum, eScan) {
		t.Fatalf("summary-driven: %s %q, page scan: %s %q", fSum.Stored, fSum.Blocks, fScan.Stored, fScan.Blocks)
	}
	if want := crcOf(cat(cur...)); fSum.CRC32C != want || fScan.CRC32C != want || fSum.RangeCRCs != fScan.RangeCRCs {
		t.Errorf("CRC %s (summaries) and %s (scan), want %s; ranges equal: %v", fSum.CRC32C, fScan.CRC32C, want, fSum.RangeCRCs == fScan.RangeCRCs)
	}
	// Ranges 0 and 2 are read (range 1 is not), then the four stored
	// blocks again to be written.
	if got, want := sumInc.read.Load(), int64(per+(n+2-2*per))*tbs; got != want {
		t.Errorf("read %d bytes, want %d", got, want)
	}
	if got := scanInc.read.Load(); got != int64(n+2)*tbs {
		t.Errorf("the page scan read %d bytes, want %d", got, (n+2)*tbs)
	}

	// Nothing changed: nothing is read.
	if err := os.WriteFile(abs, cat(parent...), 0o600); err != nil {
		t.Fatal(err)
	}
	idle := newIncremental(&parentRef{m: pm, files: pm.Index(), blocks: true}, tbs, newChangeMap("the WAL summaries", true, 1<<17))
	f, e := runTarFile(t, idle, pf.Path, abs)
	if f.Stored != repo.StoredParent || e != nil || idle.read.Load() != 0 || f.CRC32C != pf.CRC32C || f.RangeCRCs != pf.RangeCRCs {
		t.Errorf("unchanged: stored %q, read %d", f.Stored, idle.read.Load())
	}
	// A parent without range checksums: read in full, and said so.
	pm.Files[0].RangeCRCs = ""
	old2 := newIncremental(&parentRef{m: pm, files: pm.Index(), blocks: true}, tbs, newChangeMap("the WAL summaries", true, 1<<17))
	if f, _ := runTarFile(t, old2, pf.Path, abs); f.Stored != repo.StoredParent || old2.read.Load() != n*tbs || old2.unranged != 1 {
		t.Errorf("parent without ranges: stored %q, read %d, unranged %d", f.Stored, old2.read.Load(), old2.unranged)
	}
}

func TestCRCShift(t *testing.T) {
	a, b := []byte("the first part of a file"), bytes.Repeat([]byte{7, 1, 200}, 3000)
	for _, n := range []int{1, 7, 8192, len(b)} {
		op := newCRCShift(int64(n))
		got := op.combine(crc32.Checksum(a, castagnoli), crc32.Checksum(b[:n], castagnoli))
		if want := crc32.Checksum(append(append([]byte(nil), a...), b[:n]...), castagnoli); got != want {
			t.Errorf("%d bytes: %08x, want %08x", n, got, want)
		}
	}
}

// selfCRC is a 512-byte file that ends with the CRC-32C of what it holds
// and zero padding, as pg_filenode.map does: every one has the same
// CRC-32C.
func selfCRC(fill byte) []byte {
	b := make([]byte, 512)
	for i := range 500 {
		b[i] = fill + byte(i)
	}
	binary.LittleEndian.PutUint32(b[500:], crc32.Checksum(b[:500], crc32.MakeTable(crc32.Castagnoli)))
	return b
}
