package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// fakeSegment writes a WAL segment with a valid long page header.
func fakeSegment(t *testing.T, dir, name string, sysid uint64, fill byte) string {
	t.Helper()
	const segSize = 1 << 20
	b := bytes.Repeat([]byte{fill}, segSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002)
	le.PutUint32(b[4:], 1)
	var segNo uint64
	for i := 16; i < 24; i++ {
		segNo = segNo<<4 | uint64(strings.IndexByte("0123456789ABCDEF", name[i]))
	}
	le.PutUint64(b[8:], segNo*segSize)
	le.PutUint64(b[24:], sysid)
	le.PutUint32(b[32:], segSize)
	le.PutUint32(b[36:], 8192)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"walvault"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	stores := map[string]string{}
	for _, n := range []string{"file", "env", "flag"} {
		stores[n] = filepath.Join(dir, "store-"+n)
	}
	cfg := filepath.Join(dir, "walvault.yaml")
	if err := os.WriteFile(cfg, []byte("store: file://"+stores["file"]+"\ncompression: zstd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(dir, "pg_wal")
	_ = os.Mkdir(wal, 0o700)
	seg := fakeSegment(t, wal, "000000010000000000000001", 42, 7)
	stored := func(which string) bool {
		_, err := os.Stat(filepath.Join(stores[which], "wal/0000000100000000/000000010000000000000001"))
		return err == nil
	}
	t.Setenv("WALVAULT_CONFIG", cfg)

	// Only the file: its store is used.
	if code, _, e := runCLI(t, "wal-push", seg); code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	if !stored("file") {
		t.Fatal("config file's store not used")
	}
	// env beats file.
	t.Setenv("WALVAULT_STORE", "file://"+stores["env"])
	if code, _, e := runCLI(t, "wal-push", seg); code != 0 || !stored("env") {
		t.Fatalf("env store not used (exit %d: %s)", code, e)
	}
	// flag beats env, also when written after the argument.
	if code, _, e := runCLI(t, "wal-push", seg, "--store", "file://"+stores["flag"]); code != 0 || !stored("flag") {
		t.Fatalf("flag store not used (exit %d: %s)", code, e)
	}
	// The file's compression applied (zstd frame magic right after the
	// envelope: "WVO1", a 4-byte length, the metadata).
	b, _ := os.ReadFile(filepath.Join(stores["flag"], "wal/0000000100000000/000000010000000000000001"))
	if len(b) < 8 || !bytes.HasPrefix(b[8+int(binary.BigEndian.Uint32(b[4:8])):], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatal("compression from the config file not applied")
	}
}

func TestBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	seg := fakeSegment(t, dir, "000000010000000000000003", 42, 1)
	notWAL := filepath.Join(dir, "postgresql.conf")
	_ = os.WriteFile(notWAL, []byte("x"), 0o600)
	misnamed := filepath.Join(dir, "000000010000000000000004")
	data, _ := os.ReadFile(seg)
	_ = os.WriteFile(misnamed, data, 0o600) // header says segment 3
	badIdentity := filepath.Join(dir, "key.txt")
	_ = os.WriteFile(badIdentity, []byte("AGE-SECRET-KEY-1NOTAKEY\n"), 0o600)
	looseIdentity := filepath.Join(dir, "loose.txt")
	if code, _, e := runCLI(t, "keygen", looseIdentity); code != 0 {
		t.Fatal(e)
	}
	_ = os.Chmod(looseIdentity, 0o644)

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown scheme", []string{"wal-push", "--store", "ftp://x/y", seg}, exitUsage, "unknown scheme"},
		{"no store", []string{"wal-push", seg}, exitUsage, "no store given"},
		{"relative file URL", []string{"wal-push", "--store", "file://relative/path", seg}, exitUsage, "absolute"},
		{"not a WAL name", []string{"wal-push", "--store", store, notWAL}, exitUsage, "not a WAL file name"},
		{"missing file", []string{"wal-push", "--store", store, filepath.Join(dir, "000000010000000000000009")}, exitUsage, "cannot read"},
		{"misnamed segment", []string{"wal-push", "--store", store, misnamed}, exitUsage, "misnamed"},
		{"bad recipient", []string{"wal-push", "--store", store, "--recipient", "age1notarecipient", seg}, exitUsage, "does not parse"},
		{"bad compression", []string{"wal-push", "--store", store, "--compression", "gzip", seg}, exitUsage, "gzip"},
		{"too many args", []string{"wal-push", "--store", store, seg, seg}, exitUsage, "expected"},
		{"unknown flag", []string{"wal-push", "--stor", store, seg}, exitUsage, "stor"},
		{"bad identity", []string{"wal-fetch", "--store", store, "--identity-file", badIdentity, "000000010000000000000003", filepath.Join(dir, "out")}, exitUsage, "does not parse"},
		{"loose identity", []string{"wal-fetch", "--store", store, "--identity-file", looseIdentity, "000000010000000000000003", filepath.Join(dir, "out")}, exitUsage, "chmod 600"},
		// A restore_command with %f and %p swapped: recovery must stop,
		// not end at once taking every file for absent.
		{"fetch bad name", []string{"wal-fetch", "--store", store, "../../etc/passwd", filepath.Join(dir, "out")}, exitStopRecovery, "not a WAL file name"},
		{"fetch missing", []string{"wal-fetch", "--store", store, "00000002.history", filepath.Join(dir, "out")}, exitNotFound, "not in the archive"},
		{"keygen overwrite", []string{"keygen", looseIdentity}, exitUsage, "never overwrites"},
		{"bad config file", []string{"wal-push", "--config", filepath.Join(dir, "nope.yaml"), seg}, exitUsage, "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.args...)
			if want := fetchCode(tt.args[0], tt.code); code != want || !strings.Contains(stderr, tt.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want it to mention %q)", code, want, stderr, tt.msg)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 0 {
				t.Fatalf("error is %d lines, want one: %q", n+1, stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
				t.Fatal("DEST was written")
			}
		})
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	tests := []struct{ in, want []string }{
		{[]string{"w", "wal-push", "p", "--store", "s"}, []string{"w", "wal-push", "--store", "s", "--", "p"}},
		{[]string{"w", "wal-push", "--store=s", "p"}, []string{"w", "wal-push", "--store=s", "--", "p"}},
		{[]string{"w", "wal-fetch", "n", "--s3-path-style", "d"}, []string{"w", "wal-fetch", "--s3-path-style", "--", "n", "d"}},
		{[]string{"w", "wal-fetch", "n", "--", "--d"}, []string{"w", "wal-fetch", "--", "n", "--d"}},
		{[]string{"w", "version"}, []string{"w", "version"}},
	}
	for _, tt := range tests {
		if got := reorderArgs(app, tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("reorderArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// failingWriter fails every write, as a full disk under > FILE would.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestOutputWriteFails: a command whose output cannot be written does not
// report success.
func TestOutputWriteFails(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"backup-list", "--json", "--store", "file://" + t.TempDir()}} {
		var errb bytes.Buffer
		code := run(append([]string{"walvault"}, args...), failingWriter{}, &errb)
		if code != exitFailure || !strings.Contains(errb.String(), "no space left on device") || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q", args[0], code, errb.String())
		}
	}
}

// fetchCode is the exit code of command for a failure of code: wal-fetch,
// as restore_command, turns every failure but "not in the archive" into
// exitStopRecovery, so that PostgreSQL stops recovery instead of ending it.
func fetchCode(command string, code int) int {
	if command == "wal-fetch" && code != exitOK && code != exitNotFound {
		return exitStopRecovery
	}
	return code
}

// Log lines carry their time (UTC) so that a cron job's log file is dated,
// except under journald, which dates them itself.
func TestLogTimestamps(t *testing.T) {
	for _, journald := range []bool{false, true} {
		var b strings.Builder
		slog.New(logHandler(&b, slog.LevelInfo, journald)).Info("archived", "file", "000000010000000000000001")
		line := b.String()
		stamped := regexp.MustCompile(`^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=INFO msg=archived file=000000010000000000000001\n$`).MatchString(line)
		if stamped == journald || journald && line != "level=INFO msg=archived file=000000010000000000000001\n" {
			t.Errorf("journald %v: %q", journald, line)
		}
	}
	// The real command line: JOURNAL_STREAM decides.
	dir := t.TempDir()
	t.Setenv("WALVAULT_ALLOW_UNSIGNED", "true")
	seg := fakeSegment(t, dir, "000000010000000000000001", 42, 1)
	for _, js := range []string{"", "8:12345"} {
		t.Setenv("JOURNAL_STREAM", js)
		_, _, e := runCLI(t, "wal-push", "--log-level", "debug", "--store", "file://"+filepath.Join(dir, "store"), seg)
		if strings.HasPrefix(e, "time=") != (js == "") {
			t.Errorf("JOURNAL_STREAM=%q: %q", js, e)
		}
	}
}
