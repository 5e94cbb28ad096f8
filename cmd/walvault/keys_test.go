package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/crypto"
)

// TestMain gives every command the tests run a signing key and its verify
// key through the environment, as a production set-up's config would:
// the tests exercise the signed archive, and the ones about keys unset them.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "walvault-keys-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// No test reads the machine's /etc/walvault/walvault.yaml: the
	// default config file is one the tests write, or none.
	if err := os.Setenv(testDefaultConfigEnv, filepath.Join(dir, "default", "walvault.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	path := filepath.Join(dir, "signing.key")
	vk, err := crypto.GenerateSigningKey(path)
	if err == nil {
		err = os.Setenv("WALVAULT_SIGNING_KEY", path)
	}
	if err == nil {
		err = os.Setenv("WALVAULT_VERIFY_KEY", vk.String())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "making the test signing key:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func TestKeygenMakesBothKeys(t *testing.T) {
	dir := t.TempDir()
	id, sign := filepath.Join(dir, "identity.txt"), filepath.Join(dir, "signing.key")
	code, out, e := runCLI(t, "keygen", id, "--signing-key", sign)
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, e)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "age1") || !strings.HasPrefix(lines[1], "walvault-verify-1-") {
		t.Fatalf("keygen printed %q: want the recipient, then the verify key", out)
	}
	for _, p := range []string{id, sign} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, st, err)
		}
	}
	if strings.Contains(out+e, "SIGNING-KEY") || strings.Contains(out+e, "AGE-SECRET-KEY") {
		t.Fatalf("keygen printed a secret:\n%s\n%s", out, e)
	}
	// Only a signing key; nothing at all is a usage error; nothing is
	// ever overwritten.
	if code, out, _ := runCLI(t, "keygen", "--signing-key", filepath.Join(dir, "second.key")); code != exitOK || !strings.HasPrefix(out, "walvault-verify-1-") {
		t.Fatalf("keygen --signing-key alone: %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "keygen"); code != exitUsage {
		t.Fatalf("keygen without a file: %d, want %d", code, exitUsage)
	}
	if code, _, e := runCLI(t, "keygen", "--signing-key", sign); code != exitUsage || !strings.Contains(e, "never overwrites") {
		t.Fatalf("keygen over an existing key: %d %s", code, e)
	}

	// What the signing key wrote, its verify key reads back.
	store := "file://" + filepath.Join(dir, "store")
	seg := fakeSegment(t, dir, "000000010000000000000002", 42, 3)
	if code, _, e := runCLI(t, "wal-push", "--store", store, "--signing-key", sign, "--recipient", lines[0], seg); code != exitOK {
		t.Fatalf("wal-push: %s", e)
	}
	dest := filepath.Join(dir, "restored")
	if code, _, e := runCLI(t, "wal-fetch", "--store", store, "--identity-file", id, "--verify-key", lines[1], "--prefetch", "0", filepath.Base(seg), dest); code != exitOK {
		t.Fatalf("wal-fetch: %s", e)
	}
	// Another verify key refuses it (cluster.json first): recovery must
	// stop, nothing written.
	dest2 := filepath.Join(dir, "restored2")
	code, _, e = runCLI(t, "wal-fetch", "--store", store, "--identity-file", id, "--verify-key", os.Getenv("WALVAULT_VERIFY_KEY"), "--prefetch", "0", filepath.Base(seg), dest2)
	if code != exitStopRecovery || !strings.Contains(e, "not among the configured verify keys") {
		t.Fatalf("wal-fetch with another verify key: %d %s", code, e)
	}
	if _, err := os.Stat(dest2); err == nil {
		t.Fatal("wal-fetch wrote DEST from an object it could not authenticate")
	}
}

// Without keys, commands refuse to run unless --allow-unsigned says the
// archive is not authenticated: never decided by the bucket.
func TestKeysRequired(t *testing.T) {
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	seg := fakeSegment(t, dir, "000000010000000000000002", 42, 3)
	t.Setenv("WALVAULT_SIGNING_KEY", "")
	t.Setenv("WALVAULT_VERIFY_KEY", "")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"push without a signing key", []string{"wal-push", "--store", store, seg}, exitUsage, "no signing key"},
		{"push unsigned, said so", []string{"wal-push", "--store", store, "--allow-unsigned", seg}, exitOK, ""},
		{"fetch without a verify key", []string{"wal-fetch", "--store", store, "--prefetch", "0", filepath.Base(seg), filepath.Join(dir, "a")}, exitUsage, "no verify key"},
		{"list without a verify key", []string{"backup-list", "--store", store}, exitUsage, "no verify key"},
		{"verify without a verify key", []string{"verify", "--store", store}, exitUsage, "no verify key"},
		{"fetch an unsigned archive, said so", []string{"wal-fetch", "--store", store, "--allow-unsigned", "--prefetch", "0", filepath.Base(seg), filepath.Join(dir, "b")}, exitOK, ""},
		{"a signing key is not a verify key", []string{"wal-fetch", "--store", store, "--verify-key", "WALVAULT-SIGNING-KEY-1-abc", "--prefetch", "0", filepath.Base(seg), filepath.Join(dir, "c")}, exitUsage, "public half"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, e := runCLI(t, tt.args...)
			if want := fetchCode(tt.args[0], tt.code); code != want || !strings.Contains(e, tt.msg) {
				t.Fatalf("exit %d, stderr %q; want %d with %q", code, e, want, tt.msg)
			}
		})
	}
}
