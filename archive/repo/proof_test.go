package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// signedRepos returns a writer holding the signing key and a reader
// holding its verify key, on one file:// store.
// testCluster is the system identifier test objects are bound to.
const testCluster = "7300000000000000001"

func signedRepos(t *testing.T) (w, r *Repo) {
	t.Helper()
	dir := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+filepath.Join(dir, "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	vk, err := crypto.GenerateSigningKey(filepath.Join(dir, "sign.key"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(filepath.Join(dir, "sign.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	return &Repo{Store: st, Codec: codec.Settings{Compression: codec.LZ4}, Sign: sk, Cluster: testCluster}, &Repo{Store: st, Verify: []crypto.VerifyKey{vk}}
}

func putSigned(t *testing.T, w *Repo, key string, content []byte) {
	t.Helper()
	sum := sha256.Sum256(content)
	src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
	if _, err := w.Put(context.Background(), key, src, PutOptions{PutOptions: cloud.PutOptions{Metadata: contentMeta(hex.EncodeToString(sum[:]), int64(len(content)))}}); err != nil {
		t.Fatal(err)
	}
}

func load(r *Repo, key string, want Want) ([]byte, error) {
	var got []byte
	err := r.Load(context.Background(), key, want, func(rd io.Reader, _ cloud.ObjectInfo) error {
		var err error
		got, err = io.ReadAll(rd)
		return err
	})
	return got, err
}

func TestProofs(t *testing.T) {
	ctx := context.Background()
	w, r := signedRepos(t)
	a := WALKey(archive.WALFile{Name: "000000010000000000000001"})
	b := WALKey(archive.WALFile{Name: "000000010000000000000002"})
	putSigned(t, w, a, []byte("segment one"))
	putSigned(t, w, b, []byte("segment two"))

	if got, err := load(r, a, Want{Proof: true}); err != nil || string(got) != "segment one" {
		t.Fatalf("a signed object: %q, %v", got, err)
	}
	// Swapping two objects' names: each proof names its key.
	copyObject(t, w.Store, a, b)
	if _, err := load(r, b, Want{Proof: true}); !errors.Is(err, crypto.ErrBadProof) {
		t.Fatalf("an object moved under another name: %v", err)
	}
	// An object without proof (what a bucket writer without the signing
	// key can make) is refused, and accepted with AllowUnsigned.
	unsigned := &Repo{Store: w.Store}
	c := WALKey(archive.WALFile{Name: "000000010000000000000003"})
	putSigned(t, unsigned, c, []byte("planted"))
	if _, err := load(r, c, Want{Proof: true}); !errors.Is(err, crypto.ErrBadProof) || !strings.Contains(err.Error(), "no proof") {
		t.Fatalf("an unsigned object: %v", err)
	}
	old := &Repo{Store: w.Store, AllowUnsigned: true}
	if got, err := load(old, c, Want{Proof: true}); err != nil || string(got) != "planted" {
		t.Fatalf("--allow-unsigned: %q, %v", got, err)
	}
	// Another key's proof is refused.
	other, _ := signedRepos(t)
	other.Store = w.Store
	d := WALKey(archive.WALFile{Name: "000000010000000000000004"})
	putSigned(t, other, d, []byte("other signer"))
	if _, err := load(r, d, Want{Proof: true}); !errors.Is(err, crypto.ErrBadProof) || !strings.Contains(err.Error(), "not among") {
		t.Fatalf("another signer: %v", err)
	}
	// Without verify keys a reader cannot check anything: it says so.
	if _, err := load(&Repo{Store: w.Store}, a, Want{Proof: true}); !errors.Is(err, crypto.ErrBadProof) || !strings.Contains(err.Error(), "--verify-key") {
		t.Fatalf("no verify key: %v", err)
	}
	_ = ctx
}

// The content must be what the proof vouches for: a proof copied onto
// other bytes, or a truncated object, fails.
func TestProofCoversContent(t *testing.T) {
	w, r := signedRepos(t)
	a := WALKey(archive.WALFile{Name: "000000010000000000000001"})
	putSigned(t, w, a, bytes.Repeat([]byte("wal "), 1000))
	info, err := w.Store.Stat(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	// Same metadata (proof included), other content.
	forged := &Repo{Store: w.Store, Codec: codec.Settings{Compression: codec.LZ4}}
	src := func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(strings.Repeat("evil", 1000))), nil
	}
	if _, err := forged.Put(context.Background(), a, src, PutOptions{PutOptions: cloud.PutOptions{Metadata: info.Metadata}}); err != nil {
		t.Fatal(err)
	}
	if _, err := load(r, a, Want{Proof: true}); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("a proof over other content: %v", err)
	}
}

func TestManifestProofAndReplay(t *testing.T) {
	ctx := context.Background()
	w, r := signedRepos(t)
	m := sampleManifest()
	if err := w.WriteManifest(ctx, m, true); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadManifest(ctx, m.Name, false); err != nil || got.Name != m.Name {
		t.Fatalf("a signed manifest: %v", err)
	}
	// An old manifest replayed under a new name.
	copyObject(t, w.Store, BackupKey(m.Name, ManifestFile), BackupKey("base_replayed", ManifestFile))
	if _, err := r.ReadManifest(ctx, "base_replayed", true); !errors.Is(err, crypto.ErrBadProof) {
		t.Fatalf("a replayed manifest: %v", err)
	}
	cat, err := r.LoadCatalog(ctx, CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, f := range cat.Folders {
		if f.Err != nil {
			bad = append(bad, f.Name)
		}
	}
	if len(cat.Backups()) != 1 || strings.Join(bad, ",") != "base_replayed" {
		t.Fatalf("the catalog: %d good, bad %v", len(cat.Backups()), bad)
	}
}

func TestDataObjectsMustBeEncrypted(t *testing.T) {
	dir := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+dir, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	idPath := filepath.Join(t.TempDir(), "id")
	if _, err := crypto.Generate(idPath); err != nil {
		t.Fatal(err)
	}
	ids, err := crypto.LoadIdentities(idPath, false)
	if err != nil {
		t.Fatal(err)
	}
	key := WALKey(archive.WALFile{Name: "000000010000000000000001"})
	putSigned(t, &Repo{Store: st}, key, []byte("plain text planted by a bucket writer"))
	reader := &Repo{Store: st, Identities: ids, AllowUnsigned: true}
	if _, err := load(reader, key, Want{Proof: true, Encrypted: true}); !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "not encrypted") {
		t.Fatalf("an unencrypted data object with an identity configured: %v", err)
	}
	reader.AllowUnencrypted = true
	if _, err := load(reader, key, Want{Proof: true, Encrypted: true}); err != nil {
		t.Fatalf("--allow-unencrypted: %v", err)
	}
}

func TestMaxSizeStopsABomb(t *testing.T) {
	dir := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+dir, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := &Repo{Store: st, Codec: codec.Settings{Compression: codec.Zstd}}
	key := WALKey(archive.WALFile{Name: "00000002.history", Kind: archive.KindHistory})
	big := make([]byte, 64<<20) // zeros: compresses to a few KiB
	src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(big)), nil }
	stored, err := w.Put(context.Background(), key, src, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stored.StoredSize > 64<<10 {
		t.Fatalf("the bomb is %d bytes stored", stored.StoredSize)
	}
	var read int64
	err = (&Repo{Store: st, AllowUnsigned: true}).Load(context.Background(), key, Want{MaxSize: 1 << 20}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		n, err := io.Copy(io.Discard, rd)
		read = n
		return err
	})
	if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "more than 1048576 bytes") || read > 1<<20 {
		t.Fatalf("a 64 MiB object under a 1 MiB cap: read %d, %v", read, err)
	}
}

func copyObject(t *testing.T, st cloud.Store, from, to string) {
	t.Helper()
	rc, info, err := st.Get(context.Background(), from)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	body, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Delete(context.Background(), to)
	if err := st.Put(context.Background(), to, cloud.Bytes(body), cloud.PutOptions{Metadata: info.Metadata}); err != nil {
		t.Fatal(err)
	}
}

// putEncoded stores content as wal-push stores WAL (proof v2: the SHA-256
// of the encoded stream, the CRC-32C of the plain bytes), after edit has
// changed the metadata before signing, with junk after the encoded bytes.
func putEncoded(t *testing.T, w *Repo, key string, content []byte, edit func(map[string]string), junk []byte) {
	t.Helper()
	var buf bytes.Buffer
	eh := sha256.New()
	enc, err := codec.NewWriterTap(&buf, w.Codec, eh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{
		MetaEncodedSHA256: hex.EncodeToString(eh.Sum(nil)),
		MetaCRC32C:        fmt.Sprintf("%08x", crc32.Checksum(content, crc32.MakeTable(crc32.Castagnoli))),
		MetaSize:          strconv.Itoa(len(content)),
	}
	if edit != nil {
		edit(meta)
	}
	if err := w.PutBytes(context.Background(), key, append(buf.Bytes(), junk...), cloud.PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
}

// TestProofV2: an object stated by its encoded stream loads when its proof
// and content agree, and each way of making them disagree is refused: a
// changed digest, CRC or size (the proof no longer matches), a proof copied
// onto other content or onto the same stream with bytes appended, and, when
// unsigned objects are allowed, a CRC that does not match the content.
func TestProofV2(t *testing.T) {
	content := bytes.Repeat([]byte("wal record "), 3000)
	for _, tc := range []struct {
		name     string
		encrypt  bool
		edit     func(map[string]string)
		junk     []byte
		unsigned bool // read with AllowUnsigned
		want     error
	}{
		{name: "signed"},
		{name: "signed, age", encrypt: true},
		{name: "CRC changed after signing", edit: func(m map[string]string) { m[MetaCRC32C] = "00000000" }, want: crypto.ErrBadProof},
		{name: "size changed after signing", edit: func(m map[string]string) { m[MetaSize] = "1" }, want: crypto.ErrBadProof},
		{name: "digest changed after signing", edit: func(m map[string]string) { m[MetaEncodedSHA256] = strings.Repeat("0", 64) }, want: crypto.ErrBadProof},
		{name: "both digests", edit: func(m map[string]string) { m[MetaSHA256] = strings.Repeat("0", 64) }, want: crypto.ErrBadProof},
		{name: "bytes after the frame", junk: []byte("appended"), want: archive.ErrIntegrity},
		{name: "bytes after the frame, age", encrypt: true, junk: []byte("appended"), want: archive.ErrIntegrity},
		{name: "wrong CRC, unsigned", unsigned: true, edit: func(m map[string]string) { m[MetaCRC32C] = "00000000" }, want: archive.ErrIntegrity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := signedRepos(t)
			if tc.encrypt {
				id, err := age.GenerateX25519Identity()
				if err != nil {
					t.Fatal(err)
				}
				w.Codec.Recipients, r.Identities = []age.Recipient{id.Recipient()}, []age.Identity{id}
			}
			key := WALKey(archive.WALFile{Name: "000000010000000000000001"})
			if tc.unsigned {
				w.Sign = nil
				r.AllowUnsigned = true
			}
			putEncoded(t, w, key, content, nil, nil)
			if tc.edit != nil || tc.junk != nil {
				// Re-store with the signed metadata edited, as a bucket
				// writer without the signing key could.
				info, err := w.Store.Stat(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Store.Delete(context.Background(), key); err != nil {
					t.Fatal(err)
				}
				nosign := *w
				nosign.Sign = nil
				putEncoded(t, &nosign, key, content, func(m map[string]string) {
					for k, v := range info.Metadata {
						m[k] = v
					}
					if tc.edit != nil {
						tc.edit(m)
					}
				}, tc.junk)
			}
			got, err := load(r, key, Want{Proof: true, ContentFromMeta: true, Encrypted: true})
			if tc.want == nil && (err != nil || !bytes.Equal(got, content)) {
				t.Fatalf("load: %d bytes, %v", len(got), err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("load: %v, want %v", err, tc.want)
			}
		})
	}
	// Other content under a copied v2 proof.
	w, r := signedRepos(t)
	key := WALKey(archive.WALFile{Name: "000000010000000000000002"})
	putEncoded(t, w, key, content, nil, nil)
	info, _ := w.Store.Stat(context.Background(), key)
	_ = w.Store.Delete(context.Background(), key)
	forged := &Repo{Store: w.Store, Codec: w.Codec}
	putEncoded(t, forged, key, bytes.Repeat([]byte("evil record "), 3000), func(m map[string]string) {
		for k, v := range info.Metadata {
			m[k] = v
		}
	}, nil)
	if _, err := load(r, key, Want{Proof: true}); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("a v2 proof over other content: %v", err)
	}
}

// sizeRecorder is the file store, noting the size hint of each Put.
type sizeRecorder struct {
	cloud.Store
	hints []int64
}

func (s *sizeRecorder) Put(ctx context.Context, key string, r cloud.Body, opts cloud.PutOptions) error {
	s.hints = append(s.hints, opts.SizeHint)
	return s.Store.Put(ctx, key, r, opts)
}

// TestPutBytesStatesItsSize: a body already in memory is announced to the
// store by its own size, not by the caller's hint (wal-push hints the
// plain segment's 16 MiB for an encoded body of a few): a store that
// reserves memory by the hint (S3's first part) reserved 16 MiB per
// segment.
func TestPutBytesStatesItsSize(t *testing.T) {
	w, r := signedRepos(t)
	rec := &sizeRecorder{Store: w.Store}
	w.Store = rec
	body := bytes.Repeat([]byte("x"), 1000)
	if err := w.PutBytes(context.Background(), "notes/one", body, cloud.PutOptions{SizeHint: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	if len(rec.hints) != 1 || rec.hints[0] != int64(len(body)) {
		t.Fatalf("size hints %v, want [%d]", rec.hints, len(body))
	}
	got, _, err := r.Store.Get(context.Background(), "notes/one")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if b, _ := io.ReadAll(got); !bytes.Equal(b, body) {
		t.Fatal("stored other bytes")
	}
}
