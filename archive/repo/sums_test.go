package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"filippo.io/age"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// sumsOf is the digest list of b, as Put makes it.
func sumsOf(b []byte) *Sums {
	c := newChunkSummer()
	_, _ = c.Write(b)
	return c.sums()
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func TestSumsRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3*ChunkSize + 17} {
		b := randomBytes(n, 1)
		s := sumsOf(b)
		if s.Chunks() != int(chunkCount(int64(n), ChunkSize)) || s.StoredSize != int64(n) {
			t.Fatalf("%d bytes: %d chunks", n, s.Chunks())
		}
		enc := s.Encode()
		if int64(len(enc)) != sumsLen(ChunkSize, int64(n)) {
			t.Fatalf("%d bytes: sums object of %d bytes, want %d", n, len(enc), sumsLen(ChunkSize, int64(n)))
		}
		back, err := ParseSums(enc, int64(n))
		if err != nil {
			t.Fatal(err)
		}
		// Read through a chunkReader: the same bytes come out.
		out, err := io.ReadAll(newChunkReader(bytes.NewReader(b), back, "obj"))
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("%d bytes: read %d back: %v", n, len(out), err)
		}
	}
}

// The text form is what coreutils make of the object cut into chunks.
func TestSumsText(t *testing.T) {
	b := randomBytes(ChunkSize+5, 2)
	enc := string(sumsOf(b).Encode())
	lines := strings.Split(strings.TrimSuffix(enc, "\n"), "\n")
	if lines[0] != "walvault-sums-v1 chunk=1048576 size=1048581" || len(lines) != 3 {
		t.Fatalf("%q", enc)
	}
	for i, piece := range [][]byte{b[:ChunkSize], b[ChunkSize:]} {
		if h := sha256.Sum256(piece); lines[i+1] != hex.EncodeToString(h[:]) {
			t.Fatalf("line %d: %s", i+1, lines[i+1])
		}
	}
}

// Every way a stored stream can differ from its list fails at the chunk
// where it differs, before that chunk's first byte is released.
func TestChunkReaderRefuses(t *testing.T) {
	b := randomBytes(3*ChunkSize+100, 3)
	s := sumsOf(b)
	swapped := append(append(append([]byte{}, b[ChunkSize:2*ChunkSize]...), b[:ChunkSize]...), b[2*ChunkSize:]...)
	flipped := append([]byte{}, b...)
	flipped[2*ChunkSize+7] ^= 1
	tests := []struct {
		name     string
		stream   []byte
		released int // bytes that may come out before the error
		want     string
	}{
		{"chunks reordered", swapped, 0, "chunk 0"},
		{"a bit flipped in chunk 2", flipped, 2 * ChunkSize, "chunk 2"},
		{"truncated in a chunk", b[:ChunkSize+10], ChunkSize, "truncated"},
		{"truncated at a chunk boundary", b[:2*ChunkSize], 2 * ChunkSize, "truncated"},
		{"empty", nil, 0, "truncated"},
		{"one byte more", append(append([]byte{}, b...), 0), len(b), "longer"},
		{"another object's chunk appended", append(append([]byte{}, b...), b[:ChunkSize]...), len(b), "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := io.ReadAll(newChunkReader(bytes.NewReader(tt.stream), s, "obj"))
			if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want ErrIntegrity with %q", err, tt.want)
			}
			if len(out) != tt.released || !bytes.Equal(out, b[:len(out)]) {
				t.Fatalf("released %d bytes before failing, want the %d proven ones", len(out), tt.released)
			}
		})
	}
}

func TestParseSumsStrict(t *testing.T) {
	good := sumsOf(randomBytes(2*ChunkSize, 4)).Encode()
	tests := []struct {
		name string
		b    []byte
		size int64
	}{
		{"other size", good, 2*ChunkSize + 1},
		{"uppercase hex", bytes.Replace(good, []byte("a"), []byte("A"), 1), 2 * ChunkSize},
		{"other chunk size", bytes.Replace(good, []byte("chunk=1048576"), []byte("chunk=1048577"), 1), 2 * ChunkSize},
		{"other magic", bytes.Replace(good, []byte("v1"), []byte("v2"), 1), 2 * ChunkSize},
		{"line cut", good[:len(good)-1], 2 * ChunkSize},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		if _, err := ParseSums(tt.b, tt.size); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	// Empty object: the header alone.
	if s, err := ParseSums(sumsOf(nil).Encode(), 0); err != nil || s.Chunks() != 0 {
		t.Fatalf("empty object: %v", err)
	}
}

func FuzzParseSums(f *testing.F) {
	f.Add(sumsOf(randomBytes(ChunkSize+1, 5)).Encode(), int64(ChunkSize+1))
	f.Add([]byte("walvault-sums-v1 chunk=1048576 size=0\n"), int64(0))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if size < 0 || size > 1<<40 {
			return
		}
		s, err := ParseSums(b, size)
		if err != nil {
			return
		}
		// What parses re-encodes to the very same bytes.
		if !bytes.Equal(s.Encode(), b) {
			t.Fatalf("%q parsed but re-encodes as %q", b, s.Encode())
		}
	})
}

// Put with Chunked and Load with the sums authenticate an encoded object
// through the whole pipeline; a stored object changed anywhere is refused
// before its changed chunk is decoded.
func TestPutChunkedLoad(t *testing.T) {
	ctx := context.Background()
	st, err := cloud.Open(ctx, "file://"+t.TempDir(), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &Repo{Store: st, Codec: codec.Settings{Compression: codec.None}, AllowUnsigned: true}
	plain := randomBytes(3*ChunkSize+1000, 6)
	st2, sum, err := r.PutChunked(ctx, "obj", func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(plain)), nil }, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.LoadSums(ctx, "obj", sum, st2.StoredSize)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	err = r.Load(ctx, "obj", Want{Sums: s, MaxSize: st2.Size}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		var err error
		got, err = io.ReadAll(rd)
		return err
	})
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("read back %d of %d bytes: %v", len(got), len(plain), err)
	}
	// A sums object that is not the one the manifest proves.
	if _, err := r.LoadSums(ctx, "obj", strings.Repeat("0", 64), st2.StoredSize); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("a sums object of another digest: %v", err)
	}
	// The object replaced by one of the same size: the first chunk fails,
	// and fn never sees a byte.
	other := randomBytes(len(plain), 7)
	if err := st.Put(ctx, "obj", cloud.Bytes(other), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	seen := 0
	err = r.Load(ctx, "obj", Want{Sums: s, MaxSize: st2.Size}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		n, err := io.Copy(io.Discard, rd)
		seen = int(n)
		return err
	})
	if !errors.Is(err, archive.ErrIntegrity) || seen != 0 {
		t.Fatalf("a replaced object: %d bytes handed on, %v", seen, err)
	}
}

// An object shorter than its first chunk is reported as truncated, not as
// whatever a decoder makes of no bytes.
func TestChunkedLoadNamesTheChunk(t *testing.T) {
	ctx := context.Background()
	st, err := cloud.Open(ctx, "file://"+t.TempDir(), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &Repo{Store: st, Codec: codec.Settings{Compression: codec.None}, AllowUnsigned: true}
	plain := randomBytes(2*ChunkSize, 8)
	st2, sum, err := r.PutChunked(ctx, "obj", func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(plain)), nil }, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.LoadSums(ctx, "obj", sum, st2.StoredSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "obj", cloud.Bytes(plain[:1000]), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// With an identity configured, a decoder that saw no bytes would also
	// call the object unencrypted: the chunk's failure is what is named.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r.Identities = []age.Identity{id}
	err = r.Load(ctx, "obj", Want{Sums: s, Encrypted: true}, func(io.Reader, cloud.ObjectInfo) error { return nil })
	if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("a short object: %v", err)
	}
}
