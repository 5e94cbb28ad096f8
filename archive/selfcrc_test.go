package archive

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// TestSelfCheckedResidue shows why SelfChecked exists: two different
// pg_filenode.map-like files (mappings, their CRC-32C little-endian, zero
// padding) have the same CRC-32C.
func TestSelfCheckedResidue(t *testing.T) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	file := func(fill byte) []byte {
		b := make([]byte, 512)
		for i := 0; i < 500; i++ {
			b[i] = fill + byte(i)
		}
		binary.LittleEndian.PutUint32(b[500:], crc32.Checksum(b[:500], tab))
		return b // 8 bytes of zero padding follow the CRC
	}
	a, b := file(1), file(77)
	if string(a) == string(b) {
		t.Fatal("the two files are the same")
	}
	if ca, cb := crc32.Checksum(a, tab), crc32.Checksum(b, tab); ca != cb {
		t.Fatalf("CRC-32C %08x and %08x: the residue property does not hold", ca, cb)
	}
}

func TestSelfChecked(t *testing.T) {
	for p, want := range map[string]bool{
		"global/pg_control":                                 true,
		"global/pg_filenode.map":                            true,
		"base/5/pg_filenode.map":                            true,
		"pg_tblspc/16384/PG_15_202209061/5/pg_filenode.map": true,
		"pg_twophase/0000002A":                              true,
		"pg_logical/replorigin_checkpoint":                  true,
		"pg_xact/0000":                                      false,
		"base/5/1259":                                       false,
		"global/1262":                                       false,
		"PG_VERSION":                                        false,
		"base/5/pg_filenode.map.tmp":                        false,
	} {
		if got := SelfChecked(p); got != want {
			t.Errorf("SelfChecked(%q) = %v, want %v", p, got, want)
		}
	}
}
