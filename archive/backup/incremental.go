package backup

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// This file is the change detection of an incremental backup: which
// content of each file it stores, and which it takes from its parent. The
// README's "Incremental backups" section says why each skip is safe.

// relPathRe matches relation files: a relfilenode, its fork and segment,
// in a database directory or global/.
var relPathRe = regexp.MustCompile(`^(base/\d+|global|pg_tblspc/\d+/PG_[^/]+/\d+)/\d+(_(fsm|vm|init))?(\.\d+)?$`)

// fileKind is how an incremental decides about one file.
type fileKind int

const (
	// kindContent: stored whole when its size or CRC differs from the
	// parent's, else taken from the parent. Files that are not relations,
	// and the free space map, visibility map and init forks (the first
	// two change without a new page LSN).
	kindContent fileKind = iota
	// kindPages: a relation's main fork, decided page by page.
	kindPages
)

func kindOf(p string) (kind fileKind, dbDir string) {
	m := relPathRe.FindStringSubmatch(p)
	if m == nil {
		return kindContent, ""
	}
	if m[3] != "" {
		return kindContent, m[1]
	}
	return kindPages, m[1]
}

// incremental is what the parts' writers share while taking an
// incremental backup; read-only once the upload starts.
type incremental struct {
	parent *parentRef
	start  archive.LSN // the parent's start: pages at or after it changed
	bs     int64
	shift  crcShift // for one block
	// newDBs are database directories whose PG_VERSION is new or changed:
	// the database was (re)created since the parent, perhaps by copying a
	// template's pages with their old LSNs, so all of it is stored.
	newDBs map[string]bool

	// whole records, for the log, why files were stored whole.
	wholeMu sync.Mutex
	whole   map[string][]string // reason -> paths
}

func newIncremental(p *parentRef, bs int) *incremental {
	return &incremental{parent: p, start: p.m.StartLSN, bs: int64(bs), shift: newCRCShift(int64(bs)), newDBs: map[string]bool{}, whole: map[string][]string{}}
}

// Why an incremental stores a file whole.
const (
	wholeNewDB      = "in a database created since the parent (its PG_VERSION is new, changed, or under an hour older than the parent)"
	wholeNew        = "not in the parent"
	wholeChanged    = "changed (compared whole: not a relation's main fork)"
	wholeOddSize    = "a relation file whose size is no whole number of blocks, or too large for a block map"
	wholeAllPages   = "every page changed"
	wholeNoChecksum = "changed, and without data_checksums or wal_log_hints (or after a restart since the parent) pages are not taken one by one"
)

// storedWhole notes that p was stored whole, and why.
func (inc *incremental) storedWhole(p, why string) {
	inc.wholeMu.Lock()
	inc.whole[why] = append(inc.whole[why], p)
	inc.wholeMu.Unlock()
}

// logWhole says which files were stored whole and why: one line per
// reason with a count and the first few paths (every path at debug level).
func (inc *incremental) logWhole() {
	inc.wholeMu.Lock()
	defer inc.wholeMu.Unlock()
	reasons := make([]string, 0, len(inc.whole))
	for r := range inc.whole {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		paths := inc.whole[r]
		sort.Strings(paths)
		if r == wholeNewDB {
			paths = dbDirs(paths)
		}
		some := paths
		if len(some) > 5 {
			some = append(append([]string{}, some[:5]...), "...")
		}
		slog.Info("incremental: files stored whole", "why", r, "files", len(inc.whole[r]), "paths", strings.Join(some, " "))
		slog.Debug("incremental: files stored whole, every path", "why", r, "paths", strings.Join(inc.whole[r], " "))
	}
}

// dbDirs reduces paths in new databases to their database directories.
func dbDirs(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		_, db := kindOf(p)
		if db == "" {
			db = path.Dir(p)
		}
		if !seen[db] {
			seen[db] = true
			out = append(out, db+"/")
		}
	}
	return out
}

// markNewDatabases fills newDBs from the walk: the directories of every
// database whose PG_VERSION the parent does not have with the same size,
// mtime and CRC-32C, or that has none, or whose PG_VERSION was written
// less than newDBSlack before the parent started (a database copied while
// the parent was read may be in it half copied, and WAL replay from this
// backup's start would not copy it again). A database's directories in
// other tablespaces have no PG_VERSION of their own: they go with the one
// in its default tablespace (DROP DATABASE removes them all).
func (inc *incremental) markNewDatabases(ents []walkEntry) error {
	settled := inc.parent.m.StartTime.Add(-newDBSlack)
	var dirs []string
	known := map[string]bool{} // database OIDs with an unchanged PG_VERSION
	for _, e := range ents {
		if e.Type == repo.TypeDir && isDBDir(e.Path) {
			dirs = append(dirs, e.Path)
		}
	}
	for _, e := range ents {
		dir, name := path.Split(e.Path)
		dir = path.Clean(dir)
		if name != "PG_VERSION" || e.Type != repo.TypeFile || !isDBDir(dir) {
			continue
		}
		pf := inc.parent.files[e.Path]
		if pf == nil || pf.Type != repo.TypeFile || pf.Size != e.Size || !pf.MTime.Equal(e.MTime.UTC()) || !e.MTime.Before(settled) {
			continue
		}
		b, err := os.ReadFile(e.Abs) // #nosec G304 -- a file of the data directory being backed up
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return localErr(err)
		}
		if int64(len(b)) == pf.Size && crcHex(crc32.Checksum(b, castagnoli)) == pf.CRC32C {
			known[path.Base(dir)] = true
		}
	}
	for _, d := range dirs {
		if !known[path.Base(d)] {
			inc.newDBs[d] = true
		}
	}
	return nil
}

// newDBSlack is how long before the parent's start a database must have
// been created for the parent's copy of it to be trusted: CREATE DATABASE
// ... STRATEGY = FILE_COPY writes PG_VERSION while it copies, and a copy
// that began before the parent and ended after it is not in the parent
// whole. An hour covers copying a large template.
const newDBSlack = time.Hour

// parentFile is the parent's record of path p when a change can be
// measured against it: nil means the file is stored whole.
func (inc *incremental) parentFile(p string) (*repo.File, fileKind) {
	kind, db := kindOf(p)
	if db != "" && inc.newDBs[db] {
		return nil, kind
	}
	pf := inc.parent.files[p]
	if pf == nil || pf.Type != repo.TypeFile {
		return nil, kind
	}
	return pf, kind
}

// tarFile adds one regular file of an incremental backup: whole, as
// blocks, or (no entry) as the parent's.
func (inc *incremental) tarFile(tw *tar.Writer, e walkEntry, f *repo.File, buf []byte, onRead func(int64)) (bool, error) {
	pf, kind := inc.parentFile(e.Path)
	whole := func(why string) (bool, error) {
		ok, err := tarFile(tw, e, f, buf, onRead)
		if ok && err == nil {
			inc.storedWhole(e.Path, why)
		}
		return ok, err
	}
	if pf == nil {
		if _, db := kindOf(e.Path); db != "" && inc.newDBs[db] {
			return whole(wholeNewDB)
		}
		return whole(wholeNew)
	}
	src, st, err := openSource(e, f)
	if src == nil || err != nil {
		return false, err
	}
	defer func() { _ = src.Close() }()
	size := st.Size()
	if kind == kindContent {
		same, err := sameContent(src, size, pf, buf, onRead)
		if err != nil {
			return false, err
		}
		if same {
			f.Stored, f.Part, f.CRC32C = repo.StoredParent, 0, pf.CRC32C
			return true, nil
		}
		return whole(wholeChanged)
	}
	if size%inc.bs != 0 || pf.Size%inc.bs != 0 || size/inc.bs > repo.MaxBlockMapBlocks {
		return whole(wholeOddSize)
	}
	sc, err := inc.scan(src, size, pf.Size, buf, onRead)
	if err != nil {
		return false, localErr(fmt.Errorf("reading %s: %w", e.Abs, err))
	}
	n := sc.stored.Count()
	switch {
	case n == 0 && size == pf.Size:
		// Nothing changed: the parent's file, checked by its own CRC.
		f.Stored, f.Part, f.CRC32C = repo.StoredParent, 0, pf.CRC32C
		return true, nil
	case n == 0 && inc.parent.blocks:
		// Cut by vacuum: the parent's first blocks, which are what was read.
		f.Stored, f.Part, f.CRC32C = repo.StoredParent, 0, crcHex(sc.crc(inc, nil))
		return true, nil
	case !inc.parent.blocks:
		return whole(wholeNoChecksum)
	case n == size/inc.bs:
		return whole(wholeAllPages)
	}
	hdr := &tar.Header{Name: e.Path, Mode: int64(st.Mode().Perm()), Size: n * inc.bs, ModTime: st.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return false, err
	}
	if err := inc.writeBlocks(tw, src, sc, buf); err != nil {
		return false, err
	}
	f.Stored, f.Blocks, f.CRC32C = repo.StoredBlocks, sc.stored.String(), crcHex(sc.crc(inc, nil))
	return true, nil
}

// sameContent reads a file and says whether it is the parent's: same size
// and CRC-32C.
func sameContent(src *os.File, size int64, pf *repo.File, buf []byte, onRead func(int64)) (bool, error) {
	if size != pf.Size {
		return false, nil
	}
	var crc uint32
	var n int64
	for {
		k, err := src.Read(buf)
		crc = crc32.Update(crc, castagnoli, buf[:k])
		n += int64(k)
		onRead(int64(k))
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, localErr(err)
		}
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return false, localErr(err)
	}
	return n == size && crcHex(crc) == pf.CRC32C, nil
}

// pageScan is what the first read of a relation file found.
type pageScan struct {
	blocks int64
	stored repo.BlockMap
	// crcs holds each block's CRC-32C: of what was read for the blocks
	// taken from the parent, of what is stored for the others (filled by
	// writeBlocks).
	crcs []uint32
}

// crc is the whole file's CRC-32C from the blocks' (crcs nil: sc.crcs).
func (sc *pageScan) crc(inc *incremental, crcs []uint32) uint32 {
	if crcs == nil {
		crcs = sc.crcs
	}
	var c uint32
	for _, b := range crcs {
		c = inc.shift.combine(c, b)
	}
	return c
}

// scan reads a relation file once and picks the blocks to store: those at
// or past the parent's size, and those needStore accepts. In block mode a
// block about to be taken from the parent is read a second time and
// stored after all when the two reads differ: the server was writing it
// (a torn read), so it changed after this backup's start and WAL replay
// rewrites it.
func (inc *incremental) scan(src *os.File, size, parentSize int64, buf []byte, onRead func(int64)) (*pageScan, error) {
	bs := inc.bs
	nb := size / bs
	sc := &pageScan{blocks: nb, stored: repo.NewBlockMap(nb), crcs: make([]uint32, nb)}
	chunk := buf[:len(buf)/int(bs)*int(bs)]
	if len(chunk) == 0 {
		chunk = make([]byte, bs)
	}
	var again []byte // the chunk read a second time, in block mode
	if inc.parent.blocks {
		again = make([]byte, len(chunk))
	}
	for off := int64(0); off < size; {
		want := min(int64(len(chunk)), size-off)
		k, err := io.ReadFull(src, chunk[:want])
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return nil, err
		}
		clear(chunk[k:want]) // shrank while read: zero pages, stored
		onRead(int64(k))
		reread := false
		for p := int64(0); p < want; p += bs {
			i := (off + p) / bs
			page := chunk[p : p+bs]
			store := i >= parentSize/bs || needStore(page, inc.start, bs)
			if !store && inc.parent.blocks {
				if !reread {
					k, err := src.ReadAt(again[:want], off)
					if err != nil && err != io.EOF {
						return nil, err
					}
					clear(again[k:want])
					reread = true
				}
				store = !bytes.Equal(page, again[p:p+bs])
			}
			if store {
				sc.stored.Set(i)
				if !inc.parent.blocks {
					return sc, nil // stored whole: the rest does not matter
				}
				continue
			}
			sc.crcs[i] = crc32.Checksum(page, castagnoli)
		}
		off += want
	}
	return sc, nil
}

// writeBlocks writes the blocks sc stores, in order, reading them again,
// and sums each.
func (inc *incremental) writeBlocks(w io.Writer, src *os.File, sc *pageScan, buf []byte) error {
	bs := inc.bs
	page := make([]byte, bs)
	for i := int64(0); i < sc.blocks; i++ {
		if !sc.stored.Has(i) {
			continue
		}
		k, err := src.ReadAt(page, i*bs)
		if err != nil && err != io.EOF {
			return localErr(err)
		}
		clear(page[k:])
		sc.crcs[i] = crc32.Checksum(page, castagnoli)
		if _, err := w.Write(page); err != nil {
			return err
		}
	}
	return nil
}

// needStore says whether a page must be stored rather than taken from the
// parent: new pages (all zeros, or pd_upper 0), pages whose header is not
// a valid page header, pages with LSN 0 (written without WAL, as
// wal_level = minimal does), and pages whose LSN is at or after the
// parent's start. Page headers are in the server's byte order, which
// walvault assumes is little-endian, as on x86-64 and arm64.
func needStore(page []byte, start archive.LSN, bs int64) bool {
	le := binary.LittleEndian
	lsn := archive.LSN(uint64(le.Uint32(page[0:4]))<<32 | uint64(le.Uint32(page[4:8])))
	flags, lower, upper := le.Uint16(page[10:12]), le.Uint16(page[12:14]), le.Uint16(page[14:16])
	special, sizeVersion := le.Uint16(page[16:18]), le.Uint16(page[18:20])
	switch {
	case upper == 0:
		return true // new (PageIsNew), all zeros included
	case flags&^0x7 != 0 || lower < 24 || lower > upper || upper > special || int64(special) > bs || special%8 != 0,
		int64(sizeVersion&0xff00) != bs&0xff00 || sizeVersion&0xff != 4:
		return true // not a valid page header
	}
	return lsn == 0 || lsn >= start
}

// logSummary notes what the incremental took from where.
func logSummary(files []repo.File) {
	var whole, blocks, parent int
	for _, f := range files {
		switch {
		case f.Type != repo.TypeFile:
		case f.Stored == repo.StoredBlocks:
			blocks++
		case f.Stored == repo.StoredParent:
			parent++
		default:
			whole++
		}
	}
	slog.Debug("incremental backup files", "whole", whole, "blocks", blocks, "from_parent", parent)
}
