package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive/backup"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1GiB", want: 1 << 30},
		{in: "256MiB", want: 256 << 20},
		{in: "4M", want: 4 << 20},
		{in: "4 MB", want: 4 << 20},
		{in: "1048576", want: 1 << 20},
		{in: "2tb", want: 2 << 40},
		{in: "0", bad: true},
		{in: "-1GiB", bad: true},
		{in: "GiB", bad: true},
		{in: "1.5GiB", bad: true},
		{in: "12 parsecs", bad: true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if tt.bad != (err != nil) || (!tt.bad && got != tt.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d (bad=%v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

// restoreArgv runs the restore command's flag parsing with an action that
// returns fetchArgv's result.
func restoreArgv(t *testing.T, env map[string]string, args ...string) ([]string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cmd *cli.Command
	for _, c := range backupCommands() {
		if c.Name == "restore" {
			cmd = c
		}
	}
	var argv []string
	var ferr error
	cmd.Action = func(c *cli.Context) error {
		argv, ferr = fetchArgv(c)
		return nil
	}
	app := &cli.App{Commands: []*cli.Command{cmd}, Writer: &strings.Builder{}, ErrWriter: &strings.Builder{}}
	if err := app.Run(append([]string{"walvault", "restore"}, args...)); err != nil {
		t.Fatal(err)
	}
	return argv, ferr
}

func TestFetchArgv(t *testing.T) {
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	wd, _ := os.Getwd()
	argv, err := restoreArgv(t, map[string]string{"WALVAULT_STORE": "s3://bucket/prefix"},
		"--identity-file", "key.txt", "--s3-endpoint", "http://127.0.0.1:9000", "--s3-path-style", "/dest")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{exe, "wal-fetch", "--store=s3://bucket/prefix", "--identity-file=" + filepath.Join(wd, "key.txt"),
		"--s3-path-style", "--s3-endpoint=http://127.0.0.1:9000", "--verify-key=" + os.Getenv("WALVAULT_VERIFY_KEY")}
	if !reflect.DeepEqual(argv, want) {
		t.Fatalf("argv\n got %q\nwant %q", argv, want)
	}
	// A URL with credentials in it must not be copied into postgresql.auto.conf.
	if _, err := restoreArgv(t, nil, "--store", "azure://c/p?sig=SECRET", "/dest"); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("a secret-bearing store URL: %v", err)
	}
	cfg := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(cfg, []byte("store: azure://c/p?sig=SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	argv, err = restoreArgv(t, nil, "--config", cfg, "--store", "azure://c/p?sig=SECRET", "/dest")
	if err != nil || strings.Contains(strings.Join(argv, " "), "SECRET") || argv[2] != "--config="+cfg {
		t.Fatalf("with --config: %q, %v", argv, err)
	}
}

func TestRestoreFlagsAfterDest(t *testing.T) {
	store := "file://" + t.TempDir()
	dest := filepath.Join(t.TempDir(), "data")
	code, _, stderr := runCLI(t, "restore", dest, "--target-time", "2026-01-01 00:00:00+00", "--store", store)
	if code != exitUsage || !strings.Contains(stderr, "no complete backup") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("DEST created")
	}
	code, _, stderr = runCLI(t, "backup-push", "--part-size", "lots", "--store", store)
	if code != exitUsage || !strings.Contains(stderr, "--part-size") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, out, stderr := runCLI(t, "backup-list", "--store", store, "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("backup-list on an empty store: exit %d, %q, %s", code, out, stderr)
	}
}

// The summary's rate is the copy's: a long spread checkpoint shows as
// such, not as a slow copy.
func TestBackupTimeSplit(t *testing.T) {
	res := &backup.Result{Duration: 170 * time.Second, Checkpoint: 166 * time.Second, Copy: 2 * time.Second, WALWait: 2 * time.Second}
	got := timeSplit(res, 480<<20)
	if want := "checkpoint 166.00 s, copy 2.00 s at 240.0 MiB/s, WAL archiving 2.00 s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
