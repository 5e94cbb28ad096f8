package wal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

// writeCompressible writes segment segNo of timeline 1 into dir: a valid
// long page header, then WAL-like records that compress several-fold;
// variant changes one byte of every record, so two variants are the same
// size and differ in content.
func writeCompressible(t *testing.T, dir string, segNo uint64, segSize int64, variant byte) (string, []byte) {
	t.Helper()
	p, b := writeSegment(t, dir, segNo, segSize)
	for off := archive.LongHeaderLen; off+64 <= len(b); off += 64 {
		copy(b[off:off+64], "record ........................................................")
		binary.LittleEndian.PutUint32(b[off+8:], uint32(off))
		b[off+12] = variant
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func withAge(t *testing.T, r *repo.Repo) *repo.Repo {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	c := *r
	c.Codec.Recipients = []age.Recipient{id.Recipient()}
	c.Identities = []age.Identity{id}
	return &c
}

func statMeta(t *testing.T, r *repo.Repo, name string) map[string]string {
	t.Helper()
	wf, err := archive.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := r.Store.Stat(context.Background(), repo.WALKey(wf))
	if err != nil {
		t.Fatal(err)
	}
	return info.Metadata
}

// TestPushStatesEncodedDigest: a segment that encodes small is stated by
// the SHA-256 of its encoded stream and its CRC-32C, signed (proof v2), and
// fetches back byte-identical, encrypted or not; one that does not (no
// compression) keeps the SHA-256 of its plain bytes.
func TestPushStatesEncodedDigest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       codec.Compression
		encrypt bool
		random  bool // content that does not compress: over the in-memory limit
		encoded bool // stated by walvault-encoded-sha256
	}{
		{"lz4", codec.LZ4, false, false, true},
		{"lz4+age", codec.LZ4, true, false, true},
		{"zstd+age", codec.Zstd, true, false, true},
		{"none", codec.None, false, false, false},
		{"lz4 incompressible", codec.LZ4, false, true, false},
		{"lz4+age incompressible", codec.LZ4, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := openRepo(t, t.TempDir(), tc.c)
			if tc.encrypt {
				r = withAge(t, r)
			}
			src, want := writeCompressible(t, t.TempDir(), 3, 16<<20, 0)
			if tc.random {
				src, want = writeSegment(t, t.TempDir(), 3, 16<<20)
			}
			if _, err := Push(context.Background(), r, src, PushOptions{}); err != nil {
				t.Fatal(err)
			}
			m := statMeta(t, r, filepath.Base(src))
			sum := sha256.Sum256(want)
			if tc.encoded {
				if m[repo.MetaEncodedSHA256] == "" || m[repo.MetaCRC32C] == "" || m[repo.MetaSHA256] != "" {
					t.Fatalf("metadata %v, want the encoded digest and a CRC-32C", m)
				}
			} else if m[repo.MetaSHA256] != hex.EncodeToString(sum[:]) || m[repo.MetaEncodedSHA256] != "" {
				t.Fatalf("metadata %v, want the plain SHA-256", m)
			}
			if m[repo.MetaProof] == "" || m[repo.MetaSize] != strconv.Itoa(16<<20) {
				t.Fatalf("metadata %v: no proof or size", m)
			}
			dest, _, err := fetchInto(t, r, filepath.Base(src))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
				t.Fatal("fetched other bytes")
			}
		})
	}
}

// TestPushAgain: archive_command repeated for a stored file exits 0 only
// when the store holds the same content, however it was stored: the same
// settings (encrypted too: age is not deterministic), other compression
// settings (settled by reading the object back), or by an older walvault
// (the plain SHA-256); other content of the same size is a conflict in
// every case, and the stored copy is kept: on a store that refuses a
// second create of a key (the upload is tried, its refusal settled) and on
// one that ignores the condition (the key is looked at first).
func TestPushAgain(t *testing.T) {
	for _, ignores := range []bool{false, true} {
		t.Run(map[bool]string{false: "store refuses", true: "store ignores"}[ignores], func(t *testing.T) {
			testPushAgain(t, ignores)
		})
	}
}

func testPushAgain(t *testing.T, ignores bool) {
	ctx := context.Background()
	level9 := func(r *repo.Repo) *repo.Repo { c := *r; c.Codec.Level = 9; return &c }
	zstd := func(r *repo.Repo) *repo.Repo { c := *r; c.Codec.Compression = codec.Zstd; return &c }
	same := func(r *repo.Repo) *repo.Repo { return r }
	for _, tc := range []struct {
		name    string
		encrypt bool
		old     bool                        // first stored as walvault did before proof v2
		then    func(*repo.Repo) *repo.Repo // the settings of the second push
		noID    bool                        // the second push has no identity
		wantErr string                      // for the same content; "" = Already
	}{
		{"same settings", false, false, same, false, ""},
		{"same settings, age", true, false, same, false, ""},
		{"lz4 level 9 after level 0", false, false, level9, false, ""},
		{"zstd after lz4, age", true, false, zstd, false, ""},
		{"other settings, age, no identity", true, false, level9, true, "other compression settings"},
		{"stored by an older walvault", false, true, same, false, ""},
		{"stored by an older walvault, age", true, true, same, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := openRepo(t, t.TempDir(), codec.LZ4)
			if ignores {
				f := storetest.NewFaults(r.Store)
				f.IgnoreIfAbsent = true
				r.Store = f
			}
			if tc.encrypt {
				r = withAge(t, r)
			}
			dir := t.TempDir()
			src, _ := writeCompressible(t, dir, 5, 1<<20, 0)
			if tc.old {
				putOldStyle(t, r, src)
			} else if _, err := Push(ctx, r, src, PushOptions{}); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(storedPath(t, r, filepath.Base(src)))
			if err != nil {
				t.Fatal(err)
			}
			again := tc.then(r)
			if tc.noID {
				c := *again
				c.Identities = nil
				again = &c
			}
			res, err := Push(ctx, again, src, PushOptions{})
			if again.RefusesSecondCreate == ignores {
				t.Fatalf("RefusesSecondCreate %v on a store that ignores the condition: %v", again.RefusesSecondCreate, ignores)
			}
			switch {
			case tc.wantErr == "" && (err != nil || !res.Already):
				t.Fatalf("same content again: %+v, %v; want Already", res, err)
			case tc.wantErr != "" && (!errors.Is(err, archive.ErrConflict) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("same content again: %v; want a conflict saying %q", err, tc.wantErr)
			}
			// Other content under the same name and of the same size.
			writeCompressible(t, dir, 5, 1<<20, 1)
			if _, err := Push(ctx, again, src, PushOptions{}); !errors.Is(err, archive.ErrConflict) {
				t.Fatalf("other content: %v, want ErrConflict", err)
			}
			if after, _ := os.ReadFile(storedPath(t, r, filepath.Base(src))); !bytes.Equal(before, after) {
				t.Fatal("the stored object changed")
			}
		})
	}
}

// putOldStyle stores the file as walvault did before proof v2: the plain
// content's SHA-256 in walvault-sha256, lz4 with its frame checksum.
func putOldStyle(t *testing.T, r *repo.Repo, src string) {
	t.Helper()
	b, err := os.ReadFile(src) // #nosec G304 -- the test's file
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	wf, _ := archive.ParseWALName(filepath.Base(src))
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	meta := map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(b))}
	if err := r.EnsureCluster(context.Background(), testSysID, int64(len(b)), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(context.Background(), repo.WALKey(wf), open, repo.PutOptions{PutOptions: cloud.PutOptions{Metadata: meta, IfAbsent: true}}); err != nil {
		t.Fatal(err)
	}
}

func storedPath(t *testing.T, r *repo.Repo, name string) string {
	t.Helper()
	wf, _ := archive.ParseWALName(name)
	u := strings.TrimPrefix(r.Store.String(), "file://")
	return filepath.Join(u, filepath.FromSlash(repo.WALKey(wf)))
}

// TestFetchOldStyleObject: an object written before proof v2 (plain
// SHA-256, proof v1) still fetches, and a damaged one is still refused.
func TestFetchOldStyleObject(t *testing.T) {
	r := withAge(t, openRepo(t, t.TempDir(), codec.LZ4))
	src, want := writeCompressible(t, t.TempDir(), 6, 1<<20, 0)
	putOldStyle(t, r, src)
	dest, _, err := fetchInto(t, r, filepath.Base(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("fetched other bytes")
	}
}

// TestEncodedDigestIsDeterministic: the encoded stream, and so the digest
// a re-push compares, does not depend on the compressor's goroutines
// (push-ahead encodes with one, a lone wal-push with all) nor on the
// pooled writer's previous use.
func TestEncodedDigestIsDeterministic(t *testing.T) {
	_, b := writeCompressible(t, t.TempDir(), 7, 16<<20, 0)
	p := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p) // #nosec G304 -- the test's file
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	for _, c := range []codec.Compression{codec.LZ4, codec.Zstd} {
		var first digest
		for i, conc := range []int{0, 1, 4, 1, 0} {
			d, enc, err := hashAndEncode(f, int64(len(b)), codec.Settings{Compression: c, Concurrency: conc}, new(boundedBuffer))
			if err != nil || enc == nil || d.encoded == "" {
				t.Fatalf("%s: %v (encoded %d bytes, %+v)", c, err, len(enc), d)
			}
			if i == 0 {
				first = d
			} else if d != first {
				t.Fatalf("%s concurrency %d: %+v, concurrency 0 gave %+v", c, conc, d, first)
			}
		}
		// Written in small pieces rather than read from the file: the same.
		h := sha256.New()
		w, err := codec.NewWriterTap(io.Discard, walCodec(codec.Settings{Compression: c}), h)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(b); off += 100_000 {
			if _, err := w.Write(b[off:min(off+100_000, len(b))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != first.encoded {
			t.Fatalf("%s written in pieces: encoded digest %s, read from the file %s", c, got, first.encoded)
		}
	}
}

// TestPrefetchServesVerifiedCopies: segments prefetched from the store are
// named by their CRC-32C and served from the spool, checked again; a copy
// damaged in the spool is not served (wal-fetch goes to the store), and a
// copy named by SHA-256, as older versions named them, is still served.
func TestPrefetchServesVerifiedCopies(t *testing.T) {
	ctx := context.Background()
	r := withAge(t, openRepo(t, t.TempDir(), codec.LZ4))
	const segSize = 1 << 20
	walDir := t.TempDir()
	var names []string
	contents := map[string][]byte{}
	for seg := uint64(10); seg <= 13; seg++ {
		src, b := writeCompressible(t, walDir, seg, segSize, byte(seg))
		if _, err := Push(ctx, r, src, PushOptions{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(src))
		contents[filepath.Base(src)] = b
	}
	spool := t.TempDir()
	if err := Prefetch(ctx, r, names[0], segSize, 3, 2, spool); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(spool, "prefetch")
	ents, _ := os.ReadDir(dir)
	named := map[string]string{}
	for _, e := range ents {
		if n, sum, ok := strings.Cut(e.Name(), "."); ok && len(sum) == 8 {
			named[n] = e.Name()
		}
	}
	if len(named) != 3 {
		t.Fatalf("prefetch directory holds %v, want segments 11-13 named by CRC-32C", ents)
	}
	// Damage 12's copy; name 13's copy by its SHA-256, as before.
	if err := os.WriteFile(filepath.Join(dir, named[names[2]]), []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(contents[names[3]])
	if err := os.Rename(filepath.Join(dir, named[names[3]]), filepath.Join(dir, names[3]+"."+hex.EncodeToString(sum[:]))); err != nil {
		t.Fatal(err)
	}
	for i, wantPrefetched := range map[int]bool{1: true, 2: false, 3: true} {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		res, err := Fetch(ctx, r, names[i], dest, FetchOptions{SpoolDir: spool})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, contents[names[i]]) || res.Prefetched != wantPrefetched {
			t.Fatalf("%s: prefetched %v (want %v), %d bytes, identical %v", names[i], res.Prefetched, wantPrefetched, len(got), bytes.Equal(got, contents[names[i]]))
		}
	}
}

// TestPushOneConcurrently: the agent's entry point, called from many
// goroutines at once (pooled encoders and buffers shared), stores every
// file whole, and a second round finds each already archived.
func TestPushOneConcurrently(t *testing.T) {
	ctx := context.Background()
	r := withAge(t, openRepo(t, t.TempDir(), codec.LZ4))
	dir, spool := t.TempDir(), t.TempDir()
	want := map[string][]byte{}
	for seg := uint64(20); seg < 28; seg++ {
		p, b := writeCompressible(t, dir, seg, 1<<20, byte(seg))
		want[p] = b
	}
	for round, already := range []bool{false, true} {
		errs := make(chan error, len(want))
		for p := range want {
			go func() {
				res, err := PushOne(ctx, r, p, spool)
				if err == nil && res.Already != already {
					err = errors.New(p + ": Already is " + strconv.FormatBool(res.Already))
				}
				errs <- err
			}()
		}
		for range want {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	for p, b := range want {
		dest, _, err := fetchInto(t, r, filepath.Base(p))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, b) {
			t.Fatalf("%s: fetched other bytes", p)
		}
	}
}

// TestBoundedBuffer: the in-memory copy of an encoded object refuses to
// pass encodeInMemoryLimit, and a reused buffer keeps its memory within
// that limit (the agent keeps a few in its free list).
func TestBoundedBuffer(t *testing.T) {
	var b boundedBuffer
	b.Reset(100)
	chunk := bytes.Repeat([]byte{7}, 1<<20)
	for i := 0; i < encodeInMemoryLimit>>20; i++ {
		if _, err := b.Write(chunk); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if len(b.Bytes()) != encodeInMemoryLimit || cap(b.Bytes()) > encodeInMemoryLimit {
		t.Fatalf("len %d cap %d, want both %d", len(b.Bytes()), cap(b.Bytes()), encodeInMemoryLimit)
	}
	if _, err := b.Write([]byte{1}); !errors.Is(err, errTooBig) {
		t.Fatalf("write past the limit: %v, want errTooBig", err)
	}
	b.Reset(10)
	if len(b.Bytes()) != 0 || cap(b.Bytes()) != encodeInMemoryLimit {
		t.Fatalf("after Reset: len %d cap %d, want 0 and the memory kept", len(b.Bytes()), cap(b.Bytes()))
	}
	if _, err := b.Write([]byte("abc")); err != nil || string(b.Bytes()) != "abc" {
		t.Fatalf("after Reset: %q, %v", b.Bytes(), err)
	}
}

// TestPushNewSegmentRequests: a new segment costs one request, its
// conditional upload, on a store that refuses a second create of a key;
// on one that ignores the condition, a look at the key comes first.
func TestPushNewSegmentRequests(t *testing.T) {
	ctx := context.Background()
	for _, ignores := range []bool{false, true} {
		r := openRepo(t, t.TempDir(), codec.LZ4)
		f := storetest.NewFaults(r.Store)
		f.IgnoreIfAbsent = ignores
		r.Store = f
		dir := t.TempDir()
		first, _ := writeCompressible(t, dir, 5, 1<<20, 0)
		if _, err := Push(ctx, r, first, PushOptions{}); err != nil {
			t.Fatal(err)
		}
		f.Set()
		next, _ := writeCompressible(t, dir, 6, 1<<20, 0)
		if _, err := Push(ctx, r, next, PushOptions{}); err != nil {
			t.Fatal(err)
		}
		stats, puts, gets := f.Calls(storetest.Stat), f.Calls(storetest.Put), f.Calls(storetest.Get)
		want := 0
		if ignores {
			want = 1
		}
		if stats != want || puts != 1 || gets != 0 {
			t.Errorf("store ignoring the condition %v: %d stats, %d puts, %d gets for a new segment; want %d, 1, 0", ignores, stats, puts, gets, want)
		}
	}
}
