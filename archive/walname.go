package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultSegmentSize is PostgreSQL's default WAL segment size (16 MiB).
const DefaultSegmentSize = 16 << 20

// Kind is what a file in pg_wal is.
type Kind int

// The kinds of file PostgreSQL archives.
const (
	KindSegment Kind = iota + 1 // 000000010000000000000001
	KindHistory                 // 00000002.history
	KindBackup                  // 000000010000000000000002.00000028.backup
	KindPartial                 // 000000010000000000000003.partial
)

// WALFile is a parsed pg_wal file name.
type WALFile struct {
	Name     string
	Kind     Kind
	Timeline uint32
	Log      uint32 // high 32 bits of the segment's LSN ("xlogid")
	Seg      uint32 // segment within Log
}

// ErrNotWALName marks a name that is not a PostgreSQL WAL file name.
var ErrNotWALName = errors.New("not a WAL file name")

func parseHex8(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err == nil
}

// ParseWALName parses a file name as PostgreSQL writes it in pg_wal
// (upper-case hexadecimal).
func ParseWALName(name string) (WALFile, error) {
	bad := fmt.Errorf("%w: %q (expected e.g. 000000010000000000000001, 00000002.history, ….partial or ….backup)", ErrNotWALName, name)
	if strings.HasSuffix(name, ".history") && len(name) == 16 {
		tli, ok := parseHex8(name[:8])
		if !ok || tli == 0 {
			return WALFile{}, bad
		}
		return WALFile{Name: name, Kind: KindHistory, Timeline: tli}, nil
	}
	if len(name) < 24 {
		return WALFile{}, bad
	}
	tli, ok1 := parseHex8(name[:8])
	log, ok2 := parseHex8(name[8:16])
	seg, ok3 := parseHex8(name[16:24])
	if !ok1 || !ok2 || !ok3 || tli == 0 {
		return WALFile{}, bad
	}
	f := WALFile{Name: name, Timeline: tli, Log: log, Seg: seg}
	switch rest := name[24:]; {
	case rest == "":
		f.Kind = KindSegment
	case rest == ".partial":
		f.Kind = KindPartial
	case len(rest) == 16 && rest[0] == '.' && strings.HasSuffix(rest, ".backup"):
		if _, ok := parseHex8(rest[1:9]); !ok {
			return WALFile{}, bad
		}
		f.Kind = KindBackup
	default:
		return WALFile{}, bad
	}
	return f, nil
}

// SegmentsPerLog is how many segments of size segSize make one "log" (4 GiB).
func SegmentsPerLog(segSize int64) uint64 { return (1 << 32) / uint64(segSize) } // #nosec G115 -- sizes are positive

// SegNo is the segment's absolute number.
func (f WALFile) SegNo(segSize int64) uint64 {
	return uint64(f.Log)*SegmentsPerLog(segSize) + uint64(f.Seg)
}

// StartLSN is where the segment begins.
func (f WALFile) StartLSN(segSize int64) LSN {
	return LSN(f.SegNo(segSize) * uint64(segSize)) // #nosec G115 -- sizes are positive
}

// SegmentName builds a segment's file name.
func SegmentName(tli uint32, segNo uint64, segSize int64) string {
	per := SegmentsPerLog(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, uint32(segNo/per), uint32(segNo%per)) // #nosec G115 -- bounded by construction
}

// SegmentOf names the segment holding lsn on timeline tli.
func SegmentOf(tli uint32, lsn LSN, segSize int64) string {
	return SegmentName(tli, uint64(lsn)/uint64(segSize), segSize) // #nosec G115 -- sizes are positive
}

// Next is the name of the segment after f on the same timeline.
func (f WALFile) Next(segSize int64) string {
	return SegmentName(f.Timeline, f.SegNo(segSize)+1, segSize)
}

// HistoryName is the history file of timeline tli.
func HistoryName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// ValidSegmentSize reports whether PostgreSQL could use size (a power of two
// from 1 MiB to 1 GiB).
func ValidSegmentSize(size int64) bool {
	return size >= 1<<20 && size <= 1<<30 && size&(size-1) == 0
}

// PageHeader is what walvault reads from a segment's first (long) page
// header.
type PageHeader struct {
	Magic       uint16
	Timeline    uint32
	PageAddr    LSN
	SystemID    uint64
	SegmentSize int64
	BlockSize   uint32
}

// LongHeaderLen is the number of bytes ParsePageHeader needs.
const LongHeaderLen = 40

const xlpLongHeader = 0x0002

// ParsePageHeader decodes XLogLongPageHeaderData from the start of a WAL
// segment (little-endian, as on every platform PostgreSQL packages ship
// for). It rejects anything that does not look like one.
func ParsePageHeader(b []byte) (PageHeader, error) {
	if len(b) < LongHeaderLen {
		return PageHeader{}, errors.New("too short for a WAL page header")
	}
	le := binary.LittleEndian
	h := PageHeader{
		Magic:       le.Uint16(b[0:]),
		Timeline:    le.Uint32(b[4:]),
		PageAddr:    LSN(le.Uint64(b[8:])),
		SystemID:    le.Uint64(b[24:]),
		SegmentSize: int64(le.Uint32(b[32:])),
		BlockSize:   le.Uint32(b[36:]),
	}
	info := le.Uint16(b[2:])
	// Magic numbers of PostgreSQL 9.x-18 all lie in 0xD0xx-0xD1xx.
	if h.Magic&0xFE00 != 0xD000 || info&xlpLongHeader == 0 {
		return PageHeader{}, errors.New("no WAL long page header at the start of the file")
	}
	if !ValidSegmentSize(h.SegmentSize) || h.BlockSize == 0 || h.BlockSize&(h.BlockSize-1) != 0 || h.SystemID == 0 {
		return PageHeader{}, errors.New("WAL page header has impossible values")
	}
	return h, nil
}

// ParseWALDir reads the name of a WAL directory in the store, the first
// 16 characters of its segments' names: timeline and log.
func ParseWALDir(name string) (tli, log uint32, ok bool) {
	if len(name) != 16 {
		return 0, 0, false
	}
	tli, ok1 := parseHex8(name[:8])
	log, ok2 := parseHex8(name[8:])
	return tli, log, ok1 && ok2
}
