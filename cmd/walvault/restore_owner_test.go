package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --owner names a user of this machine; a wrong one is a usage error
// before anything is written.
func TestRestoreOwnerFlag(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "dest")
	if err := os.Mkdir(filepath.Join(dir, "store"), 0o750); err != nil {
		t.Fatal(err)
	}
	code, _, e := runCLI(t, "restore", "--store", "file://"+filepath.Join(dir, "store"), "--owner", "no-such-user-here:x", dest)
	if code != exitUsage || !strings.Contains(e, "--owner") {
		t.Fatalf("exit %d: %s", code, e)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("DEST created")
	}
}
