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
	"time"

	"github.com/walvault/walvault/archive"
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
		{"all zeros", make([]byte, tbs), true},
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
	mtime := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		path     string
		parent   []byte // nil: the parent has no such file
		pCRC     string // the parent's CRC when not that of parent
		now      []byte
		blocks   bool   // block mode
		newDB    bool   // PG_VERSION of base/5 changed
		pvRecent bool   // PG_VERSION written just before the parent began
		stored   string // want
		entry    []byte // the tar entry's content (nil: none)
		wantCRC  string // "" : that of now
	}{
		{name: "unchanged: the parent's, with the parent's CRC", path: "base/5/16384", parent: cat(p0, p1), pCRC: "0badc0de", now: cat(p0, p1), blocks: true,
			stored: repo.StoredParent, wantCRC: "0badc0de"},
		{name: "a page with a newer LSN", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, page(now, 'B'), p2), blocks: true,
			stored: repo.StoredBlocks, entry: page(now, 'B')},
		{name: "a page with LSN 0 and a zero page", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(page(0, 'a'), p1, make([]byte, tbs)), blocks: true,
			stored: repo.StoredBlocks, entry: cat(page(0, 'a'), make([]byte, tbs))},
		{name: "grown: blocks past the parent's size", path: "base/5/16384.1", parent: cat(p0), now: cat(p0, p1, p2), blocks: true,
			stored: repo.StoredBlocks, entry: cat(p1, p2)},
		{name: "shrunk by vacuum, nothing changed", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, p1), blocks: true,
			stored: repo.StoredParent},
		{name: "shrunk and changed", path: "base/5/16384", parent: cat(p0, p1, p2), now: cat(p0, page(now, 'B')), blocks: true,
			stored: repo.StoredBlocks, entry: page(now, 'B')},
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
		{name: "database made again with the same OID (FILE_COPY): whole", path: "base/5/16384", parent: cat(p0, p1), now: cat(p0, p1), blocks: true, newDB: true,
			stored: repo.StoredWhole, entry: cat(p0, p1)},
		{name: "database made while the parent was taken: whole", path: "base/5/16384", parent: cat(p0, p1), now: cat(p0, p1), blocks: true, newDB: true, pvRecent: true,
			stored: repo.StoredWhole, entry: cat(p0, p1)},
		{name: "not a multiple of the block size: whole", path: "base/5/16384", parent: cat(p0), now: append(cat(p0), 1, 2, 3), blocks: true,
			stored: repo.StoredWhole, entry: append(cat(p0), 1, 2, 3)},
		{name: "visibility map with old LSNs but other bits: whole", path: "base/5/16384_vm", parent: cat(p0), now: cat(page(old, 'v')), blocks: true,
			stored: repo.StoredWhole, entry: page(old, 'v')},
		{name: "free space map unchanged: the parent's", path: "base/5/16384_fsm", parent: cat(p0), now: cat(p0), blocks: true,
			stored: repo.StoredParent},
		{name: "other file unchanged: the parent's", path: "global/pg_filenode.map", parent: []byte("map"), now: []byte("map"), blocks: true,
			stored: repo.StoredParent},
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
			pv := filepath.Join(dir, "base/5/PG_VERSION")
			if err := os.MkdirAll(filepath.Dir(pv), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(pv, []byte("15\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			pvTime := mtime
			if tc.newDB && !tc.pvRecent {
				pvTime = mtime.Add(time.Hour)
			}
			if err := os.Chtimes(pv, pvTime, pvTime); err != nil {
				t.Fatal(err)
			}
			parentBegan := mtime.Add(24 * time.Hour)
			if tc.pvRecent {
				parentBegan = mtime.Add(time.Minute)
			}
			pm := &repo.Manifest{StartLSN: parentStart, StartTime: parentBegan, Files: []repo.File{
				{Path: "base/5/PG_VERSION", Size: 3, MTime: mtime, CRC32C: crcOf([]byte("15\n"))},
			}}
			if tc.parent != nil {
				c := tc.pCRC
				if c == "" {
					c = crcOf(tc.parent)
				}
				pm.Files = append(pm.Files, repo.File{Path: tc.path, Size: int64(len(tc.parent)), CRC32C: c})
			}
			pm.FileCount = len(pm.Files)
			inc := newIncremental(&parentRef{m: pm, files: pm.Index(), blocks: tc.blocks}, tbs)
			st, _ := os.Stat(pv)
			ents := []walkEntry{
				{Path: "base/5", Type: repo.TypeDir},
				{Path: "base/5/PG_VERSION", Abs: pv, Type: repo.TypeFile, Size: 3, MTime: st.ModTime()},
			}
			if err := inc.markNewDatabases(ents); err != nil {
				t.Fatal(err)
			}
			if inc.newDBs["base/5"] != tc.newDB {
				t.Fatalf("base/5 new: %v, want %v", inc.newDBs["base/5"], tc.newDB)
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			var f repo.File
			ok, err := inc.tarFile(tw, walkEntry{Path: tc.path, Abs: abs, Type: repo.TypeFile}, &f, make([]byte, 3*tbs), func(int64) {})
			if err != nil || !ok {
				t.Fatalf("tarFile: %v, %v", ok, err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
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
			tr := tar.NewReader(&buf)
			hdr, err := tr.Next()
			if tc.entry == nil {
				if err != io.EOF {
					t.Fatalf("an entry %v (%v) for a file taken from the parent", hdr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, tc.entry) {
				t.Errorf("entry of %d bytes, want %d", len(got), len(tc.entry))
			}
			if f.Stored == repo.StoredBlocks {
				bm, err := repo.DecodeBlockMap(f.Blocks, f.Size/tbs)
				if err != nil || bm.Count()*tbs != int64(len(tc.entry)) {
					t.Errorf("block map %q: %v", f.Blocks, err)
				}
			}
		})
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
