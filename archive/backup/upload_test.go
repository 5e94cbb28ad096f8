package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

// testUploader is an uploader over a file store with faults below the
// retry decorator, retrying fast; rules make uploads fail after reading
// part of the body, as a connection that breaks midway would.
func testUploader(t *testing.T, rules ...storetest.Rule) (*uploader, *storetest.Faults) {
	t.Helper()
	st, err := cloud.Open(context.Background(), "file://"+t.TempDir(), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	flaky := storetest.NewFaults(st.(interface{ Unwrap() cloud.Store }).Unwrap())
	flaky.Set(rules...)
	r := &repo.Repo{Store: cloud.WithRetry(flaky, cloud.RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: time.Millisecond}),
		Codec: codec.Settings{Compression: codec.LZ4}}
	return &uploader{r: r, name: "base_test", prog: archive.NewProgress(nil).Start("test", 0)}, flaky
}

// TestUploadPartRetry: a store failure starts the part over, re-reading
// its files, and the part records what the attempt that succeeded stored.
func TestUploadPartRetry(t *testing.T) {
	ctx := context.Background()
	u, flaky := testUploader(t, storetest.Rule{Op: storetest.Put, Times: 1, Err: errors.New("connection reset")})
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"PG_VERSION": "15\n", "base/1/1259": strings.Repeat("relation data ", 2000)})
	w, err := walkDataDir(dir, "PG_15_1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var produced atomic.Int32
	part, files, err := u.uploadPart(ctx, 0, 0, w.Total, func(wr io.Writer) ([]repo.File, error) {
		produced.Add(1)
		return writeTar(ctx, wr, w.Base, 0, make([]byte, 4096), func(int64) {}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Two attempts at the part, then its sums object and block index.
	if produced.Load() != 2 || flaky.Calls(storetest.Put) != 4 {
		t.Fatalf("produced %d times, %d puts: want the part read again for the second attempt, then its sums and index", produced.Load(), flaky.Calls(storetest.Put))
	}
	if _, err := u.r.LoadSums(ctx, repo.BackupKey(u.name, part.Name), part.Sums, part.StoredSize); err != nil {
		t.Fatalf("the part's sums object does not authenticate it: %v", err)
	}
	// The index is the attempt's that succeeded: every file's content
	// reads back through it at its tar offset.
	var fetched atomic.Int64
	pr, err := u.r.OpenPartRanges(ctx, &repo.Manifest{Name: u.name, Parts: []repo.Part{part}}, 0, &fetched)
	if err != nil {
		t.Fatalf("the part's block index: %v", err)
	}
	for _, f := range files {
		if f.Type != repo.TypeFile {
			continue
		}
		want, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := pr.Read(ctx, []repo.TarRange{{Off: f.TarOffset, N: f.Size, Sink: func(_ int64, b []byte) error { got = append(got, b...); return nil }}}); err != nil {
			t.Fatal(err)
		}
		if f.TarOffset < 512 || !bytes.Equal(got, want) {
			t.Fatalf("%s at tar offset %d: %d bytes that are not its content", f.Path, f.TarOffset, len(got))
		}
	}
	if part.Name != repo.PartName(0) || part.Files != 2 || len(files) != len(w.Base) {
		t.Fatalf("part %+v with %d files, want 2 regular files of %d entries", part, len(files), len(w.Base))
	}
	// The recorded digest and size are the stored object's.
	rc, _, err := flaky.Store.Get(ctx, repo.BackupKey(u.name, part.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(h.Sum(nil)) != part.SHA256 || n != part.StoredSize {
		t.Fatalf("part records %s over %d bytes; stored %x over %d", part.SHA256, part.StoredSize, h.Sum(nil), n)
	}
	// And it reads back through the repository, every file as recorded.
	m := &repo.Manifest{Name: u.name, Parts: []repo.Part{part}, Files: files, FileCount: len(files)}
	seen := 0
	err = u.r.ReadPart(ctx, m, 0, m.Index(), repo.PartOptions{}, func() repo.EntryFunc {
		seen = 0
		return func(_ *tar.Header, f *repo.File, body io.Reader) error {
			var crc repo.CRC32C
			if _, err := io.Copy(&crc, body); err != nil {
				return err
			}
			if f == nil || (f.Type == repo.TypeFile && !crc.Matches(f)) {
				return fmt.Errorf("entry %+v does not match its record", f)
			}
			seen++
			return nil
		}
	})
	if err != nil || seen != len(files) {
		t.Fatalf("read back %d of %d entries: %v", seen, len(files), err)
	}
}

// TestUploadPartUnreadableFile: a file that cannot be read fails the part
// with that error, at once: no retry re-reads it, and it is not taken for
// the store's failure.
func TestUploadPartUnreadableFile(t *testing.T) {
	u, flaky := testUploader(t)
	cause := errors.New("reading /data/base/1/1259: input/output error")
	var produced atomic.Int32
	_, _, err := u.uploadPart(context.Background(), 0, 0, 0, func(w io.Writer) ([]repo.File, error) {
		produced.Add(1)
		if _, err := w.Write(make([]byte, 1000)); err != nil {
			return nil, err
		}
		return nil, localErr(cause)
	})
	if !errors.Is(err, cause) || errors.Is(err, archive.ErrStore) || err.Error() != cause.Error() {
		t.Fatalf("err = %v, want the read error as it is", err)
	}
	if produced.Load() != 1 || flaky.Calls(storetest.Put) != 1 {
		t.Fatalf("produced %d times, %d puts: an unreadable file must not be retried", produced.Load(), flaky.Calls(storetest.Put))
	}
}

// TestUploadPartStoreFailure: when the store keeps failing, the error is
// the store's, naming the part.
func TestUploadPartStoreFailure(t *testing.T) {
	u, _ := testUploader(t, storetest.Rule{Op: storetest.Put, Err: cloud.Permanent(errors.New("bucket is read-only"))})
	_, _, err := u.uploadPart(context.Background(), 3, 0, 0, func(w io.Writer) ([]repo.File, error) {
		_, err := w.Write(make([]byte, 1000))
		return nil, err
	})
	key := repo.BackupKey(u.name, repo.PartName(3))
	if !errors.Is(err, archive.ErrStore) || !strings.Contains(err.Error(), "uploading "+key+": bucket is read-only") {
		t.Fatalf("err = %v, want the store's failure uploading %s", err, key)
	}
	if u.written[0] != key {
		t.Fatalf("written %v: the part must be remembered for cleanup", u.written)
	}
}
