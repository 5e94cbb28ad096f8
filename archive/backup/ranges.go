package backup

import (
	"hash/crc32"
	"sync"

	"github.com/walvault/walvault/archive/pgwal"
	"github.com/walvault/walvault/archive/repo"
)

// rangeSize is the length of the ranges whose CRC-32C a backup records
// for relation files (repo.Manifest.RangeSize): the unit an incremental
// reads when WAL summaries say which blocks changed. 1 MiB keeps the
// manifest small (4 bytes a MiB) while a change to one block reads 1 MiB
// at most.
const rangeSize = 1 << 20

// hasRanges says whether a backup records range checksums for the file
// at path p of size bytes: relation files' main forks.
func hasRanges(p string, size int64) bool {
	rf, ok := parseRelPath(p)
	return ok && rf.Fork == pgwal.ForkMain && size > 0 && repo.RangeCount(size, rangeSize) <= repo.MaxRangeCRCs
}

// rangeSummer sums a file range by range as it is written in order.
type rangeSummer struct {
	crcs []uint32
	cur  uint32
	in   int64 // bytes of the current range
}

func (s *rangeSummer) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := min(int64(len(b)), rangeSize-s.in)
		s.cur = crc32.Update(s.cur, castagnoli, b[:k])
		s.in += k
		b = b[k:]
		if s.in == rangeSize {
			s.crcs = append(s.crcs, s.cur)
			s.cur, s.in = 0, 0
		}
	}
	return n, nil
}

// sums ends the file.
func (s *rangeSummer) sums() []uint32 {
	if s.in > 0 {
		s.crcs = append(s.crcs, s.cur)
		s.cur, s.in = 0, 0
	}
	return s.crcs
}

// rangeShift is the CRC-32C shift operator for one whole range.
var rangeShift = sync.OnceValue(func() crcShift { return newCRCShift(rangeSize) })

// combineRanges is the CRC-32C of a file of size bytes from its ranges'.
func combineRanges(crcs []uint32, size int64) uint32 {
	var c uint32
	full := rangeShift()
	for i, r := range crcs {
		n := min(rangeSize, size-int64(i)*rangeSize)
		if n == rangeSize {
			c = full.combine(c, r)
			continue
		}
		op := newCRCShift(n)
		c = op.combine(c, r)
	}
	return c
}

// carriedRanges are the range checksums of a file taken from the parent
// as it is: the parent's, when they are in this build's ranges. (They are
// checked against the file's CRC-32C when an incremental relies on them.)
func carriedRanges(pm *repo.Manifest, pf *repo.File) string {
	if pm.RangeSize != rangeSize {
		return ""
	}
	return pf.RangeCRCs
}

// parentRanges are the parent's range checksums of a file when they can
// stand for its content: recorded in ranges of this build's size, and
// combining to the file's CRC-32C. nil otherwise (the file is read).
func parentRanges(pm *repo.Manifest, pf *repo.File) []uint32 {
	if pf.Size == 0 {
		return []uint32{} // nothing to stand for
	}
	if pf.RangeCRCs == "" || pm.RangeSize != rangeSize {
		return nil
	}
	crcs, err := repo.DecodeRangeCRCs(pf.RangeCRCs, pf.Size, pm.RangeSize)
	if err != nil || crcHex(combineRanges(crcs, pf.Size)) != pf.CRC32C {
		return nil
	}
	return crcs
}
