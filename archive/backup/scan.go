package backup

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// readPlan says which ranges of a relation file an incremental reads.
type readPlan struct {
	// skip, when not nil, marks the ranges not read: the WAL summaries
	// say none of their blocks changed, and the parent's checksums
	// (parent) stand for them.
	skip   []bool
	parent []uint32
	// none: the summaries say nothing in the file changed and, without
	// block mode, it is not read at all.
	none bool
}

// plan decides what to read of a relation file of size bytes the parent
// has (pf). Without exact change information everything is read (the
// page scan). With it, in block mode, only the ranges holding a changed
// block, a block past the parent's size or a truncation limit, or whose
// length differs from the parent's range; without block mode, nothing
// when nothing changed, else everything.
func (inc *incremental) plan(pf *repo.File, fc *fileChanges, size int64) readPlan {
	var p readPlan
	if !fc.exact {
		return p
	}
	bs, nb, pnb := inc.bs, size/inc.bs, pf.Size/inc.bs
	if !inc.parent.blocks {
		p.none = size == pf.Size && fc.limit >= nb && fc.changedIn(0, nb) == 0
		return p
	}
	p.parent = parentRanges(inc.parent.m, pf)
	if p.parent == nil {
		inc.mu.Lock()
		inc.unranged++
		inc.mu.Unlock()
		return p
	}
	per := rangeSize / bs
	n := repo.RangeCount(size, rangeSize)
	p.skip = make([]bool, n)
	for r := range n {
		lo, hi := r*per, min((r+1)*per, nb)
		sameLen := r < int64(len(p.parent)) && min((r+1)*per, pnb)-lo == hi-lo
		p.skip[r] = sameLen && hi <= pnb && hi <= fc.limit && fc.changedIn(lo, hi) == 0
	}
	return p
}

// untouched says that nothing of the file is read: it is the parent's.
func (p *readPlan) untouched(size, parentSize int64) bool {
	if p.none {
		return true
	}
	if p.skip == nil || size != parentSize {
		return false
	}
	for _, s := range p.skip {
		if !s {
			return false
		}
	}
	return true
}

// pageScan is what the first read of a relation file found.
type pageScan struct {
	blocks int64
	stored repo.BlockMap
	// crcs holds each block's CRC-32C, for the ranges read: of what was
	// read for the blocks taken from the parent, of what is stored for
	// the others (filled by writeBlocks).
	crcs []uint32
	plan readPlan
}

// ranges are the file's range checksums: of the blocks read, and the
// parent's for the ranges not read.
func (sc *pageScan) ranges(inc *incremental) []uint32 {
	per := rangeSize / inc.bs
	n := repo.RangeCount(sc.blocks*inc.bs, rangeSize)
	out := make([]uint32, n)
	for r := range n {
		if sc.plan.skip != nil && sc.plan.skip[r] {
			out[r] = sc.plan.parent[r]
			continue
		}
		var c uint32
		for i := r * per; i < min((r+1)*per, sc.blocks); i++ {
			c = inc.shift.combine(c, sc.crcs[i])
		}
		out[r] = c
	}
	return out
}

// scan reads a relation file range by range (those the plan reads) and
// picks the blocks to store: those at or past the parent's size or a
// truncation limit, those the WAL summaries say changed, and those
// needStore accepts. In block mode a block about to be taken from the
// parent is read a second time and stored after all when the two reads
// differ: the server was writing it (a torn read), so it changed after
// this backup's start and WAL replay rewrites it.
func (inc *incremental) scan(src *os.File, size, parentSize int64, fc *fileChanges, plan readPlan, buf []byte, onRead func(int64)) (*pageScan, error) {
	bs := inc.bs
	nb := size / bs
	sc := &pageScan{blocks: nb, stored: repo.NewBlockMap(nb), crcs: make([]uint32, nb), plan: plan}
	chunk := buf[:min(int64(len(buf)), rangeSize)/bs*bs]
	if len(chunk) == 0 {
		chunk = make([]byte, bs)
	}
	var again []byte // the chunk read a second time, in block mode
	if inc.parent.blocks {
		again = make([]byte, len(chunk))
	}
	limit := min(parentSize/bs, fc.limit)
	for off := int64(0); off < size; {
		want := min(int64(len(chunk)), size-off, rangeSize-off%rangeSize)
		if r := off / rangeSize; plan.skip != nil && plan.skip[r] {
			off += want
			continue
		}
		k, err := src.ReadAt(chunk[:want], off)
		if err != nil && err != io.EOF {
			return nil, err
		}
		clear(chunk[k:want]) // shrank while read: zero pages, stored
		onRead(int64(k))
		reread := false
		for p := int64(0); p < want; p += bs {
			i := (off + p) / bs
			page := chunk[p : p+bs]
			store := i >= limit || fc.exact && fc.changed != nil && fc.changed.has(fc.base+i) || needStore(page, inc.start, bs)
			if !store && inc.parent.blocks {
				if !reread {
					k, err := src.ReadAt(again[:want], off)
					if err != nil && err != io.EOF {
						return nil, err
					}
					inc.reread.Add(int64(k))
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
func (inc *incremental) writeBlocks(w io.Writer, src *os.File, sc *pageScan) error {
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
		inc.reread.Add(int64(k))
		clear(page[k:])
		sc.crcs[i] = crc32.Checksum(page, castagnoli)
		if _, err := w.Write(page); err != nil {
			return err
		}
	}
	return nil
}

// needStore says whether a page must be stored rather than taken from the
// parent: pages whose header is not a valid page header (but all-zero
// pages, see below), pages with LSN 0 (written without WAL, as wal_level
// = minimal does), and pages whose LSN is at or after the parent's start.
// Page headers are in the server's byte order, which walvault assumes is
// little-endian, as on x86-64 and arm64.
//
// An all-zero page (new, never written) within the parent's size and
// below any truncation since the parent began is the parent's: nothing
// but a truncation, which the WAL since the parent shows, or a file made
// anew, which it also shows, turns a page back to zeros.
func needStore(page []byte, start archive.LSN, bs int64) bool {
	le := binary.LittleEndian
	lsn := archive.LSN(uint64(le.Uint32(page[0:4]))<<32 | uint64(le.Uint32(page[4:8])))
	flags, lower, upper := le.Uint16(page[10:12]), le.Uint16(page[12:14]), le.Uint16(page[14:16])
	special, sizeVersion := le.Uint16(page[16:18]), le.Uint16(page[18:20])
	switch {
	case upper == 0:
		return !allZero(page) // new but not empty: not a page PostgreSQL writes
	case flags&^0x7 != 0 || lower < 24 || lower > upper || upper > special || int64(special) > bs || special%8 != 0,
		int64(sizeVersion&0xff00) != bs&0xff00 || sizeVersion&0xff != 4:
		return true // not a valid page header
	}
	return lsn == 0 || lsn >= start
}

var zeroPage [32 << 10]byte

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
