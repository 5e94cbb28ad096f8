package wal

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
)

// digest is what identifies a pg_wal file's content in the store. A file
// encoded in memory is stated by its encoded stream (repo.MetaEncodedSHA256,
// an eighth of the bytes of the plain content to hash) and its CRC-32C (a
// hardware instruction); one too big for memory by the SHA-256 of its plain
// bytes (repo.MetaSHA256), as every object was before.
type digest struct {
	size     int64
	crc32c   string // 8 hex digits, always set
	encoded  string // SHA-256 of the encoded stream; "" for the plain form
	plainSHA string // SHA-256 of the plain bytes; set for the plain form
}

// meta is the object metadata stating d (the proof is added by the repo).
func (d digest) meta() map[string]string {
	m := map[string]string{repo.MetaSize: strconv.FormatInt(d.size, 10)}
	if d.encoded != "" {
		m[repo.MetaEncodedSHA256], m[repo.MetaCRC32C] = d.encoded, d.crc32c
	} else {
		m[repo.MetaSHA256] = d.plainSHA
	}
	return m
}

// walCodec is how pg_wal files are encoded in memory: the repo's settings
// without the lz4 frame checksum, which the signed digest and the CRC-32C
// make redundant, in 64 KiB lz4 blocks compressed by one goroutine. The
// CPU a segment costs is what the archiver takes from the database;
// parallelism comes from archiving several files at once (push-ahead, the
// agent's uploads), not from splitting one: a goroutine per 1 MiB block
// cost a fifth more CPU (new memory for every block, a copy through
// channels, caches missed) for a shorter wall time of one file.
func walCodec(s codec.Settings) codec.Settings {
	s.NoFrameChecksum = true
	s.SmallBlocks = true
	s.Concurrency = 1
	return s
}

func newCRC32C() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }

// encodePass is wal-push's one read of a file, run in the background:
// the content's digest and, when it is small enough, its encoded form.
type encodePass struct {
	done    chan struct{}
	digest  digest
	encoded []byte // nil when over encodeInMemoryLimit
	err     error
	buf     *boundedBuffer
}

func startEncodePass(f *os.File, size int64, s codec.Settings) *encodePass {
	p := &encodePass{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.buf = getBuffer()
		p.digest, p.encoded, p.err = hashAndEncode(f, size, s, p.buf)
		if p.encoded == nil {
			p.release()
		}
	}()
	return p
}

// wait returns once the pass is over; its fields are then set. It may be
// called any number of times.
func (p *encodePass) wait() { <-p.done }

// release gives the pass's buffer back once its encoded copy is no longer
// used; encoded is then nil.
func (p *encodePass) release() {
	if p.buf != nil {
		putBuffer(p.buf)
		p.buf, p.encoded = nil, nil
	}
}

// encodeInMemoryLimit bounds the encoded copy hashAndEncode keeps.
const encodeInMemoryLimit = 8 << 20

var errTooBig = errors.New("encoded object over the in-memory limit")

// boundedBuffer holds one encoded object in memory, at most
// encodeInMemoryLimit bytes. It grows by doubling up to that limit and
// never past it, so a reused buffer stays within the limit too.
type boundedBuffer struct{ b []byte }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	n := len(b.b) + len(p)
	if n > encodeInMemoryLimit {
		return 0, errTooBig
	}
	if n > cap(b.b) {
		nb := make([]byte, len(b.b), min(max(2*cap(b.b), n), encodeInMemoryLimit))
		copy(nb, b.b)
		b.b = nb
	}
	b.b = append(b.b, p...)
	return len(p), nil
}

// Reset empties the buffer, keeping its memory, with room for at least
// n bytes (up to the limit).
func (b *boundedBuffer) Reset(n int) {
	b.b = b.b[:0]
	if n = min(n, encodeInMemoryLimit); cap(b.b) < n {
		b.b = make([]byte, 0, n)
	}
}

func (b *boundedBuffer) Bytes() []byte { return b.b }

// Buffers of encoded objects and read chunks are reused: push-ahead and
// the agent encode one file after another. The encoded-object buffers
// (megabytes each) are kept in a small free list rather than a sync.Pool,
// which empties at every other GC: under the agent's memory limit GCs are
// frequent, and each new buffer cost a zeroed allocation and regrowth
// (a third of the agent's CPU in a profile of an S3 drain).
var (
	buffers = make(chan *boundedBuffer, 4)
	chunks  = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
)

func getBuffer() *boundedBuffer {
	select {
	case b := <-buffers:
		return b
	default:
		return new(boundedBuffer)
	}
}

func putBuffer(b *boundedBuffer) {
	select {
	case buffers <- b:
	default: // the list is full: let the GC have it
	}
}

// hashAndEncode reads f once, returning its digest and, when its encoded
// form fits in encodeInMemoryLimit, that form (in buf). A file that does
// not fit, or is not compressed (its encoded form is as big as it is), is
// stated by the SHA-256 of its plain bytes: a second read then hashes it,
// as the upload will encode it again while streaming.
func hashAndEncode(f *os.File, size int64, s codec.Settings, buf *boundedBuffer) (digest, []byte, error) {
	if s.Compression != codec.None && size <= 8*encodeInMemoryLimit {
		d, ok, err := encodeMapped(f, size, walCodec(s), buf)
		if errors.Is(err, errNotMappable) {
			d, ok, err = encodeInMemory(io.NewSectionReader(f, 0, size), size, walCodec(s), buf)
		}
		if err != nil || ok {
			return d, buf.Bytes(), err
		}
	}
	d, err := hashPlain(io.NewSectionReader(f, 0, size), size)
	return d, nil, err
}

// encodeInMemory encodes r into buf, hashing the encoded stream and
// CRC-32C'ing the plain bytes; false when the encoded form outgrew buf.
func encodeInMemory(r io.Reader, size int64, s codec.Settings, buf *boundedBuffer) (digest, bool, error) {
	// Room for a 6:1 ratio up front saves the buffer's copies as it grows.
	buf.Reset(int(size/6 + 64<<10))
	eh, crc := sha256.New(), newCRC32C()
	enc, err := codec.NewWriterTap(buf, s, eh)
	if err != nil {
		return digest{}, false, err
	}
	// The compressor reads the file straight into its blocks (ReadFrom),
	// the CRC-32C taken on the way.
	n, err := io.Copy(enc, io.TeeReader(r, crc))
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errTooBig) {
		return digest{}, false, nil
	}
	if err != nil {
		return digest{}, false, err
	}
	if n != size {
		return digest{}, false, fmt.Errorf("file changed size while read: %d bytes, then %d", size, n)
	}
	return digest{size: n, crc32c: fmt.Sprintf("%08x", crc.Sum32()), encoded: hex.EncodeToString(eh.Sum(nil))}, true, nil
}

// mappedChunk is how much of a mapped file is compressed and then
// CRC-32C'd at a time: one lz4 block, read from the CPU's cache the
// second time. The compressor reads it first: its work hides the wait for
// memory (the page cache is rarely in the CPU's caches), which a CRC-32C
// alone would stall on (it then cost 2.6 ms of a 16 MiB segment instead
// of under 1). mapWindow is how much of it is mapped at a time: mapped
// pages count in the process's RSS, so a whole segment (or the several
// push-ahead encodes at once) would add its size there, while each unmap
// costs the other cores a TLB flush: 2 MiB windows took 5-7% less of
// wal-push's CPU than 1 MiB ones (peak RSS 24.2 MiB against 22.9), 4 MiB
// and whole 16 MiB segments no less again (33.8 MiB at 4 MiB).
const (
	mappedChunk = 64 << 10
	mapWindow   = 2 << 20
)

var errNotMappable = errors.New("file cannot be mapped")

// encodeMapped is encodeInMemory reading f in place: the compressor reads
// the page cache through a map of a window of the file (no copy, as read(2)
// makes: a sixth of what archiving a segment cost), 64 KiB block after
// block, each chunk CRC-32C'd just after. The file is one PostgreSQL no
// longer writes; should it change meanwhile, the CRC-32C and the encoded
// stream disagree and every reader refuses the object, and the agent (by
// the file's size and mtime after the upload) does not count it archived.
// A file cut short under the map faults; that is an error, not a crash.
// errNotMappable: nothing was read, read f instead.
func encodeMapped(f *os.File, size int64, s codec.Settings, buf *boundedBuffer) (digest, bool, error) {
	first, unmapFirst, err := mapFile(f, 0, min(size, mapWindow))
	if err != nil {
		return digest{}, false, fmt.Errorf("%w: %w", errNotMappable, err)
	}
	buf.Reset(int(size/6 + 64<<10))
	eh, crc := sha256.New(), newCRC32C()
	enc, err := codec.NewWriterTap(buf, s, eh)
	if err != nil {
		unmapFirst()
		return digest{}, false, err
	}
	window := func(data []byte) error {
		for off := 0; off < len(data); off += mappedChunk {
			c := data[off:min(off+mappedChunk, len(data))]
			if _, err := enc.Write(c); err != nil {
				return err
			}
			_, _ = crc.Write(c)
		}
		return nil
	}
	err = faultSafe(f.Name(), func() error {
		err := func() error { defer unmapFirst(); return window(first) }()
		for off := int64(mapWindow); err == nil && off < size; off += mapWindow {
			data, unmap, merr := mapFile(f, off, min(size-off, mapWindow))
			if merr != nil {
				return merr
			}
			err = func() error { defer unmap(); return window(data) }()
		}
		return err
	})
	if err == nil {
		err = enc.Close()
	}
	if errors.Is(err, errTooBig) {
		return digest{}, false, nil
	}
	if err != nil {
		return digest{}, false, err
	}
	return digest{size: size, crc32c: fmt.Sprintf("%08x", crc.Sum32()), encoded: hex.EncodeToString(eh.Sum(nil))}, true, nil
}

// hashPlain states r by the SHA-256 (and CRC-32C) of its plain bytes.
func hashPlain(r io.Reader, size int64) (digest, error) {
	h, crc := sha256.New(), newCRC32C()
	chunk := chunks.Get().(*[]byte)
	defer chunks.Put(chunk)
	n, err := io.CopyBuffer(io.MultiWriter(h, crc), r, *chunk)
	if err != nil {
		return digest{}, err
	}
	if n != size {
		return digest{}, fmt.Errorf("file changed size while read: %d bytes, then %d", size, n)
	}
	return digest{size: n, crc32c: fmt.Sprintf("%08x", crc.Sum32()), plainSHA: hex.EncodeToString(h.Sum(nil))}, nil
}
