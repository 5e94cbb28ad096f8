package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// Copying an object to another store moves its stored bytes and metadata
// as they are (no decoding, no re-encoding, no new proof), so that the
// copy verifies with the same verify key: a proof binds the object's key
// relative to the prefix and the cluster's system identifier, both the same
// in the other store. Nothing unauthenticated lands there: the bytes are
// checked on their way, and the destination's Put, which leaves no object
// when its body fails, only completes once the check passed (a part or a
// dump chunk by chunk against its sums, released only once each chunk
// matched; a sums object against the manifest's digest; a WAL, history,
// manifest, mark or cluster.json object by its proof and content, read as
// a reader would). Each object is read once: the same stream feeds the
// check and the upload.

// CopyCheck says how a copied object is authenticated.
type CopyCheck struct {
	// SHA256 and Size, when SHA256 is set, are what the stored bytes must
	// hash to and count (from an authenticated manifest).
	SHA256 string
	Size   int64
	// Sums, when set, releases the stored bytes chunk by chunk, each only
	// once it matched (a part, a dump).
	Sums *Sums
	// Proof, when set, reads the object as Load would with this Want (its
	// proof, content digests and bounds), beside the upload.
	Proof *Want
	// Keep returns the object's bytes in CopyResult.Bytes (a small one:
	// a sums object whose part comes next).
	Keep bool
	// Meta, when set, is the metadata the object must carry (its digests
	// and proof), as its writer recorded it.
	Meta map[string]string
}

// CopyResult says what a copy did.
type CopyResult struct {
	Key        string
	StoredSize int64
	// Already: the destination held the object with the same content.
	Already bool
	// Bytes are the object's stored bytes, with CopyCheck.Keep.
	Bytes []byte
}

// CopyObject copies key from r's store to dst, write-once, authenticated on
// its way as check says. An object dst already holds with the same size
// and content digest is left as it is (Already); other content there is an
// archive.ErrConflict. onStored, when set, is told the bytes as they go.
func (r *Repo) CopyObject(ctx context.Context, dst cloud.Store, key string, check CopyCheck, onStored func(int64)) (CopyResult, error) {
	res := CopyResult{Key: key}
	body := &copyBody{r: r, ctx: ctx, key: key, check: check, onStored: onStored}
	if err := body.open(); err != nil {
		return res, err
	}
	defer body.close()
	info := body.info
	res.StoredSize = info.Size
	opts := cloud.PutOptions{Metadata: info.Metadata, IfAbsent: true, SizeHint: info.Size}
	if l := cloud.LockOf(dst); l.On() && !info.RetainUntil.IsZero() {
		// A locked object stays locked at least as long in a locked store.
		opts.Retention = &cloud.Retention{Until: info.RetainUntil, Mode: l.Mode}
	}
	err := dst.Put(ctx, key, body, opts)
	if body.err != nil {
		return res, body.err // the check failed: what dst got is no object
	}
	if errors.Is(err, cloud.ErrExists) {
		res, err = r.sameAt(ctx, dst, key, info)
	} else if err != nil {
		return res, archive.StoreErr(fmt.Errorf("%s: writing %s: %w", dst, key, err))
	}
	if check.Keep && body.complete {
		res.Bytes = body.kept
	}
	return res, err
}

// sameAt settles a copy that found key taken in dst: the same object
// (size and content digest) is a copy made before; other content is never
// replaced.
func (r *Repo) sameAt(ctx context.Context, dst cloud.Store, key string, src cloud.ObjectInfo) (CopyResult, error) {
	res := CopyResult{Key: key, StoredSize: src.Size, Already: true}
	got, err := dst.Stat(ctx, key)
	if err != nil {
		return res, archive.StoreErr(fmt.Errorf("%s: reading %s: %w", dst, key, err))
	}
	if SameObject(src, got) {
		return res, nil
	}
	return res, fmt.Errorf("%w: %s already holds %s with other content (%d bytes) than %s (%d bytes): it is left as it is; remove it there if it is not walvault's", archive.ErrConflict, dst, key, got.Size, r.Store, src.Size)
}

// SameObject says whether two stored objects hold the same thing, by what
// their listings and metadata show: the same stored size and, where the
// source states one, the same content digest and proof.
func SameObject(a, b cloud.ObjectInfo) bool {
	if a.Size != b.Size {
		return false
	}
	for _, k := range []string{MetaSHA256, MetaEncodedSHA256, MetaCRC32C, MetaSize, MetaProof} {
		if a.Metadata[k] != b.Metadata[k] {
			return false
		}
	}
	return true
}

// copyBody is the destination Put's body: the source object's stored
// bytes, passed through the check. A check that fails ends the body with
// its error instead of io.EOF, so the Put leaves no object. Rewind opens
// the source again (a retried upload).
type copyBody struct {
	r        *Repo
	ctx      context.Context
	key      string
	check    CopyCheck
	onStored func(int64)

	info  cloud.ObjectInfo
	rc    io.ReadCloser
	in    io.Reader // what Read hands on
	sum   hash.Hash // of the stored bytes, when check.SHA256 is set
	n     int64
	proof *proofTee
	err   error // the check's failure, sticky
	// kept are the bytes read, with check.Keep; complete once the check
	// passed at the end.
	kept     []byte
	complete bool
}

func (b *copyBody) where() string { return fmt.Sprintf("%s in %s", b.key, b.r.Store) }

// open starts one attempt: the source opened, the check set up.
func (b *copyBody) open() error {
	rc, info, err := b.r.Store.Get(b.ctx, b.key)
	if errors.Is(err, cloud.ErrNotFound) {
		return fmt.Errorf("%s: %w", b.where(), archive.ErrNotInArchive)
	}
	if err != nil {
		return archive.StoreErr(err)
	}
	b.rc, b.info, b.in, b.n, b.err, b.kept, b.complete = rc, info, rc, 0, nil, nil, false
	c := b.check
	if c.SHA256 != "" && info.Size != c.Size {
		_ = rc.Close()
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d: the stored object is damaged", archive.ErrIntegrity, b.where(), info.Size, c.Size)
	}
	if c.Meta != nil && !SameObject(cloud.ObjectInfo{Size: info.Size, Metadata: c.Meta}, info) {
		_ = rc.Close()
		return fmt.Errorf("%w: %s does not carry the metadata its writer recorded: it was replaced", archive.ErrIntegrity, b.where())
	}
	if c.Sums != nil {
		b.in = newChunkReader(rc, c.Sums, b.where())
	}
	if c.SHA256 != "" {
		b.sum = sha256.New()
	}
	if c.Proof != nil {
		if b.proof, err = b.r.startProofTee(b.key, info, *c.Proof, b.where()); err != nil {
			_ = rc.Close()
			return err
		}
	}
	return nil
}

func (b *copyBody) close() {
	if b.proof != nil {
		b.proof.abort()
		b.proof = nil
	}
	if b.rc != nil {
		_ = b.rc.Close()
		b.rc = nil
	}
}

// Read hands on the checked bytes. A failed check is permanent (the
// retry decorator does not start the copy over for it) and sticky.
func (b *copyBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, cloud.Permanent(b.err)
	}
	n, err := b.in.Read(p)
	if n > 0 {
		b.n += int64(n)
		if b.sum != nil && b.n > b.check.Size {
			b.err = fmt.Errorf("%w: %s is longer than the %d bytes its manifest records: the stored object is damaged", archive.ErrIntegrity, b.where(), b.check.Size)
			return 0, cloud.Permanent(b.err)
		}
		if b.sum != nil {
			b.sum.Write(p[:n])
		}
		if b.proof != nil {
			if perr := b.proof.feed(p[:n]); perr != nil {
				b.err = perr
				return 0, cloud.Permanent(perr)
			}
		}
		if b.check.Keep {
			b.kept = append(b.kept, p[:n]...)
		}
		if b.onStored != nil {
			b.onStored(int64(n))
		}
	}
	switch {
	case err == io.EOF:
		if cerr := b.finish(); cerr != nil {
			b.err = cerr
			return n, cloud.Permanent(cerr)
		}
		b.complete = true
	case errors.Is(err, archive.ErrIntegrity):
		b.err = err
		return n, cloud.Permanent(err)
	}
	return n, err
}

// finish runs the checks that need the whole stream.
func (b *copyBody) finish() error {
	if b.sum != nil {
		if got := hex.EncodeToString(b.sum.Sum(nil)); got != b.check.SHA256 || b.n != b.check.Size {
			return fmt.Errorf("%w: %s: SHA-256 %.12s… over %d bytes, the manifest says %.12s… over %d: the stored object is damaged", archive.ErrIntegrity, b.where(), got, b.n, b.check.SHA256, b.check.Size)
		}
	}
	if b.proof != nil {
		return b.proof.end()
	}
	return nil
}

// Rewind starts the copy over from a new read of the source.
func (b *copyBody) Rewind() error {
	b.close()
	return b.open()
}

// proofTee reads an object as Load would (proof, decoding, content
// digests, bounds) from the bytes the upload sends, in a goroutine of its
// own, so that the one read of the source serves both.
type proofTee struct {
	pw     *io.PipeWriter
	done   chan struct{} // closed once result is set
	result error
	max    int64 // the most stored bytes the proof's size allows
	n      int64
	err    error
}

// maxStoredFor bounds the stored bytes of an object whose content the
// proof says is size bytes: compression frames and encryption add at most
// a few bytes per 64 KiB.
func maxStoredFor(size int64) int64 { return size + size/64 + 64<<10 }

func (r *Repo) startProofTee(key string, info cloud.ObjectInfo, want Want, where string) (*proofTee, error) {
	if want.Proof {
		if _, err := r.checkProof(key, info.Metadata); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	t := &proofTee{done: make(chan struct{}), max: -1}
	if size, err := strconv.ParseInt(info.Metadata[MetaSize], 10, 64); err == nil && size >= 0 {
		t.max = maxStoredFor(size)
	} else if want.MaxSize > 0 {
		t.max = maxStoredFor(want.MaxSize)
	}
	pr, pw := io.Pipe()
	t.pw = pw
	go func() {
		err := r.read(key, pr, info, want, where, func(io.Reader, cloud.ObjectInfo) error { return nil })
		var re readError
		if errors.As(err, &re) {
			err = re.err
		}
		if err != nil {
			_ = pr.CloseWithError(err) // the upload's next write fails
		} else {
			// What the decoder left (padding past the frame) still comes
			// through the pipe: drain it so the upload never blocks.
			_, _ = io.Copy(io.Discard, pr)
		}
		t.result = err
		close(t.done)
	}()
	return t, nil
}

// feed hands the next stored bytes to the check.
func (t *proofTee) feed(p []byte) error {
	if t.err != nil {
		return t.err
	}
	t.n += int64(len(p))
	if t.max >= 0 && t.n > t.max {
		t.err = fmt.Errorf("%w: the stored object is larger than its proof's size allows", archive.ErrIntegrity)
		t.abort()
		return t.err
	}
	if _, err := t.pw.Write(p); err != nil {
		// The reader ended early: its verdict says why.
		t.err = t.wait()
		if t.err == nil {
			t.err = err
		}
	}
	return t.err
}

// end closes the stream and returns the check's verdict.
func (t *proofTee) end() error {
	if t.err != nil {
		return t.err
	}
	_ = t.pw.Close()
	t.err = t.wait()
	return t.err
}

func (t *proofTee) wait() error {
	<-t.done
	return t.result
}

// abort stops the check (an attempt given up), waiting for its goroutine.
func (t *proofTee) abort() {
	_ = t.pw.CloseWithError(errCopyAborted)
	<-t.done
}

var errCopyAborted = errors.New("copy attempt ended")
