package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/; `make fuzz` runs each
// target briefly, `go test` replays the seeds.

// FuzzParseWALName: any string either parses into a WALFile that prints
// back to the same name, or fails with
// ErrNotWALName. Names come from PostgreSQL's %f and %p and from the
// command line, and end up in store keys and spool paths.
func FuzzParseWALName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000001", "0000000A00000003000000FF", "00000002.history",
		"000000010000000000000002.00000028.backup", "000000010000000000000003.partial",
		"00000001000000000000000a", "../../../etc/passwd", "00000001.history/..", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		wf, err := ParseWALName(name)
		if err != nil {
			if !errors.Is(err, ErrNotWALName) {
				t.Fatalf("ParseWALName(%q): error %v does not wrap ErrNotWALName", name, err)
			}
			return
		}
		if wf.Name != name || wf.Timeline == 0 {
			t.Fatalf("ParseWALName(%q) = %+v", name, wf)
		}
		if strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
			t.Fatalf("ParseWALName accepted %q, which is unsafe in a path", name)
		}
		var rebuilt string
		switch wf.Kind {
		case KindHistory:
			rebuilt = HistoryName(wf.Timeline)
		case KindSegment:
			rebuilt = fmt.Sprintf("%08X%08X%08X", wf.Timeline, wf.Log, wf.Seg)
		case KindPartial:
			rebuilt = fmt.Sprintf("%08X%08X%08X.partial", wf.Timeline, wf.Log, wf.Seg)
		case KindBackup:
			rebuilt = fmt.Sprintf("%08X%08X%08X", wf.Timeline, wf.Log, wf.Seg) + name[24:]
		default:
			t.Fatalf("ParseWALName(%q): unknown kind %d", name, wf.Kind)
		}
		if rebuilt != name {
			t.Fatalf("ParseWALName(%q) = %+v, which prints back as %q", name, wf, rebuilt)
		}
		// The segment arithmetic round-trips for every segment size the
		// name can belong to.
		if wf.Kind == KindSegment {
			for size := int64(1 << 20); size <= 1<<30; size <<= 1 {
				if uint64(wf.Seg) >= SegmentsPerLog(size) {
					continue // no such segment at this size
				}
				if got := SegmentName(wf.Timeline, wf.SegNo(size), size); got != name {
					t.Fatalf("%s at %d MiB: SegmentName(SegNo) = %s", name, size>>20, got)
				}
				if got := SegmentOf(wf.Timeline, wf.StartLSN(size), size); got != name {
					t.Fatalf("%s at %d MiB: SegmentOf(StartLSN) = %s", name, size>>20, got)
				}
			}
		}
		if again, err := ParseWALName(name); err != nil || again != wf {
			t.Fatalf("ParseWALName(%q) is not deterministic: %+v, %v", name, again, err)
		}
	})
}

// FuzzParsePageHeader: any bytes either decode into a header whose fields
// are the bytes at their offsets and whose values are possible, or fail;
// never a panic. wal-push reads this header from every segment.
func FuzzParsePageHeader(f *testing.F) {
	// The first 40 bytes of a segment written by PostgreSQL 15 (initdb).
	real15 := []byte("\x10\xd1\x02\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x2e\xa2\x9e\x93\x6d\x9c\x0c\x6b\x00\x00\x00\x01\x00\x20\x00\x00")
	f.Add(real15)
	f.Add(real15[:39])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParsePageHeader(b)
		if err != nil {
			if len(b) >= LongHeaderLen && h != (PageHeader{}) {
				t.Fatalf("error %v with a non-zero header %+v", err, h)
			}
			return
		}
		if len(b) < LongHeaderLen {
			t.Fatalf("parsed a header from %d bytes", len(b))
		}
		le := binary.LittleEndian
		if h.Magic != le.Uint16(b) || h.Timeline != le.Uint32(b[4:]) || uint64(h.PageAddr) != le.Uint64(b[8:]) ||
			h.SystemID != le.Uint64(b[24:]) || h.SegmentSize != int64(le.Uint32(b[32:])) || h.BlockSize != le.Uint32(b[36:]) {
			t.Fatalf("header %+v does not match its bytes %x", h, b[:LongHeaderLen])
		}
		if le.Uint16(b[2:])&xlpLongHeader == 0 || h.Magic&0xFE00 != 0xD000 {
			t.Fatalf("accepted a page without a long header or a WAL magic: %+v", h)
		}
		if !ValidSegmentSize(h.SegmentSize) || h.BlockSize == 0 || h.BlockSize&(h.BlockSize-1) != 0 || h.SystemID == 0 {
			t.Fatalf("accepted impossible values: %+v", h)
		}
		// Only the first 40 bytes count.
		if h2, err := ParsePageHeader(append(b[:LongHeaderLen:LongHeaderLen], 0xff)); err != nil || h2 != h {
			t.Fatalf("trailing bytes change the header: %+v %v", h2, err)
		}
	})
}
