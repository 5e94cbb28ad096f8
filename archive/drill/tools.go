package drill

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
)

// ClientFallbackDir is where the PostgreSQL 15 client tools are on Debian
// and Ubuntu when they are not on PATH; pg_verifybackup 15 checks the
// backup_manifest of any major version walvault writes.
const ClientFallbackDir = "/usr/lib/postgresql/15/bin"

// serverDirs are where packages put a major version's server binaries:
// Debian and Ubuntu, then the PGDG packages of Red Hat and its kin.
var serverDirs = func(major int) []string {
	return []string{fmt.Sprintf("/usr/lib/postgresql/%d/bin", major), fmt.Sprintf("/usr/pgsql-%d/bin", major)}
}

// majorOf is the major version of a server_version_num (150004 -> 15).
func majorOf(versionNum int) int {
	if versionNum >= 100000 {
		return versionNum / 10000
	}
	return versionNum / 100 // 9.6 -> 96: no package names it so
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// programMajor runs "prog --version" and reads the major version.
func programMajor(ctx context.Context, prog string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, prog, "--version").Output() // #nosec G204 -- a PostgreSQL binary found in the directories the operator allows
	if err != nil {
		return 0, err
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return 0, fmt.Errorf("%s --version printed %q", prog, archive.OneLine(string(out)))
	}
	major, _ := strconv.Atoi(m[1])
	if major < 10 && m[2] != "" {
		minor, _ := strconv.Atoi(m[2])
		major = major*10 + minor
	}
	return major, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// findServer finds the postgres binary of major: in binDir when it is set
// (and nowhere else), else in the packages' directories for that major,
// else on PATH; the first whose --version is that major.
func findServer(ctx context.Context, binDir string, major int) (string, error) {
	if binDir != "" {
		p := filepath.Join(binDir, "postgres")
		if !isFile(p) {
			return "", fmt.Errorf("%w: --pg-bin-dir %s has no postgres (the server binary): give the bin directory of PostgreSQL %d's server", archive.ErrBadInput, binDir, major)
		}
		got, err := programMajor(ctx, p)
		if err != nil {
			return "", fmt.Errorf("%w: --pg-bin-dir %s: %v", archive.ErrBadInput, binDir, err)
		}
		if got != major {
			return "", fmt.Errorf("%w: --pg-bin-dir %s holds PostgreSQL %d, and the backup is PostgreSQL %d: give the bin directory of PostgreSQL %d's server", archive.ErrBadInput, binDir, got, major, major)
		}
		return p, nil
	}
	var cands []string
	for _, d := range serverDirs(major) {
		cands = append(cands, filepath.Join(d, "postgres"))
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if !isFile(p) {
			continue
		}
		if got, err := programMajor(ctx, p); err == nil && got == major {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: the backup is PostgreSQL %d and its server binaries were found neither in %s nor on PATH: install them (Debian: apt-get install postgresql-%d) or give --pg-bin-dir",
		archive.ErrBadInput, major, strings.Join(serverDirs(major), " nor "), major)
}

// findClient finds a client program: in binDir, beside the server, on
// PATH, then in ClientFallbackDir; "" when it is nowhere.
func findClient(binDir, serverDir, name string) string {
	for _, d := range []string{binDir, serverDir} {
		if d != "" && isFile(filepath.Join(d, name)) {
			return filepath.Join(d, name)
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join(ClientFallbackDir, name); isFile(p) {
		return p
	}
	return ""
}
