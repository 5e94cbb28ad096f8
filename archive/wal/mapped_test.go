package wal

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive/codec"
)

// TestMappedEncodingMatchesRead: the encode pass over a mapped file states
// the content exactly as the pass that reads it does (same digest, same
// encoded bytes), compressed, encrypted or not, and for a file whose size
// is not a multiple of the chunk.
func TestMappedEncodingMatchesRead(t *testing.T) {
	_, b := writeCompressible(t, t.TempDir(), 7, 16<<20, 0)
	b = b[:len(b)-12345]
	p := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p) // #nosec G304 -- the test's file
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	size := int64(len(b))
	for _, c := range []codec.Compression{codec.LZ4, codec.Zstd} {
		s := walCodec(codec.Settings{Compression: c})
		data, unmap, err := mapFile(f, size)
		if err != nil {
			if runtime.GOOS == "linux" {
				t.Fatal(err)
			}
			t.Skipf("no mmap here: %v", err)
		}
		mb := new(boundedBuffer)
		dm, ok, err := encodeMapped(data, p, s, mb)
		unmap()
		if err != nil || !ok {
			t.Fatalf("%s mapped: %v, fits %v", c, err, ok)
		}
		rb := new(boundedBuffer)
		dr, ok, err := encodeInMemory(io.NewSectionReader(f, 0, size), size, s, rb)
		if err != nil || !ok {
			t.Fatalf("%s read: %v, fits %v", c, err, ok)
		}
		if dm != dr || !bytes.Equal(mb.Bytes(), rb.Bytes()) {
			t.Fatalf("%s: mapped %+v (%d bytes), read %+v (%d bytes)", c, dm, len(mb.Bytes()), dr, len(rb.Bytes()))
		}
	}
}

// TestMappedFileTruncated: a file cut short under the map is an error of
// the pass (the fault is caught), not a crash.
func TestMappedFileTruncated(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIGBUS on a truncated map is Linux's behaviour")
	}
	_, b := writeCompressible(t, t.TempDir(), 7, 16<<20, 0)
	p := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0) // #nosec G304 -- the test's file
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	data, unmap, err := mapFile(f, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	_, _, err = encodeMapped(data, p, walCodec(codec.Settings{Compression: codec.LZ4}), new(boundedBuffer))
	if err == nil || !strings.Contains(err.Error(), "truncated while read") {
		t.Fatalf("got %v, want the fault as an error", err)
	}
}
