package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"unicode/utf8"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// castagnoli is CRC-32C, the checksum PostgreSQL's backup manifests use by
// default; Go computes it with the CPU's CRC32 instruction.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcHex is how walvault's manifest writes a CRC-32C: the value in hex.
func crcHex(v uint32) string { return fmt.Sprintf("%08x", v) }

// pgManifestName is the file pg_verifybackup reads.
const pgManifestName = "backup_manifest"

// pgManifest renders a PostgreSQL backup_manifest (version 1, as
// pg_basebackup writes it) for the regular files of a backup, so that
// pg_verifybackup can check a restored directory. The checksum on the last
// line is the SHA-256 of everything before that line.
func pgManifest(files []repo.File, tli uint32, start, stop archive.LSN) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [")
	first := true
	for _, f := range files {
		if f.Type != repo.TypeFile || f.Path == pgManifestName {
			continue
		}
		crc, err := strconv.ParseUint(f.CRC32C, 16, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: bad checksum %q", f.Path, f.CRC32C)
		}
		// PostgreSQL prints the checksum's bytes in memory order
		// (little-endian), not the number.
		var le [4]byte
		binary.LittleEndian.PutUint32(le[:], uint32(crc))
		if first {
			b.WriteString("\n")
			first = false
		} else {
			b.WriteString(",\n")
		}
		if utf8.ValidString(f.Path) {
			b.WriteString(`{ "Path": `)
			b.Write(jsonString(f.Path))
		} else {
			b.WriteString(`{ "Encoded-Path": "` + hex.EncodeToString([]byte(f.Path)) + `"`)
		}
		fmt.Fprintf(&b, `, "Size": %d, "Last-Modified": "%s", "Checksum-Algorithm": "CRC32C", "Checksum": "%s" }`,
			f.Size, f.MTime.UTC().Format("2006-01-02 15:04:05 GMT"), hex.EncodeToString(le[:]))
	}
	b.WriteString("\n],\n\"WAL-Ranges\": [\n")
	fmt.Fprintf(&b, `{ "Timeline": %d, "Start-LSN": "%s", "End-LSN": "%s" }`, tli, start, stop)
	b.WriteString("\n],\n")
	sum := sha256.Sum256(b.Bytes())
	b.WriteString(`"Manifest-Checksum": "` + hex.EncodeToString(sum[:]) + "\"}\n")
	return b.Bytes(), nil
}

func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(b.Bytes(), "\n")
}
