// Package codec is the object pipeline shared by WAL and backups:
// raw bytes -> compress -> encrypt on the way in, and the reverse, detected
// from the object's own first bytes, on the way out. Objects therefore
// describe themselves: changing compression or turning encryption on never
// strands what was stored before.
package codec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/crypto"
)

// Compression names an algorithm.
type Compression string

// The supported algorithms.
const (
	LZ4  Compression = "lz4"
	Zstd Compression = "zstd"
	None Compression = "none"
)

// MaxZstdWindow is the zstd window NewWriter uses at every level
// (klauspost/compress's default, 8 MiB), and the most a reader accepts: it
// bounds the decoder's memory to about that much.
const MaxZstdWindow = 8 << 20

var (
	lz4Magic  = []byte{0x04, 0x22, 0x4d, 0x18}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// ErrCorrupt marks an object whose bytes do not decode: truncated, altered,
// or not written by walvault.
var ErrCorrupt = errors.New("object is corrupt or truncated")

// ParseCompression checks a --compression value.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case LZ4, Zstd, None:
		return c, nil
	case "":
		return LZ4, nil
	}
	return "", fmt.Errorf("unknown compression %q: use lz4, zstd or none", s)
}

// Settings say how objects are written.
type Settings struct {
	Compression Compression
	Level       int // 0: the algorithm's default; lz4 1-9, zstd 1-22
	Recipients  []age.Recipient
	// Concurrency lets the compressor use several goroutines for one
	// stream; 1 keeps it to one.
	Concurrency int
	// NoFrameChecksum leaves out the lz4 frame's content checksum (an
	// xxHash32 of the plain bytes, about a sixth of lz4's cost) for objects
	// whose content the caller vouches for by its own means (WAL: a signed
	// digest of the encoded stream and a CRC-32C of the plain bytes).
	NoFrameChecksum bool
	// SmallBlocks makes lz4 frames of 64 KiB blocks instead of 1 MiB:
	// lz4's window is 64 KiB, so the larger blocks gain little (WAL
	// stores about 2% bigger), while one goroutine compressing 64 KiB at a
	// time keeps its input, output and hash table in the CPU's cache and
	// touches no new memory (a fifth less CPU per WAL segment than 1 MiB
	// blocks spread over goroutines). Readers take any block size.
	SmallBlocks bool
	// LZ4Block, when not 0, is the lz4 block size in bytes (64 KiB,
	// 256 KiB, 1 MiB or 4 MiB), over SmallBlocks: backup parts use
	// 256 KiB, the unit a delta restore fetches (see repo's block index).
	LZ4Block int
}

// lz4BlockSizes are the block sizes an lz4 frame can declare.
var lz4BlockSizes = map[int]lz4.BlockSize{64 << 10: lz4.Block64Kb, 256 << 10: lz4.Block256Kb, 1 << 20: lz4.Block1Mb, 4 << 20: lz4.Block4Mb}

type multiCloser struct {
	io.Writer
	closers []io.Closer
}

// ReadFrom lets io.Copy hand the compressor its source, which then reads
// straight into its block buffers instead of through a copy.
func (m *multiCloser) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := m.Writer.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{m.Writer}, r)
}

// Close closes the compressor before the encryptor: order matters.
func (m *multiCloser) Close() error {
	var first error
	for _, c := range m.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// NewWriter returns a writer whose input is compressed, encrypted and
// written to dst. Close flushes and finishes both layers (not dst).
func NewWriter(dst io.Writer, s Settings) (io.WriteCloser, error) {
	return NewWriterTap(dst, s, nil)
}

// NewWriterTap is NewWriter that also writes the encoded stream to tap
// (when not nil): the compressed bytes before encryption, or the plain
// bytes with compression none. A hash there identifies the content at an
// eighth of the cost of hashing the plain bytes, and unlike a hash of the
// stored bytes it is the same every time the same content is encoded with
// the same settings, encrypted or not.
func NewWriterTap(dst io.Writer, s Settings, tap io.Writer) (io.WriteCloser, error) {
	out := &multiCloser{Writer: dst}
	if len(s.Recipients) > 0 {
		ew, err := crypto.Encrypt(dst, s.Recipients)
		if err != nil {
			return nil, err
		}
		out.Writer = ew
		out.closers = append(out.closers, ew)
	}
	if tap != nil {
		out.Writer = io.MultiWriter(tap, out.Writer)
	}
	switch s.Compression {
	case LZ4, "":
		zw, err := getLZ4Writer(out.Writer, s)
		if err != nil {
			return nil, err
		}
		out.closers = append([]io.Closer{zw}, out.closers...)
		out.Writer = zw
	case Zstd:
		level := zstd.SpeedDefault
		if s.Level > 0 {
			level = zstd.EncoderLevelFromZstd(s.Level)
		}
		conc := s.Concurrency
		if conc <= 0 {
			conc = 2
		}
		zw, err := zstd.NewWriter(out.Writer, zstd.WithEncoderLevel(level), zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(conc))
		if err != nil {
			return nil, err
		}
		out.closers = append([]io.Closer{zw}, out.closers...)
		out.Writer = zw
	case None:
	default:
		return nil, fmt.Errorf("unknown compression %q", s.Compression)
	}
	return out, nil
}

// lz4Writers keeps lz4 writers (their frame state) for reuse: the agent
// and push-ahead encode one object after another.
var lz4Writers sync.Pool

// pooledLZ4 returns its writer to the pool once closed without error.
type pooledLZ4 struct{ *lz4.Writer }

func (p pooledLZ4) Close() error {
	err := p.Writer.Close()
	if err == nil {
		p.Writer.Reset(nil)
		lz4Writers.Put(p.Writer)
	}
	return err
}

func getLZ4Writer(dst io.Writer, s Settings) (io.WriteCloser, error) {
	zw, _ := lz4Writers.Get().(*lz4.Writer)
	if zw == nil {
		zw = lz4.NewWriter(dst)
	} else {
		zw.Reset(dst)
	}
	// Every option is set each time: a pooled writer keeps its last ones.
	level := lz4.Fast
	if s.Level > 0 {
		level = lz4Level(s.Level)
	}
	conc := s.Concurrency
	if conc == 0 {
		conc = -1 // as many goroutines as GOMAXPROCS
	}
	block := lz4.Block1Mb
	if s.SmallBlocks {
		block = lz4.Block64Kb
	}
	if s.LZ4Block != 0 {
		b, ok := lz4BlockSizes[s.LZ4Block]
		if !ok {
			return nil, fmt.Errorf("lz4 has no block size of %d bytes", s.LZ4Block)
		}
		block = b
	}
	opts := []lz4.Option{lz4.ChecksumOption(!s.NoFrameChecksum), lz4.BlockSizeOption(block),
		lz4.CompressionLevelOption(level), lz4.ConcurrencyOption(conc)}
	if err := zw.Apply(opts...); err != nil {
		return nil, err
	}
	return pooledLZ4{zw}, nil
}

func lz4Level(l int) lz4.CompressionLevel {
	levels := []lz4.CompressionLevel{lz4.Fast, lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4, lz4.Level5, lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9}
	return levels[max(0, min(l, 9))]
}

type reader struct {
	io.Reader
	close func()
	// rest, with a tap, is the encoded stream under the decompressor: it
	// is read to its end, through the tap, before EOF is returned.
	rest io.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err == io.EOF && r.rest != nil {
		if _, derr := io.Copy(io.Discard, r.rest); derr != nil {
			err = derr
		}
		r.rest = nil
	}
	if err != nil && err != io.EOF && !errors.Is(err, ErrCorrupt) && !archive.IsContextErr(err) {
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return n, err
}

func (r *reader) Close() error {
	if r.close != nil {
		r.close()
	}
	return nil
}

// NewReader returns the plaintext of an object read from src, detecting
// encryption and compression from the object's first bytes. Decryption
// needs identities only when the object is encrypted. Errors while reading
// wrap ErrCorrupt (or crypto's errors) so callers can name the object.
func NewReader(src io.Reader, identities []age.Identity) (io.ReadCloser, error) {
	return NewReaderTap(src, identities, nil)
}

// NewReaderTap is NewReader that also writes the encoded stream (what
// NewWriterTap's tap saw: the bytes under the compression, decrypted) to
// tap when not nil, all of it, including anything after the compressed
// frame, by the time the plaintext's EOF is returned.
func NewReaderTap(src io.Reader, identities []age.Identity, tap io.Writer) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(src, 64<<10)
	head, _ := br.Peek(len(crypto.Header))
	var inner io.Reader = br
	encrypted := crypto.IsEncrypted(head)
	if encrypted {
		dr, err := crypto.Decrypt(br, identities)
		if err != nil {
			if errors.Is(err, crypto.ErrNoIdentity) || errors.Is(err, crypto.ErrWrongKey) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		inner = dr
	}
	if tap != nil {
		inner = io.TeeReader(inner, tap)
	}
	if encrypted || tap != nil {
		br = bufio.NewReaderSize(inner, 64<<10)
	}
	head, _ = br.Peek(4)
	var rest io.Reader
	if tap != nil {
		rest = br
	}
	switch {
	case bytes.HasPrefix(head, lz4Magic):
		zr := lz4.NewReader(br)
		return &reader{Reader: zr, rest: rest}, nil
	case bytes.HasPrefix(head, zstdMagic):
		// A frame declaring a larger window than NewWriter's was not
		// written by walvault, and honouring it would let a few bytes of
		// header claim up to 512 MiB: refuse it. The lz4 reader needs no
		// such bound: it holds two buffers of the frame's block size, at
		// most 4 MiB each (8 MiB in a legacy frame).
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxZstdWindow), zstd.WithDecoderMaxMemory(MaxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return &reader{Reader: zr, close: zr.Close, rest: rest}, nil
	}
	return &reader{Reader: br}, nil
}
