package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/repo"
)

func TestPGManifest(t *testing.T) {
	mt := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	crc := crc32.Checksum([]byte("15\n"), castagnoli)
	files := []repo.File{
		{Path: "PG_VERSION", Size: 3, MTime: mt, CRC32C: crcHex(crc)},
		{Path: "base", Type: repo.TypeDir},
		{Path: "we\"ird\\name", Size: 0, MTime: mt, CRC32C: "00000000"},
		{Path: "bad\xffname", Size: 1, MTime: mt, CRC32C: "00000001"},
		{Path: pgManifestName, Size: 1, MTime: mt, CRC32C: "00000001"},
	}
	body, err := pgManifest(files, 2, 0x4000028, 0x4000138)
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	if !strings.HasSuffix(text, "\"}\n") {
		t.Fatalf("must end with the checksum line and a newline:\n%s", text)
	}
	var doc struct {
		Version int `json:"PostgreSQL-Backup-Manifest-Version"`
		Files   []struct {
			Path, EncodedPath, Checksum, LastModified string
			Size                                      int64
		} `json:"Files"`
		WAL []struct {
			Timeline int    `json:"Timeline"`
			Start    string `json:"Start-LSN"`
			End      string `json:"End-LSN"`
		} `json:"WAL-Ranges"`
		Sum string `json:"Manifest-Checksum"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if doc.Version != 1 || len(doc.Files) != 3 || len(doc.WAL) != 1 || doc.WAL[0].Start != "0/4000028" || doc.WAL[0].End != "0/4000138" || doc.WAL[0].Timeline != 2 {
		t.Fatalf("unexpected manifest:\n%s", text)
	}
	// PostgreSQL prints the CRC's bytes in memory (little-endian) order.
	le := []byte{byte(crc), byte(crc >> 8), byte(crc >> 16), byte(crc >> 24)}
	if !strings.Contains(text, `"Path": "PG_VERSION", "Size": 3, "Last-Modified": "2026-01-02 03:04:05 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "`+hex.EncodeToString(le)+`"`) {
		t.Fatalf("PG_VERSION line wrong:\n%s", text)
	}
	if !strings.Contains(text, `"Encoded-Path": "`+hex.EncodeToString([]byte("bad\xffname"))+`"`) {
		t.Fatalf("non-UTF-8 path not hex-encoded:\n%s", text)
	}
	// The checksum covers everything up to and including the newline
	// before the last line.
	cut := strings.LastIndex(strings.TrimSuffix(text, "\n"), "\n") + 1
	sum := sha256.Sum256(body[:cut])
	if doc.Sum != hex.EncodeToString(sum[:]) {
		t.Fatalf("manifest checksum %s, want %x", doc.Sum, sum)
	}
}
