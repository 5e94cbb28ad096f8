package main

import (
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", 0, false}, {"0", 0, false}, {"20MiB", 20 << 20, false}, {"20MiB/s", 20 << 20, false},
		{"500k", 500 << 10, false}, {"1048576", 1 << 20, false}, {" 1GiB ", 1 << 30, false},
		{"fast", 0, true}, {"-5MiB", 0, true}, {"20 furlongs", 0, true},
	} {
		got, err := parseRate(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseRate(%q) = %d, %v; want %d (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestRateFlagRefused(t *testing.T) {
	code, _, stderr := runCLI(t, "backup-list", "--store", "file://"+t.TempDir(), "--max-download-rate", "fast")
	if code != exitUsage || !strings.Contains(stderr, "--max-download-rate") {
		t.Fatalf("exit %d, stderr %q; want exit 2 naming --max-download-rate", code, stderr)
	}
}
