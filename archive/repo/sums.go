package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// A large object (a backup part, a dump) is authenticated chunk by chunk,
// so that a reader can stream it and still hand nothing on before it is
// proven: the signed manifest records the SHA-256 of a small sums object
// stored beside it, and the sums object lists the SHA-256 of every
// ChunkSize bytes of the stored object, in order. A reader loads and
// checks the list first, then releases each chunk of the stored bytes to
// the decoder only once the chunk matched. The decoder, the tar reader,
// the files written and pg_restore see authenticated bytes only.
//
// The sums object is text, checkable with coreutils:
//
//	walvault-sums-v1 chunk=1048576 size=<stored bytes>
//	<sha256 hex of chunk 0>
//	<sha256 hex of chunk 1>
//	...
//
// (split -b 1048576 the stored object, then sha256sum each piece.)

// ChunkSize is the granularity of authentication: a reader holds one
// chunk in memory before releasing it.
const ChunkSize = 1 << 20

// SumsSuffix names the sums object of key: key + SumsSuffix.
const SumsSuffix = ".sums"

// SumsKey is the key of the sums object of the object at key.
func SumsKey(key string) string { return key + SumsSuffix }

const sumsMagic = "walvault-sums-v1"

// Sums is the digest list of one stored object.
type Sums struct {
	ChunkSize  int64
	StoredSize int64
	list       [][sha256.Size]byte
}

// Chunks is the number of chunks.
func (s *Sums) Chunks() int { return len(s.list) }

// chunkCount is how many chunks of size chunk hold size bytes (an empty
// object has none).
func chunkCount(size, chunk int64) int64 { return (size + chunk - 1) / chunk }

// sumsHeader is the first line of a sums object.
func sumsHeader(chunk, size int64) string {
	return fmt.Sprintf("%s chunk=%d size=%d\n", sumsMagic, chunk, size)
}

// sumsLen is the exact length of the sums object of a stored object of
// size bytes: what a reader allows before reading it.
func sumsLen(chunk, size int64) int64 {
	return int64(len(sumsHeader(chunk, size))) + chunkCount(size, chunk)*(2*sha256.Size+1)
}

// SumsLen is the size of the sums object of a stored object of storedSize
// bytes.
func SumsLen(storedSize int64) int64 { return sumsLen(ChunkSize, storedSize) }

// Encode renders s as its sums object.
func (s *Sums) Encode() []byte {
	var b bytes.Buffer
	b.Grow(int(sumsLen(s.ChunkSize, s.StoredSize)))
	b.WriteString(sumsHeader(s.ChunkSize, s.StoredSize))
	var line [2*sha256.Size + 1]byte
	line[len(line)-1] = '\n'
	for _, d := range s.list {
		hex.Encode(line[:], d[:])
		b.Write(line[:])
	}
	return b.Bytes()
}

// ParseSums reads a sums object, which must describe storedSize stored
// bytes: strict, since it comes from the store (its SHA-256 was checked
// against the manifest before, but a reader is never more lenient than a
// writer).
func ParseSums(b []byte, storedSize int64) (*Sums, error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return nil, errors.New("no header line")
	}
	head := string(b[:nl+1])
	if int64(len(b)) != sumsLen(ChunkSize, storedSize) || head != sumsHeader(ChunkSize, storedSize) {
		return nil, fmt.Errorf("it does not describe %d stored bytes in %d-byte chunks", storedSize, ChunkSize)
	}
	s := &Sums{ChunkSize: ChunkSize, StoredSize: storedSize, list: make([][sha256.Size]byte, chunkCount(storedSize, ChunkSize))}
	rest := b[nl+1:]
	for i := range s.list {
		line := rest[i*(2*sha256.Size+1) : (i+1)*(2*sha256.Size+1)]
		if line[2*sha256.Size] != '\n' || !isHex(string(line[:2*sha256.Size]), 2*sha256.Size) {
			return nil, fmt.Errorf("line %d is not a SHA-256 in lowercase hex", i+2)
		}
		_, _ = hex.Decode(s.list[i][:], line[:2*sha256.Size])
	}
	return s, nil
}

// chunkSummer hashes a stored stream chunk by chunk as it is written.
type chunkSummer struct {
	h    hash.Hash
	in   int64 // bytes of the current chunk
	n    int64 // bytes in all
	list [][sha256.Size]byte
}

func newChunkSummer() *chunkSummer { return &chunkSummer{h: sha256.New()} }

func (c *chunkSummer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(int64(len(p)), ChunkSize-c.in)
		c.h.Write(p[:k])
		c.in += k
		c.n += k
		p = p[k:]
		if c.in == ChunkSize {
			c.cut()
		}
	}
	return n, nil
}

func (c *chunkSummer) cut() {
	var d [sha256.Size]byte
	c.h.Sum(d[:0])
	c.list = append(c.list, d)
	c.h.Reset()
	c.in = 0
}

// sums ends the stream and returns its digest list.
func (c *chunkSummer) sums() *Sums {
	if c.in > 0 {
		c.cut()
	}
	return &Sums{ChunkSize: ChunkSize, StoredSize: c.n, list: c.list}
}

// chunkReader releases a stored stream chunk by chunk, each only once it
// matched its digest; a stream longer or shorter than the list says fails
// at once.
type chunkReader struct {
	r     io.Reader
	s     *Sums
	where string
	buf   []byte
	off   int // next byte of buf to release
	next  int // next chunk to read
	err   error
}

func newChunkReader(r io.Reader, s *Sums, where string) *chunkReader {
	return &chunkReader{r: r, s: s, where: where}
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.off == len(c.buf) {
		if c.err != nil {
			return 0, c.err
		}
		c.err = c.fill()
	}
	n := copy(p, c.buf[c.off:])
	c.off += n
	return n, nil
}

// fill reads and checks the next chunk into buf, or returns io.EOF after
// the last one once the stream ended there.
func (c *chunkReader) fill() error {
	c.buf, c.off = c.buf[:0], 0
	if c.next == len(c.s.list) {
		var one [1]byte
		if n, err := io.ReadFull(c.r, one[:]); n > 0 {
			return fmt.Errorf("%w: %s is longer than the %d bytes its sums list: the stored object is damaged", archive.ErrIntegrity, c.where, c.s.StoredSize)
		} else if err != io.EOF {
			return err
		}
		return io.EOF
	}
	at := int64(c.next) * c.s.ChunkSize
	size := min(c.s.ChunkSize, c.s.StoredSize-at)
	if c.buf == nil {
		c.buf = make([]byte, 0, c.s.ChunkSize)
	}
	c.buf = c.buf[:size]
	if n, err := io.ReadFull(c.r, c.buf); err != nil {
		c.buf = c.buf[:0]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %s ends after %d bytes, its sums list %d: the stored object is truncated", archive.ErrIntegrity, c.where, at+int64(n), c.s.StoredSize)
		}
		return err
	}
	if sha256.Sum256(c.buf) != c.s.list[c.next] {
		c.buf = c.buf[:0]
		return fmt.Errorf("%w: %s: chunk %d (bytes %d to %d) does not match its SHA-256 in the sums list: the stored object is damaged or was replaced", archive.ErrIntegrity, c.where, c.next, at, at+size)
	}
	c.next++
	return nil
}

// PutSums stores the sums object of the object at key (write-once) and
// returns its SHA-256, which the manifest records.
func (r *Repo) PutSums(ctx context.Context, key string, s *Sums) (string, error) {
	body := s.Encode()
	sum := sha256.Sum256(body)
	skey := SumsKey(key)
	if err := r.PutBytes(ctx, skey, body, cloud.PutOptions{IfAbsent: true}); err != nil {
		return "", fmt.Errorf("%s: writing %s: %w", r.Store, skey, err)
	}
	return hex.EncodeToString(sum[:]), nil
}

// PutChunked is Put for an object read chunk by chunk: it stores the
// object, then its sums object, and returns what was stored with the sums
// object's SHA-256 (for the manifest). On failure the caller removes both
// keys, key and SumsKey(key).
func (r *Repo) PutChunked(ctx context.Context, key string, src func() (io.ReadCloser, error), opts PutOptions) (Stored, string, error) {
	opts.Chunked = true
	st, err := r.Put(ctx, key, src, opts)
	if err != nil {
		return st, "", err
	}
	sum, err := r.PutSums(ctx, key, st.Sums)
	return st, sum, err
}

// LoadSums reads the sums object of the object at key, which must hash to
// sha256hex (from an authenticated manifest) and describe storedSize
// bytes. It is read whole, and no larger than that takes.
func (r *Repo) LoadSums(ctx context.Context, key, sha256hex string, storedSize int64) (*Sums, error) {
	skey := SumsKey(key)
	want := sumsLen(ChunkSize, storedSize)
	var s *Sums
	err := r.Load(ctx, skey, Want{StoredSHA256: sha256hex, StoredSize: want, MaxSize: want}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		s, err = ParseSums(b, storedSize)
		if err != nil {
			return fmt.Errorf("%w: %s in %s: %w", archive.ErrIntegrity, skey, r.Store, err)
		}
		return nil
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, fmt.Errorf("%w: %s in %s is missing", archive.ErrIntegrity, skey, r.Store)
	}
	return s, err
}
