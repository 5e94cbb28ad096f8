package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"filippo.io/age"
	"github.com/pierrec/lz4/v4"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// This file reads pieces of a part's tar stream through its block index
// (blockindex.go), with range reads of the stored object: a delta restore
// fetches only the blocks that hold what it must write. Every block's
// encoded bytes are checked against their SHA-256 in the index (which the
// signed manifest proves) before they are decoded, and decode to exactly
// the tar bytes the index says; nothing else of the part is used.

// maxSpan bounds the encoded bytes one range read fetches (and holds):
// adjacent blocks are fetched together up to that much.
const maxSpan = 8 << 20

// mergeGap is how many encoded bytes of blocks nobody asked for a range
// read takes in rather than making two requests.
const mergeGap = 64 << 10

// PartRanges reads tar ranges of one part. It is not safe for concurrent
// use.
type PartRanges struct {
	r     *Repo
	key   string
	where string
	p     Part
	x     *BlockIndex
	src   io.ReaderAt // the encoded stream
	cache *rangeCache // under src when the part is encrypted (nil otherwise)
	// Fetched counts the stored bytes fetched: the index, then every range.
	fetched *atomic.Int64
	dec     []byte
}

// TarRange is a piece of a part's tar stream to read, and where its bytes
// go: Sink is called with them in order, possibly in several calls, each
// with the tar offset of its first byte.
type TarRange struct {
	Off, N int64
	Sink   func(off int64, b []byte) error
}

// OpenPartRanges prepares range reads of part idx of backup m (a proven
// manifest): it loads and checks the part's block index, and for an
// encrypted part reads the age header with the repo's identities.
// fetched counts the stored bytes read.
func (r *Repo) OpenPartRanges(ctx context.Context, m *Manifest, idx int, fetched *atomic.Int64) (*PartRanges, error) {
	p := m.Parts[idx]
	key := BackupKey(m.Name, p.Name)
	if p.Index == "" {
		return nil, fmt.Errorf("%s has no block index", key)
	}
	must := PartsMustBeEncrypted(r, m)
	x, err := r.LoadBlockIndex(ctx, key, p, must)
	if err != nil {
		return nil, err
	}
	fetched.Add(p.IndexSize)
	pr := &PartRanges{r: r, key: key, where: fmt.Sprintf("%s in %s", key, r.Store), p: p, x: x, fetched: fetched}
	cache := &rangeCache{ctx: ctx, st: r.Store, key: key, size: p.StoredSize, fetched: fetched}
	head := make([]byte, min(int64(len(crypto.Header)), p.StoredSize))
	n, err := readRange(ctx, r.Store, key, 0, head, fetched)
	if err != nil && err != io.EOF {
		return nil, pr.fail(err)
	}
	head = head[:n]
	if !crypto.IsEncrypted(head) {
		if must && len(r.Identities) > 0 && !r.AllowUnencrypted {
			return nil, fmt.Errorf("%w: %s is not encrypted, but its backup is: someone else wrote it", archive.ErrIntegrity, pr.where)
		}
		if x.EncodedSize != p.StoredSize {
			return nil, fmt.Errorf("%w: %s: its block index describes %d encoded bytes, the part stores %d", archive.ErrIntegrity, pr.where, x.EncodedSize, p.StoredSize)
		}
		pr.src = directReader{ctx: ctx, st: r.Store, key: key, size: p.StoredSize, fetched: fetched}
		return pr, nil
	}
	if len(r.Identities) == 0 {
		return nil, fmt.Errorf("%s: %w", pr.where, crypto.ErrNoIdentity)
	}
	ar, plain, err := age.DecryptReaderAt(cache, p.StoredSize, r.Identities...)
	if err != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) {
			return nil, fmt.Errorf("%s: %w", pr.where, crypto.ErrWrongKey)
		}
		return nil, pr.fail(fmt.Errorf("%w: %w", archive.ErrIntegrity, err))
	}
	if plain != x.EncodedSize {
		return nil, fmt.Errorf("%w: %s: its block index describes %d encoded bytes, the part decrypts to %d", archive.ErrIntegrity, pr.where, x.EncodedSize, plain)
	}
	cache.drop()
	pr.src, pr.cache = ar, cache
	return pr, nil
}

// fail names the part in an error of its reading.
func (pr *PartRanges) fail(err error) error {
	if errors.Is(err, cloud.ErrNotFound) {
		return fmt.Errorf("%w: %s is missing", archive.ErrIntegrity, pr.where)
	}
	if errors.Is(err, archive.ErrIntegrity) || archive.IsContextErr(err) || errors.Is(err, archive.ErrStore) {
		return fmt.Errorf("%s: %w", pr.where, err)
	}
	return archive.StoreErr(fmt.Errorf("%s: reading %s: %w", pr.r.Store, pr.key, err))
}

// run is a stretch of adjacent blocks fetched in one read.
type run struct{ first, last int }

// Read fetches the blocks that hold ranges (tar offsets within the part,
// not overlapping) and hands each range's bytes to its sink, in tar
// order.
func (pr *PartRanges) Read(ctx context.Context, ranges []TarRange) error {
	rs := make([]TarRange, 0, len(ranges))
	for _, t := range ranges {
		if t.N < 0 || t.Off < 0 || t.Off > pr.x.TarSize-t.N {
			return fmt.Errorf("%w: %s: bytes %d to %d are not in its %d tar bytes", archive.ErrIntegrity, pr.where, t.Off, t.Off+t.N, pr.x.TarSize)
		}
		if t.N > 0 {
			rs = append(rs, t)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Off < rs[j].Off })
	var runs []run
	for _, t := range rs {
		a, b := pr.x.BlockAt(t.Off), pr.x.BlockAt(t.Off+t.N-1)
		if n := len(runs); n > 0 && a <= runs[n-1].last {
			a = runs[n-1].last + 1
			if b < a {
				continue
			}
		}
		for i := a; i <= b; i++ {
			runs = pr.extend(runs, i)
		}
	}
	next := 0 // the first range not yet handed on in full
	for _, rn := range runs {
		var err error
		if next, err = pr.readRun(ctx, rn, rs, next); err != nil {
			return err
		}
	}
	return nil
}

// extend adds block i to the last run, when it is near enough and the run
// stays within maxSpan, or starts a new run.
func (pr *PartRanges) extend(runs []run, i int) []run {
	if n := len(runs); n > 0 {
		last := runs[n-1]
		b, l, f := pr.x.Block(i), pr.x.Block(last.last), pr.x.Block(last.first)
		if gap := b.EncOff - (l.EncOff + l.EncLen); gap <= mergeGap && b.EncOff+b.EncLen-f.EncOff <= maxSpan {
			runs[n-1].last = i
			return runs
		}
	}
	return append(runs, run{i, i})
}

// readRun fetches one run and hands on the bytes of the ranges from
// rs[next] on that its blocks hold; it returns the first range not done.
func (pr *PartRanges) readRun(ctx context.Context, rn run, rs []TarRange, next int) (int, error) {
	first, last := pr.x.Block(rn.first), pr.x.Block(rn.last)
	start, end := first.EncOff, last.EncOff+last.EncLen
	if pr.cache != nil {
		if err := pr.cache.prefetch(start, end, pr.x.EncodedSize); err != nil {
			return next, pr.fail(err)
		}
		defer pr.cache.drop()
	}
	span := make([]byte, end-start)
	if n, err := pr.src.ReadAt(span, start); err != nil && !(err == io.EOF && n == len(span)) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: it ends before byte %d its block index names", archive.ErrIntegrity, end)
		} else if pr.cache != nil && !errors.Is(err, cloud.ErrNotFound) && !archive.IsContextErr(err) && !errors.Is(err, archive.ErrStore) {
			err = fmt.Errorf("%w: %w", archive.ErrIntegrity, err) // age's authentication
		}
		return next, pr.fail(err)
	}
	for i := rn.first; i <= rn.last; i++ {
		b := pr.x.Block(i)
		for next < len(rs) && rs[next].Off+rs[next].N <= b.TarOff {
			next++
		}
		if next == len(rs) || rs[next].Off >= b.TarOff+b.TarLen {
			continue // fetched with its neighbours, not needed
		}
		tar, err := pr.decode(i, b, span[b.EncOff-start:b.EncOff-start+b.EncLen])
		if err != nil {
			return next, err
		}
		for k := next; k < len(rs) && rs[k].Off < b.TarOff+b.TarLen; k++ {
			lo, hi := max(rs[k].Off, b.TarOff), min(rs[k].Off+rs[k].N, b.TarOff+b.TarLen)
			if lo >= hi {
				continue
			}
			if err := rs[k].Sink(lo, tar[lo-b.TarOff:hi-b.TarOff]); err != nil {
				return next, err
			}
		}
	}
	return next, nil
}

// decode checks block i's encoded bytes against the index and decodes
// them to its tar bytes.
func (pr *PartRanges) decode(i int, b IndexedBlock, enc []byte) ([]byte, error) {
	if sha256.Sum256(enc) != b.Sum {
		return nil, fmt.Errorf("%w: %s: block %d (encoded bytes %d to %d) does not match its SHA-256 in the block index: the stored part is damaged or was replaced", archive.ErrIntegrity, pr.where, i, b.EncOff, b.EncOff+b.EncLen)
	}
	if b.Raw {
		return enc, nil
	}
	if int64(cap(pr.dec)) < b.TarLen {
		pr.dec = make([]byte, pr.x.BlockSize)
	}
	out := pr.dec[:b.TarLen]
	n, err := lz4.UncompressBlock(enc, out)
	if err != nil || int64(n) != b.TarLen {
		return nil, fmt.Errorf("%w: %s: block %d does not decode to its %d tar bytes", archive.ErrIntegrity, pr.where, i, b.TarLen)
	}
	return out, nil
}

// directReader reads an unencrypted part with range reads.
type directReader struct {
	ctx     context.Context
	st      cloud.Store
	key     string
	size    int64
	fetched *atomic.Int64
}

func (d directReader) ReadAt(p []byte, off int64) (int, error) {
	return readRange(d.ctx, d.st, d.key, off, p, d.fetched)
}

// readRange fills p with the stored bytes at off (io.EOF when the object
// ends first).
func readRange(ctx context.Context, st cloud.Store, key string, off int64, p []byte, fetched *atomic.Int64) (int, error) {
	rc, err := st.GetRange(ctx, key, off, int64(len(p)))
	if err != nil {
		return 0, storeErr(err)
	}
	defer func() { _ = rc.Close() }()
	n, err := io.ReadFull(rc, p)
	fetched.Add(int64(n))
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF && len(p) > 0 {
		return n, io.EOF
	}
	return n, storeErr(err)
}

// storeErr tags a failure of the store as archive.ErrStore (not a missing
// object, nor a cancellation).
func storeErr(err error) error {
	if err == nil || errors.Is(err, cloud.ErrNotFound) || archive.IsContextErr(err) {
		return err
	}
	return archive.StoreErr(err)
}

// rangeCache is the ciphertext of an encrypted part as age's ReaderAt
// reads it: spans fetched by range reads (a whole run's chunks at once,
// prefetch), held until dropped; a read no span covers fetches at least
// 8 KiB from there (age reads its header 4 KiB at a time).
type rangeCache struct {
	ctx     context.Context
	st      cloud.Store
	key     string
	size    int64
	fetched *atomic.Int64
	mu      sync.Mutex
	spans   []cspan
}

type cspan struct {
	off int64
	b   []byte
}

const minFetch = 8 << 10

func (c *rangeCache) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off >= c.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), c.size)
	for _, s := range c.spans {
		if s.off <= off && end <= s.off+int64(len(s.b)) {
			n := copy(p, s.b[off-s.off:end-s.off])
			if n < len(p) {
				return n, io.EOF
			}
			return n, nil
		}
	}
	if err := c.load(off, min(max(end, off+minFetch), c.size)); err != nil {
		return 0, err
	}
	s := c.spans[len(c.spans)-1]
	n := copy(p, s.b[off-s.off:end-s.off])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// load fetches [off, end) into a span; the spans held stay within
// 2 × maxSpan (the older ones go).
func (c *rangeCache) load(off, end int64) error {
	b := make([]byte, end-off)
	n, err := readRange(c.ctx, c.st, c.key, off, b, c.fetched)
	if err != nil && !(err == io.EOF && n == len(b)) {
		if err == io.EOF {
			return fmt.Errorf("%w: the stored object ends before byte %d", archive.ErrIntegrity, end)
		}
		return err
	}
	var held int64
	for _, s := range c.spans {
		held += int64(len(s.b))
	}
	if held+int64(len(b)) > 2*maxSpan {
		c.spans = nil
	}
	c.spans = append(c.spans, cspan{off, b})
	return nil
}

// age's STREAM: the payload after the header is a 16-byte nonce, then
// chunks of 64 KiB of plaintext and a 16-byte tag each (the last shorter).
const (
	ageChunk = 64 << 10
	ageTag   = 16
)

// prefetch fetches, in one read, the ciphertext of the chunks that hold
// plaintext bytes [start, end) of a stream of plain bytes.
func (c *rangeCache) prefetch(start, end, plain int64) error {
	chunks := max(1, (plain+ageChunk-1)/ageChunk)
	base := c.size - (plain + chunks*ageTag) // the first chunk's offset
	lo := base + (start/ageChunk)*(ageChunk+ageTag)
	hi := min(base+((end-1)/ageChunk+1)*(ageChunk+ageTag), c.size)
	if base < 0 || lo >= hi {
		return fmt.Errorf("%w: %d stored bytes cannot hold %d encrypted bytes", archive.ErrIntegrity, c.size, plain)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.load(lo, hi)
}

// drop forgets the spans.
func (c *rangeCache) drop() {
	c.mu.Lock()
	c.spans = nil
	c.mu.Unlock()
}
