package fsutil

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadSmall(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte("x"), n), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		path    string
		want    int
		tooBig  bool
		missing bool
	}{
		{name: "missing", path: filepath.Join(dir, "none"), missing: true},
		{name: "empty", path: write("empty", 0), want: 0},
		{name: "at the bound", path: write("at", 64), want: 64},
		{name: "one over", path: write("over", 65), tooBig: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ReadSmall(tc.path, 64)
			switch {
			case tc.tooBig:
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
			case err != nil:
				t.Fatal(err)
			case tc.missing && b != nil:
				t.Fatalf("a missing file read as %d bytes", len(b))
			case !tc.missing && (b == nil || len(b) != tc.want):
				t.Fatalf("read %v (%d bytes), want %d bytes", b == nil, len(b), tc.want)
			}
		})
	}
	if _, err := ReadSmall(dir, 64); err == nil {
		t.Fatal("a directory read as a state file")
	}
}

func TestStateFile(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/srv/state")
	if got := StateFile("status.json"); got != "/srv/state/walvault/status.json" {
		t.Fatalf("with XDG_STATE_HOME: %s", got)
	}
	t.Setenv("XDG_STATE_HOME", "relative/ignored")
	t.Setenv("HOME", "/home/dba")
	want := "/home/dba/.local/state/walvault/drill.json"
	if os.Geteuid() == 0 {
		want = "/var/lib/walvault/drill.json"
	}
	if got := StateFile("drill.json"); got != want {
		t.Fatalf("StateFile = %s, want %s", got, want)
	}
}
