package repo

import (
	"bytes"
	"strings"
	"testing"
)

func TestRangeCRCs(t *testing.T) {
	crcs := []uint32{1, 0xdeadbeef, 7}
	s := EncodeRangeCRCs(crcs)
	got, err := DecodeRangeCRCs(s, 2<<20+5, 1<<20)
	if err != nil || len(got) != 3 || got[1] != 0xdeadbeef {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, tc := range []struct {
		name      string
		s         string
		size, rng int64
	}{
		{"one range too few", EncodeRangeCRCs(crcs[:2]), 2<<20 + 5, 1 << 20},
		{"one range too many", s, 2 << 20, 1 << 20},
		{"no range size", s, 2<<20 + 5, 0},
		{"a range size that is not a power of two", s, 2<<20 + 5, 1000000},
		{"an empty file", "", 0, 1 << 20},
		{"not base64", "!!!!", 1, 1 << 20},
		{"too many ranges", strings.Repeat("A", 5), (MaxRangeCRCs + 1) << 20, 1 << 20},
	} {
		if _, err := DecodeRangeCRCs(tc.s, tc.size, tc.rng); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// A manifest with range checksums validates only when they fit its files.
func TestManifestRangeCRCs(t *testing.T) {
	m := sampleIncremental()
	m.RangeSize = 1 << 20
	f := &m.Files[1]
	f.RangeCRCs = EncodeRangeCRCs(make([]uint32, RangeCount(f.Size, m.RangeSize)))
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	body, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeManifest(bytes.NewReader(body), false)
	if err != nil || back.RangeSize != m.RangeSize || back.Files[1].RangeCRCs != f.RangeCRCs {
		t.Fatalf("round trip: %v", err)
	}
	f.RangeCRCs = EncodeRangeCRCs(make([]uint32, RangeCount(f.Size, m.RangeSize)+1))
	if err := m.Validate(); err == nil {
		t.Error("range checksums for more ranges than the file has: accepted")
	}
	f.RangeCRCs = EncodeRangeCRCs(make([]uint32, RangeCount(f.Size, m.RangeSize)))
	m.RangeSize = 3000
	if err := m.Validate(); err == nil {
		t.Error("a crc_range_size of 3000: accepted")
	}
}
