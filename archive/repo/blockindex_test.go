package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// partLike is a part's worth of bytes that compress unevenly: runs of
// zeros, text, and random bytes.
func partLike(n int) []byte {
	var b bytes.Buffer
	rnd := randomBytes(n, 9)
	for i := 0; b.Len() < n; i++ {
		switch i % 3 {
		case 0:
			b.Write(make([]byte, 70000+i*13))
		case 1:
			b.WriteString(strings.Repeat(fmt.Sprintf("row %d of a table, ", i), 3000))
		default:
			b.Write(rnd[:50000+i*7])
		}
	}
	return b.Bytes()[:n]
}

// indexedPart stores data as part-00000 of a backup "b" the way
// backup-push does (chunked, indexed, index stored) and returns the
// manifest that names it.
func indexedPart(t *testing.T, r *Repo, data []byte) *Manifest {
	t.Helper()
	ctx := context.Background()
	key := BackupKey("b", PartName(0))
	st, sums, err := r.PutChunked(ctx, key, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		PutOptions{Indexed: true, PutOptions: cloud.PutOptions{IfAbsent: true}})
	if err != nil {
		t.Fatal(err)
	}
	p := Part{Name: PartName(0), Size: st.Size, StoredSize: st.StoredSize, SHA256: st.SHA256, Sums: sums}
	if st.Index != nil {
		if p.Index, p.IndexSize, err = r.PutBlockIndex(ctx, key, st.Index); err != nil {
			t.Fatal(err)
		}
	}
	return &Manifest{Name: "b", Parts: []Part{p}, Encrypted: len(r.Codec.Recipients) > 0}
}

func indexRepo(t *testing.T, c codec.Compression, encrypted bool) *Repo {
	t.Helper()
	st, err := cloud.Open(context.Background(), "file://"+filepath.Join(t.TempDir(), "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &Repo{Store: st, Codec: codec.Settings{Compression: c}}
	if encrypted {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		r.Codec.Recipients, r.Identities = []age.Recipient{id.Recipient()}, []age.Identity{id}
	}
	return r
}

// readRanges reads ranges of part 0 of m and returns what each got.
func readRanges(ctx context.Context, r *Repo, m *Manifest, ranges [][2]int64) ([][]byte, int64, error) {
	var fetched atomic.Int64
	pr, err := r.OpenPartRanges(ctx, m, 0, &fetched)
	if err != nil {
		return nil, fetched.Load(), err
	}
	out := make([][]byte, len(ranges))
	var trs []TarRange
	for i, rg := range ranges {
		trs = append(trs, TarRange{Off: rg[0], N: rg[1], Sink: func(off int64, b []byte) error {
			if off != rg[0]+int64(len(out[i])) {
				return fmt.Errorf("range %d: bytes at %d after %d", i, off, len(out[i]))
			}
			out[i] = append(out[i], b...)
			return nil
		}})
	}
	err = pr.Read(ctx, trs)
	return out, fetched.Load(), err
}

// TestBlockIndexRoundTrip: a part stored indexed reads back any range
// through its index, fetching a fraction of it, encrypted or not; zstd
// parts are not indexed.
func TestBlockIndexRoundTrip(t *testing.T) {
	data := partLike(5<<20 + 12345)
	n := int64(len(data))
	ranges := [][2]int64{{0, 10}, {1000, 5000}, {IndexBlockSize - 3, 7}, {2 << 20, 1 << 20}, {n - 100, 100}, {n - 1, 1}, {3 << 20, 0}}
	for _, c := range []codec.Compression{codec.LZ4, codec.None, codec.Zstd} {
		for _, enc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/encrypted=%v", c, enc), func(t *testing.T) {
				ctx := context.Background()
				r := indexRepo(t, c, enc)
				m := indexedPart(t, r, data)
				p := m.Parts[0]
				if c == codec.Zstd {
					if p.Index != "" {
						t.Fatal("a zstd part has an index")
					}
					return
				}
				if p.Index == "" {
					t.Fatal("no index")
				}
				x, err := r.LoadBlockIndex(ctx, BackupKey("b", p.Name), p, enc)
				if err != nil {
					t.Fatal(err)
				}
				if x.BlockSize != IndexBlockSize || x.Blocks() != int(chunkCount(n, IndexBlockSize)) {
					t.Fatalf("index of %d blocks of %d", x.Blocks(), x.BlockSize)
				}
				got, fetched, err := readRanges(ctx, r, m, ranges)
				if err != nil {
					t.Fatal(err)
				}
				for i, rg := range ranges {
					if !bytes.Equal(got[i], data[rg[0]:rg[0]+rg[1]]) {
						t.Fatalf("range %v: %d bytes, not the part's", rg, len(got[i]))
					}
				}
				// 1 MiB and a few blocks of 5 MiB, the index and (encrypted)
				// the age header and last chunk.
				if fetched <= 0 || fetched > p.StoredSize/2 {
					t.Fatalf("fetched %d of %d stored bytes", fetched, p.StoredSize)
				}
			})
		}
	}
}

// rewrite replaces the stored object at key with f(its bytes).
func rewrite(t *testing.T, r *Repo, key string, f func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	rc, _, err := r.Store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Store.Put(ctx, key, cloud.Bytes(f(b)), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestBlockIndexRefuses: nothing of a part whose index or blocks were
// changed in the store reaches a sink.
func TestBlockIndexRefuses(t *testing.T) {
	data := partLike(3 << 20)
	key := BackupKey("b", PartName(0))
	for _, enc := range []bool{false, true} {
		tests := []struct {
			name string
			harm func(t *testing.T, r *Repo, m *Manifest)
			want error
		}{
			{"index digest", func(t *testing.T, r *Repo, m *Manifest) {
				m.Parts[0].Index = strings.Repeat("0", 64)
			}, archive.ErrIntegrity},
			{"index missing", func(t *testing.T, r *Repo, m *Manifest) {
				if err := r.Store.Delete(context.Background(), IndexKey(key)); err != nil {
					t.Fatal(err)
				}
			}, archive.ErrIntegrity},
			{"index altered", func(t *testing.T, r *Repo, m *Manifest) {
				rewrite(t, r, IndexKey(key), func(b []byte) []byte { return append(b[:len(b)-1], b[len(b)-1]^1) })
			}, archive.ErrIntegrity},
			{"a block flipped", func(t *testing.T, r *Repo, m *Manifest) {
				rewrite(t, r, key, func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b })
			}, archive.ErrIntegrity},
			{"the part replaced by one of other content", func(t *testing.T, r *Repo, m *Manifest) {
				// Written by someone who can encrypt to the recipient:
				// age accepts it, the block digests do not.
				forged := partLike(3 << 20)
				forged[2<<20] ^= 1
				st, err := r.Put(context.Background(), "forged", func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(forged)), nil }, PutOptions{Indexed: true})
				if err != nil {
					t.Fatal(err)
				}
				rewrite(t, r, key, func([]byte) []byte {
					rc, _, _ := r.Store.Get(context.Background(), "forged")
					b, _ := io.ReadAll(rc)
					_ = rc.Close()
					return b
				})
				m.Parts[0].StoredSize = st.StoredSize
			}, archive.ErrIntegrity},
			{"the part truncated", func(t *testing.T, r *Repo, m *Manifest) {
				rewrite(t, r, key, func(b []byte) []byte { return b[:len(b)-70000] })
			}, archive.ErrIntegrity},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("encrypted=%v/%s", enc, tc.name), func(t *testing.T) {
				r := indexRepo(t, codec.LZ4, enc)
				m := indexedPart(t, r, data)
				tc.harm(t, r, m)
				got, _, err := readRanges(context.Background(), r, m, [][2]int64{{0, 100}, {100, int64(len(data)) - 100}})
				if !errors.Is(err, tc.want) {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
				// Ranges before the damage may have been handed on: each
				// one is the part's own bytes.
				for i, rg := range [][2]int64{{0, 100}, {100, int64(len(data)) - 100}} {
					if len(got) > i && len(got[i]) > 0 && !bytes.Equal(got[i], data[rg[0]:rg[0]+int64(len(got[i]))]) {
						t.Fatalf("range %d: bytes handed on that are not the part's", i)
					}
				}
			})
		}
	}
	// An encrypted part read without the identity.
	r := indexRepo(t, codec.LZ4, true)
	m := indexedPart(t, r, data)
	r.Identities = nil
	if _, _, err := readRanges(context.Background(), r, m, [][2]int64{{0, 1}}); !errors.Is(err, crypto.ErrNoIdentity) {
		t.Fatalf("no identity: %v", err)
	}
}

// TestParseBlockIndexBounds: an index is refused when a length or count
// does not fit the part, whatever its digest.
func TestParseBlockIndexBounds(t *testing.T) {
	r := indexRepo(t, codec.LZ4, false)
	data := partLike(1<<20 + 5)
	m := indexedPart(t, r, data)
	x, err := r.LoadBlockIndex(context.Background(), BackupKey("b", PartName(0)), m.Parts[0], false)
	if err != nil {
		t.Fatal(err)
	}
	good := string(x.Encode())
	if _, err := ParseBlockIndex([]byte(good), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(good, "\n"), "\n")
	head, first := lines[0], lines[1]
	f := strings.Fields(first)
	with := func(h string, l ...string) string { return strings.Join(append([]string{h}, l...), "\n") + "\n" }
	for name, bad := range map[string]string{
		"other tar size":       with(strings.Replace(head, fmt.Sprintf("tar=%d", len(data)), "tar=99", 1), lines[1:]...),
		"block too long":       with(head, append([]string{"99999999 c " + f[2]}, lines[2:]...)...),
		"beyond the encoded":   with(strings.Replace(head, fmt.Sprintf("encoded=%d", x.EncodedSize), "encoded=30", 1), lines[1:]...),
		"a block missing":      with(head, lines[2:]...),
		"a block too many":     with(head, append(lines[1:], first)...),
		"stored as is, short":  with(head, append([]string{f[0] + " u " + f[2]}, lines[2:]...)...),
		"block size not lz4's": with(strings.Replace(head, "block=262144", "block=1000", 1), lines[1:]...),
		"negative length":      with(head, append([]string{"-5 c " + f[2]}, lines[2:]...)...),
		"bad digest":           with(head, append([]string{f[0] + " c " + strings.ToUpper(f[2])}, lines[2:]...)...),
		"trailing bytes":       good + "x",
	} {
		if _, err := ParseBlockIndex([]byte(bad), int64(len(data))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A range outside the part is refused before anything is fetched.
	if _, _, err := readRanges(context.Background(), r, m, [][2]int64{{int64(len(data)) - 5, 10}}); !errors.Is(err, archive.ErrIntegrity) {
		t.Errorf("a range past the part: %v", err)
	}
}
