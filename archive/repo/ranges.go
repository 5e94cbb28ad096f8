package repo

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// Range checksums (manifest field crc_range_size, file field
// range_crc32c) let an incremental backup that reads only the changed
// parts of a relation file still record the CRC-32C of the whole file a
// restore assembles: for every RangeSize bytes of the file, in order, the
// CRC-32C of that range as of this backup (the last range may be short).
// The ranges it does not read are its parent's, and so are their
// checksums; the whole file's CRC-32C combines the ranges'. Backups store
// them for relation files (their main forks); readers that do not know
// them ignore them: restore does not need them.

// MaxRangeCRCs bounds the ranges one file may list (8 GiB of 1 MiB
// ranges), so an entry stays within the manifest's bound on one entry.
const MaxRangeCRCs = 8192

// validRangeSize says whether n can be a manifest's crc_range_size.
func validRangeSize(n int64) bool { return n >= 1024 && n <= 1<<30 && n&(n-1) == 0 }

// RangeCount is how many ranges of rangeSize bytes cover size bytes.
func RangeCount(size, rangeSize int64) int64 { return (size + rangeSize - 1) / rangeSize }

// EncodeRangeCRCs is the base64 form stored in File.RangeCRCs: each CRC
// as 4 bytes, big-endian.
func EncodeRangeCRCs(crcs []uint32) string {
	b := make([]byte, 0, 4*len(crcs))
	for _, c := range crcs {
		b = binary.BigEndian.AppendUint32(b, c)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeRangeCRCs parses File.RangeCRCs of a file of size bytes in ranges
// of rangeSize: exactly one CRC per range.
func DecodeRangeCRCs(s string, size, rangeSize int64) ([]uint32, error) {
	if !validRangeSize(rangeSize) {
		return nil, fmt.Errorf("range checksums without a valid crc_range_size (%d)", rangeSize)
	}
	n := RangeCount(size, rangeSize)
	if size <= 0 || n > MaxRangeCRCs {
		return nil, fmt.Errorf("range checksums for a file of %d bytes", size)
	}
	if int64(base64.StdEncoding.DecodedLen(len(s))) > 4*n+2 {
		return nil, fmt.Errorf("range checksums of %d characters for %d ranges", len(s), n)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || int64(len(b)) != 4*n {
		return nil, fmt.Errorf("range checksums that are not %d bytes of base64", 4*n)
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	return out, nil
}
