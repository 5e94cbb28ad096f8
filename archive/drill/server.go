package drill

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/walvault/walvault/archive"
)

// The drill's server listens on this port number, on its private unix
// socket only (the number names the socket file).
const serverPort = 5432

// setting is one server setting the drill imposes.
type setting struct {
	name, value string
	// minVersion, maxVersion (server_version_num, exclusive) bound the
	// majors that know it; 0 for no bound.
	minVersion, maxVersion int
}

// serverConf is what the drill's server is told.
type serverConf struct {
	version    int // server_version_num of the backup
	data, sock string
	hba, ident string
	hotStandby bool // pause at the target: read-only connections during recovery
	// preload is shared_preload_libraries when the drill changes it.
	preload *string
}

// forced is every setting the drill imposes, on the server's command line
// (where nothing in the data directory can override it) and at the end of
// postgresql.auto.conf (so that a kept directory started by hand stays as
// isolated). What it guards against:
//   - the production server and store: no TCP port, a private socket, no
//     archiving, no replication connection, no pid file or stats
//     directory outside the data directory (Debian puts them in
//     /var/run/postgresql), its own authentication files;
//   - commands and libraries named by the backup (which a host that took
//     the database server could sign): no archive_cleanup_command,
//     recovery_end_command or SSL passphrase command, libraries only from
//     the installation's $libdir, no JIT provider, no per-session
//     libraries, no event triggers (17+);
//   - a small drill host: 128MB of shared buffers, no huge pages, no more
//     than about 1GB of WAL kept, fsync off (the directory is thrown
//     away), no autovacuum.
func forced(c serverConf) []setting {
	hs := "off"
	if c.hotStandby {
		hs = "on"
	}
	all := []setting{
		{name: "listen_addresses", value: ""},
		{name: "port", value: strconv.Itoa(serverPort)},
		{name: "unix_socket_directories", value: c.sock},
		{name: "unix_socket_permissions", value: "0700"},
		{name: "hba_file", value: c.hba},
		{name: "ident_file", value: c.ident},
		{name: "external_pid_file", value: ""},
		{name: "cluster_name", value: "walvault-drill"},
		{name: "archive_mode", value: "off"},
		{name: "archive_command", value: ""},
		{name: "archive_library", value: "", minVersion: 150000},
		{name: "archive_cleanup_command", value: "", minVersion: 120000},
		{name: "recovery_end_command", value: "", minVersion: 120000},
		{name: "primary_conninfo", value: "", minVersion: 120000},
		{name: "primary_slot_name", value: "", minVersion: 120000},
		{name: "synchronous_standby_names", value: ""},
		{name: "hot_standby", value: hs},
		{name: "ssl", value: "off"},
		{name: "logging_collector", value: "off"},
		{name: "log_destination", value: "stderr"},
		{name: "log_min_messages", value: "warning"},
		{name: "lc_messages", value: "C"},
		{name: "shared_buffers", value: "128MB"},
		{name: "huge_pages", value: "off"},
		{name: "max_wal_size", value: "1GB"},
		{name: "fsync", value: "off"},
		{name: "autovacuum", value: "off"},
		{name: "jit", value: "off", minVersion: 110000},
		{name: "dynamic_library_path", value: "$libdir"},
		{name: "session_preload_libraries", value: ""},
		{name: "local_preload_libraries", value: ""},
		{name: "event_triggers", value: "off", minVersion: 170000},
		{name: "stats_temp_directory", value: "pg_stat_tmp", maxVersion: 150000},
	}
	if c.preload != nil {
		all = append(all, setting{name: "shared_preload_libraries", value: *c.preload})
	}
	var out []setting
	for _, s := range all {
		if (s.minVersion == 0 || c.version >= s.minVersion) && (s.maxVersion == 0 || c.version < s.maxVersion) {
			out = append(out, s)
		}
	}
	return out
}

// serverArgs is the postgres command line: the data directory, the
// configuration file in it, and every forced setting.
func serverArgs(c serverConf) []string {
	args := []string{"-D", c.data, "-c", "data_directory=" + c.data, "-c", "config_file=" + filepath.Join(c.data, "postgresql.conf")}
	for _, s := range forced(c) {
		args = append(args, "-c", s.name+"="+s.value)
	}
	return args
}

// confQuote quotes a value for postgresql.conf.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// autoConfBlock is what the drill appends to postgresql.auto.conf.
func autoConfBlock(c serverConf) string {
	var b strings.Builder
	b.WriteString("\n# Added by walvault drill: a drill's server never archives, replicates or listens on TCP,\n# and loads no library or command named by the backup. Remove the directory when done.\n")
	for _, s := range forced(c) {
		fmt.Fprintf(&b, "%s = %s\n", s.name, confQuote(s.value))
	}
	return b.String()
}

// safePreload drops from a shared_preload_libraries value every library
// named by a path (with a slash): a name is looked up in $libdir, the
// installation's own, while a path could load a file that came with the
// backup. It returns the value to use and the libraries dropped.
func safePreload(v string) (string, []string) {
	var keep, dropped []string
	for _, lib := range strings.Split(v, ",") {
		lib = strings.TrimSpace(lib)
		bare := strings.Trim(lib, `"`)
		switch {
		case bare == "":
		case strings.ContainsAny(bare, `/\`):
			dropped = append(dropped, bare)
		default:
			keep = append(keep, lib)
		}
	}
	return strings.Join(keep, ","), dropped
}

// server is the drill's PostgreSQL: a postmaster that is walvault's own
// child, in its own process group, that the kernel stops (SIGQUIT, an
// immediate shutdown) if walvault dies.
type server struct {
	pid     int
	done    chan struct{} // closed when the postmaster has exited
	waitErr error
	data    string
	log     *logFollower
}

// startServer starts postgres as acct with args, its output appended to
// logPath.
func startServer(postgres string, args, env []string, acct *account, logPath, data string) (*server, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) // #nosec G304 -- the drill's own log file
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	if err := acct.chown(logPath); err != nil {
		return nil, err
	}
	s := &server{done: make(chan struct{}), data: data, log: &logFollower{path: logPath}}
	started := make(chan error, 1)
	go func() {
		// The kernel sends Pdeathsig when the thread that started the
		// child ends: this goroutine keeps its thread until the server
		// has exited.
		runtime.LockOSThread()
		cmd := exec.Command(postgres, args...) // #nosec G204 -- the PostgreSQL server found for the backup's version, with the drill's own settings
		cmd.Dir = data
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT, Credential: acct.credential()}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		s.pid = cmd.Process.Pid
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("%w: starting %s: %w", archive.ErrPostgres, postgres, err)
	}
	return s, nil
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop shuts the server down: a fast shutdown (a clean stop, for a
// directory that is kept) or an immediate one (for one about to be
// removed), then harder if it does not end in time.
func (s *server) stop(fast bool) {
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 2 * time.Minute}, {syscall.SIGQUIT, 30 * time.Second}, {syscall.SIGKILL, 30 * time.Second}}
	if !fast {
		steps = steps[1:]
	}
	for _, st := range steps {
		if s.exited() {
			return
		}
		_ = syscall.Kill(s.pid, st.sig)
		select {
		case <-s.done:
			return
		case <-time.After(st.wait):
		}
	}
}

// pmStatus is the postmaster's state from postmaster.pid (8th line, 10+):
// "starting", "stopping", "ready" or "standby"; "" when it cannot tell.
func pmStatus(data string) string {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid")) // #nosec G304 -- the drill's own data directory
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// logFollower reads the server's log as it grows.
type logFollower struct {
	path string
	off  int64
	// consistentAt is when the consistency message was seen, and at
	// which LSN.
	consistentAt  time.Time
	consistentLSN string
	// stopping is the line that says recovery stopped at its target.
	stopping string
}

// maxLogRead bounds one read of the log: the server writes a line per
// segment restored, and more on trouble.
const maxLogRead = 8 << 20

// poll reads what was added since the last call and notes what matters.
func (l *logFollower) poll() {
	f, err := os.Open(l.path)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return
	}
	b, _ := io.ReadAll(io.LimitReader(f, maxLogRead))
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		return
	}
	l.off += int64(len(b))
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if _, after, ok := strings.Cut(line, "consistent recovery state reached at "); ok && l.consistentAt.IsZero() {
			l.consistentAt = time.Now()
			l.consistentLSN = strings.TrimSpace(after)
		}
		if strings.Contains(line, "recovery stopping ") && l.stopping == "" {
			l.stopping = line
		}
	}
}

// tail is the last lines of the log that say what went wrong: the last
// FATAL or PANIC line with the lines around it, else the last lines.
func tailOf(path string, n int) string {
	f, err := os.Open(path) // #nosec G304 -- the drill's own log file
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.Size() > 256<<10 {
		_, _ = f.Seek(st.Size()-256<<10, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, 256<<10))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "FATAL:") || strings.Contains(lines[i], "PANIC:") {
			lo := max(0, i-n+1)
			return strings.Join(lines[lo:i+1], " / ")
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// errStopped is the server ending on its own.
var errStopped = errors.New("PostgreSQL stopped")

// waitUp waits until the server accepts connections: promoted ("ready"),
// or with hot standby in recovery ("standby"). It fails when the server
// exits first.
func (s *server) waitUp(ctx context.Context, hotStandby bool) (string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.log.poll()
		switch st := pmStatus(s.data); {
		case st == "ready", hotStandby && st == "standby":
			return st, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-s.done:
			s.log.poll()
			return "", errStopped
		case <-tick.C:
		}
	}
}
