package repo_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

func openFile(t *testing.T, dir string) cloud.Store {
	t.Helper()
	st, err := cloud.Open(context.Background(), "file://"+dir, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close(st) })
	return st
}

// copySource is a signed archive with cluster.json, one backup with a mark
// record, and two WAL objects.
func copySource(t *testing.T) (*repo.Repo, *repo.Manifest, string) {
	t.Helper()
	src := backuptest.SignedRepo(t, openFile(t, filepath.Join(t.TempDir(), "src")))
	ctx := context.Background()
	if err := src.EnsureCluster(ctx, 1, 16<<20, ""); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	backuptest.WriteTree(t, tree, map[string]string{"PG_VERSION": "15\n", "base/1/1259": string(bytes.Repeat([]byte("x"), 3000)), "global/pg_control": "control"})
	m := backuptest.Push(t, src, tree, "base_1", nil)
	if err := src.WriteMark(ctx, "base_1", true, m.StopTime); err != nil {
		t.Fatal(err)
	}
	backuptest.PutWAL(t, src, "000000010000000000000002")
	backuptest.PutWAL(t, src, "00000002.history")
	_, sum, err := src.ReadManifestSum(ctx, "base_1", true)
	if err != nil {
		t.Fatal(err)
	}
	return src, m, sum
}

func folderOf(t *testing.T, r *repo.Repo, name string) *repo.Folder {
	t.Helper()
	fs, err := repo.ListFolders(context.Background(), r.Store, repo.BackupPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no folder %s", name)
	return nil
}

func TestCopyArchive(t *testing.T) {
	ctx := context.Background()
	src, m, sum := copySource(t)
	dstStore := openFile(t, filepath.Join(t.TempDir(), "dst"))
	dst := &repo.Repo{Store: dstStore, Verify: src.Verify}
	if copied, err := src.CopyCluster(ctx, dst); err != nil || !copied {
		t.Fatalf("CopyCluster: %v, %v", copied, err)
	}
	var stored int64
	var done []string
	var mu sync.Mutex // the callbacks are called by the copies at once
	opts := repo.CopyOptions{Concurrency: 2,
		OnStored: func(n int64) { mu.Lock(); stored += n; mu.Unlock() },
		OnObject: func(r repo.CopyResult) { mu.Lock(); done = append(done, r.Key); mu.Unlock() }}
	if err := src.CopyBackup(ctx, dstStore, m, folderOf(t, src, "base_1"), sum, opts); err != nil {
		t.Fatal(err)
	}
	if last := done[len(done)-1]; last != repo.BackupKey("base_1", repo.ManifestFile) {
		t.Errorf("the manifest was not copied last: %v", done)
	}
	for _, k := range []string{"wal/0000000100000000/000000010000000000000002", "wal/history/00000002.history"} {
		if _, err := src.CopyWAL(ctx, dstStore, k, 16<<20, repo.CopyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Byte for byte, metadata included: the proofs hold in the copy.
	want, err := repo.ListAll(ctx, src.Store, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := repo.ListAll(ctx, dstStore, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("copied %d objects, the source has %d", len(got), len(want))
	}
	for k := range want {
		a, am := backuptest.GetObject(t, src.Store, k)
		b, bm := backuptest.GetObject(t, dstStore, k)
		if !bytes.Equal(a, b) || am[repo.MetaProof] != bm[repo.MetaProof] {
			t.Errorf("%s differs in the copy", k)
		}
	}
	if stored == 0 {
		t.Error("no progress reported")
	}
	if err := dst.BindCluster(ctx); err != nil || dst.Cluster != "1" {
		t.Fatalf("the copy's cluster.json: %q, %v", dst.Cluster, err)
	}
	cm, err := dst.ReadManifest(ctx, "base_1", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range cm.Parts {
		if _, err := dst.LoadSums(ctx, repo.BackupKey("base_1", p.Name), p.Sums, p.StoredSize); err != nil {
			t.Errorf("copied sums: %v", err)
		}
	}

	// Again: nothing to do, every object is found the same.
	have, _ := repo.ListAll(ctx, dstStore, "")
	done = nil
	if err := src.CopyBackup(ctx, dstStore, m, folderOf(t, src, "base_1"), sum, repo.CopyOptions{Have: have, OnObject: func(r repo.CopyResult) { mu.Lock(); done = append(done, r.Key); mu.Unlock() }}); err != nil || len(done) != 0 {
		t.Errorf("second copy: %v, copied %v", err, done)
	}
	res, err := src.CopyWAL(ctx, dstStore, "wal/0000000100000000/000000010000000000000002", 16<<20, repo.CopyOptions{})
	if err != nil || !res.Already {
		t.Errorf("WAL copied twice: %+v, %v", res, err)
	}
}

// TestCopyRefusesWhatFailsItsCheck: an object altered in the source is
// not copied, and the destination holds nothing under its key.
func TestCopyRefusesWhatFailsItsCheck(t *testing.T) {
	ctx := context.Background()
	src, m, sum := copySource(t)
	root := src.Store.String()[len("file://"):]
	tamper := func(key string) {
		p := filepath.Join(root, filepath.FromSlash(key))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 1
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	part := repo.BackupKey("base_1", m.Parts[0].Name)
	wal := "wal/0000000100000000/000000010000000000000002"
	tamper(part)
	tamper(wal)
	dstStore := openFile(t, filepath.Join(t.TempDir(), "dst"))
	err := src.CopyBackup(ctx, dstStore, m, folderOf(t, src, "base_1"), sum, repo.CopyOptions{Concurrency: 1})
	if !errors.Is(err, archive.ErrIntegrity) {
		t.Errorf("copy of a tampered part: %v, want ErrIntegrity", err)
	}
	if _, err := dstStore.Stat(ctx, part); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("the tampered part is in the destination: %v", err)
	}
	if _, err := dstStore.Stat(ctx, repo.BackupKey("base_1", repo.ManifestFile)); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("a manifest landed although a part failed: %v", err)
	}
	_, err = src.CopyWAL(ctx, dstStore, wal, 16<<20, repo.CopyOptions{})
	if !errors.Is(err, archive.ErrIntegrity) {
		t.Errorf("copy of a tampered WAL object: %v", err)
	}
	if _, err := dstStore.Stat(ctx, wal); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("the tampered WAL object is in the destination: %v", err)
	}
	// Other content under a key of the destination is never replaced.
	backuptest.PutObject(t, dstStore, "wal/history/00000002.history", []byte("planted"), nil)
	_, err = src.CopyWAL(ctx, dstStore, "wal/history/00000002.history", 16<<20, repo.CopyOptions{})
	if !errors.Is(err, archive.ErrConflict) {
		t.Errorf("copy over other content: %v", err)
	}
	if b, _ := backuptest.GetObject(t, dstStore, "wal/history/00000002.history"); string(b) != "planted" {
		t.Error("the destination's object was replaced")
	}
	// A destination of another cluster is refused.
	other := backuptest.SignedRepo(t, openFile(t, filepath.Join(t.TempDir(), "other")))
	if err := other.EnsureCluster(ctx, 2, 16<<20, ""); err != nil {
		t.Fatal(err)
	}
	other.Verify = append(other.Verify, src.Verify...)
	if _, err := src.CopyCluster(ctx, other); !errors.Is(err, archive.ErrOtherCluster) {
		t.Errorf("copy into another cluster's prefix: %v", err)
	}
}
