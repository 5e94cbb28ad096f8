package wal

import (
	"bytes"
	"errors"
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
// encoded bytes), lz4 and zstd, for a file whose size is not a multiple
// of the map window.
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
		mb := new(boundedBuffer)
		dm, ok, err := encodeMapped(f, size, s, mb)
		if errors.Is(err, errNotMappable) && runtime.GOOS != "linux" {
			t.Skipf("no mmap here: %v", err)
		}
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

// TestMappedFileTruncated: a file cut short after its size was taken
// faults when the pass reaches the missing pages: an error of the pass,
// not a crash.
func TestMappedFileTruncated(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIGBUS on a map past the end of a file is Linux's behaviour")
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
	if err := f.Truncate(mapWindow + 100); err != nil {
		t.Fatal(err)
	}
	_, _, err = encodeMapped(f, int64(len(b)), walCodec(codec.Settings{Compression: codec.LZ4}), new(boundedBuffer))
	if err == nil || !strings.Contains(err.Error(), "truncated while read") {
		t.Fatalf("got %v, want the fault as an error", err)
	}
	// The pass through read(2) sees the short file too.
	_, _, err = encodeInMemory(io.NewSectionReader(f, 0, int64(len(b))), int64(len(b)), walCodec(codec.Settings{Compression: codec.LZ4}), new(boundedBuffer))
	if err == nil {
		t.Fatal("a short file read without error")
	}
}
