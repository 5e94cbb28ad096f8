package pgtest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	walOnce sync.Once
	walErr  error
)

// WalvaultWal builds cmd/walvault-wal beside Walvault's binary (its
// fallback runs the walvault found there) and returns its path.
func WalvaultWal(t testing.TB) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(Walvault(t)), "walvault-wal")
	walOnce.Do(func() {
		_, here, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", path, "./cmd/walvault-wal") // #nosec G204 -- builds this repository's command
		cmd.Dir = filepath.Join(filepath.Dir(here), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			walErr = fmt.Errorf("building walvault-wal: %v\n%s", err, out)
		}
	})
	if walErr != nil {
		t.Fatal(walErr)
	}
	return path
}
