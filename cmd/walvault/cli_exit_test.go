package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A typo in a script or cron job must not look like success: every command
// line walvault cannot run exits 2 with one line on stderr naming the
// problem and the fix, and nothing on stdout; asking for help exits 0.
func TestCommandLineExitCodes(t *testing.T) {
	dir := t.TempDir()
	seg := fakeSegment(t, dir, "000000010000000000000001", 42, 1)
	store := "file://" + filepath.Join(dir, "store")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string // each must appear on the one stderr line
		stdout string   // "" means stdout must be empty
	}{
		{"unknown command", []string{"dumpall", "shop"}, exitUsage, []string{`unknown command "dumpall"`, "walvault help"}, ""},
		{"misspelt command", []string{"wal-psuh", seg}, exitUsage, []string{`unknown command "wal-psuh"`, "did you mean wal-push?"}, ""},
		{"help on an unknown command", []string{"help", "dumpall"}, exitUsage, []string{`unknown command "dumpall"`}, ""},
		{"no command", nil, exitUsage, []string{"no command given", "walvault help"}, "USAGE"},
		{"unknown flag", []string{"wal-push", "--stor", store, seg}, exitUsage, []string{"unknown flag --stor", "did you mean --store?", "walvault wal-push --help"}, ""},
		{"unknown flag after the argument", []string{"wal-push", seg, "--bogus"}, exitUsage, []string{"unknown flag --bogus", "walvault wal-push --help"}, ""},
		{"unknown global flag", []string{"--bogus", "wal-push"}, exitUsage, []string{"unknown flag --bogus", "walvault --help"}, ""},
		{"missing flag value", []string{"wal-push", "--store"}, exitUsage, []string{"--store needs a value", "--store=VALUE"}, ""},
		{"missing flag value after the argument", []string{"wal-push", seg, "--store"}, exitUsage, []string{"--store needs a value"}, ""},
		{"bad int value", []string{"backup-push", "--store", store, "--compression-level", "high"}, exitUsage, []string{`invalid value "high" for --compression-level`, "walvault backup-push --help"}, ""},
		{"bad bool value", []string{"wal-push", "--s3-path-style=maybe", "--store", store, seg}, exitUsage, []string{"--s3-path-style", "walvault wal-push --help"}, ""},

		{"help", []string{"help"}, exitOK, nil, "USAGE"},
		{"--help", []string{"--help"}, exitOK, nil, "USAGE"},
		{"-h", []string{"-h"}, exitOK, nil, "USAGE"},
		{"help on a command", []string{"help", "wal-push"}, exitOK, nil, "walvault wal-push"},
		{"command --help", []string{"wal-push", "--help"}, exitOK, nil, "walvault wal-push"},
		{"command -h", []string{"wal-fetch", "-h"}, exitOK, nil, "walvault wal-fetch"},
		{"--help after the arguments", []string{"restore", "/srv/restored", "--help"}, exitOK, nil, "walvault restore"},
		{"--help between the arguments", []string{"wal-fetch", "000000010000000000000001", "--help", "/tmp/x"}, exitOK, nil, "walvault wal-fetch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.code, stderr)
			}
			if tt.code == exitOK && stderr != "" {
				t.Fatalf("stderr %q, want nothing", stderr)
			}
			if tt.code != exitOK && strings.Count(stderr, "\n") != 1 {
				t.Fatalf("stderr is not one line: %q", stderr)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not mention %q", stderr, want)
				}
			}
			if (tt.stdout == "") != (stdout == "") || !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout %q, want %q in it", stdout, tt.stdout)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"stor", "store", 1}, {"wal-psuh", "wal-push", 2}, {"dump-push", "backup-push", 5}, {"abc", "", 3}} {
		if d := editDistance(tt.a, tt.b); d != tt.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, d, tt.d)
		}
	}
}
