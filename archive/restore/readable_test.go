package restore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
)

// Run as root for another owner, restore refuses a file restore_command
// would read that the owner cannot, naming the file and the owner.
func TestCheckServerReads(t *testing.T) {
	const nobody = 65534 // not the owner of anything here
	top := t.TempDir()   // 0700, ours
	dir := filepath.Join(top, "keys")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "restore.key")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []ServerFile{{What: "identity file", Path: key}}
	own := &owner{uid: nobody, gid: nobody}

	err := checkServerReads(own, files)
	if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "cannot read the identity file "+key) ||
		!strings.Contains(err.Error(), " is mode 0700, owner ") {
		t.Fatalf("closed directory: %v", err)
	}
	for _, d := range []string{top, filepath.Dir(top)} { // t.TempDir's and its parent
		if err := os.Chmod(d, 0o755); err != nil { // #nosec G302 -- the test opens it on purpose
			t.Fatal(err)
		}
	}
	err = checkServerReads(own, files)
	if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "(mode 0600, owner ") || !strings.Contains(err.Error(), "install -o ") {
		t.Fatalf("file 0600 of another user: %v", err)
	}
	if err := os.Chmod(key, 0o644); err != nil { // #nosec G302 -- the test opens it on purpose
		t.Fatal(err)
	}
	if err := checkServerReads(own, files); err != nil {
		t.Fatalf("readable by all: %v", err)
	}
	// Not run for another user: nothing to check.
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkServerReads(nil, files); err != nil {
		t.Fatalf("no other owner: %v", err)
	}
	// The owner's own file, and a missing one.
	if err := checkServerReads(&owner{uid: os.Getuid(), gid: os.Getgid()}, files); err != nil {
		t.Fatalf("the owner's own file: %v", err)
	}
	if err := checkServerReads(own, []ServerFile{{What: "config file", Path: filepath.Join(dir, "missing.yaml")}}); err == nil || !strings.Contains(err.Error(), "config file") {
		t.Fatalf("missing file: %v", err)
	}
}
