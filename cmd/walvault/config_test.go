package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeDefaultConfig writes the default config file (TestMain moved it
// out of /etc) for the test, and removes it after.
func writeDefaultConfig(t *testing.T, body string) string {
	t.Helper()
	p := defaultConfigFile()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(p) })
	return p
}

// TestDefaultConfigFile: with neither --config nor WALVAULT_CONFIG, the
// default file is read when it exists; either names another, or none.
func TestDefaultConfigFile(t *testing.T) {
	dir := t.TempDir()
	def, other := filepath.Join(dir, "default-store"), filepath.Join(dir, "other-store")
	writeDefaultConfig(t, "store: file://"+def+"\n")
	otherCfg := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(otherCfg, []byte("store: file://"+other+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seg := fakeSegment(t, dir, "000000010000000000000001", 42, 3)
	stored := func(store string) bool {
		_, err := os.Stat(filepath.Join(store, "wal/0000000100000000/000000010000000000000001"))
		return err == nil
	}
	if code, _, e := runCLI(t, "wal-push", seg); code != exitOK || !stored(def) {
		t.Fatalf("no --config: exit %d, %s; want the default file's store", code, e)
	}
	if code, _, e := runCLI(t, "wal-push", seg, "--config", otherCfg); code != exitOK || !stored(other) {
		t.Fatalf("--config: exit %d, %s; want its store", code, e)
	}
	// WALVAULT_CONFIG="" reads no file at all: no store then.
	t.Setenv("WALVAULT_CONFIG", "")
	if code, _, e := runCLI(t, "wal-push", seg); code != exitUsage || !strings.Contains(e, "no store given") {
		t.Fatalf("WALVAULT_CONFIG=\"\": exit %d, %s; want no store", code, e)
	}
	// A default file that is wrong is refused like a named one.
	writeDefaultConfig(t, "store: [unclosed\n")
	if err := os.Unsetenv("WALVAULT_CONFIG"); err != nil {
		t.Fatal(err)
	}
	if code, _, e := runCLI(t, "wal-push", seg); code != exitUsage || !strings.Contains(e, defaultConfigFile()) {
		t.Fatalf("a broken default file: exit %d, %s", code, e)
	}
}

// TestStrictSettings: an unknown config key or WALVAULT_* variable is
// refused (exit 2, one line, a did-you-mean) before the command runs; the
// reserved names and every setting's are not.
func TestStrictSettings(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	seg := fakeSegment(t, dir, "000000010000000000000001", 42, 3)
	cfg := filepath.Join(dir, "walvault.yaml")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name, config string
		env          map[string]string
		want         []string // in the one line; nil: success
	}{
		{name: "a typo in the file", config: "store: file://" + store + "\nrecipients: [age1x]\n",
			want: []string{`"recipients" (did you mean "recipient"?)`, cfg}},
		{name: "two unknown keys", config: "store: file://" + store + "\nstorage: x\nfrobnicate: 1\n",
			want: []string{`"frobnicate"`, `"storage" (did you mean "store"?)`, "are no walvault setting"}},
		{name: "config is no key", config: "store: file://" + store + "\nconfig: /etc/x.yaml\n", want: []string{`"config"`}},
		{name: "a typo in the environment", config: "store: file://" + store + "\n", env: map[string]string{"WALVAULT_UPLOAD_CONCURENCY": "2"},
			want: []string{"WALVAULT_UPLOAD_CONCURENCY (did you mean WALVAULT_UPLOAD_CONCURRENCY?)", "unset it"}},
		{name: "a setting of another command", config: "store: file://" + store + "\npgdata: /var/lib/postgresql/15/main\nretain-full: 2\n",
			env: map[string]string{"WALVAULT_PGDATA": "/x", "WALVAULT_SOCKET": "/run/x.sock"}},
		{name: "reserved names", config: "store: file://" + store + "\n",
			env: map[string]string{"WALVAULT_TEST_CACHE": "/x", "WALVAULT_BENCH_SEGMENT": "", "WALVAULT_BIN": "/x/walvault"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			write(tt.config)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, out, e := runCLI(t, "wal-push", "--config", cfg, seg)
			if tt.want == nil {
				if code != exitOK {
					t.Fatalf("exit %d: %s", code, e)
				}
				return
			}
			if code != exitUsage || out != "" || strings.Count(e, "\n") != 1 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and one line", code, out, e)
			}
			for _, w := range tt.want {
				if !strings.Contains(e, w) {
					t.Errorf("stderr %q does not say %q", e, w)
				}
			}
			if _, err := os.Stat(filepath.Join(store, "wal")); err == nil {
				t.Error("the command ran")
			}
		})
	}
}
