package pgwal

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
)

// walWriter lays records out as PostgreSQL does: MAXALIGNed, split across
// pages (whose headers carry the continuation), the first page of each
// segment with a long header.
type walWriter struct {
	t        *testing.T
	magic    uint16
	segSize  int
	pageSize int
	tli      uint32
	sysid    uint64
	buf      []byte // everything written, from LSN base
	base     archive.LSN
	prev     archive.LSN
	starts   []archive.LSN
}

func newWriter(t *testing.T, magic uint16) *walWriter {
	w := &walWriter{t: t, magic: magic, segSize: 1 << 20, pageSize: 8192, tli: 1, sysid: 7000000000000000001, base: 3 << 20}
	w.pageHeader(0, 0)
	return w
}

func (w *walWriter) pos() archive.LSN { return w.base + archive.LSN(len(w.buf)) }

// pageHeader starts a page at w.buf's end; remLen > 0 marks a continuation.
func (w *walWriter) pageHeader(remLen uint32, flags uint16) {
	at := w.pos()
	long := int(at)%w.segSize == 0
	h := make([]byte, shortPageHeaderLen)
	if long {
		h = make([]byte, longPageHeaderLen)
		flags |= xlpLongHeader
		binary.LittleEndian.PutUint64(h[24:], w.sysid)
		binary.LittleEndian.PutUint32(h[32:], uint32(w.segSize))
		binary.LittleEndian.PutUint32(h[36:], uint32(w.pageSize))
	}
	if remLen > 0 {
		flags |= xlpFirstIsContrecord
	}
	binary.LittleEndian.PutUint16(h[0:], w.magic)
	binary.LittleEndian.PutUint16(h[2:], flags)
	binary.LittleEndian.PutUint32(h[4:], w.tli)
	binary.LittleEndian.PutUint64(h[8:], uint64(at))
	binary.LittleEndian.PutUint32(h[16:], remLen)
	w.buf = append(w.buf, h...)
}

// record appends a record of rmid/info with main data (and a block
// reference when block is set) and returns its LSN.
func (w *walWriter) record(rmid, info uint8, data []byte, block bool) archive.LSN {
	var body []byte
	if block {
		// block 0: fork main, has data (4 bytes), a RelFileLocator, block 7
		body = append(body, 0, 0x20, 4, 0)
		body = binary.LittleEndian.AppendUint32(body, 1663)
		body = binary.LittleEndian.AppendUint32(body, 5)
		body = binary.LittleEndian.AppendUint32(body, 16384)
		body = binary.LittleEndian.AppendUint32(body, 7)
	}
	if len(data) < 256 {
		body = append(body, 255, byte(len(data)))
	} else {
		body = append(body, 254)
		body = binary.LittleEndian.AppendUint32(body, uint32(len(data)))
	}
	if block {
		body = append(body, 1, 2, 3, 4)
	}
	body = append(body, data...)
	hdr := make([]byte, recordHeaderLen)
	binary.LittleEndian.PutUint32(hdr[0:], uint32(recordHeaderLen+len(body)))
	binary.LittleEndian.PutUint32(hdr[4:], 1234)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(w.prev))
	hdr[16], hdr[17] = info, rmid
	crc := crc32.Update(0, castagnoli, body)
	crc = crc32.Update(crc, castagnoli, hdr[:recordCRCOffset])
	binary.LittleEndian.PutUint32(hdr[recordCRCOffset:], crc)
	at := w.pos()
	w.prev = at
	w.starts = append(w.starts, at)
	w.write(append(hdr, body...))
	return at
}

// write lays bytes out over pages, then aligns.
func (w *walWriter) write(b []byte) {
	for len(b) > 0 {
		room := w.pageSize - int(w.pos())%w.pageSize
		n := min(room, len(b))
		w.buf = append(w.buf, b[:n]...)
		b = b[n:]
		if int(w.pos())%w.pageSize == 0 {
			w.pageHeader(uint32(len(b)), 0)
		}
	}
	for int(w.pos())%maxAlign != 0 {
		w.buf = append(w.buf, 0)
	}
	if int(w.pos())%w.pageSize == 0 {
		w.pageHeader(0, 0)
	}
}

// switchSegment writes XLOG_SWITCH and pads to the segment's end.
func (w *walWriter) switchSegment() {
	w.record(rmXLOG, xlogSwitch, nil, false)
	if int(w.pos())%w.pageSize == shortPageHeaderLen {
		w.buf = w.buf[:len(w.buf)-shortPageHeaderLen] // the next page's header, written after it
	}
	for int(w.pos())%w.pageSize != 0 {
		w.buf = append(w.buf, 0)
	}
	for int(w.pos())%w.segSize != 0 {
		w.pageHeader(0, 0)
		w.buf = append(w.buf, make([]byte, w.pageSize-shortPageHeaderLen)...)
	}
	w.pageHeader(0, 0)
}

// segments cuts what was written into whole segments (the last padded).
func (w *walWriter) segments() [][]byte {
	b := append([]byte(nil), w.buf...)
	for len(b)%w.segSize != 0 {
		b = append(b, 0)
	}
	var out [][]byte
	for len(b) > 0 {
		out = append(out, b[:w.segSize])
		b = b[w.segSize:]
	}
	return out
}

func oids(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

func scanAll(t *testing.T, w *walWriter, from, to archive.LSN) (*Scanner, error) {
	t.Helper()
	s := NewScanner(w.tli, w.sysid, int64(w.segSize), from, to)
	for i, seg := range w.segments() {
		segNo := uint64(w.base)/uint64(w.segSize) + uint64(i)
		if segNo < s.NextSegment() {
			continue
		}
		if err := s.Segment(segNo, bytes.NewReader(seg)); err != nil {
			return s, err
		}
		s.Commit()
		if s.Done() {
			break
		}
	}
	return s, nil
}

func TestScannerFindsTheRecords(t *testing.T) {
	for _, tc := range []struct {
		name  string
		magic uint16
	}{{"14", 0xD10D}, {"15", 0xD110}, {"17", 0xD116}, {"18", 0xD118}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriter(t, tc.magic)
			w.record(rmSmgr, smgrCreate, append(oids(1663, 5, 100), oids(0)...), false) // before from
			from := w.pos()
			big := bytes.Repeat([]byte{0xAB}, 30000) // spans pages
			w.record(10, 0x00, big, true)
			createdAt := w.record(rmSmgr, smgrCreate|xlrSpecialRelUpdate, append(oids(1663, 5, 16400), oids(ForkMain)...), false)
			w.record(rmSmgr, smgrTruncate, append(oids(40), append(oids(1663, 5, 16401), oids(smgrTruncateHeap)...)...), false)
			w.record(rmSmgr, smgrTruncate, append(oids(12), append(oids(1663, 5, 16401), oids(smgrTruncateHeap|2)...)...), false)
			w.record(rmSmgr, smgrTruncate, append(oids(3), append(oids(1663, 5, 16401), oids(2)...)...), false) // VM only
			var copyAt, walLogAt, dropAt archive.LSN
			if tc.magic == 0xD10D {
				copyAt = w.record(rmDbase, dbaseCreate14, oids(16500, 1663, 1, 1663), false)
				dropAt = w.record(rmDbase, dbaseDrop14, oids(16501, 2, 1663, 16600), false)
			} else {
				copyAt = w.record(rmDbase, dbaseCreateFileCopy, oids(16500, 1663, 1, 1663), false)
				walLogAt = w.record(rmDbase, dbaseCreateWALLog, oids(16502, 16600), false)
				dropAt = w.record(rmDbase, dbaseDrop, oids(16501, 2, 1663, 16600), false)
			}
			w.switchSegment()
			// the next segment: a record split across its first pages
			w.record(10, 0, bytes.Repeat([]byte{1}, 20000), false)
			param := make([]byte, 26)
			minimalAt := w.record(rmXLOG, xlogParameterChange, param, false) // wal_level 0
			unknownAt := w.record(77, xlrSpecialRelUpdate, []byte{1, 2, 3}, false)
			w.record(rmXact, xlrSpecialRelUpdate, []byte{1, 2, 3}, false) // commit with drops: not decoded
			to := w.record(10, 0, []byte("after"), false)
			w.record(rmSmgr, smgrCreate, append(oids(1663, 5, 999), oids(0)...), false) // after to

			s, err := scanAll(t, w, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Done() {
				t.Fatal("the scan did not reach its end")
			}
			ch := s.Changes()
			if len(ch.Created) != 1 || ch.Created[RelFork{Rel{1663, 5, 16400}, ForkMain}] != createdAt {
				t.Errorf("created: %v", ch.Created)
			}
			if len(ch.Truncated) != 1 || ch.Truncated[Rel{1663, 5, 16401}] != 12 {
				t.Errorf("truncated: %v", ch.Truncated)
			}
			want := map[DBDir]Event{{1663, 16500}: {copyAt, "created by copying files"}, {1663, 16501}: {dropAt, "dropped"}, {16600, 16501}: {dropAt, "dropped"}}
			if walLogAt != 0 {
				want[DBDir{16600, 16502}] = Event{walLogAt, "created"}
			}
			if len(ch.Databases) != len(want) {
				t.Errorf("databases: %v, want %v", ch.Databases, want)
			}
			for k, v := range want {
				if ch.Databases[k] != v {
					t.Errorf("database %v: %v, want %v", k, ch.Databases[k], v)
				}
			}
			if ch.Minimal != minimalAt || ch.Unknown != unknownAt || ch.UnknownRmgr != 77 {
				t.Errorf("minimal %s (want %s), unknown %s rmgr %d (want %s)", ch.Minimal, minimalAt, ch.Unknown, ch.UnknownRmgr, unknownAt)
			}
		})
	}
}

// The scan starts in the middle of a segment whose first page continues a
// record from the segment before, and reads a segment again when asked.
func TestScannerStartsMidRecordAndRereads(t *testing.T) {
	w := newWriter(t, 0xD116)
	for i := 0; i < 40; i++ {
		w.record(10, 0, bytes.Repeat([]byte{byte(i)}, 3000), false)
	}
	// fill to near the segment's end, then a record across the boundary
	for int(w.pos())%w.segSize < w.segSize-20000 {
		w.record(10, 0, bytes.Repeat([]byte{9}, 5000), false)
	}
	w.record(10, 0, bytes.Repeat([]byte{7}, 60000), false)
	from := w.pos()
	at := w.record(rmSmgr, smgrCreate, append(oids(1663, 5, 1), oids(ForkInit)...), false)
	to := w.record(10, 0, nil, false)
	segs := w.segments()
	s := NewScanner(w.tli, w.sysid, int64(w.segSize), from, to)
	second := uint64(w.base)/uint64(w.segSize) + 1
	if s.NextSegment() != second {
		t.Fatalf("starts at segment %X, want %X", s.NextSegment(), second)
	}
	// An attempt cut short, then the whole segment again.
	if err := s.Segment(second, bytes.NewReader(segs[1][:20000])); err == nil {
		t.Fatal("a truncated segment read without error")
	}
	if err := s.Segment(second, bytes.NewReader(segs[1])); err != nil {
		t.Fatal(err)
	}
	s.Commit()
	if !s.Done() || s.Changes().Created[RelFork{Rel{1663, 5, 1}, ForkInit}] != at {
		t.Fatalf("done %v, created %v", s.Done(), s.Changes().Created)
	}
}

func TestScannerRefuses(t *testing.T) {
	build := func() *walWriter {
		w := newWriter(t, 0xD110)
		w.record(10, 0, bytes.Repeat([]byte{1}, 10000), false)
		w.record(rmSmgr, smgrCreate, append(oids(1663, 5, 1), oids(0)...), false)
		w.record(10, 0, []byte("end"), false)
		return w
	}
	for _, tc := range []struct {
		name   string
		damage func(w *walWriter, seg []byte)
		sysid  uint64
		want   string
	}{
		{"a flipped byte", func(w *walWriter, seg []byte) { seg[9000] ^= 1 }, 0, "fails its CRC"},
		{"another cluster", func(*walWriter, []byte) {}, 42, "system identifier"},
		{"unknown version", func(w *walWriter, seg []byte) { binary.LittleEndian.PutUint16(seg, 0xD200) }, 0, "does not read"},
		{"a page out of place", func(w *walWriter, seg []byte) { binary.LittleEndian.PutUint64(seg[8192+8:], 0) }, 0, "no valid header"},
		{"a broken chain", func(w *walWriter, seg []byte) {
			off := int(w.starts[1] - w.base)
			binary.LittleEndian.PutUint64(seg[off+8:], 8)
		}, 0, "says the one before it"},
		{"the WAL ends early", func(w *walWriter, seg []byte) {
			off := int(w.starts[2] - w.base)
			clear(seg[off:])
		}, 0, "the WAL ends before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := build()
			seg := w.segments()[0]
			tc.damage(w, seg)
			sysid := w.sysid
			if tc.sysid != 0 {
				sysid = tc.sysid
			}
			s := NewScanner(w.tli, sysid, int64(w.segSize), w.base, w.base+archive.LSN(w.segSize)-8)
			err := s.Segment(uint64(w.base)/uint64(w.segSize), bytes.NewReader(seg))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestMainData(t *testing.T) {
	// A full-page image with a hole, compressed: the 2-byte hole length
	// is there in 15+ when a COMPRESS bit is set, in 14 with IS_COMPRESSED.
	img := func(info byte, hole bool) []byte {
		b := []byte{0, 0x10 | 0x80, 0, 0, 100, 0, 0, 0, info}
		if hole {
			b = append(b, 0, 0)
		}
		b = append(b, 1, 0, 0, 0) // block number
		b = append(b, 255, 3)
		b = append(b, make([]byte, 100)...)
		return append(b, 'a', 'b', 'c')
	}
	for _, tc := range []struct {
		major int
		body  []byte
	}{
		{15, img(0x01|0x08, true)},
		{15, img(0x01, false)},
		{14, img(0x01|0x02, true)},
		{14, img(0x01|0x08, false)},
	} {
		got, err := mainData(tc.body, tc.major)
		if err != nil || string(got) != "abc" {
			t.Errorf("%d %x: %q %v", tc.major, tc.body[:10], got, err)
		}
	}
}

// FuzzScanner feeds arbitrary bytes as a segment: errors, never a panic.
func FuzzScanner(f *testing.F) {
	w := newWriter(nil, 0xD116)
	w.record(rmSmgr, smgrCreate, append(oids(1663, 5, 1), oids(0)...), false)
	w.record(rmDbase, dbaseDrop, oids(1, 1, 1663), false)
	w.record(10, 0, bytes.Repeat([]byte{1}, 9000), true)
	f.Add(w.segments()[0][:20000])
	f.Fuzz(func(t *testing.T, b []byte) {
		seg := make([]byte, 1<<20)
		copy(seg, b)
		s := NewScanner(1, 0, 1<<20, 3<<20, 4<<20)
		_ = s.Segment(3, bytes.NewReader(seg))
	})
}
