package archive

import (
	"errors"
	"testing"
)

func TestParseWALName(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		tli  uint32
		log  uint32
		seg  uint32
		bad  bool
	}{
		{name: "000000010000000000000001", kind: KindSegment, tli: 1, log: 0, seg: 1},
		{name: "0000000A00000003000000FF", kind: KindSegment, tli: 10, log: 3, seg: 255},
		{name: "00000002.history", kind: KindHistory, tli: 2},
		{name: "000000010000000000000002.00000028.backup", kind: KindBackup, tli: 1, seg: 2},
		{name: "000000010000000000000003.partial", kind: KindPartial, tli: 1, seg: 3},
		{name: "00000001000000000000000g", bad: true},
		{name: "00000001000000000000000a", bad: true}, // PostgreSQL writes upper case
		{name: "000000000000000000000001", bad: true}, // timeline 0 does not exist
		{name: "00000001000000000000001", bad: true},
		{name: "0000000100000000000000011", bad: true},
		{name: "00000001.History", bad: true},
		{name: "RECOVERYXLOG", bad: true},
		{name: "000000010000000000000003.partia", bad: true},
		{name: "000000010000000000000002.0000002G.backup", bad: true},
		{name: "../../etc/passwd", bad: true},
		{name: "", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseWALName(tt.name)
			if tt.bad {
				if !errors.Is(err, ErrNotWALName) {
					t.Fatalf("ParseWALName(%q) = %+v, %v; want ErrNotWALName", tt.name, f, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != tt.kind || f.Timeline != tt.tli || f.Log != tt.log || f.Seg != tt.seg {
				t.Fatalf("got %+v", f)
			}
		})
	}
}

func TestSegmentArithmetic(t *testing.T) {
	tests := []struct {
		segSize int64
		lsn     string
		want    string
	}{
		{16 << 20, "0/1000000", "000000010000000000000001"},
		{16 << 20, "0/FFFFFFFF", "0000000100000000000000FF"},
		{16 << 20, "1/0", "000000010000000100000000"},
		{1 << 20, "0/3FFFFF", "000000010000000000000003"},
		{1 << 20, "2/100000", "000000010000000200000001"},
		{1 << 30, "5/C0000000", "000000010000000500000003"},
	}
	for _, tt := range tests {
		lsn, err := ParseLSN(tt.lsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := SegmentOf(1, lsn, tt.segSize); got != tt.want {
			t.Errorf("SegmentOf(%s, %d) = %s, want %s", tt.lsn, tt.segSize, got, tt.want)
		}
		f, _ := ParseWALName(tt.want)
		if start := f.StartLSN(tt.segSize); start > lsn || lsn-start >= LSN(tt.segSize) {
			t.Errorf("StartLSN(%s) = %s does not contain %s", tt.want, start, tt.lsn)
		}
	}
	f, _ := ParseWALName("0000000100000000000000FF")
	if got := f.Next(16 << 20); got != "000000010000000100000000" {
		t.Errorf("Next crosses the log boundary wrongly: %s", got)
	}
	if got := (LSN(0x1_0000_0028)).String(); got != "1/28" {
		t.Errorf("LSN.String = %s", got)
	}
	for _, bad := range []string{"", "0", "x/1", "1/", "/1", "100000000/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
}

func TestParsePageHeader(t *testing.T) {
	good := make([]byte, LongHeaderLen)
	put16 := func(off int, v uint16) { good[off], good[off+1] = byte(v), byte(v>>8) }
	put32 := func(off int, v uint32) {
		for i := 0; i < 4; i++ {
			good[off+i] = byte(v >> (8 * i))
		}
	}
	put16(0, 0xD110)
	put16(2, xlpLongHeader)
	put32(4, 1)
	put32(8, 0x0300_0000) // page address 0/3000000
	put32(24, 0x1234_5678)
	put32(28, 0x7000_0000) // system identifier high half
	put32(32, 16<<20)
	put32(36, 8192)
	h, err := ParsePageHeader(good)
	if err != nil {
		t.Fatal(err)
	}
	if h.SystemID != 0x7000_0000_1234_5678 || h.SegmentSize != 16<<20 || h.PageAddr != 0x300_0000 || h.BlockSize != 8192 {
		t.Fatalf("got %+v", h)
	}
	mutate := map[string]func(b []byte){
		"short":           func(b []byte) {},
		"bad magic":       func(b []byte) { b[1] = 0x00 },
		"no long flag":    func(b []byte) { b[2] = 0 },
		"segsize not 2^n": func(b []byte) { b[32] = 1 },
		"zero sysid": func(b []byte) {
			for i := 24; i < 32; i++ {
				b[i] = 0
			}
		},
	}
	for name, m := range mutate {
		b := append([]byte(nil), good...)
		m(b)
		if name == "short" {
			b = b[:20]
		}
		if _, err := ParsePageHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
