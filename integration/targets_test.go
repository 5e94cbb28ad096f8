// Package integration holds walvault's end-to-end tests: the real binary,
// real PostgreSQL 15 clusters and real storage servers, no mocks.
package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/cloud"
	_ "github.com/walvault/walvault/cloud/all" // stores are opened in-process too, as cmd/walvault opens them
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

func TestMain(m *testing.M) {
	// No walvault these tests run (nor the archive_command of their
	// servers) reads the machine's /etc/walvault/walvault.yaml.
	if err := os.Setenv("WALVAULT_TEST_DEFAULT_CONFIG", filepath.Join(os.TempDir(), "walvault-tests-read-no-default-config.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	if err := pgtest.UseSigningKeys(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: making the signing key:", err)
		os.Exit(1)
	}
	code := m.Run()
	stopShared()
	pgtest.Cleanup()
	os.Exit(code)
}

// target is a store under test: its URL, the environment a walvault
// process needs to reach it, and a way to reach its objects behind its back.
type target struct {
	Kind string // file, s3, gcs, azure
	URL  string
	Env  []string
	// ObjectPath is the file holding key, for stores that keep objects as
	// files (file://, versitygw); "" otherwise.
	ObjectPath func(key string) string
	// Server is nil for file://.
	Server *testenv.Server
	opts   cloud.Options
}

// newTarget starts (or reuses) the server of kind and makes a fresh bucket.
func newTarget(t testing.TB, kind string) *target {
	t.Helper()
	switch kind {
	case "file":
		dir := filepath.Join(pgtest.WorkDir(t), "store")
		o, _ := pgtest.ServerOwner()
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = o.Chown(dir)
		url := "file://" + dir
		return &target{Kind: kind, URL: url, Env: []string{"WALVAULT_STORE=" + url},
			ObjectPath: func(key string) string { return filepath.Join(dir, filepath.FromSlash(key)) }}
	case "s3", "gcs", "azure":
		tg := testenv.StartT(t, testenv.Kind(kind)).NewTarget(t)
		return &target{Kind: kind, URL: tg.URL, Env: tg.Env, Server: tg.Server, opts: tg.Options,
			ObjectPath: func(key string) string {
				if p := tg.ObjectPath(key); p != "" {
					return p
				}
				t.Fatalf("no object path for %s stores", kind)
				return ""
			}}
	}
	t.Fatalf("unknown store kind %q", kind)
	return nil
}

// walvault runs the binary as root (the test user) with the target's
// environment plus extra variables, returning exit code and output.
func (tg *target) walvault(t testing.TB, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(pgtest.Walvault(t), args...)
	cmd.Env = append(append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true"), tg.Env...), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// keygen makes an identity file readable by the server owner and returns
// its path and recipient.
func keygen(t testing.TB, dir string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, "walvault.key")
	cmd := exec.Command(pgtest.Walvault(t), "keygen", path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	o, _ := pgtest.ServerOwner()
	_ = o.Chown(path)
	return path, strings.TrimSpace(string(out))
}

// flipByte alters one byte of a file near its end.
func flipByte(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-len(b)/4-1] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil { // #nosec G306 -- test data
		t.Fatal(err)
	}
}
