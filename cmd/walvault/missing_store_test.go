package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file:// store that does not exist is a mistyped path, never an empty
// archive: the readers exit 3 naming it and create nothing (wal-fetch must
// not answer "not in the archive", which ends recovery); the writers
// create it.
func TestMissingFileStore(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "store")
	store := "file://" + missing
	t.Setenv("WALVAULT_ALLOW_UNSIGNED", "true")
	for _, args := range [][]string{
		{"backup-list"},
		{"backup-list", "--json"},
		{"restore", filepath.Join(dir, "dest")},
		{"wal-fetch", "--prefetch", "0", "000000010000000000000001", filepath.Join(dir, "seg")},
		{"dump-list"},
		{"verify"},
		{"delete", "--retain-full", "1"},
		{"status", "--no-server", "--state-file", "none"},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, out, e := runCLI(t, append(args, "--store", store)...)
			if code != fetchCode(args[0], exitStore) || !strings.Contains(e, "file store "+missing+" does not exist") || strings.Contains(out, "no complete backup") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 3 (wal-fetch: stop recovery) naming the missing store", code, out, e)
			}
			if _, err := os.Stat(filepath.Join(dir, "no")); err == nil {
				t.Fatalf("%s created the missing store's directories", args[0])
			}
		})
	}
	// A writer starts a new archive there.
	seg := fakeSegment(t, dir, "000000010000000000000001", 42, 1)
	if code, _, e := runCLI(t, "wal-push", "--store", store, seg); code != 0 {
		t.Fatalf("wal-push into a new file store: exit %d: %s", code, e)
	}
	if code, _, e := runCLI(t, "backup-list", "--store", store); code != 0 || !strings.Contains(e, "no complete backup") {
		t.Fatalf("backup-list of the new store: exit %d: %s", code, e)
	}
}
