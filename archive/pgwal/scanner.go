// Package pgwal reads PostgreSQL's write-ahead log as an incremental
// backup needs it: the pages of consecutive segments, the records on them
// (each checked against its CRC and its link to the previous one), and,
// of those, the few that change relation files beyond the blocks they
// reference: CREATE DATABASE and DROP DATABASE, relation file creation
// and truncation, and a server that ran with wal_level = minimal.
//
// The formats follow PostgreSQL 14 to 18's xlog_internal.h, xlogrecord.h,
// dbcommands_xlog.h, storage_xlog.h and pg_control.h. Everything read is
// untrusted: every length is bounded, and anything out of place is an
// error rather than a guess.
package pgwal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/walvault/walvault/archive"
)

// Page and record layout (xlog_internal.h, xlogrecord.h).
const (
	shortPageHeaderLen = 24 // MAXALIGN(sizeof(XLogPageHeaderData))
	longPageHeaderLen  = 40 // MAXALIGN(sizeof(XLogLongPageHeaderData))
	recordHeaderLen    = 24 // SizeOfXLogRecord
	recordCRCOffset    = 20 // offsetof(XLogRecord, xl_crc)
	maxAlign           = 8

	xlpFirstIsContrecord          = 0x0001
	xlpLongHeader                 = 0x0002
	xlpFirstIsOverwriteContrecord = 0x0008
	xlpAllFlags                   = 0x000F

	// maxRecordLen is XLogRecordMaxSize: no record is longer.
	maxRecordLen = 1020 << 20
	// maxKeptLen bounds a record whose content is decoded (database and
	// relation file records, parameter changes: a few dozen bytes).
	maxKeptLen = 1 << 20
)

// pageMagic is XLOG_PAGE_MAGIC of each major version whose WAL this
// package reads.
var pageMagic = map[uint16]int{0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17, 0xD118: 18}

// ErrVersion is the error for WAL of a PostgreSQL version this package
// does not know.
var ErrVersion = errors.New("WAL of a PostgreSQL version walvault does not read")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Scanner reads the segments of one timeline in order and gathers the
// Changes of the records that begin in [from, to). Feed it segments with
// Segment, accepting each with Commit once its content is known to be
// authentic; Done says when a record at or past to was reached.
type Scanner struct {
	tli      uint32
	sysid    uint64
	segSize  int64
	from, to archive.LSN

	st, next   state
	ch         Changes
	delta      Changes
	nextSegNo  uint64
	pendingSeg uint64
}

// state is where the scan stands between two pages: copied before each
// segment, so a segment read again (a download started over) starts from
// where the last accepted one ended.
type state struct {
	major    int
	pageSize int
	started  bool
	done     bool
	prev     archive.LSN // the last record's start, for xl_prev
	rec      record
	records  int64
	bytes    int64
}

// record is the record being read, possibly across pages and segments.
type record struct {
	active bool
	skip   bool   // the tail of a record that began before the scan: skipped, unchecked
	left   uint32 // bytes of it still to come, when skip
	start  archive.LSN
	total  uint32
	got    uint32
	hdr    [recordHeaderLen]byte
	keep   bool
	body   []byte
	crc    uint32
}

func (s state) clone() state {
	if s.rec.body != nil {
		s.rec.body = append([]byte(nil), s.rec.body...)
	}
	return s
}

// NewScanner reads timeline tli of the cluster sysid (0: any), whose
// segments are segSize bytes, for the records that begin at or after from
// and before to.
func NewScanner(tli uint32, sysid uint64, segSize int64, from, to archive.LSN) *Scanner {
	return &Scanner{tli: tli, sysid: sysid, segSize: segSize, from: from, to: to,
		nextSegNo: uint64(from) / uint64(segSize)} // #nosec G115 -- segment sizes are positive
}

// NextSegment is the number of the segment to feed next.
func (s *Scanner) NextSegment() uint64 { return s.nextSegNo }

// Done says whether the scan reached to.
func (s *Scanner) Done() bool { return s.st.done }

// Changes is what the accepted segments said.
func (s *Scanner) Changes() *Changes { return &s.ch }

// Stats are the records and bytes of WAL read, of accepted segments.
func (s *Scanner) Stats() (records, bytes int64) { return s.st.records, s.st.bytes }

// Segment reads segment segNo (which must be NextSegment) from r, up to
// its end or to the first record at or after to. What it finds counts
// only once Commit accepts it; calling Segment again before that reads
// the segment anew.
func (s *Scanner) Segment(segNo uint64, r io.Reader) error {
	if segNo != s.nextSegNo {
		return fmt.Errorf("segment %X read out of order (expected %X)", segNo, s.nextSegNo)
	}
	p := &parser{s: s, st: s.st.clone(), ch: newChanges()}
	if err := p.segment(segNo, r); err != nil {
		return fmt.Errorf("WAL segment %s: %w", archive.SegmentName(s.tli, segNo, s.segSize), err)
	}
	s.next, s.delta, s.pendingSeg = p.st, p.ch, segNo
	return nil
}

// Commit accepts the segment Segment read last.
func (s *Scanner) Commit() {
	s.st = s.next
	s.ch.merge(&s.delta)
	s.delta = Changes{}
	s.nextSegNo = s.pendingSeg + 1
}

// parser reads one segment.
type parser struct {
	s  *Scanner
	st state
	ch Changes
}

func (p *parser) segment(segNo uint64, r io.Reader) error {
	base := archive.LSN(segNo * uint64(p.s.segSize)) // #nosec G115 -- segment sizes are positive
	var head [longPageHeaderLen]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return fmt.Errorf("reading its first page header: %w", err)
	}
	if err := p.longHeader(head[:], base); err != nil {
		return err
	}
	page := make([]byte, p.st.pageSize)
	copy(page, head[:])
	if _, err := io.ReadFull(r, page[len(head):]); err != nil {
		return fmt.Errorf("reading its first page: %w", err)
	}
	pages := p.s.segSize / int64(p.st.pageSize)
	for i := int64(0); ; i++ {
		at := base + archive.LSN(i*int64(p.st.pageSize)) // #nosec G115 -- within one segment
		switchEnd, err := p.page(at, page)
		if err != nil {
			return err
		}
		if p.st.done || switchEnd || i+1 == pages {
			return nil
		}
		if _, err := io.ReadFull(r, page); err != nil {
			return fmt.Errorf("reading the page after %s: %w", at, err)
		}
	}
}

// longHeader checks the first page's long header and learns the page size
// and the WAL format's version from it.
func (p *parser) longHeader(b []byte, base archive.LSN) error {
	le := binary.LittleEndian
	magic, info := le.Uint16(b[0:]), le.Uint16(b[2:])
	sysid, segSize, pageSize := le.Uint64(b[24:]), int64(le.Uint32(b[32:])), int(le.Uint32(b[36:]))
	major, ok := pageMagic[magic]
	switch {
	case !ok:
		return fmt.Errorf("%w (page magic %#04x; walvault reads the WAL of PostgreSQL 14 to 18)", ErrVersion, magic)
	case p.st.major != 0 && major != p.st.major:
		return fmt.Errorf("its page magic %#04x is not that of the segments before it", magic)
	case info&xlpLongHeader == 0:
		return errors.New("its first page has no long header")
	case p.s.sysid != 0 && sysid != p.s.sysid:
		return fmt.Errorf("it belongs to the cluster with system identifier %d, not %d", sysid, p.s.sysid)
	case segSize != p.s.segSize:
		return fmt.Errorf("its header says %d-byte segments, the cluster has %d", segSize, p.s.segSize)
	case pageSize < 1024 || pageSize > 65536 || pageSize&(pageSize-1) != 0 || p.s.segSize%int64(pageSize) != 0,
		p.st.pageSize != 0 && pageSize != p.st.pageSize:
		return fmt.Errorf("its header says %d-byte pages", pageSize)
	case archive.LSN(le.Uint64(b[8:])) != base:
		return fmt.Errorf("its first page is that of %s", archive.LSN(le.Uint64(b[8:])))
	}
	p.st.major, p.st.pageSize = major, pageSize
	return nil
}

// page reads one page at LSN at. switchEnd says the rest of the segment
// is the padding after an XLOG_SWITCH record.
func (p *parser) page(at archive.LSN, page []byte) (switchEnd bool, err error) {
	le := binary.LittleEndian
	magic, info, tli := le.Uint16(page[0:]), le.Uint16(page[2:]), le.Uint32(page[4:])
	addr, remLen := archive.LSN(le.Uint64(page[8:])), le.Uint32(page[16:])
	if pageMagic[magic] != p.st.major || info&^xlpAllFlags != 0 || addr != at || tli == 0 || tli > p.s.tli {
		return false, fmt.Errorf("the page at %s has no valid header (magic %#04x, flags %#x, address %s, timeline %d)", at, magic, info, addr, tli)
	}
	off := shortPageHeaderLen
	if info&xlpLongHeader != 0 {
		off = longPageHeaderLen
	}
	rec := &p.st.rec
	switch {
	case rec.active && info&xlpFirstIsContrecord != 0:
		if want := rec.remaining(); remLen != want {
			return false, fmt.Errorf("the page at %s continues the record at %s with %d bytes, %d were due", at, rec.start, remLen, want)
		}
	case rec.active && info&xlpFirstIsOverwriteContrecord != 0:
		*rec = record{} // the record was cut short by a crash, and given up
	case rec.active:
		return false, fmt.Errorf("the record at %s is not continued on the page at %s", rec.start, at)
	case info&xlpFirstIsContrecord != 0 && !p.st.started:
		*rec = record{active: true, skip: true, left: remLen} // began before the scan
	case info&xlpFirstIsContrecord != 0:
		return false, fmt.Errorf("the page at %s continues a record that never began", at)
	}
	p.st.started = true
	for off < len(page) {
		if !rec.active {
			start := at + archive.LSN(off) // #nosec G115 -- within a page
			if start >= p.s.to {
				p.st.done = true
				return false, nil
			}
			total := le.Uint32(page[off:])
			if total < recordHeaderLen || total > maxRecordLen {
				return false, fmt.Errorf("no valid record at %s (length %d): the WAL ends before %s", start, total, p.s.to)
			}
			*rec = record{active: true, start: start, total: total}
		}
		n, err := p.consume(page[off:])
		if err != nil {
			return false, err
		}
		off += n
		if rec.active {
			continue // goes on on the next page
		}
		if p.st.rec.start != 0 && isSwitch(rec.hdr[:]) {
			return true, nil
		}
		off = (off + maxAlign - 1) &^ (maxAlign - 1)
	}
	return false, nil
}

// remaining is how many bytes of the record are still to come.
func (r *record) remaining() uint32 {
	if r.skip {
		return r.left
	}
	return r.total - r.got
}

// consume takes the record's bytes from b, returns how many it took, and
// handles the record once it is whole.
func (p *parser) consume(b []byte) (int, error) {
	rec := &p.st.rec
	if rec.skip {
		n := min(uint32(len(b)), rec.left) // #nosec G115 -- a page
		rec.left -= n
		if rec.left == 0 {
			*rec = record{}
		}
		return int(n), nil
	}
	n := 0
	if rec.got < recordHeaderLen {
		k := copy(rec.hdr[rec.got:], b)
		rec.got += uint32(k) // #nosec G115 -- at most 24
		n += k
		if rec.got < recordHeaderLen {
			return n, nil
		}
		if err := p.header(); err != nil {
			return n, err
		}
	}
	k := min(len(b)-n, int(rec.total-rec.got))
	body := b[n : n+k]
	rec.crc = crc32.Update(rec.crc, castagnoli, body)
	if rec.keep {
		rec.body = append(rec.body, body...)
	}
	rec.got += uint32(k) // #nosec G115 -- bounded by total
	n += k
	if rec.got == rec.total {
		return n, p.finish()
	}
	return n, nil
}

// header checks a record's header once it is read and decides whether to
// keep its content.
func (p *parser) header() error {
	rec := &p.st.rec
	le := binary.LittleEndian
	if prev := archive.LSN(le.Uint64(rec.hdr[8:])); p.st.prev != 0 && prev != p.st.prev {
		return fmt.Errorf("the record at %s says the one before it is at %s, not %s", rec.start, prev, p.st.prev)
	}
	if rec.start >= p.s.from && interesting(rec.hdr[16], rec.hdr[17]) {
		if rec.total > maxKeptLen {
			return fmt.Errorf("the record at %s (resource manager %d) is %d bytes long, more than walvault decodes", rec.start, rec.hdr[17], rec.total)
		}
		rec.keep = true
		rec.body = make([]byte, 0, rec.total-recordHeaderLen)
	}
	return nil
}

// finish checks a whole record's CRC and decodes it.
func (p *parser) finish() error {
	rec := &p.st.rec
	crc := crc32.Update(rec.crc, castagnoli, rec.hdr[:recordCRCOffset])
	if want := binary.LittleEndian.Uint32(rec.hdr[recordCRCOffset:]); crc != want {
		return fmt.Errorf("the record at %s fails its CRC", rec.start)
	}
	p.st.prev = rec.start
	p.st.records++
	p.st.bytes += int64(rec.total)
	if rec.keep {
		if err := p.ch.record(rec.start, rec.hdr[:], rec.body, p.st.major); err != nil {
			return fmt.Errorf("the record at %s: %w", rec.start, err)
		}
	}
	start, hdr := rec.start, rec.hdr
	*rec = record{start: start, hdr: hdr} // not active; the header stays for isSwitch
	return nil
}
