package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// PushOptions tune wal-push.
type PushOptions struct {
	// Concurrency is how many files one wal-push uploads at once: the one
	// PostgreSQL asked for plus up to Concurrency-1 others already marked
	// .ready in archive_status.
	Concurrency int
	// SpoolDir is walvault's own directory for "pushed ahead" markers;
	// default: .walvault beside the file (pg_wal/.walvault).
	SpoolDir string
}

// PushResult says what happened to one file.
type PushResult struct {
	Name        string
	Already     bool // the archive already held identical content
	Ahead       bool // an earlier wal-push had pushed it ahead
	RawBytes    int64
	StoredBytes int64
}

// PushWAL archives the file at path (as archive_command's %p), and while
// doing so pushes ahead other segments PostgreSQL has marked ready. It
// returns nil only once path's content is durable in the store.
func PushWAL(ctx context.Context, cfg *Config, path string, opts PushOptions) (PushResult, error) {
	name := filepath.Base(path)
	wf, err := ParseWALName(name)
	if err != nil {
		return PushResult{}, fmt.Errorf("%w: %s: %w", ErrBadInput, path, err)
	}
	walDir := filepath.Dir(path)
	spool := opts.SpoolDir
	if spool == "" {
		spool = filepath.Join(walDir, ".walvault")
	}
	pushedDir := filepath.Join(spool, "pushed")
	if err := os.MkdirAll(pushedDir, 0o700); err != nil {
		slog.Warn("spool directory unusable, pushing without it", "dir", spool, "err", err)
		spool, pushedDir = "", ""
	}

	st, err := os.Stat(path)
	if err != nil {
		return PushResult{}, fmt.Errorf("%w: cannot read %s: %w", ErrBadInput, path, err)
	}
	if pushedDir != "" && consumeMarker(pushedDir, name, st, cfg.Store) {
		return PushResult{Name: name, Ahead: true, RawBytes: st.Size()}, nil
	}

	var others []string
	if opts.Concurrency > 1 && pushedDir != "" {
		others = readyToPushAhead(walDir, pushedDir, name, opts.Concurrency-1)
	}
	if len(others) > 0 {
		// Parallelism comes from the files; one compressor goroutine per
		// file keeps memory (and peak RSS) in proportion.
		c := *cfg
		c.Codec.Concurrency = 1
		cfg = &c
	}
	var wg sync.WaitGroup
	for _, other := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := filepath.Join(walDir, other)
			owf, err := ParseWALName(other)
			if err == nil {
				_, err = pushFile(ctx, cfg, p, owf, spool)
			}
			if err != nil {
				// PostgreSQL will ask for it in its turn and see the error then.
				slog.Warn("push ahead failed", "file", other, "err", err)
				return
			}
			if ost, err := os.Stat(p); err == nil {
				writeMarker(pushedDir, other, ost, cfg.Store)
			}
		}()
	}
	res, err := pushFile(ctx, cfg, path, wf, spool)
	wg.Wait()
	return res, err
}

// A marker in pushed/ says "this file, with this size and mtime, is whole in
// the store". It is written only after the upload returned, so a crash can
// lose a marker (and cost a re-check) but never create a false one.
// It also names the store, so a changed --store never trusts old markers.
func markerText(st os.FileInfo, store cloud.Store) string {
	return fmt.Sprintf("%d %d %s\n", st.Size(), st.ModTime().UnixNano(), store)
}

func writeMarker(dir, name string, st os.FileInfo, store cloud.Store) {
	if err := writeFileAtomic(filepath.Join(dir, name), []byte(markerText(st, store)), false); err != nil {
		slog.Warn("cannot record pushed-ahead file", "file", name, "err", err)
	}
}

func consumeMarker(dir, name string, st os.FileInfo, store cloud.Store) bool {
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p) // #nosec G304 -- our spool
	if err != nil {
		return false
	}
	_ = os.Remove(p)
	return string(b) == markerText(st, store)
}

// readyToPushAhead lists up to n files PostgreSQL has marked ready, oldest
// first, that are not the current one and not already pushed ahead. It only
// reads archive_status: PostgreSQL's own files are never touched. Markers
// whose file is gone are removed.
func readyToPushAhead(walDir, pushedDir, current string, n int) []string {
	ents, err := os.ReadDir(filepath.Join(walDir, "archive_status"))
	if err != nil {
		return nil
	}
	pushed := map[string]bool{}
	if ms, err := os.ReadDir(pushedDir); err == nil {
		for _, m := range ms {
			if strings.Contains(m.Name(), ".tmp") {
				continue
			}
			pushed[m.Name()] = true
		}
	}
	var ready []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok || name == current || pushed[name] {
			continue
		}
		if _, err := ParseWALName(name); err != nil {
			continue
		}
		ready = append(ready, name)
	}
	// History files first (a new timeline is useless without one), then by
	// name, which orders segments by timeline and position.
	sort.Slice(ready, func(i, j int) bool {
		hi, hj := strings.HasSuffix(ready[i], ".history"), strings.HasSuffix(ready[j], ".history")
		if hi != hj {
			return hi
		}
		return ready[i] < ready[j]
	})
	// Forget markers of files PostgreSQL has since recycled or removed.
	for m := range pushed {
		if _, err := os.Stat(filepath.Join(walDir, m)); errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(filepath.Join(pushedDir, m))
		}
	}
	if len(ready) > n {
		ready = ready[:n]
	}
	return ready
}

// pushFile stores one pg_wal file, idempotently.
func pushFile(ctx context.Context, cfg *Config, path string, wf WALFile, spool string) (PushResult, error) {
	res := PushResult{Name: wf.Name}
	f, err := os.Open(path) // #nosec G304 -- the file PostgreSQL asked us to archive
	if err != nil {
		return res, fmt.Errorf("%w: cannot read %s: %w", ErrBadInput, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	if !fi.Mode().IsRegular() {
		return res, fmt.Errorf("%w: %s is not a regular file", ErrBadInput, path)
	}
	res.RawBytes = fi.Size()

	var head [LongHeaderLen]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return res, fmt.Errorf("%w: cannot read %s: %w", ErrBadInput, path, err)
	}
	// The checksum travels as metadata, which most stores need before the
	// body. One pass over the file hashes it and, in the compressor's own
	// goroutines, encodes it into memory; WAL compresses several-fold, so
	// the encoded object is small. Only when it is not (no compression,
	// random data) is the file encoded again, streaming, during the upload.
	// The pass runs while the store answers the cluster and existence checks,
	// which on a cloud store are round trips.
	type pass struct {
		sum     string
		encoded []byte // nil when over encodeInMemoryLimit
		err     error
	}
	passDone := make(chan pass, 1)
	go func() {
		sum, enc, err := hashAndEncode(io.NewSectionReader(f, 0, fi.Size()), fi.Size(), cfg.Codec)
		passDone <- pass{sum, enc, err}
	}()
	var once *pass
	result := func() (pass, error) {
		if once == nil {
			p := <-passDone
			once = &p
		}
		if once.err != nil {
			return *once, fmt.Errorf("%w: cannot read %s: %w", ErrBadInput, path, once.err)
		}
		return *once, nil
	}
	defer func() { _, _ = result() }() // never leave the pass reading a closed file

	if wf.Kind == KindSegment || wf.Kind == KindPartial {
		ph, err := ParsePageHeader(head[:n])
		if err != nil {
			return res, fmt.Errorf("%w: %s is not a WAL segment: %v", ErrBadInput, path, err)
		}
		if wf.Kind == KindSegment && fi.Size() != ph.SegmentSize {
			return res, fmt.Errorf("%w: %s is %d bytes, its header says segments are %d: refusing a truncated segment", ErrBadInput, path, fi.Size(), ph.SegmentSize)
		}
		if want := wf.StartLSN(ph.SegmentSize); ph.PageAddr != want {
			return res, fmt.Errorf("%w: %s holds WAL from %s, its name says %s: refusing a misnamed segment", ErrBadInput, path, ph.PageAddr, want)
		}
		if err := ensureCluster(ctx, cfg.Store, ph.SystemID, spool); err != nil {
			return res, err
		}
	}

	key := WALKey(wf)
	info, statErr := cfg.Store.Stat(ctx, key)
	p, err := result()
	if err != nil {
		return res, err
	}
	sum := p.sum
	switch {
	case statErr == nil && info.Metadata[MetaSHA256] == sum:
		res.Already = true
		return res, nil
	case statErr == nil:
		return res, conflictError(cfg.Store, key, wf.Name)
	case !errors.Is(statErr, cloud.ErrNotFound):
		return res, asStoreErr(statErr)
	}

	meta := map[string]string{MetaSHA256: sum, MetaSize: strconv.FormatInt(fi.Size(), 10)}
	var stored int64
	opts := cloud.PutOptions{Metadata: meta, IfAbsent: true, SizeHint: fi.Size()}
	if p.encoded != nil {
		// A seekable body: the store's retry decorator retries it.
		stored = int64(len(p.encoded))
		err = cfg.Store.Put(ctx, key, bytes.NewReader(p.encoded), opts)
	} else {
		// A stream the decorator cannot rewind: retry here, re-reading the file.
		err = cloud.Retry(ctx, cloud.DefaultRetry, "push "+wf.Name, func() error {
			var err error
			stored, err = putEncoded(ctx, cfg, key, io.NewSectionReader(f, 0, fi.Size()), opts)
			return err
		})
	}
	if errors.Is(err, cloud.ErrExists) {
		// Another writer won the race; it is fine if it wrote the same thing.
		same, cerr := compareStored(ctx, cfg.Store, key, sum)
		if cerr != nil {
			return res, cerr
		}
		if !same {
			return res, conflictError(cfg.Store, key, wf.Name)
		}
		res.Already = true
		return res, nil
	}
	if err != nil {
		return res, asStoreErr(fmt.Errorf("uploading %s: %w", wf.Name, err))
	}
	res.StoredBytes = stored
	return res, nil
}

func conflictError(st cloud.Store, key, name string) error {
	return fmt.Errorf("%w: %s already has %s with a different checksum: the stored copy is kept; if this server was restored or re-initialized, archive it to a new store prefix", ErrConflict, st, name)
}

// compareStored reports whether key holds content with checksum sum; a
// stored object with another checksum is a conflict error.
func compareStored(ctx context.Context, st cloud.Store, key, sum string) (bool, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return false, err
		}
		return false, asStoreErr(err)
	}
	if info.Metadata[MetaSHA256] == sum {
		return true, nil
	}
	return false, conflictError(st, key, filepath.Base(key))
}

// encodeInMemoryLimit bounds the encoded copy hashAndEncode keeps.
const encodeInMemoryLimit = 8 << 20

var errTooBig = errors.New("encoded object over the in-memory limit")

type boundedBuffer struct{ bytes.Buffer }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > encodeInMemoryLimit {
		return 0, errTooBig
	}
	return b.Buffer.Write(p)
}

// hashAndEncode reads r once, returning its SHA-256 and, when it fits in
// encodeInMemoryLimit, its encoded form.
func hashAndEncode(r io.Reader, size int64, s codec.Settings) (string, []byte, error) {
	h := sha256.New()
	var buf boundedBuffer
	// Room for a 4:1 ratio up front saves the buffer's copies as it grows.
	buf.Grow(int(min(size/6+64<<10, encodeInMemoryLimit)))
	enc, err := codec.NewWriter(&buf, s)
	if err != nil {
		return "", nil, err
	}
	chunk := make([]byte, 256<<10)
	for {
		n, rerr := io.ReadFull(r, chunk)
		if n > 0 {
			h.Write(chunk[:n])
			if enc != nil {
				if _, err := enc.Write(chunk[:n]); err != nil {
					enc = nil // too big: the upload encodes while streaming
				}
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return "", nil, rerr
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if enc == nil || enc.Close() != nil {
		return sum, nil, nil
	}
	return sum, buf.Bytes(), nil
}

// putEncoded streams r through the codec into the store and returns the
// number of bytes stored.
func putEncoded(ctx context.Context, cfg *Config, key string, r io.Reader, opts cloud.PutOptions) (int64, error) {
	pr, pw := io.Pipe()
	counter := &countingReader{r: pr}
	go func() {
		w, err := codec.NewWriter(pw, cfg.Codec)
		if err == nil {
			_, err = io.Copy(w, r)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	err := cfg.Store.Put(ctx, key, counter, opts)
	_ = pr.CloseWithError(errors.New("upload ended")) // unblock the encoder if Put gave up early
	return counter.n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// sinceMs is a duration in milliseconds for logs.
func sinceMs(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
