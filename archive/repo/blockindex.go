package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// A part's block index lets a reader fetch and decode a few pieces of the
// part's tar stream without the rest (delta restore). The part's stored
// bytes are unchanged: an lz4 frame (or, with compression none, the tar
// stream itself), encrypted or not. Its blocks are independent, so each
// decodes alone; the index lists, for every block, its encoded length,
// whether lz4 stored it uncompressed, and the SHA-256 of its encoded
// bytes. Offsets follow from the lengths: block i holds the tar bytes
// from i × block size, and its encoded bytes start first + Σ (length +
// gap) of the blocks before it in the encoded stream (the bytes under the
// encryption). The index is stored beside the part, through the object
// layer like the part (so encrypted when the part is: its digests are of
// the plaintext), written before the manifest, which records the SHA-256
// and size of its stored bytes: a reader checks the index against the
// manifest and every block against the index before decoding it.
//
// The index's plain content is text:
//
//	walvault-blockindex-v1 kind=lz4 block=262144 tar=<tar bytes> encoded=<encoded bytes> first=<offset> gap=<bytes> blocks=<n>
//	<encoded length> <c|u> <sha256 hex>
//	...
//
// kind=none indexes a part stored without compression: every block is its
// tar bytes as they are (u), first=0 gap=0. zstd parts have no index (a
// zstd frame's blocks depend on each other): a delta restore reads them
// whole.

// IndexSuffix names the block index of a part: key + IndexSuffix.
const IndexSuffix = ".index"

// IndexKey is the key of the block index of the part at key.
func IndexKey(key string) string { return key + IndexSuffix }

// IndexBlockSize is the lz4 block size (and the slice of a part stored
// without compression) of an indexed part: what a delta restore fetches
// at least to get one changed byte. lz4's window is 64 KiB, so 256 KiB
// blocks compress about as well as 1 MiB ones.
const IndexBlockSize = 256 << 10

// maxIndexBlock bounds a block's tar and encoded bytes: lz4's largest
// block size.
const maxIndexBlock = 4 << 20

const indexMagic = "walvault-blockindex-v1"

// Index kinds.
const (
	indexLZ4  = "lz4"
	indexNone = "none"
)

// BlockIndex is the index of one part.
type BlockIndex struct {
	Kind        string
	BlockSize   int64 // tar bytes of every block but the last
	TarSize     int64
	EncodedSize int64 // bytes of the encoded stream (under the encryption)
	First       int64 // encoded offset of block 0's bytes
	Gap         int64 // encoded bytes between a block's bytes and the next's
	blocks      []indexBlock
	encOff      []int64
}

type indexBlock struct {
	n   int64 // encoded bytes
	raw bool  // stored as it is (lz4's uncompressed block, or kind none)
	sum [sha256.Size]byte
}

// IndexedBlock is one block of a part, where it lies in the encoded and
// the tar stream.
type IndexedBlock struct {
	EncOff, EncLen int64
	TarOff, TarLen int64
	Raw            bool
	Sum            [sha256.Size]byte
}

// Blocks is the number of blocks.
func (x *BlockIndex) Blocks() int { return len(x.blocks) }

// Block describes block i.
func (x *BlockIndex) Block(i int) IndexedBlock {
	b := x.blocks[i]
	tarOff := int64(i) * x.BlockSize
	return IndexedBlock{EncOff: x.encOff[i], EncLen: b.n, TarOff: tarOff, TarLen: min(x.BlockSize, x.TarSize-tarOff), Raw: b.raw, Sum: b.sum}
}

// BlockAt is the block that holds tar byte off.
func (x *BlockIndex) BlockAt(off int64) int { return int(off / x.BlockSize) }

func (x *BlockIndex) header() string {
	return fmt.Sprintf("%s kind=%s block=%d tar=%d encoded=%d first=%d gap=%d blocks=%d\n", indexMagic, x.Kind, x.BlockSize, x.TarSize, x.EncodedSize, x.First, x.Gap, len(x.blocks))
}

// Encode renders the index.
func (x *BlockIndex) Encode() []byte {
	var b bytes.Buffer
	b.WriteString(x.header())
	for _, k := range x.blocks {
		kind := "c"
		if k.raw {
			kind = "u"
		}
		fmt.Fprintf(&b, "%d %s %x\n", k.n, kind, k.sum)
	}
	return b.Bytes()
}

// maxIndexLen bounds the index of a part of tarSize bytes in blocks of at
// least IndexBlockSize/4 bytes: what a reader allows before reading it.
func maxIndexLen(tarSize int64) int64 {
	return 256 + chunkCount(tarSize, 64<<10)*(8+3+2*sha256.Size+1)
}

// ParseBlockIndex reads an index, which must describe a part of tarSize
// tar bytes: strict, although its digest was checked against the signed
// manifest before (a reader is never more lenient than a writer), and
// every length bounded before it is used.
func ParseBlockIndex(b []byte, tarSize int64) (*BlockIndex, error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return nil, errors.New("no header line")
	}
	fields := strings.Fields(string(b[:nl]))
	if len(fields) != 8 || fields[0] != indexMagic {
		return nil, errors.New("not a walvault block index")
	}
	x := &BlockIndex{}
	vals := map[string]*int64{"block": &x.BlockSize, "tar": &x.TarSize, "encoded": &x.EncodedSize, "first": &x.First, "gap": &x.Gap}
	var n int64
	vals["blocks"] = &n
	for i, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		want := []string{"kind", "block", "tar", "encoded", "first", "gap", "blocks"}[i]
		if !ok || k != want {
			return nil, fmt.Errorf("header field %d is not %s=", i+1, want)
		}
		if k == "kind" {
			x.Kind = v
			continue
		}
		num, err := strconv.ParseInt(v, 10, 64)
		if err != nil || num < 0 || strconv.FormatInt(num, 10) != v {
			return nil, fmt.Errorf("header field %s is not a number", k)
		}
		*vals[k] = num
	}
	switch {
	case x.TarSize != tarSize:
		return nil, fmt.Errorf("it describes %d tar bytes, the part has %d", x.TarSize, tarSize)
	case x.BlockSize < 64<<10 || x.BlockSize > maxIndexBlock || x.BlockSize&(x.BlockSize-1) != 0:
		return nil, fmt.Errorf("block size %d", x.BlockSize)
	case n != chunkCount(tarSize, x.BlockSize):
		return nil, fmt.Errorf("%d blocks of %d bytes for %d tar bytes", n, x.BlockSize, tarSize)
	case x.Kind == indexLZ4 && (x.First < 11 || x.First > 23 || x.Gap != 4 && x.Gap != 8):
		return nil, fmt.Errorf("an lz4 frame whose first block is at %d with %d bytes between blocks", x.First, x.Gap)
	case x.Kind == indexNone && (x.First != 0 || x.Gap != 0 || x.EncodedSize != tarSize):
		return nil, errors.New("an index of an uncompressed part with offsets")
	case x.Kind != indexLZ4 && x.Kind != indexNone:
		return nil, fmt.Errorf("unknown kind %.10q", x.Kind)
	}
	rest := b[nl+1:]
	x.blocks = make([]indexBlock, 0, n)
	x.encOff = make([]int64, 0, n)
	off := x.First
	for i := range n {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("block %d: no line", i)
		}
		f := strings.Fields(string(rest[:nl]))
		rest = rest[nl+1:]
		if len(f) != 3 {
			return nil, fmt.Errorf("block %d: not <length> <c|u> <sha256>", i)
		}
		l, err := strconv.ParseInt(f[0], 10, 64)
		tarLen := min(x.BlockSize, tarSize-i*x.BlockSize)
		if err != nil || strconv.FormatInt(l, 10) != f[0] || l <= 0 || l > maxIndexBlock {
			return nil, fmt.Errorf("block %d: bad length", i)
		}
		k := indexBlock{n: l, raw: f[1] == "u"}
		switch {
		case f[1] != "u" && f[1] != "c":
			return nil, fmt.Errorf("block %d: kind is not c or u", i)
		case k.raw && l != tarLen:
			return nil, fmt.Errorf("block %d: stored as is in %d bytes for %d tar bytes", i, l, tarLen)
		case x.Kind == indexNone && !k.raw:
			return nil, fmt.Errorf("block %d: compressed in an uncompressed part", i)
		}
		if !isHex(f[2], 2*sha256.Size) {
			return nil, fmt.Errorf("block %d: not a SHA-256 in lowercase hex", i)
		}
		_, _ = hex.Decode(k.sum[:], []byte(f[2]))
		if off+l > x.EncodedSize {
			return nil, fmt.Errorf("block %d ends after the %d encoded bytes", i, x.EncodedSize)
		}
		x.blocks = append(x.blocks, k)
		x.encOff = append(x.encOff, off)
		off += l + x.Gap
	}
	if len(rest) != 0 {
		return nil, errors.New("bytes after the last block")
	}
	return x, nil
}

// blockIndexer builds the index of an encoded stream as it is written:
// the codec's tap (the bytes under the encryption). An lz4 frame is
// parsed as it goes (frame header, each block's size word, bytes and
// optional checksum, the end mark and content checksum); anything it
// does not expect makes the stream unindexed (index returns nil), never
// a failed upload.
type blockIndexer struct {
	kind  string
	block int64
	pos   int64 // encoded bytes seen
	bad   bool

	// lz4 frame parsing
	state  int
	head   []byte // frame header or size word being gathered
	left   int64  // bytes of the current block (or block checksum) to go
	bcheck bool   // blocks carry a checksum
	cur    indexBlock
	h      hash.Hash
	first  int64
	gap    int64
	blocks []indexBlock
}

const (
	lzHeader = iota
	lzSize
	lzData
	lzBlockSum
	lzEnd
)

// newBlockIndexer indexes the encoded stream of settings s, or returns
// nil for one it cannot index (zstd).
func newBlockIndexer(s codec.Settings) *blockIndexer {
	switch s.Compression {
	case codec.LZ4, "":
		return &blockIndexer{kind: indexLZ4, block: int64(s.LZ4Block), h: sha256.New()}
	case codec.None:
		return &blockIndexer{kind: indexNone, block: IndexBlockSize, h: sha256.New()}
	}
	return nil
}

func (b *blockIndexer) Write(p []byte) (int, error) {
	n := len(p)
	if b.bad {
		return n, nil
	}
	if b.kind == indexNone {
		b.writeNone(p)
		return n, nil
	}
	for len(p) > 0 && !b.bad {
		p = b.step(p)
	}
	return n, nil
}

// writeNone cuts the plain stream into blocks.
func (b *blockIndexer) writeNone(p []byte) {
	for len(p) > 0 {
		k := min(int64(len(p)), b.block-b.cur.n)
		b.h.Write(p[:k])
		b.cur.n += k
		b.pos += k
		p = p[k:]
		if b.cur.n == b.block {
			b.cutNone()
		}
	}
}

func (b *blockIndexer) cutNone() {
	b.cur.raw = true
	b.h.Sum(b.cur.sum[:0])
	b.blocks = append(b.blocks, b.cur)
	b.cur = indexBlock{}
	b.h.Reset()
}

// step consumes what it can of p in the current state.
func (b *blockIndexer) step(p []byte) []byte {
	switch b.state {
	case lzHeader:
		need := 7
		if len(b.head) >= 5 {
			need = b.headerLen()
		}
		k := min(len(p), need-len(b.head))
		b.head = append(b.head, p[:k]...)
		b.pos += int64(k)
		p = p[k:]
		if len(b.head) >= 5 && len(b.head) == b.headerLen() {
			b.frameHeader()
		}
		return p
	case lzSize:
		k := min(len(p), 4-len(b.head))
		b.head = append(b.head, p[:k]...)
		b.pos += int64(k)
		p = p[k:]
		if len(b.head) == 4 {
			b.sizeWord(binary.LittleEndian.Uint32(b.head))
			b.head = b.head[:0]
		}
		return p
	case lzData:
		k := min(int64(len(p)), b.left)
		b.h.Write(p[:k])
		b.left -= k
		b.pos += k
		p = p[k:]
		if b.left == 0 {
			b.h.Sum(b.cur.sum[:0])
			b.h.Reset()
			b.blocks = append(b.blocks, b.cur)
			b.state, b.left = lzSize, 0
			if b.bcheck {
				b.state, b.left = lzBlockSum, 4
			}
		}
		return p
	case lzBlockSum:
		k := min(int64(len(p)), b.left)
		b.left -= k
		b.pos += k
		if b.left == 0 {
			b.state = lzSize
		}
		return p[k:]
	}
	// lzEnd: the content checksum, or a byte too many (checked at the end).
	b.pos += int64(len(p))
	return nil
}

// headerLen is the frame header's length, from its flag byte.
func (b *blockIndexer) headerLen() int {
	flg := b.head[4]
	n := 7
	if flg&0x08 != 0 {
		n += 8 // content size
	}
	if flg&0x01 != 0 {
		n += 4 // dictionary id
	}
	return n
}

// lz4BlockSizes are the BD byte's block size codes.
var lz4BlockCodes = map[byte]int64{4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}

func (b *blockIndexer) frameHeader() {
	h := b.head
	flg, bd := h[4], h[5]
	size, ok := lz4BlockCodes[bd>>4&7]
	if binary.LittleEndian.Uint32(h) != 0x184D2204 || flg>>6 != 1 || flg&0x20 == 0 || !ok || b.block != 0 && size != b.block {
		b.bad = true // not the frame expected, or linked blocks
		return
	}
	b.block = size
	b.bcheck = flg&0x10 != 0
	b.first = int64(len(h)) + 4
	b.gap = 4
	if b.bcheck {
		b.gap = 8
	}
	b.head = b.head[:0]
	b.state = lzSize
}

func (b *blockIndexer) sizeWord(w uint32) {
	if w == 0 {
		b.state = lzEnd
		return
	}
	b.cur = indexBlock{n: int64(w & 0x7fffffff), raw: w&0x80000000 != 0}
	if b.cur.n > b.block {
		b.bad = true
		return
	}
	b.left = b.cur.n
	b.state = lzData
}

// index ends the stream, of tarSize tar bytes and encodedSize encoded
// bytes: nil when it could not be indexed.
func (b *blockIndexer) index(tarSize int64) *BlockIndex {
	if b.kind == indexNone && b.cur.n > 0 {
		b.cutNone()
	}
	if b.bad || b.kind == indexLZ4 && b.state != lzEnd || int64(len(b.blocks)) != chunkCount(tarSize, max(b.block, 1)) {
		return nil
	}
	x := &BlockIndex{Kind: b.kind, BlockSize: b.block, TarSize: tarSize, EncodedSize: b.pos, First: b.first, Gap: b.gap, blocks: b.blocks}
	// Every block but the last holds BlockSize tar bytes; one stored as
	// it is says so by its length.
	for i, k := range x.blocks {
		if k.raw && k.n != min(x.BlockSize, tarSize-int64(i)*x.BlockSize) {
			return nil
		}
	}
	// Round trip: what a reader will parse.
	y, err := ParseBlockIndex(x.Encode(), tarSize)
	if err != nil {
		return nil
	}
	return y
}

// PutBlockIndex stores the index of the part at key through the object
// layer (encrypted when the repo encrypts) and returns the SHA-256 and
// size of its stored bytes, which the manifest records.
func (r *Repo) PutBlockIndex(ctx context.Context, key string, x *BlockIndex) (string, int64, error) {
	body := x.Encode()
	st, err := r.Put(ctx, IndexKey(key), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		PutOptions{PutOptions: cloud.PutOptions{IfAbsent: true, SizeHint: int64(len(body))}, Concurrency: 1})
	if err != nil {
		return "", 0, fmt.Errorf("%s: writing %s: %w", r.Store, IndexKey(key), err)
	}
	return st.SHA256, st.StoredSize, nil
}

// LoadBlockIndex reads part p's block index (p from an authenticated
// manifest of a backup whose parts must be encrypted when encrypted is
// set): its stored bytes must hash to what the manifest records, then it
// is decoded, bounded, and parsed.
func (r *Repo) LoadBlockIndex(ctx context.Context, key string, p Part, encrypted bool) (*BlockIndex, error) {
	ikey := IndexKey(key)
	var x *BlockIndex
	want := Want{StoredSHA256: p.Index, StoredSize: p.IndexSize, MaxSize: maxIndexLen(p.Size), Encrypted: encrypted}
	err := r.Load(ctx, ikey, want, func(rd io.Reader, _ cloud.ObjectInfo) error {
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if x, err = ParseBlockIndex(b, p.Size); err != nil {
			return fmt.Errorf("%w: %s in %s: %w", archive.ErrIntegrity, ikey, r.Store, err)
		}
		return nil
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, fmt.Errorf("%w: %s in %s is missing", archive.ErrIntegrity, ikey, r.Store)
	}
	return x, err
}
