// Package pgtest runs throwaway PostgreSQL clusters for end-to-end tests.
// As root (CI), initdb and the server run as the "postgres" user, in
// directories under /tmp that user can traverse; as anyone else, directly.
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinDir finds PostgreSQL's server binaries: $PG_BINDIR, `pg_config
// --bindir`, or the Debian location of PostgreSQL 15.
func BinDir() (string, error) {
	cands := []string{os.Getenv("PG_BINDIR")}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		cands = append(cands, strings.TrimSpace(string(out)))
	}
	cands = append(cands, "/usr/lib/postgresql/15/bin")
	for _, d := range cands {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil { // #nosec G703 -- candidate directories of the test run's own configuration
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, pg_ctl) not found in $PG_BINDIR, pg_config --bindir or /usr/lib/postgresql/15/bin: install postgresql-15 (apt-get install postgresql-15) or run 'make test-deps'")
}

// Owner is the account the server runs as.
type Owner struct {
	Uid, Gid int
	AsOther  bool // true when we are root and switch to postgres
}

var (
	ownerOnce sync.Once
	owner     Owner
	ownerErr  error
)

// ServerOwner returns who PostgreSQL processes run as.
func ServerOwner() (Owner, error) {
	ownerOnce.Do(func() {
		if os.Geteuid() != 0 {
			owner = Owner{Uid: os.Geteuid(), Gid: os.Getegid()}
			return
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			ownerErr = fmt.Errorf("running as root, PostgreSQL needs the 'postgres' user: %v (install postgresql-15)", err)
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		owner = Owner{Uid: uid, Gid: gid, AsOther: true}
	})
	return owner, ownerErr
}

// Cmd prepares a command that runs as the server owner.
func (o Owner) Cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...) // #nosec G204 -- PostgreSQL's own binaries, run by the tests
	if o.AsOther {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.Uid), Gid: uint32(o.Gid)}} // #nosec G115 -- ids from /etc/passwd
	}
	return cmd
}

// Chown hands path (recursively) to the server owner.
func (o Owner) Chown(path string) error {
	if !o.AsOther {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, o.Uid, o.Gid) // #nosec G122 -- a test's own fresh directory: nobody else writes there
	})
}

// WorkDir makes a fresh directory under /tmp that the server owner can use
// and traverse, removed when the test ends.
func WorkDir(t testing.TB) string {
	t.Helper()
	o, err := ServerOwner()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/tmp", "wvt-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // #nosec G302 -- the server owner must traverse it
		t.Fatal(err)
	}
	if err := o.Chown(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// FreePort asks the kernel for a free loopback port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Cleanup removes what outlives single tests (the walvault build). Call it
// from TestMain after m.Run.
func Cleanup() {
	if buildPath != "" {
		_ = os.RemoveAll(filepath.Dir(buildPath))
	}
	if keysDir != "" {
		_ = os.RemoveAll(keysDir)
	}
	for _, d := range copies {
		_ = os.RemoveAll(d)
	}
}

// Walvault builds cmd/walvault once per test binary into a directory the
// server owner can reach (archive_command runs it) and returns its path.
// WALVAULT_BIN overrides the build with an existing binary.
func Walvault(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("/tmp", "wvbin-")
		if err != nil {
			buildErr = err
			return
		}
		_ = os.Chmod(dir, 0o755) // #nosec G302 -- the server owner runs the binary in it
		buildPath = filepath.Join(dir, "walvault")
		if src := os.Getenv("WALVAULT_BIN"); src != "" {
			buildErr = copyBinary(src, buildPath)
			if full := filepath.Join(filepath.Dir(src), "walvault-full"); buildErr == nil && fileExists(full) {
				buildErr = copyBinary(full, filepath.Join(dir, "walvault-full"))
			}
			return
		}
		// As make build installs it: walvault is the front that runs
		// wal-push and wal-fetch, walvault-full beside it everything else,
		// so every test goes through the hand-over.
		_, here, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(here), "..", "..")
		for _, b := range [][]string{
			{"build", "-tags", "walvault_front,urfave_cli_no_docs", "-o", buildPath, "./cmd/walvault"},
			{"build", "-o", filepath.Join(dir, "walvault-full"), "./cmd/walvault"},
		} {
			cmd := exec.Command("go", b...) // #nosec G204 -- builds this repository's command
			cmd.Dir = root
			if b[2] == "walvault_front,urfave_cli_no_docs" {
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building walvault (go %s): %v\n%s", strings.Join(b, " "), err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Cluster is one throwaway PostgreSQL server.
type Cluster struct {
	t testing.TB
	// Bin holds the client tools (psql, pgbench, pg_dump, pg_verifybackup):
	// PostgreSQL 15's, which work with every server walvault supports.
	Bin string
	// ServerBin holds initdb, pg_ctl and postgres of Major.
	ServerBin string
	Major     int
	Data      string // PGDATA
	Sock      string // unix socket directory
	Port      int
	Owner     Owner
	Env       []string // extra environment for the server (reaches archive/restore_command)
	Log       string   // server log file
	running   bool
}

// Options shape a new cluster.
type Options struct {
	// Conf lines appended to postgresql.conf.
	Conf []string
	// Env is added to the server's environment; archive_command and
	// restore_command inherit it.
	Env []string
	// InitdbArgs are passed to initdb (e.g. --wal-segsize=1).
	InitdbArgs []string
	// NoInit leaves Data empty (for restores); the caller fills it.
	NoInit bool
	// Dir, when set, is where PGDATA goes instead of a new WorkDir.
	Data string
	// Major is the PostgreSQL major version to run (see Majors); 0 is
	// DefaultMajor, Debian's.
	Major int
}

// New creates (initdb) a cluster; call Start to run it. It is stopped and
// removed when the test ends.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	major := opts.Major
	if major == 0 {
		major = DefaultMajor
	}
	srvBin, err := ServerBinDir(major)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ServerOwner()
	if err != nil {
		t.Fatal(err)
	}
	work := WorkDir(t)
	c := &Cluster{t: t, Bin: bin, ServerBin: srvBin, Major: major, Owner: o, Port: FreePort(t), Env: opts.Env,
		Data: opts.Data, Sock: filepath.Join(work, "s"), Log: filepath.Join(work, "server.log")}
	if c.Data == "" {
		c.Data = filepath.Join(work, "data")
	}
	for _, d := range []string{c.Sock} {
		if err := os.Mkdir(d, 0o755); err != nil { // #nosec G301 -- the server owner must traverse it
			t.Fatal(err)
		}
		_ = o.Chown(d)
	}
	if opts.NoInit {
		// An empty data directory owned by the server's user, as a DBA
		// prepares one for a restore: restore hands the files to DEST's owner.
		if err := os.MkdirAll(c.Data, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := o.Chown(c.Data); err != nil {
			t.Fatal(err)
		}
	} else {
		args := append([]string{"-D", c.Data, "--no-sync", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}, opts.InitdbArgs...)
		if out, err := o.Cmd(context.Background(), filepath.Join(srvBin, "initdb"), args...).CombinedOutput(); err != nil {
			t.Fatalf("initdb: %v\n%s", err, out)
		}
		c.AppendConf(append([]string{
			"listen_addresses = '127.0.0.1'",
			"fsync = off",
			"wal_level = replica",
			"max_wal_senders = 4",
			"log_min_messages = info",
		}, opts.Conf...)...)
	}
	t.Cleanup(func() { c.StopIfRunning() })
	return c
}

// AppendConf adds lines to postgresql.conf.
func (c *Cluster) AppendConf(lines ...string) {
	c.t.Helper()
	f, err := os.OpenFile(filepath.Join(c.Data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(f, l); err != nil {
			_ = f.Close()
			c.t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		c.t.Fatal(err)
	}
}

// Start runs the server (port and socket directory on the command line, so
// a restored data directory needs no edits) and waits until it accepts
// connections, or, for a server in recovery with a shutdown target, exits.
func (c *Cluster) Start() {
	c.t.Helper()
	if err := c.TryStart(); err != nil {
		c.t.Fatal(err)
	}
}

// TryStart is Start returning the error instead of failing the test.
func (c *Cluster) TryStart() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", c.Port, c.Sock)
	cmd := c.Owner.Cmd(context.Background(), filepath.Join(c.ServerBin, "pg_ctl"), "-D", c.Data, "-l", c.Log, "-o", opts, "-w", "-t", "120", "start")
	cmd.Env = append(os.Environ(), c.Env...)
	if c.Owner.AsOther {
		// Create the log for the server's user; keep it across restarts.
		if f, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil { // #nosec G302,G304 -- test log
			_ = f.Close()
		}
		_ = os.Chown(c.Log, c.Owner.Uid, c.Owner.Gid)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n--- server log ---\n%s", err, out, c.LogTail(40))
	}
	c.running = true
	return nil
}

// Stop shuts the server down (fast mode) and waits.
func (c *Cluster) Stop() {
	c.t.Helper()
	out, err := c.Owner.Cmd(context.Background(), filepath.Join(c.ServerBin, "pg_ctl"), "-D", c.Data, "-m", "fast", "-w", "-t", "120", "stop").CombinedOutput()
	if err != nil {
		c.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
	c.running = false
}

// StopIfRunning stops the server if a postmaster is alive, ignoring errors.
func (c *Cluster) StopIfRunning() {
	if _, err := os.Stat(filepath.Join(c.Data, "postmaster.pid")); err != nil {
		return
	}
	_ = c.Owner.Cmd(context.Background(), filepath.Join(c.ServerBin, "pg_ctl"), "-D", c.Data, "-m", "immediate", "-w", "-t", "60", "stop").Run()
	c.running = false
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string {
	b, _ := os.ReadFile(c.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ConnString is a libpq keyword/value string for the cluster.
func (c *Cluster) ConnString(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", c.Port, db)
}

// PGEnv is the libpq environment that points client tools at the cluster.
func (c *Cluster) PGEnv() []string {
	return []string{"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", c.Port), "PGUSER=postgres", "PGDATABASE=postgres", "PGSSLMODE=disable", "PGDATA=" + c.Data}
}

// Psql runs SQL through psql and returns its unaligned, tuples-only output.
func (c *Cluster) Psql(sql string) string {
	c.t.Helper()
	out, err := c.TryPsql(sql)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// TryPsql is Psql returning the error.
func (c *Cluster) TryPsql(sql string) (string, error) {
	cmd := exec.Command(filepath.Join(c.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", c.ConnString(""), "-c", sql) // #nosec G204 -- psql of the cluster under test, SQL from the test
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("psql %q: %v: %s", sql, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// Run runs a client binary (pgbench, pg_dump, ...) against the cluster.
func (c *Cluster) Run(name string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.Bin, name), args...) // #nosec G204 -- client binaries of the cluster under test
	cmd.Env = append(os.Environ(), c.PGEnv()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// WaitArchived polls pg_stat_archiver until wal is archived (compared by
// name order on the same timeline), failing on timeout with the archiver's
// last failure and the server log.
func (c *Cluster) WaitArchived(wal string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.TryPsql("SELECT coalesce(last_archived_wal,'') || '|' || failed_count || '|' || coalesce(last_failed_wal,'') FROM pg_stat_archiver")
		if err == nil {
			parts := strings.Split(out, "|")
			if len(parts[0]) >= 24 && len(wal) >= 24 && parts[0][:24] >= wal[:24] && parts[0][:8] == wal[:8] {
				return
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("WAL %s not archived after %s (archiver: last archived %q, failures %s, last failed %q)\n--- server log ---\n%s", wal, timeout, parts[0], parts[1], parts[2], c.LogTail(30))
			}
		} else if time.Now().After(deadline) {
			c.t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SwitchWAL forces a segment switch and returns the name of the segment
// that was just completed.
func (c *Cluster) SwitchWAL() string {
	c.t.Helper()
	return c.Psql("SELECT pg_walfile_name(pg_switch_wal())")
}

func copyBinary(src, dst string) error {
	data, err := os.ReadFile(src) // #nosec G304 G703 -- WALVAULT_BIN, the tester's choice
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755) // #nosec G306 G703 -- an executable, in our own temporary directory
}

func fileExists(p string) bool {
	_, err := os.Stat(p) // #nosec G703 -- beside WALVAULT_BIN, the tester's choice
	return err == nil
}
