package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// signedBackupStore makes a file store holding segments 1 to 8 of cluster
// 42 (signed with the test signing key) and a full backup base_1 (segment
// 2) whose manifest is signed with the key in signingKey, and returns its
// URL.
func signedBackupStore(t *testing.T, dir, signingKey string) string {
	t.Helper()
	store := filepath.Join(dir, "store")
	url := "file://" + store
	for seg := 1; seg <= 8; seg++ {
		if code, _, e := runCLI(t, "wal-push", "--store", url, "--compression", "none", fakeSegment(t, dir, fmt.Sprintf("0000000100000000000000%02X", seg), 42, 3)); code != 0 {
			t.Fatalf("wal-push: %s", e)
		}
	}
	ctx := context.Background()
	st, err := cloud.Open(ctx, url, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(signingKey, false)
	if err != nil {
		t.Fatal(err)
	}
	r := &repo.Repo{Store: st, Sign: sk, AllowUnsigned: true, Cluster: "42"}
	m := chainManifest("base_1", 2)
	if err := st.Put(ctx, repo.BackupKey(m.Name, "part-00000"), cloud.Bytes([]byte("hello")), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteManifest(ctx, m, true); err != nil {
		t.Fatal(err)
	}
	return url
}

// A restore whose verify key is not the one the backups were signed with
// (a key rotated away, a host that signs with another key) says so
// (exit 4), instead of "the store has no complete backup".
func TestRestoreNamesUnauthenticatedBackups(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other.key")
	if _, err := crypto.GenerateSigningKey(other); err != nil {
		t.Fatal(err)
	}
	store := signedBackupStore(t, dir, other)
	dest := filepath.Join(dir, "dest")
	code, _, e := runCLI(t, "restore", dest, "--store", store)
	if code != exitIntegrity || !strings.Contains(e, "1 backup(s) fail authentication (base_1)") || !strings.Contains(e, "check verify-key") ||
		strings.Contains(e, "run walvault backup-push first") {
		t.Fatalf("exit %d: %s", code, e)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("DEST created")
	}
}
