package backup

import (
	"archive/tar"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pgwal"
	"github.com/walvault/walvault/archive/repo"
)

// This file is the change detection of an incremental backup: which
// content of each file it stores, and which it takes from its parent. The
// README's "Incremental backups" section says why each skip is safe.

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

func kindOf(p string) fileKind {
	if rf, ok := parseRelPath(p); ok && rf.Fork == pgwal.ForkMain {
		return kindPages
	}
	return kindContent
}

// incremental is what the parts' writers share while taking an
// incremental backup; read-only once the upload starts.
type incremental struct {
	parent *parentRef
	start  archive.LSN // the parent's start: pages at or after it changed
	bs     int64
	shift  crcShift // for one block
	// changes is what the WAL since the parent's start says.
	changes *changeMap

	// read counts the bytes read from the data directory; reread, those
	// read again (a block taken from the parent is read twice, a block
	// stored is read again to be written).
	read, reread atomic.Int64
	// whole records, for the log, why files were stored whole;
	// unranged, the relation files read in full because their parent
	// records no range checksums.
	mu       sync.Mutex
	whole    map[string][]string // reason -> paths
	unranged int
}

func newIncremental(p *parentRef, bs int, changes *changeMap) *incremental {
	return &incremental{parent: p, start: p.m.StartLSN, bs: int64(bs), shift: newCRCShift(int64(bs)), changes: changes, whole: map[string][]string{}}
}

// Why an incremental stores a file whole.
const (
	wholeNewDB      = "in a database created or dropped since the parent began"
	wholeCreated    = "a relation file created, dropped or truncated to nothing since the parent began"
	wholeNew        = "not in the parent"
	wholeChanged    = "changed (compared whole: not a relation's main fork)"
	wholeOddSize    = "a relation file whose size is no whole number of blocks, or too large for a block map"
	wholeAllPages   = "every page changed"
	wholeNoChecksum = "changed, and without data_checksums or wal_log_hints (or after a restart since the parent) pages are not taken one by one"
	wholeSelfCRC    = "ends with its own CRC-32C, so a CRC-32C cannot tell it from the parent's (every time)"
)

// storedWhole notes that p was stored whole, and why.
func (inc *incremental) storedWhole(p, why string) {
	inc.mu.Lock()
	inc.whole[why] = append(inc.whole[why], p)
	inc.mu.Unlock()
}

// logWhole says which files were stored whole and why: one line per
// reason with a count and the first few paths (every path at debug level).
func (inc *incremental) logWhole() {
	inc.mu.Lock()
	defer inc.mu.Unlock()
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
		attrs := []any{"why", r, "files", len(inc.whole[r]), "paths", strings.Join(some, " ")}
		if r == wholeNewDB || r == wholeCreated {
			attrs = append(attrs, "known_from", inc.changes.from)
		}
		slog.Info("incremental: files stored whole", attrs...)
		slog.Debug("incremental: files stored whole, every path", "why", r, "paths", strings.Join(inc.whole[r], " "))
	}
	if inc.unranged > 0 {
		slog.Info("incremental: relation files read in full: the parent records no range checksums for them (a backup by an older walvault, or taken without them)", "files", inc.unranged)
	}
}

// dbDirs reduces paths in new databases to their database directories.
func dbDirs(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		db := path.Dir(p)
		if !seen[db] {
			seen[db] = true
			out = append(out, db+"/")
		}
	}
	return out
}

// tarFile adds one regular file of an incremental backup: whole, as
// blocks, or (no entry) as the parent's.
func (inc *incremental) tarFile(tw *tar.Writer, e walkEntry, f *repo.File, buf []byte, onRead func(int64)) (bool, error) {
	onRead = inc.counting(onRead)
	whole := func(why string) (bool, error) {
		ok, err := tarFile(tw, e, f, buf, onRead)
		if ok && err == nil {
			inc.storedWhole(e.Path, why)
		}
		return ok, err
	}
	fc := inc.changes.file(e.Path)
	if fc.whole != "" {
		return whole(fc.whole)
	}
	pf := inc.parent.files[e.Path]
	if pf == nil || pf.Type != repo.TypeFile {
		return whole(wholeNew)
	}
	if archive.SelfChecked(e.Path) {
		return whole(wholeSelfCRC)
	}
	src, st, err := openSource(e, f)
	if src == nil || err != nil {
		return false, err
	}
	defer func() { _ = src.Close() }()
	if kindOf(e.Path) == kindContent {
		same, err := sameContent(src, st.Size(), pf, buf, onRead)
		if err != nil {
			return false, err
		}
		if same {
			f.Stored, f.Part, f.CRC32C = repo.StoredParent, 0, pf.CRC32C
			return true, nil
		}
		_ = src.Close()
		return whole(wholeChanged)
	}
	return inc.tarRelation(tw, e, f, pf, &fc, src, st, buf, onRead, whole)
}

// counting adds what onRead is told to the incremental's count.
func (inc *incremental) counting(onRead func(int64)) func(int64) {
	return func(n int64) {
		inc.read.Add(n)
		onRead(n)
	}
}

// tarRelation decides about a relation's main fork the parent has: the
// parent's, its changed blocks, or whole.
func (inc *incremental) tarRelation(tw *tar.Writer, e walkEntry, f *repo.File, pf *repo.File, fc *fileChanges, src *os.File, st os.FileInfo,
	buf []byte, onRead func(int64), whole func(string) (bool, error)) (bool, error) {
	size := st.Size()
	if size%inc.bs != 0 || pf.Size%inc.bs != 0 || size/inc.bs > repo.MaxBlockMapBlocks {
		_ = src.Close()
		return whole(wholeOddSize)
	}
	plan := inc.plan(pf, fc, size)
	if plan.untouched(size, pf.Size) {
		// Nothing changed and nothing needs reading: the parent's file.
		f.Stored, f.Part, f.CRC32C, f.RangeCRCs = repo.StoredParent, 0, pf.CRC32C, carriedRanges(inc.parent.m, pf)
		return true, nil
	}
	sc, err := inc.scan(src, size, pf.Size, fc, plan, buf, onRead)
	if err != nil {
		return false, localErr(err)
	}
	n := sc.stored.Count()
	switch {
	case n == 0 && size == pf.Size:
		// Nothing changed: the parent's file, checked by its own CRC.
		f.Stored, f.Part, f.CRC32C, f.RangeCRCs = repo.StoredParent, 0, pf.CRC32C, carriedRanges(inc.parent.m, pf)
		return true, nil
	case n == 0 && inc.parent.blocks:
		// Cut by vacuum: the parent's first blocks, which are what was read.
		ranges := sc.ranges(inc)
		f.Stored, f.Part, f.CRC32C, f.RangeCRCs = repo.StoredParent, 0, crcHex(combineRanges(ranges, size)), repo.EncodeRangeCRCs(ranges)
		return true, nil
	case !inc.parent.blocks:
		_ = src.Close()
		return whole(wholeNoChecksum)
	case n == size/inc.bs:
		_ = src.Close()
		return whole(wholeAllPages)
	}
	hdr := &tar.Header{Name: e.Path, Mode: int64(st.Mode().Perm()), Size: n * inc.bs, ModTime: st.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return false, err
	}
	if err := inc.writeBlocks(tw, src, sc); err != nil {
		return false, err
	}
	ranges := sc.ranges(inc)
	f.Stored, f.Blocks, f.CRC32C, f.RangeCRCs = repo.StoredBlocks, sc.stored.String(), crcHex(combineRanges(ranges, size)), repo.EncodeRangeCRCs(ranges)
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

// logSummary notes what the incremental took from where, and how much of
// the data directory it read.
func (inc *incremental) logSummary(files []repo.File, total int64) {
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
	read := inc.read.Load()
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(read) / float64(total)
	}
	slog.Info("incremental: data directory read", "read", archive.HumanBytes(read), "of", archive.HumanBytes(total),
		"percent", float64(int(pct*10))/10, "read_bytes", read, "reread_bytes", inc.reread.Load())
}
