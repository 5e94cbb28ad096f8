package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// This file is the object layer: every object walvault stores goes in
// through Put (or PutBytes, already encoded) and comes out through Load.

// PutOptions shape one stored object.
type PutOptions struct {
	cloud.PutOptions
	// Concurrency, when > 0, sets the compressor's goroutines for this
	// object (the repo's codec setting otherwise).
	Concurrency int
	// OnStored is told the bytes sent to the store as they go (progress).
	OnStored func(n int64)
	// Chunked makes Put sum the stored bytes chunk by chunk (Stored.Sums),
	// for an object a reader authenticates as it streams (see sums.go).
	Chunked bool
	// Indexed makes Put index the encoded stream block by block
	// (Stored.Index, see blockindex.go): lz4 in IndexBlockSize blocks, or
	// no compression; a zstd object is not indexed.
	Indexed bool
}

// Stored describes an object as Put stored it.
type Stored struct {
	Size       int64  // plain bytes read from the source
	StoredSize int64  // bytes of the stored object
	SHA256     string // hex SHA-256 of the stored object
	// Sums is the stored object's digest list, with PutOptions.Chunked.
	Sums *Sums
	// Index is the encoded stream's block index, with PutOptions.Indexed
	// (nil when it could not be indexed).
	Index *BlockIndex
}

// Put streams the content src opens through compression and encryption
// into key and returns what was stored once it is durable. When the
// store's retry decorator starts the upload over, the reader of the
// attempt is closed and src called again: it must give the same content.
// A failure to read the source is returned as it is (it is the cause);
// the store's failures are tagged archive.ErrStore.
func (r *Repo) Put(ctx context.Context, key string, src func() (io.ReadCloser, error), opts PutOptions) (Stored, error) {
	s := r.Codec
	if opts.Concurrency > 0 {
		s.Concurrency = opts.Concurrency
	}
	if opts.Indexed && (s.Compression == codec.LZ4 || s.Compression == "") {
		s.LZ4Block = IndexBlockSize
	}
	var err error
	if opts.Metadata, err = r.withProof(key, opts.Metadata); err != nil {
		return Stored{}, err
	}
	enc := &encoder{src: src, settings: s, onStored: opts.OnStored, h: sha256.New()}
	if opts.Chunked {
		enc.chunks = newChunkSummer()
	}
	enc.indexed = opts.Indexed
	if err := enc.start(); err != nil {
		return Stored{}, err
	}
	err = r.Store.Put(ctx, key, enc, opts.PutOptions)
	if serr := enc.stop(); serr != nil {
		return Stored{}, serr
	}
	if err != nil {
		return Stored{}, archive.StoreErr(err)
	}
	st := Stored{Size: enc.raw.n, StoredSize: enc.n, SHA256: hex.EncodeToString(enc.h.Sum(nil))}
	if enc.chunks != nil {
		st.Sums = enc.chunks.sums()
	}
	if enc.index != nil {
		st.Index = enc.index.index(st.Size)
	}
	return st, nil
}

// PutBytes stores an object already encoded (or plain JSON) in memory.
// Like Put, it signs the object when its metadata states the content's
// digest and size and the repo has a signing key.
func (r *Repo) PutBytes(ctx context.Context, key string, body []byte, opts cloud.PutOptions) error {
	// The body's size is known exactly; a caller's hint (the plain size of
	// what was encoded) would make a store reserve memory for that much.
	opts.SizeHint = int64(len(body))
	var err error
	if opts.Metadata, err = r.withProof(key, opts.Metadata); err != nil {
		return err
	}
	return archive.StoreErr(r.Store.Put(ctx, key, cloud.Bytes(body), opts))
}

// Proven is meta with the proof of key added, as PutBytes stores it (the
// signature is deterministic: the same as the stored one).
func (r *Repo) Proven(key string, meta map[string]string) (map[string]string, error) {
	return r.withProof(key, meta)
}

// withProof returns meta with the object's proof added when meta states a
// content digest (a copy: the caller's map is not changed).
func (r *Repo) withProof(key string, meta map[string]string) (map[string]string, error) {
	if !hasDigest(meta) || r.Sign == nil {
		return meta, nil
	}
	out := make(map[string]string, len(meta)+2)
	for k, v := range meta {
		out[k] = v
	}
	return out, r.prove(key, out)
}

// errUploadEnded stops an encoder whose upload is over.
var errUploadEnded = errors.New("upload ended")

// encoder is a Put body: the source read through the codec, the stored
// bytes hashed and counted. Rewind starts it over from a new source.
type encoder struct {
	src      func() (io.ReadCloser, error)
	settings codec.Settings
	onStored func(int64)

	h      hash.Hash    // of the stored bytes
	chunks *chunkSummer // of the stored bytes, chunk by chunk (nil: not asked)
	// indexed: index is the encoded stream's indexer, anew each attempt.
	indexed bool
	index   *blockIndexer
	n       int64 // stored bytes
	pr      *io.PipeReader
	raw     *sourceReader
	done    chan struct{}
	// srcErr is the source's own failure, kept once an attempt stopped on
	// it (a Rewind may have stopped it before Put's last stop).
	srcErr error
}

// sourceReader records the source's own read error, so it is not taken
// for the upload's.
type sourceReader struct {
	rc  io.ReadCloser
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

func (e *encoder) start() error {
	rc, err := e.src()
	if err != nil {
		return err
	}
	e.h.Reset()
	if e.chunks != nil {
		e.chunks = newChunkSummer()
	}
	e.n = 0
	var tap io.Writer
	if e.indexed {
		if e.index = newBlockIndexer(e.settings); e.index != nil {
			tap = e.index
		}
	}
	e.raw = &sourceReader{rc: rc}
	pr, pw := io.Pipe()
	e.pr, e.done = pr, make(chan struct{})
	go func() {
		defer close(e.done)
		w, err := codec.NewWriterTap(pw, e.settings, tap)
		if err == nil {
			_, err = io.Copy(w, e.raw)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	return nil
}

func (e *encoder) Read(p []byte) (int, error) {
	n, err := e.pr.Read(p)
	if n > 0 {
		e.h.Write(p[:n])
		if e.chunks != nil {
			_, _ = e.chunks.Write(p[:n])
		}
		e.n += int64(n)
		if e.onStored != nil {
			e.onStored(int64(n))
		}
	}
	return n, err
}

// stop ends the attempt: the encoder goroutine is unblocked and waited
// for, the source closed. It returns the source's own error, if any.
func (e *encoder) stop() error {
	if e.pr == nil {
		return e.srcErr
	}
	_ = e.pr.CloseWithError(errUploadEnded)
	<-e.done
	cerr := e.raw.rc.Close()
	e.pr = nil
	switch {
	case e.raw.err != nil:
		e.srcErr = e.raw.err
	case cerr != nil && !errors.Is(cerr, errUploadEnded):
		e.srcErr = cerr
	}
	return e.srcErr
}

// Rewind implements cloud.Body.
func (e *encoder) Rewind() error {
	if err := e.stop(); err != nil {
		return err
	}
	return e.start()
}

// Want is what a reader knows an object must be; Load checks it.
type Want struct {
	// StoredSHA256 and StoredSize, when StoredSHA256 is set, are what the
	// stored bytes must hash to and count (a backup part, from its
	// manifest).
	StoredSHA256 string
	StoredSize   int64
	// Sums, when set, authenticates the stored bytes chunk by chunk before
	// the decoder sees them (a backup part, a dump: from the sums object
	// their manifest proves). It covers the whole object, so StoredSHA256
	// is not needed beside it.
	Sums *Sums
	// ContentFromMeta: the decoded content must have the SHA-256 the
	// object's walvault-sha256 metadata records, which must be there (WAL).
	ContentFromMeta bool
	// Proof: the object must carry a valid proof (signature over its key,
	// content SHA-256 and size) unless the repo allows unsigned objects;
	// implies ContentFromMeta.
	Proof bool
	// Encrypted: a data object, which must be age-encrypted when the repo
	// has identities (unless it allows unencrypted objects).
	Encrypted bool
	// MaxSize bounds the decoded content (0: no bound): a decompression
	// bomb stops there.
	MaxSize int64
}

// Load reads key, decodes it, and hands the plain content to fn. The
// content is checked as it streams: when fn reads to the end, a digest
// that does not match what want says surfaces as an ErrIntegrity read
// error instead of io.EOF; when want has a digest to check, what fn leaves
// unread is read and checked after it returns. A connection that breaks while fn reads is retried from the
// start (fn is called anew). A missing object is archive.ErrNotInArchive;
// the store's failures are tagged archive.ErrStore; an object that does
// not decode is archive.ErrIntegrity (or codec.ErrCorrupt while opening);
// a missing or wrong key is crypto's error.
//
// Read through a store with fallbacks (cloud.WithFallback), an object the
// primary holds damaged (it fails its checks) is read again, with the same
// checks, from each fallback in turn; fn is called anew, as for a broken
// connection.
func (r *Repo) Load(ctx context.Context, key string, want Want, fn func(rd io.Reader, info cloud.ObjectInfo) error) error {
	err := r.loadFrom(ctx, r.Store, key, want, fn)
	if !IsDamage(err) {
		return err
	}
	others, note := cloud.FallbackStores(r.Store)
	for _, o := range others {
		if oerr := r.loadFrom(ctx, o, key, want, fn); oerr == nil {
			note(key, o, err)
			return nil
		}
	}
	return err
}

func (r *Repo) loadFrom(ctx context.Context, st cloud.Store, key string, want Want, fn func(rd io.Reader, info cloud.ObjectInfo) error) error {
	where := fmt.Sprintf("%s in %s", key, st)
	err := st.Load(ctx, key, func(body io.Reader, info cloud.ObjectInfo) error {
		return r.read(key, body, info, want, where, fn)
	})
	return r.loadError(key, where, err)
}

// IsDamage says whether err is an object's own fault: it fails its checks
// (a digest, its proof, its decoding).
func IsDamage(err error) bool {
	return err != nil && (errors.Is(err, archive.ErrIntegrity) || errors.Is(err, crypto.ErrBadProof) || errors.Is(err, codec.ErrCorrupt))
}

// read decodes and checks one object's stored bytes, body, and hands the
// content to fn: Load's work once the object is open.
func (r *Repo) read(key string, body io.Reader, info cloud.ObjectInfo, want Want, where string, fn func(rd io.Reader, info cloud.ObjectInfo) error) error {
	vr, err := r.open(key, body, info, want, where)
	if err == nil {
		defer vr.close()
		if err = fn(vr, info); err == nil && (want.StoredSHA256 != "" || want.Sums != nil || vr.plain != nil || vr.encoded != nil) {
			_, err = io.Copy(io.Discard, vr)
		}
	}
	if err != nil {
		return readError{err}
	}
	return nil
}

// loadError maps what a Store.Load around read returned to Load's errors.
func (r *Repo) loadError(key, where string, err error) error {
	var re readError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return re.err
	case errors.Is(err, cloud.ErrNotFound):
		return fmt.Errorf("%s: %w", where, archive.ErrNotInArchive)
	case errors.Is(err, cloud.ErrInterrupted):
		return archive.StoreErr(err)
	case archive.IsContextErr(err):
		return err
	}
	return archive.StoreErr(fmt.Errorf("%s: reading %s: %w", r.Store, key, err))
}

// readError is an error of Load's reading (the object's or fn's), told
// apart from the store's failing to open it.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

func isKeyErr(err error) bool {
	return errors.Is(err, crypto.ErrNoIdentity) || errors.Is(err, crypto.ErrWrongKey)
}

// IsKeyErr reports that decryption needs an identity that is missing or
// wrong.
func IsKeyErr(err error) bool { return isKeyErr(err) }

// verifiedReader is the decoded content of one object, checked at its end.
type verifiedReader struct {
	dec    io.ReadCloser
	stored *countHash // the stored bytes, as read
	plain  hash.Hash  // the decoded bytes, when checked (MetaSHA256)
	// encoded and crc check an object stated by MetaEncodedSHA256: the
	// encoded stream's SHA-256 (fed by the codec's tap) and the decoded
	// bytes' CRC-32C, against meta and crcMeta.
	encoded hash.Hash
	crc     hash.Hash
	crcMeta string
	n       int64
	want    Want
	meta    string // the content digest the metadata records
	where   string
	err     error // sticky
	// limit caps the decoded bytes (0: none); exact, when >= 0, is the
	// size the proof vouches for.
	limit, exact int64
}

type countHash struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	head []byte // the first bytes, to tell an encrypted object
}

func (c *countHash) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && c.h != nil {
		c.h.Write(p[:n])
	}
	if len(c.head) < len(crypto.Header) {
		c.head = append(c.head, p[:min(n, len(crypto.Header)-len(c.head))]...)
	}
	c.n += int64(n)
	return n, err
}

func (r *Repo) open(key string, body io.Reader, info cloud.ObjectInfo, want Want, where string) (*verifiedReader, error) {
	var chunks *chunkReader
	if want.Sums != nil {
		chunks = newChunkReader(body, want.Sums, where)
		body = chunks
	}
	v := &verifiedReader{want: want, where: where, stored: &countHash{r: body}, limit: want.MaxSize, exact: -1}
	if want.StoredSHA256 != "" {
		v.stored.h = sha256.New()
	}
	checkContent := want.ContentFromMeta
	if want.Proof {
		size, err := r.checkProof(key, info.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if size >= 0 && (v.limit <= 0 || size < v.limit) {
			v.limit = size
		}
		if !r.AllowUnsigned {
			v.exact = size
		}
		checkContent = checkContent || hasDigest(info.Metadata)
	}
	var tap io.Writer
	if checkContent {
		switch m := info.Metadata; {
		case m[MetaEncodedSHA256] != "":
			// The encoded stream is hashed as it is decoded, the plain
			// bytes CRC-32C'ed; the proof (when required) signed both.
			v.meta, v.crcMeta = m[MetaEncodedSHA256], m[MetaCRC32C]
			v.encoded, v.crc = sha256.New(), crc32.New(crc32.MakeTable(crc32.Castagnoli))
			tap = v.encoded
		case m[MetaSHA256] != "":
			v.meta = m[MetaSHA256]
			v.plain = sha256.New()
		default:
			// Every object walvault writes has one; without it nothing can
			// vouch for the content (a damaged frame header reads as raw data).
			return nil, fmt.Errorf("%w: %s has no %s metadata: it was not written by walvault or its metadata was lost in a copy", archive.ErrIntegrity, where, MetaSHA256)
		}
	}
	dec, err := codec.NewReaderTap(v.stored, r.Identities, tap)
	if chunks != nil && chunks.err != nil && chunks.err != io.EOF {
		// The first chunk failed its digest: that, not what a decoder
		// made of no bytes, is what is wrong.
		if err == nil {
			_ = dec.Close()
		}
		return nil, chunks.err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	v.dec = dec
	if want.Encrypted && len(r.Identities) > 0 && !r.AllowUnencrypted && !crypto.IsEncrypted(v.stored.head) {
		_ = dec.Close()
		return nil, fmt.Errorf("%w: %s is not encrypted, but an identity is configured: walvault encrypts every object when a recipient is set, so someone else wrote it; if the archive really was written without encryption, read it with --allow-unencrypted", archive.ErrIntegrity, where)
	}
	return v, nil
}

func (v *verifiedReader) close() { _ = v.dec.Close() }

func (v *verifiedReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.limit > 0 && int64(len(p)) > v.limit-v.n+1 {
		p = p[:v.limit-v.n+1] // one byte past the cap tells a bomb
	}
	n, err := v.dec.Read(p)
	if n > 0 && v.plain != nil {
		v.plain.Write(p[:n])
	}
	if n > 0 && v.crc != nil {
		v.crc.Write(p[:n])
	}
	v.n += int64(n)
	if v.limit > 0 && v.n > v.limit {
		v.err = fmt.Errorf("%w: %s decodes to more than %d bytes, the most it may hold: refusing it", archive.ErrIntegrity, v.where, v.limit)
		return n - int(v.n-v.limit), v.err
	}
	switch {
	case err == io.EOF:
		if cerr := v.check(); cerr != nil {
			v.err = cerr
			return n, cerr
		}
	case err != nil && errors.Is(err, codec.ErrCorrupt):
		v.err = fmt.Errorf("%w: %s does not decode: %w", archive.ErrIntegrity, v.where, err)
		return n, v.err
	}
	return n, err
}

// check runs at the end of the content: the stored object is read to its
// end (so its digest covers all of it), then compared with what is wanted.
func (v *verifiedReader) check() error {
	if v.exact >= 0 && v.n != v.exact {
		return fmt.Errorf("%w: %s decodes to %d bytes, its proof says %d: the stored object is damaged", archive.ErrIntegrity, v.where, v.n, v.exact)
	}
	if v.plain != nil {
		if sum := hex.EncodeToString(v.plain.Sum(nil)); sum != v.meta {
			return fmt.Errorf("%w: %s: content checksum %.12s… does not match the recorded %.12s…: the stored object is damaged", archive.ErrIntegrity, v.where, sum, v.meta)
		}
	}
	if v.encoded != nil {
		if sum := hex.EncodeToString(v.encoded.Sum(nil)); sum != v.meta {
			return fmt.Errorf("%w: %s: encoded checksum %.12s… does not match the recorded %.12s…: the stored object is damaged", archive.ErrIntegrity, v.where, sum, v.meta)
		}
		if sum := hex.EncodeToString(v.crc.Sum(nil)); sum != v.crcMeta {
			return fmt.Errorf("%w: %s: content CRC-32C %s does not match the recorded %.8s: the stored object is damaged", archive.ErrIntegrity, v.where, sum, v.crcMeta)
		}
	}
	if v.want.StoredSHA256 == "" && v.want.Sums == nil {
		return nil
	}
	// The stored object's end, read too: its last chunk (or its digest)
	// covers what the decoder did not need.
	if _, err := io.Copy(io.Discard, v.stored); err != nil {
		return err
	}
	if v.want.StoredSHA256 == "" {
		return nil
	}
	if sum := hex.EncodeToString(v.stored.h.Sum(nil)); sum != v.want.StoredSHA256 || v.stored.n != v.want.StoredSize {
		return fmt.Errorf("%w: %s: SHA-256 %.12s… over %d bytes, the manifest says %.12s… over %d: the stored object is damaged", archive.ErrIntegrity, v.where, sum, v.stored.n, v.want.StoredSHA256, v.want.StoredSize)
	}
	return nil
}
