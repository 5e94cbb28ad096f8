package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// signedRepos returns a writer holding the signing key and a reader
// holding its verify key, on one file:// store.
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
	return &Repo{Store: st, Codec: codec.Settings{Compression: codec.LZ4}, Sign: sk}, &Repo{Store: st, Verify: []crypto.VerifyKey{vk}}
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
	if err := st.Put(context.Background(), to, bytes.NewReader(body), cloud.PutOptions{Metadata: info.Metadata}); err != nil {
		t.Fatal(err)
	}
}
