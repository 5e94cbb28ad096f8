package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
	"github.com/walvault/walvault/crypto"
)

const testSysID = 7312345678901234567

// writeSegment writes segment segNo of timeline 1 into dir: a valid long
// page header, then random bytes (which do not compress).
func writeSegment(t *testing.T, dir string, segNo uint64, segSize int64) (string, []byte) {
	t.Helper()
	b := make([]byte, segSize)
	rng := rand.NewChaCha8([32]byte{byte(segNo)})
	_, _ = rng.Read(b[archive.LongHeaderLen:])
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)                // magic
	le.PutUint16(b[2:], 0x0002)                // info: long header
	le.PutUint32(b[4:], 1)                     // timeline
	le.PutUint64(b[8:], segNo*uint64(segSize)) // pageaddr
	le.PutUint64(b[24:], testSysID)            // system identifier
	le.PutUint32(b[32:], uint32(segSize))      // segment size
	le.PutUint32(b[36:], 8192)                 // block size
	p := filepath.Join(dir, archive.SegmentName(1, segNo, segSize))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func openRepo(t *testing.T, dir string, c codec.Compression) *repo.Repo {
	t.Helper()
	st, err := cloud.Open(context.Background(), "file://"+dir, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// One repo both signs (as wal-push does) and verifies (as wal-fetch).
	keyFile := filepath.Join(t.TempDir(), "sign.key")
	vk, err := crypto.GenerateSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	return &repo.Repo{Store: st, Codec: codec.Settings{Compression: c}, Sign: sk, Verify: []crypto.VerifyKey{vk}}
}

// fetchInto fetches name into a new directory and returns DEST.
func fetchInto(t *testing.T, r *repo.Repo, name string) (string, FetchResult, error) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "pg_wal", name)
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		t.Fatal(err)
	}
	res, err := Fetch(context.Background(), r, name, dest, FetchOptions{})
	return dest, res, err
}

// leftovers lists what is in DEST's directory besides DEST.
func leftovers(t *testing.T, dest string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(dest))
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		if e.Name() != filepath.Base(dest) {
			left = append(left, e.Name())
		}
	}
	return left
}

// TestFetchRoundTrip: a segment pushed by Push comes back byte-identical,
// through the in-memory upload (it encodes small) and the streaming one
// (16 MiB uncompressed is over the in-memory limit); a damaged stored
// object is ErrIntegrity and leaves neither DEST nor a temp file.
func TestFetchRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       codec.Compression
		segSize int64
	}{
		{"lz4-1MiB", codec.LZ4, 1 << 20},
		{"none-16MiB-streamed", codec.None, 16 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			storeDir := t.TempDir()
			r := openRepo(t, storeDir, tc.c)
			src, want := writeSegment(t, t.TempDir(), 3, tc.segSize)
			pres, err := Push(ctx, r, src, PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pres.Already || pres.StoredBytes == 0 || pres.RawBytes != tc.segSize {
				t.Fatalf("push result %+v", pres)
			}
			name := filepath.Base(src)
			dest, res, err := fetchInto(t, r, name)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) || res.Size != tc.segSize || res.Prefetched {
				t.Fatalf("fetched %d bytes (%+v), not the %d pushed", len(got), res, len(want))
			}
			if left := leftovers(t, dest); len(left) != 0 {
				t.Fatalf("left beside DEST: %v", left)
			}

			// Flip a byte near the end of the stored object.
			obj := filepath.Join(storeDir, filepath.FromSlash(repo.WALKey(archive.WALFile{Name: name, Kind: archive.KindSegment})))
			b, err := os.ReadFile(obj)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-100] ^= 0x01
			if err := os.WriteFile(obj, b, 0o600); err != nil {
				t.Fatal(err)
			}
			dest, _, err = fetchInto(t, r, name)
			if !errors.Is(err, archive.ErrIntegrity) {
				t.Fatalf("damaged object: %v, want ErrIntegrity", err)
			}
			if _, serr := os.Stat(dest); serr == nil {
				t.Fatal("DEST written from a damaged object")
			}
			if left := leftovers(t, dest); len(left) != 0 {
				t.Fatalf("left beside DEST: %v", left)
			}
		})
	}
}

func TestFetchMissing(t *testing.T) {
	r := openRepo(t, t.TempDir(), codec.LZ4)
	name := archive.SegmentName(1, 9, 1<<20)
	dest, _, err := fetchInto(t, r, name)
	if !errors.Is(err, archive.ErrNotInArchive) || err.Error() != name+": not in the archive" {
		t.Fatalf("got %v, want %q", err, name+": not in the archive")
	}
	if _, serr := os.Stat(dest); serr == nil {
		t.Fatal("DEST written")
	}
	if left := leftovers(t, dest); len(left) != 0 {
		t.Fatalf("left beside DEST: %v", left)
	}
}

// TestFetchInterruptedStartsOver: a download the connection resets after
// half the object is fetched again, and the temp file is written from its
// start: DEST is the segment, not half of it plus all of it.
func TestFetchInterruptedStartsOver(t *testing.T) {
	for _, c := range []codec.Compression{codec.LZ4, codec.None} {
		t.Run(string(c), func(t *testing.T) {
			ctx := context.Background()
			r := openRepo(t, t.TempDir(), c)
			src, want := writeSegment(t, t.TempDir(), 5, 4<<20) // lz4 blocks are 1 MiB: half is 2 decoded
			if _, err := Push(ctx, r, src, PushOptions{}); err != nil {
				t.Fatal(err)
			}
			inner := r.Store.(interface{ Unwrap() cloud.Store }).Unwrap()
			cut := storetest.NewFaults(inner) // the first download reset halfway
			cut.Set(storetest.Rule{Op: storetest.Get, Times: 1, Cut: 0.5})
			fr := *r
			fr.Store = cloud.WithRetry(cut, cloud.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond})
			dest, res, err := fetchInto(t, &fr, filepath.Base(src))
			if err != nil {
				t.Fatal(err)
			}
			if n := cut.Calls(storetest.Get); n != 2 {
				t.Fatalf("%d downloads, want 2 (one cut, one whole)", n)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) || res.Size != int64(len(want)) {
				t.Fatalf("fetched %d bytes (%+v), not the %d pushed", len(got), res, len(want))
			}
			if left := leftovers(t, dest); len(left) != 0 {
				t.Fatalf("left beside DEST: %v", left)
			}
		})
	}
}

// A segment planted by someone who can write to the bucket but holds no
// signing key (uncompressed, unencrypted, with a correct checksum in its
// metadata) is refused: nothing reaches DEST. Read as an old, unsigned
// archive (--allow-unsigned) the same object is accepted.
func TestFetchRefusesUnsignedSegment(t *testing.T) {
	ctx := context.Background()
	storeDir := t.TempDir()
	r := openRepo(t, storeDir, codec.LZ4)
	attacker := &repo.Repo{Store: r.Store, Codec: codec.Settings{Compression: codec.None}, AllowUnsigned: true}
	src, want := writeSegment(t, t.TempDir(), 4, 1<<20)
	if _, err := Push(ctx, attacker, src, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(src)
	dest, _, err := fetchInto(t, r, name)
	if !errors.Is(err, crypto.ErrBadProof) || !strings.Contains(err.Error(), "no proof") {
		t.Fatalf("an unsigned segment: %v, want ErrBadProof", err)
	}
	if _, serr := os.Stat(dest); serr == nil {
		t.Fatal("DEST written from an unsigned object")
	}
	if left := leftovers(t, dest); len(left) != 0 {
		t.Fatalf("left beside DEST: %v", left)
	}
	old := &repo.Repo{Store: r.Store, AllowUnsigned: true}
	dest, _, err = fetchInto(t, old, name)
	if err != nil {
		t.Fatalf("--allow-unsigned: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("--allow-unsigned fetched other bytes")
	}
}
