package drill

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/archive/restore"
)

func TestSafePreload(t *testing.T) {
	for _, tt := range []struct {
		in, keep string
		dropped  []string
	}{
		{"", "", nil},
		{"pg_stat_statements", "pg_stat_statements", nil},
		{"pg_stat_statements, auto_explain", "pg_stat_statements,auto_explain", nil},
		{"./evil, pg_stat_statements", "pg_stat_statements", []string{"./evil"}},
		{`"/tmp/x.so",timescaledb`, "timescaledb", []string{"/tmp/x.so"}},
		{`sub\dir`, "", []string{`sub\dir`}},
	} {
		keep, dropped := safePreload(tt.in)
		if keep != tt.keep || !reflect.DeepEqual(dropped, tt.dropped) {
			t.Errorf("safePreload(%q) = %q, %q; want %q, %q", tt.in, keep, dropped, tt.keep, tt.dropped)
		}
	}
}

// The settings every drill server gets, by version: never a TCP port,
// never archiving, nothing that runs a command or loads a library from a
// path, and nothing a major version does not know (the server would
// refuse to start).
func TestForcedSettings(t *testing.T) {
	get := func(ss []setting) map[string]string {
		m := map[string]string{}
		for _, s := range ss {
			m[s.name] = s.value
		}
		return m
	}
	for _, v := range []int{100000, 120000, 150004, 170002} {
		m := get(forced(serverConf{version: v, sock: "/s", hba: "/h", ident: "/i"}))
		for k, want := range map[string]string{"listen_addresses": "", "archive_mode": "off", "archive_command": "", "unix_socket_directories": "/s",
			"hba_file": "/h", "external_pid_file": "", "hot_standby": "off", "ssl": "off", "dynamic_library_path": "$libdir",
			"session_preload_libraries": "", "local_preload_libraries": "", "fsync": "off", "logging_collector": "off"} {
			if got, ok := m[k]; !ok || got != want {
				t.Errorf("version %d: %s = %q (set %v), want %q", v, k, got, ok, want)
			}
		}
		for k, since := range map[string]int{"archive_library": 150000, "primary_conninfo": 120000, "recovery_end_command": 120000, "event_triggers": 170000, "jit": 110000} {
			if _, ok := m[k]; ok != (v >= since) {
				t.Errorf("version %d: %s set %v, known since %d", v, k, ok, since)
			}
		}
		if _, ok := m["stats_temp_directory"]; ok != (v < 150000) {
			t.Errorf("version %d: stats_temp_directory set %v", v, ok)
		}
		if _, ok := m["shared_preload_libraries"]; ok {
			t.Errorf("version %d: shared_preload_libraries changed without a reason", v)
		}
	}
	keep := "pg_stat_statements"
	m := get(forced(serverConf{version: 150000, hotStandby: true, preload: &keep}))
	if m["hot_standby"] != "on" || m["shared_preload_libraries"] != keep {
		t.Errorf("pause and preload: %v", m)
	}
	args := serverArgs(serverConf{version: 150000, data: "/d", sock: "/s"})
	if args[0] != "-D" || args[1] != "/d" || !slices.Contains(args, "data_directory=/d") || !slices.Contains(args, "config_file=/d/postgresql.conf") || !slices.Contains(args, "listen_addresses=") {
		t.Errorf("command line %q", args)
	}
}

func TestAutoConfBlock(t *testing.T) {
	b := autoConfBlock(serverConf{version: 150000, sock: `/tmp/it's\here`, hba: "/h", ident: "/i"})
	for _, want := range []string{"\nlisten_addresses = ''\n", "\narchive_mode = 'off'\n", `unix_socket_directories = '/tmp/it''s\\here'`, "dynamic_library_path = '$libdir'"} {
		if !strings.Contains(b, want) {
			t.Errorf("postgresql.auto.conf block has no %q:\n%s", want, b)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(b), "\n") {
		if !strings.HasPrefix(l, "#") && !strings.Contains(l, " = '") {
			t.Errorf("line %q is neither a comment nor a quoted setting", l)
		}
	}
}

func TestCompareSize(t *testing.T) {
	const mb = 1 << 20
	for _, tt := range []struct {
		name                    string
		got, recorded, replayed int64
		ok                      bool
		words                   string
	}{
		{"same", 100 * mb, 100 * mb, 0, true, "backup recorded"},
		{"grown by the WAL", 150 * mb, 100 * mb, 60 * mb, true, "backup recorded"},
		{"grown within the slack", 108 * mb, 100 * mb, 0, true, "backup recorded"},
		{"grown past the WAL", 300 * mb, 100 * mb, 60 * mb, false, "came from neither"},
		{"shrunk", 10 * mb, 100 * mb, 1 * mb, true, "dropped, truncated or vacuumed"},
		{"empty database", 0, 0, 0, true, "backup recorded"},
	} {
		ok, words := compareSize(tt.got, tt.recorded, tt.replayed)
		if ok != tt.ok || !strings.Contains(words, tt.words) {
			t.Errorf("%s: %v %q; want %v with %q", tt.name, ok, words, tt.ok, tt.words)
		}
	}
}

func TestRecordedByDatabase(t *testing.T) {
	m := &repo.Manifest{Files: []repo.File{
		{Path: "base/1/1259", Size: 100},
		{Path: "base/1/1259_fsm", Size: 10},
		{Path: "base/1/PG_VERSION", Size: 3},
		{Path: "base/1/pg_filenode.map", Size: 512},
		{Path: "base/5", Type: repo.TypeDir},
		{Path: "base/5/16384.1", Size: 1000},
		{Path: "pg_tblspc/16400/PG_15_202209061/5/16401", Size: 7},
		{Path: "pg_tblspc/16400", Type: repo.TypeSymlink, Link: "/x"},
		{Path: "global/1262", Size: 8192},
		{Path: "base/x/1", Size: 99},
	}}
	got := recordedByDatabase(m)
	if want := map[uint32]int64{1: 110, 5: 1007}; !reflect.DeepEqual(got, want) {
		t.Errorf("recordedByDatabase = %v, want %v", got, want)
	}
	e := estimate(m, 5<<30)
	if e.Files != 100+10+3+512+1000+7+8192+99 || e.WAL != walKept {
		t.Errorf("estimate %+v", e)
	}
}

func TestCheckSize(t *testing.T) {
	dir := t.TempDir()
	if err := checkSize(sizeEstimate{Files: 1 << 20}, 0, dir); err != nil {
		t.Errorf("a megabyte does not fit: %v", err)
	}
	err := checkSize(sizeEstimate{Files: 3 << 30}, 1<<30, dir)
	if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "--max-size 1.0 GiB") {
		t.Errorf("past --max-size: %v", err)
	}
	err = checkSize(sizeEstimate{Files: 1 << 62}, 0, dir)
	if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "free") {
		t.Errorf("past the free space: %v", err)
	}
}

func TestVersions(t *testing.T) {
	for n, want := range map[int]string{150004: "15.4", 170000: "17.0", 90624: "9.6.24", 100023: "10.23"} {
		if got := versionString(n); got != want {
			t.Errorf("versionString(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int]int{150004: 15, 180001: 18, 100000: 10, 90624: 906} {
		if got := majorOf(n); got != want && !(n < 100000 && got == n/100) {
			t.Errorf("majorOf(%d) = %d, want %d", n, got, want)
		}
	}
}

// fakeServer writes a postgres that says it is version v.
func fakeServer(t *testing.T, v string) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "postgres")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'postgres (PostgreSQL) "+v+" (Debian "+v+"-1)'\n"), 0o755); err != nil { // #nosec G306 -- a test executable
		t.Fatal(err)
	}
	return dir
}

func TestFindServer(t *testing.T) {
	ctx := context.Background()
	dir16 := fakeServer(t, "16.4")
	if p, err := findServer(ctx, dir16, 16); err != nil || p != filepath.Join(dir16, "postgres") {
		t.Errorf("findServer(16 in %s) = %q, %v", dir16, p, err)
	}
	_, err := findServer(ctx, dir16, 15)
	if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "holds PostgreSQL 16") {
		t.Errorf("a bin dir of another major: %v", err)
	}
	if _, err := findServer(ctx, t.TempDir(), 15); !errors.Is(err, archive.ErrBadInput) {
		t.Errorf("a bin dir without postgres: %v", err)
	}
	old := serverDirs
	serverDirs = func(int) []string { return []string{filepath.Join(dir16, "nope"), dir16} }
	defer func() { serverDirs = old }()
	t.Setenv("PATH", t.TempDir())
	if p, err := findServer(ctx, "", 16); err != nil || p != filepath.Join(dir16, "postgres") {
		t.Errorf("findServer(16) in the package directories = %q, %v", p, err)
	}
	if _, err := findServer(ctx, "", 17); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "apt-get install postgresql-17") {
		t.Errorf("no PostgreSQL 17 anywhere: %v", err)
	}
	if got := findClient("", t.TempDir(), "pg_verifybackup"); got != "" && !strings.HasPrefix(got, ClientFallbackDir) {
		t.Errorf("findClient found %q with an empty PATH", got)
	}
}

func TestPMStatus(t *testing.T) {
	dir := t.TempDir()
	if pmStatus(dir) != "" {
		t.Error("a status without postmaster.pid")
	}
	pid := "4242\n/d\n1700000000\n5432\n/s\n\n  1234  5678\nready   \n"
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(pid), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := pmStatus(dir); got != "ready" {
		t.Errorf("pmStatus = %q", got)
	}
}

func TestLogFollower(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.log")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	l := &logFollower{path: p}
	_, _ = f.WriteString("LOG:  starting PostgreSQL 15\nLOG:  consistent recovery state reached at 0/3000")
	l.poll()
	if l.consistentLSN != "" {
		t.Errorf("half a line was read: %q", l.consistentLSN)
	}
	_, _ = f.WriteString("100\nLOG:  recovery stopping after WAL location (LSN) \"0/3000100\"\nFATAL:  something\nLOG:  shut down\n")
	l.poll()
	if l.consistentLSN != "0/3000100" || l.consistentAt.IsZero() || !strings.Contains(l.stopping, "recovery stopping") {
		t.Errorf("follower: %+v", l)
	}
	if tail := tailOf(p, 2); !strings.Contains(tail, "FATAL:  something") || strings.Contains(tail, "shut down") {
		t.Errorf("tailOf = %q", tail)
	}
}

func TestErrorLines(t *testing.T) {
	out := "NOTICE: fine\npsql:check.sql:3: ERROR:  too few orders\nCONTEXT: PL/pgSQL\n"
	if got := errorLines(out); got != "psql:check.sql:3: ERROR: too few orders" {
		t.Errorf("errorLines = %q", got)
	}
	if got := errorLines("a\nb\nc\nd\n"); got != "b / c / d" {
		t.Errorf("errorLines without an error line = %q", got)
	}
}

func TestDescribeTarget(t *testing.T) {
	tm := time.Date(2026, 11, 23, 14, 5, 0, 0, time.UTC)
	lsn := archive.LSN(0x3000060)
	for _, tt := range []struct {
		t    restore.Target
		want string
	}{
		{restore.Target{}, "the end of the archive"},
		{restore.Target{Time: &tm}, "target time 2026-11-23 14:05:00Z"},
		{restore.Target{LSN: &lsn, Action: "pause"}, "target LSN 0/3000060, paused there"},
		{restore.Target{Immediate: true}, "the backup's consistency point"},
	} {
		if got := describeTarget(tt.t); got != tt.want {
			t.Errorf("describeTarget = %q, want %q", got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	sql := filepath.Join(t.TempDir(), "a.sql")
	if err := os.WriteFile(sql, []byte("SELECT 1;"), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := []string{"/bin/walvault", "wal-fetch"}
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"ok", Options{FetchArgv: argv, SQLFile: sql, Amcheck: AmcheckHeap}, ""},
		{"shutdown", Options{FetchArgv: argv, Target: restore.Target{Action: "shutdown"}}, "--target-action"},
		{"xid", Options{FetchArgv: argv, Target: restore.Target{XID: "5"}}, "--target-time"},
		{"two targets", Options{FetchArgv: argv, Target: restore.Target{Immediate: true, Name: "x"}}, "--target"},
		{"amcheck", Options{FetchArgv: argv, Amcheck: "all"}, "--amcheck"},
		{"sql database alone", Options{FetchArgv: argv, SQLDatabase: "shop"}, "--sql FILE"},
		{"sql missing", Options{FetchArgv: argv, SQLFile: sql + ".none"}, "--sql"},
		{"no restore_command", Options{}, "restore_command"},
	} {
		d := &drill{opts: tt.o}
		err := d.validate()
		if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// As root the server runs as --owner, the owner of an existing --dir, or
// postgres, never as root; as anyone else, as that user.
func TestChooseAccount(t *testing.T) {
	if os.Geteuid() != 0 {
		a, err := chooseAccount("", t.TempDir())
		if err != nil || a.UID != os.Geteuid() || a.Switch {
			t.Errorf("not root: %+v, %v", a, err)
		}
		if _, err := chooseAccount("root", ""); !errors.Is(err, archive.ErrBadInput) {
			t.Errorf("not root, --owner root: %v", err)
		}
		return
	}
	if _, err := chooseAccount("root", ""); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "which PostgreSQL refuses to run as") {
		t.Errorf("--owner root: %v", err)
	}
	if _, err := chooseAccount("no-such-user-here", ""); !errors.Is(err, archive.ErrBadInput) {
		t.Errorf("an unknown --owner: %v", err)
	}
	// restore takes a bare number with its group; the drill's server needs
	// an entry in the user database as well.
	if _, err := chooseAccount("4242424:0", ""); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "no entry here") {
		t.Errorf("--owner of a uid with no entry: %v", err)
	}
	if a, err := chooseAccount(nobodyUID(t)+":0", ""); err != nil || a.Name != "nobody" || a.GID != 0 {
		t.Errorf("--owner by number: %+v, %v", a, err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("this test needs the user nobody: %v", err)
	}
	dir := t.TempDir()
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	a, err := chooseAccount("", dir)
	if err != nil || a.UID != uid || !a.Switch || a.Name != "nobody" {
		t.Errorf("--dir owned by nobody: %+v, %v", a, err)
	}
	if a, err := chooseAccount("nobody:0", ""); err != nil || a.GID != 0 || a.UID != uid {
		t.Errorf("--owner nobody:0: %+v, %v", a, err)
	}
	if _, err := user.Lookup(DefaultServerUser); err == nil {
		a, err := chooseAccount("", "")
		if err != nil || a.Name != DefaultServerUser || !a.Switch {
			t.Errorf("default: %+v, %v", a, err)
		}
	}
	// reachable: a directory behind a 0700 one of root's is not.
	top, err := os.MkdirTemp("", "reach-") // in /tmp: t.TempDir's parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(top) }()
	if err := os.Chmod(top, 0o700); err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(top, "d")
	if err := os.Mkdir(inner, 0o755); err != nil { // #nosec G301 -- test directory
		t.Fatal(err)
	}
	if err := reachable(inner, a); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "cannot get through "+top) {
		t.Errorf("behind a 0700 directory: %v", err)
	}
	if err := os.Chmod(top, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := reachable(inner, a); err != nil {
		t.Errorf("behind a 0711 directory: %v", err)
	}
}

// leftovers finds a process of the program named working in the
// directory, and nothing else; endLeftovers ends it.
func TestLeftovers(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("this test needs sleep: %v", err)
	}
	dir, other := t.TempDir(), t.TempDir()
	start := func(cwd string) *exec.Cmd {
		cmd := exec.Command(sleep, "60")
		cmd.Dir = cwd
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd
	}
	in := start(filepath.Join(dir))
	start(other)
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	deep := start(sub)
	got := leftovers(os.Geteuid(), []string{sleep}, dir)
	slices.Sort(got)
	want := []int{in.Process.Pid, deep.Process.Pid}
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("leftovers = %v, want %v", got, want)
	}
	if got := leftovers(os.Geteuid(), []string{"/bin/true"}, dir); len(got) != 0 {
		t.Errorf("another program's processes: %v", got)
	}
	if n := endLeftovers(os.Geteuid(), []string{sleep}, dir); n != 2 {
		t.Errorf("endLeftovers ended %d, want 2", n)
	}
	if got := alive(want); len(got) != 0 {
		t.Errorf("still alive: %v", got)
	}
	if got := leftovers(os.Geteuid(), []string{sleep}, other); len(got) != 1 {
		t.Errorf("the process elsewhere: %v", got)
	}
}

func nobodyUID(t *testing.T) string {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("this test needs the user nobody: %v", err)
	}
	return u.Uid
}
