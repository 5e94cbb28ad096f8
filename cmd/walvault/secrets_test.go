package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/crypto"
)

// restoreCommandOf runs the restore command as the program builds it (with
// the config file applied) up to fetchArgv, and returns restore_command's
// argv without %f %p.
func restoreCommandOf(t *testing.T, args ...string) ([]string, error) {
	t.Helper()
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	var argv []string
	var ferr error
	found := false
	for _, c := range app.Commands {
		if c.Name == "restore" {
			found = true
			c.Action = func(c *cli.Context) error {
				argv, ferr = fetchArgv(c)
				return nil
			}
		}
	}
	if !found {
		t.Fatal("no restore command")
	}
	if err := app.Run(append([]string{"walvault", "restore"}, append(args, "/dest")...)); err != nil {
		t.Fatal(err)
	}
	return argv, ferr
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "walvault.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// An endpoint with user info or a query string never reaches
// restore_command (postgresql.auto.conf): without a config file it is a
// usage error that says to use one, and the error does not repeat it.
func TestFetchArgvRefusesEndpointCredentials(t *testing.T) {
	for _, tt := range []struct{ flag, value string }{
		{"s3-endpoint", "https://KEYID:SECRET@minio.internal:9000"},
		{"s3-endpoint", "KEYID:SECRET@minio.internal:9000"},
		{"azure-endpoint", "https://acct.blob.core.windows.net/?sv=2022-11-02&sig=SECRET"},
		{"gcs-endpoint", "http://user:SECRET@localhost:4443/storage/v1/"},
		{"gcs-endpoint", "https://storage.internal/?key=SECRET"},
	} {
		t.Run(tt.flag+" "+tt.value, func(t *testing.T) {
			argv, err := restoreCommandOf(t, "--store", "s3://bucket/prefix", "--"+tt.flag, tt.value)
			if err == nil {
				t.Fatalf("accepted; restore_command %q", argv)
			}
			if exitCode(err) != exitUsage || strings.Contains(err.Error(), "SECRET") ||
				!strings.Contains(err.Error(), "--"+tt.flag) || !strings.Contains(err.Error(), "config file") {
				t.Fatalf("exit %d: %v", exitCode(err), err)
			}
			// Set in the environment: the same.
			t.Setenv(envName(tt.flag)[0], tt.value)
			if _, err := restoreCommandOf(t, "--store", "s3://bucket/prefix"); err == nil || strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("from the environment: %v", err)
			}
		})
	}
}

// From a config file, restore_command names the file and not the value.
func TestFetchArgvSecretsThroughConfig(t *testing.T) {
	cfg := writeConfig(t, "store: azure://container/prefix?sig=STORESECRET\n"+
		"s3-endpoint: https://KEYID:SECRET@minio.internal:9000\n"+
		"azure-endpoint: https://acct.blob.core.windows.net/?sig=SECRET\n"+
		"gcs-endpoint: http://u:SECRET@localhost:4443/storage/v1/\n")
	argv, err := restoreCommandOf(t, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(argv, " ")
	if strings.Contains(line, "SECRET") || !slices.Contains(argv, "--config="+cfg) {
		t.Fatalf("restore_command %q", argv)
	}
	// The same value on the command line as in the file is fine: wal-fetch
	// reads it from the file.
	if argv, err := restoreCommandOf(t, "--config", cfg, "--s3-endpoint", "https://KEYID:SECRET@minio.internal:9000"); err != nil || strings.Contains(strings.Join(argv, " "), "SECRET") {
		t.Fatalf("%q, %v", argv, err)
	}
	// Another value than the file's would be lost: wal-fetch would reach
	// another endpoint or store than restore did.
	for _, args := range [][]string{
		{"--s3-endpoint", "https://OTHER:SECRET@minio.internal:9000"},
		{"--store", "azure://container/prefix?sig=OTHERSECRET"},
	} {
		_, err := restoreCommandOf(t, append([]string{"--config", cfg}, args...)...)
		if err == nil || exitCode(err) != exitUsage || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), cfg) {
			t.Fatalf("%q with a config file that says otherwise: %v", args, err)
		}
	}
}

// Endpoints without credentials are repeated, the GCS one included (an
// emulator or private endpoint must be reached by wal-fetch too).
func TestFetchArgvCarriesPlainEndpoints(t *testing.T) {
	argv, err := restoreCommandOf(t, "--store", "gs://bucket/prefix", "--gcs-endpoint", "http://localhost:4443/storage/v1/",
		"--s3-endpoint", "http://127.0.0.1:9000", "--azure-endpoint", "http://127.0.0.1:10000/devstoreaccount1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--store=gs://bucket/prefix", "--gcs-endpoint=http://localhost:4443/storage/v1/",
		"--s3-endpoint=http://127.0.0.1:9000", "--azure-endpoint=http://127.0.0.1:10000/devstoreaccount1"} {
		if !slices.Contains(argv, want) {
			t.Errorf("restore_command %q lacks %s", argv, want)
		}
	}
}

// restore prints restore_command and writes it into postgresql.auto.conf;
// through the whole program, an endpoint with credentials stops it before
// anything is written, in one line without the secret.
func TestRestoreRefusesEndpointCredentials(t *testing.T) {
	store := "file://" + t.TempDir()
	dest := filepath.Join(t.TempDir(), "data")
	code, stdout, stderr := runCLI(t, "restore", dest, "--store", store, "--s3-endpoint", "https://KEYID:SECRET@127.0.0.1:1")
	if code != exitUsage || strings.Contains(stderr+stdout, "SECRET") || !strings.Contains(stderr, "--s3-endpoint") ||
		!strings.Contains(stderr, "config file") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("DEST created")
	}
}

// restore_command authenticates what wal-fetch hands PostgreSQL as restore
// did: verify keys (a file by absolute path), --allow-unsigned and
// --allow-unencrypted; never a signing key.
func TestFetchArgvCarriesReaderSettings(t *testing.T) {
	if !hasFlag(commandFlags("restore"), "verify-key") {
		t.Skip("restore has no --verify-key yet")
	}
	dir := t.TempDir()
	vk, err := crypto.GenerateSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "verify.keys")
	if err := os.WriteFile(keyFile, []byte(vk.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	argv, err := restoreCommandOf(t, "--store", "s3://bucket/prefix", "--verify-key", vk.String(), "--verify-key", "verify.keys",
		"--allow-unsigned", "--allow-unencrypted")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--verify-key=" + vk.String(), "--verify-key=" + keyFile, "--allow-unsigned", "--allow-unencrypted"} {
		if !slices.Contains(argv, want) {
			t.Errorf("restore_command %q lacks %s", argv, want)
		}
	}
	// Not given, not repeated.
	argv, err = restoreCommandOf(t, "--store", "s3://bucket/prefix", "--verify-key", vk.String())
	if err != nil {
		t.Fatal(err)
	}
	if line := strings.Join(argv, " "); strings.Contains(line, "--allow-") {
		t.Errorf("restore_command %q allows what restore was not told to", argv)
	}
	// A signing key given as a verify key (text or file) is refused, and
	// not echoed.
	seed, err := os.ReadFile(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	var secret string
	for _, l := range strings.Split(string(seed), "\n") {
		if strings.HasPrefix(l, "WALVAULT-SIGNING-KEY-") {
			secret = l
		}
	}
	for _, spec := range []string{secret, "signing.key"} {
		argv, err := restoreCommandOf(t, "--store", "s3://bucket/prefix", "--verify-key", spec)
		if err == nil || !errors.Is(err, crypto.ErrBadKey) || strings.Contains(err.Error(), secret[len("WALVAULT-SIGNING-KEY-1-"):]) {
			t.Fatalf("signing key %q as a verify key: %q, %v", spec[:10], argv, err)
		}
	}
	if hasFlag(commandFlags("restore"), "signing-key") {
		argv, err := restoreCommandOf(t, "--store", "s3://bucket/prefix", "--verify-key", vk.String(), "--signing-key", "signing.key")
		if err != nil || strings.Contains(strings.Join(argv, " "), "signing") {
			t.Fatalf("restore_command %q, %v", argv, err)
		}
	}
}

// Errors and log lines quote URLs (SDK request errors, a store URL that
// does not parse); their credentials are scrubbed on the way to stderr.
func TestScrubURLs(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`Get "https://KEYID:SECRET@minio:9000/b/k": dial tcp: refused`, `Get "https://REDACTED@minio:9000/b/k": dial tcp: refused`},
		{"PUT https://acct.blob.core.windows.net/c/k?sv=1&sig=SECRET failed", "PUT https://acct.blob.core.windows.net/c/k?REDACTED failed"},
		{`file URL "file://u:SECRET@host/x" has a host`, `file URL "file://REDACTED@host/x" has a host`},
		{"bad https://KEYID:SECRET@ho%zz/x here", "bad https://REDACTED here"},
		{"store s3://bucket/prefix (from flag)", "store s3://bucket/prefix (from flag)"},
		{"no URL at all", "no URL at all"},
	} {
		if got := scrubURLs(tt.in); got != tt.want {
			t.Errorf("scrubURLs(%q)\n = %q\nwant %q", tt.in, got, tt.want)
		}
	}
	var b bytes.Buffer
	w := redactedStderr(&b)
	in := "level=WARN msg=retry err=\"Get https://KEYID:SECRET@minio:9000/b/k: EOF\"\n"
	if n, err := w.Write([]byte(in)); err != nil || n != len(in) || strings.Contains(b.String(), "SECRET") {
		t.Fatalf("wrote %d, %v: %q", n, err, b.String())
	}
}

// Through the whole program: an error that quotes a store URL does not
// print its credentials.
func TestErrorsDoNotPrintCredentials(t *testing.T) {
	seg := fakeSegment(t, t.TempDir(), "000000010000000000000001", 42, 1)
	for _, store := range []string{"file://KEYID:SECRET@otherhost/srv/x", "file://relative?token=SECRET"} {
		code, stdout, stderr := runCLI(t, "wal-push", "--store", store, seg)
		if code != exitUsage || strings.Contains(stdout+stderr, "SECRET") {
			t.Fatalf("%s: exit %d, stderr %q", store, code, stderr)
		}
	}
}
