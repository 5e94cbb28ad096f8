package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walvault/walvault/archive/repo"
)

func TestWriteTarVanishedAndGrown(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a": "1234", "b": "gone soon", "c": "grows"})
	var ents []walkEntry
	for _, n := range []string{"a", "b", "c"} {
		ents = append(ents, walkEntry{Path: n, Abs: filepath.Join(dir, n), Type: repo.TypeFile, Size: 4, Mode: 0o600})
	}
	if err := os.Remove(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	files, err := writeTar(context.Background(), &buf, ents, 0, make([]byte, 3), func(int64) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Path != "a" || files[1].Path != "c" || files[1].Size != 5 {
		t.Fatalf("files %+v: the vanished file must be left out, the grown one read at its size when opened", files)
	}
	tr := tar.NewReader(&buf)
	for _, f := range files {
		hdr, err := tr.Next()
		if err != nil || hdr.Name != f.Path || hdr.Size != f.Size {
			t.Fatalf("entry %+v, %v; want %s", hdr, err, f.Path)
		}
		data, _ := io.ReadAll(tr)
		if crcHex(crc32.Checksum(data, castagnoli)) != f.CRC32C {
			t.Fatalf("%s: checksum does not match its data", f.Path)
		}
	}
}
