package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// A minimal manifest (format 1) of a backup with one part.
const testManifest = `{
  "format": 1, "name": "base_1", "pg_version": 150004, "system_identifier": "7300000000000000001", "timeline": 1,
  "start_lsn": "0/2000028", "stop_lsn": "0/2000100", "start_wal": "000000010000000000000002", "stop_wal": "000000010000000000000002",
  "start_time": "2026-11-01T00:00:00Z", "stop_time": "2026-11-01T00:00:05Z", "wal_segment_size": 16777216,
  "data_size": 0, "stored_size": 5, "compression": "none", "encrypted": false, "pgdata": "/d", "owner": {"uid": 1, "gid": 1},
  "backup_label": "", "parts": [{"name": "part-00000", "files": 0, "size": 5, "stored_size": 5,
  "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}], "file_count": 0
}
`

func TestMaintainCommands(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(filepath.Join(store, "backups", "base_1"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WALVAULT_STORE", "file://"+store)
	seg := fakeSegment(t, dir, "000000010000000000000002", 42, 3)
	if code, _, e := runCLI(t, "wal-push", "--compression", "none", seg); code != 0 {
		t.Fatalf("wal-push: %s", e)
	}

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"delete needs a rule", []string{"delete"}, exitUsage, "give a retention rule"},
		{"delete min-keep alone", []string{"delete", "--min-keep", "3"}, exitUsage, "give a retention rule"},
		{"bad window", []string{"delete", "--retain-window", "7 days"}, exitUsage, "--retain-window"},
		{"bad before", []string{"delete", "--before", "yesterday"}, exitUsage, "--before"},
		{"negative", []string{"delete", "--retain-full", "-1"}, exitUsage, "positive"},
		{"bad orphan age", []string{"delete", "--retain-full", "1", "--orphan-age", "soon"}, exitUsage, "--orphan-age"},
		{"delete names, not rules", []string{"delete", "x", "--retain-full", "1"}, exitUsage, `no backup named "x"`},
		{"delete a bad name", []string{"delete", "../x"}, exitUsage, "not a backup name"},
		{"delete an unknown backup", []string{"delete", "nope"}, exitUsage, `no backup named "nope"`},
		{"mark needs a flag", []string{"backup-mark", "base_1"}, exitUsage, "exactly one of"},
		{"mark both flags", []string{"backup-mark", "base_1", "--permanent", "--no-permanent"}, exitUsage, "exactly one of"},
		{"mark unknown backup", []string{"backup-mark", "nope", "--permanent"}, exitUsage, "no backup named"},
		{"verify unknown backup", []string{"verify", "--backup", "nope"}, exitUsage, "no backup named"},
		{"verify empty store", []string{"verify"}, exitVerify, "no complete backup"},
		{"delete empty store", []string{"delete", "--retain-full", "1"}, exitOK, ""},
		{"check bad timeout", []string{"check", "--timeout", "x"}, exitUsage, "--timeout"},
		{"check bad store", []string{"check", "--store", "ftp://x/y"}, exitUsage, "unknown scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tt.code, stderr, tt.msg)
			}
		})
	}

	// A store with one backup: its manifest and its part.
	st, err := cloud.Open(context.Background(), "file://"+store, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeObject := func(key string, body []byte) {
		t.Helper()
		if err := st.Put(context.Background(), key, cloud.Bytes(body), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	writeManifest := func(body string) {
		t.Helper()
		// Signed, as backup-push writes it (the key is TestMain's).
		m, err := repo.DecodeManifest(strings.NewReader(body), false)
		if err != nil {
			t.Fatal(err)
		}
		sk, err := crypto.LoadSigningKey(os.Getenv("WALVAULT_SIGNING_KEY"), false)
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Delete(context.Background(), repo.BackupKey(m.Name, repo.ManifestFile))
		if err := (&repo.Repo{Store: st, Sign: sk, Cluster: m.SystemIdentifier}).WriteManifest(context.Background(), m, false); err != nil {
			t.Fatal(err)
		}
	}
	ours := strings.Replace(testManifest, "7300000000000000001", "42", 1)
	writeManifest(ours)
	writeObject("backups/base_1/part-00000", []byte("hello"))

	code, out, e := runCLI(t, "backup-list", "--json")
	if code != 0 || !strings.Contains(out, "base_1") {
		t.Fatalf("backup-list: %d %s %s", code, out, e)
	}
	// Flags after the argument.
	code, out, e = runCLI(t, "backup-mark", "base_1", "--permanent")
	if code != 0 || !strings.Contains(out, "is now permanent") {
		t.Fatalf("backup-mark: exit %d %s %s", code, out, e)
	}
	code, out, _ = runCLI(t, "backup-mark", "--permanent", "base_1")
	if code != 0 || !strings.Contains(out, "already permanent") {
		t.Fatalf("backup-mark again: exit %d %s", code, out)
	}
	var list []struct{ Permanent bool }
	_, out, _ = runCLI(t, "backup-list", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || !list[0].Permanent {
		t.Fatalf("after the mark: %s", out)
	}
	// The part's stored size matches; a full check finds the fake SHA-256.
	if code, out, _ := runCLI(t, "verify"); code != exitOK || !strings.Contains(out, "verify: OK") {
		t.Fatalf("verify sizes: exit %d\n%s", code, out)
	}
	code, out, e = runCLI(t, "verify", "--backup", "base_1")
	if code != exitVerify || !strings.Contains(out, "backups/base_1/part-00000") || !strings.Contains(e, "problem") {
		t.Fatalf("verify --backup: exit %d\n%s\n%s", code, out, e)
	}
	// cluster.json (from wal-push) names cluster 42, a backup another,
	// signed with the same key: it is not one of this archive's, and
	// retention refuses to guess whose WAL is whose.
	writeManifest(strings.Replace(testManifest, "base_1", "base_2", -1))
	code, _, e = runCLI(t, "backup-list")
	if code != exitIntegrity || !strings.Contains(e, "base_2") || !strings.Contains(e, "system identifier 7300000000000000001") {
		t.Fatalf("backup-list in a store of two clusters: exit %d %s", code, e)
	}
	code, _, e = runCLI(t, "delete", "--retain-full", "1")
	if code != exitIntegrity || !strings.Contains(e, "system identifier") {
		t.Fatalf("delete in a store of two clusters: exit %d %s", code, e)
	}
	if err := st.Delete(context.Background(), repo.BackupKey("base_2", repo.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	writeManifest(ours)
	code, out, _ = runCLI(t, "delete", "--retain-full", "1", "--json")
	var plan struct {
		DryRun bool `json:"dry_run"`
	}
	if err := json.Unmarshal([]byte(out), &plan); code != 0 || err != nil || !plan.DryRun {
		t.Fatalf("delete --json: exit %d %v\n%s", code, err, out)
	}
	if code, _, e := runCLI(t, "backup-mark", "base_1", "--permanent"); code != 0 {
		t.Fatalf("mark: %d %s", code, e)
	}
	if code, out, e := runCLI(t, "backup-mark", "base_1", "--no-permanent"); code != 0 || !strings.Contains(out, "no longer permanent") {
		t.Fatalf("unmark: %d %s %s", code, out, e)
	}
}
