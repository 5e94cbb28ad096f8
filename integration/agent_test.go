package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/walvault/walvault/archive/agent"
	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/integration/pgtest"
)

// agentCluster starts PostgreSQL 15 (1 MiB segments, WAL kept) archiving
// through walvault-wal push, encrypted to a fresh key. No agent runs yet.
func agentCluster(t *testing.T, tg *target, extraEnv ...string) (*pgtest.Cluster, string, string) {
	t.Helper()
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	env := append(append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...), extraEnv...)
	c := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Env:        env,
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s push %%p'", pgtest.WalvaultWal(t)),
			"wal_keep_size = '1GB'",
			"checkpoint_timeout = '1h'",
		},
	})
	c.Start()
	return c, identity, recipient
}

// agentProc is a walvault agent running as the cluster's user.
type agentProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startAgent runs walvault agent for c's data directory with c's
// environment and waits for its socket.
func startAgent(t testing.TB, c *pgtest.Cluster, env []string, args ...string) *agentProc {
	t.Helper()
	a := tryAgent(t, c, env, args...)
	sock := proto.DefaultSocket(filepath.Join(c.Data, "pg_wal"))
	for _, x := range args {
		if v, ok := strings.CutPrefix(x, "--socket="); ok {
			sock = v
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-a.done:
			b, _ := os.ReadFile(a.log)
			t.Fatalf("agent exited: %v\n%s", a.err, b)
		default:
		}
		if c, err := proto.Dial(sock, time.Second); err == nil {
			_ = c.Close()
			return a
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(a.log)
			t.Fatalf("agent socket %s not up after 30 s\n%s", sock, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryAgent starts an agent without waiting for it.
func tryAgent(t testing.TB, c *pgtest.Cluster, env []string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{log: filepath.Join(filepath.Dir(c.Log), "agent.log"), done: make(chan struct{})}
	f, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) // #nosec G302 G304 -- a test log
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{"agent", "--pgdata", c.Data}, args...)
	a.cmd = c.Owner.Cmd(context.Background(), pgtest.Walvault(t), all...)
	a.cmd.Env = append(append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true"), c.Env...), env...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.err = a.cmd.Wait()
		_ = f.Close()
		close(a.done)
	}()
	t.Cleanup(func() { a.kill() })
	return a
}

func (a *agentProc) kill() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
}

// stop sends SIGTERM and returns the exit code.
func (a *agentProc) stop(t testing.TB) int {
	t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on SIGTERM within 30 s")
	}
	return a.cmd.ProcessState.ExitCode()
}

// agentStatus asks the agent on sock for its counters.
func agentStatus(t testing.TB, sock string) (agent.Stats, error) {
	t.Helper()
	var s agent.Stats
	c, err := proto.Dial(sock, time.Second)
	if err != nil {
		return s, err
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write([]byte(proto.Request{Verb: proto.VerbStatus}.Encode())); err != nil {
		return s, err
	}
	resp, err := proto.ReadResponse(bufio.NewReader(c))
	if err != nil {
		return s, err
	}
	if resp.Code != 0 {
		return s, fmt.Errorf("status: code %d: %s", resp.Code, resp.Message)
	}
	return s, json.Unmarshal([]byte(resp.Message), &s)
}

// scrape reads /metrics and returns the unlabelled values by name, and the
// store requests summed.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics") // #nosec G107 -- the test's own agent
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[name] += v
		}
	}
	return out
}

func archiverFailures(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	n, err := strconv.Atoi(c.Psql("SELECT failed_count FROM pg_stat_archiver"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAgent archives through walvault-wal with no agent (the client falls
// back to wal-push), with the agent up, and after it stopped; a second
// agent refuses the data directory; /metrics parses and counts; the
// archive matches pg_wal; and a restore with --agent replays through an
// agent of its own, served from its prefetch. PostgreSQL never sees a
// failed archive_command.
func TestAgent(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, recipient := agentCluster(t, tg)
	c.Run("pgbench", "-i", "-s", "1", "-q")
	mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	if n := archiverFailures(t, c); n != 0 {
		t.Fatalf("fallback: %d failed archive_command(s)\n%s", n, c.LogTail(20))
	}
	if _, err := os.Stat(filepath.Join(c.Data, "pg_wal", ".walvault", "agent")); err == nil {
		t.Fatal("the agent's spool exists although no agent ran")
	}

	maddr := fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
	a := startAgent(t, c, nil, "--metrics-listen="+maddr)
	second := tryAgent(t, c, nil)
	<-second.done
	if code := second.cmd.ProcessState.ExitCode(); code != 5 {
		t.Fatalf("second agent: exit %d, want 5", code)
	}
	if b, _ := os.ReadFile(a.log); !strings.Contains(string(b), "another walvault agent (pid ") {
		t.Fatalf("second agent's message missing:\n%s", b)
	}

	c.Run("pgbench", "-n", "-t", "2000")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	m := scrape(t, maddr)
	if m["walvault_agent_segments_archived_total"] < 1 || m["walvault_agent_push_requests_total"] < 1 || m["walvault_agent_store_requests_total"] < 1 {
		t.Fatalf("metrics: %v", m)
	}
	if _, ok := m["walvault_agent_archive_lag_seconds"]; !ok {
		t.Fatal("no walvault_agent_archive_lag_seconds")
	}
	if m["walvault_build_info"] != 1 {
		t.Fatalf("walvault_build_info: %v", m)
	}
	sock := proto.DefaultSocket(filepath.Join(c.Data, "pg_wal"))
	st, err := agentStatus(t, sock)
	if err != nil || st.SegmentsArchived < 1 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	// check follows walvault-wal push to the settings of its wal-push.
	if code, out, errOut := tg.walvault(t, c.PGEnv(), "check"); code != 0 {
		t.Fatalf("check with archive_command = walvault-wal push: exit %d\n%s%s", code, out, errOut)
	}
	time.Sleep(2500 * time.Millisecond) // the state file is rewritten every 2 s
	out := mustWalvault(t, tg, nil, "status", "--no-server", "--state-file", "none", "--pgdata", c.Data)
	if !strings.Contains(out, "agent             running (pid ") {
		t.Fatalf("status does not show the agent:\n%s", out)
	}
	if code := a.stop(t); code != 0 {
		t.Fatalf("agent exit %d on SIGTERM", code)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Fatal("the socket outlived the agent")
	}

	// Agent down again: the client falls back, PostgreSQL notices nothing.
	c.Run("pgbench", "-n", "-t", "1000")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	if n := archiverFailures(t, c); n != 0 {
		t.Fatalf("%d failed archive_command(s)\n%s", n, c.LogTail(20))
	}
	checkArchiveMatches(t, tg, c, identity, archivedSegments(t, c))

	// Restore with --agent: restore_command is the client, served by a
	// fetch-only agent for the restored directory from its prefetch.
	want := tableChecksums(t, c)
	serverEnv := append([]string{"AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	r := restoreInto(t, tg, serverEnv, identity, "--agent")
	if !strings.Contains(r.Stdout, "walvault-wal fetch") || !strings.Contains(r.Stdout, "agent --no-archive --pgdata") {
		t.Fatalf("restore --agent printed:\n%s", r.Stdout)
	}
	r.AppendConf("archive_mode = off")
	ra := startAgent(t, r.Cluster, []string{"WALVAULT_IDENTITY_FILE=" + identity}, "--no-archive")
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
	rs, err := agentStatus(t, proto.DefaultSocket(filepath.Join(r.Data, "pg_wal")))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore through the agent: %d fetches, %d from the prefetch, %d not in the archive", rs.FetchRequests, rs.PrefetchHits, rs.NotInArchive)
	if rs.FetchRequests < 3 || rs.PrefetchHits < 1 {
		b, _ := os.ReadFile(ra.log)
		t.Fatalf("replay did not go through the agent's prefetch: %+v\n%s", rs, b)
	}
}

// TestAgentRestartDrain lets an agent drain a backlog PostgreSQL is not
// archiving (archive_command empty), stops it mid-drain and starts
// another: the second uploads only what the first had not, trusting the
// first's markers. Then archive_command, now walvault-wal, is answered
// from those markers without a single upload more.
func TestAgentRestartDrain(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, _ := agentCluster(t, tg, "WALVAULT_UPLOAD_CONCURRENCY=2")
	c.Psql("ALTER SYSTEM SET archive_command = ''")
	c.Psql("SELECT pg_reload_conf()")
	c.Psql("CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 200000) g")
	c.SwitchWAL()
	ready, _ := filepath.Glob(filepath.Join(c.Data, "pg_wal", "archive_status", "*.ready"))
	if len(ready) < 30 {
		t.Fatalf("only %d .ready files", len(ready))
	}
	sock := proto.DefaultSocket(filepath.Join(c.Data, "pg_wal"))
	a := startAgent(t, c, nil)
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := agentStatus(t, sock)
		if err == nil && st.SegmentsArchived >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not start draining: %+v %v", st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code := a.stop(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
	first, err := agent.ReadState(filepath.Join(c.Data, "pg_wal", ".walvault"))
	if err != nil {
		t.Fatal(err)
	}
	if int(first.SegmentsArchived) >= len(ready) {
		t.Fatalf("the first agent drained everything (%d of %d) before it was stopped", first.SegmentsArchived, len(ready))
	}
	startAgent(t, c, nil)
	var second agent.Stats
	for {
		second, err = agentStatus(t, sock)
		if err == nil && second.ReadyCount == 0 && second.Uploading == 0 && second.SegmentsArchived > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second agent did not drain: %+v %v", second, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d ready: the first agent archived %d, the second %d (%d found already archived)", len(ready), first.SegmentsArchived, second.SegmentsArchived, second.AlreadyArchived)
	if got := first.SegmentsArchived + second.SegmentsArchived + second.AlreadyArchived; int(got) != len(ready) {
		t.Errorf("%d + %d + %d archived, want %d", first.SegmentsArchived, second.SegmentsArchived, second.AlreadyArchived, len(ready))
	}
	if second.AlreadyArchived > 2 {
		t.Errorf("the second agent re-checked %d files the first had marked durable", second.AlreadyArchived)
	}

	// The client's cost for a segment the agent already holds: wall time
	// (process start included) and peak RSS as /usr/bin/time reports it.
	var times []time.Duration
	rss := 0
	for i := 0; i < 41; i++ {
		seg := "pg_wal/" + strings.TrimSuffix(filepath.Base(ready[i%len(ready)]), ".ready")
		cl := c.Owner.Cmd(context.Background(), pgtest.WalvaultWal(t), "push", seg)
		cl.Dir = c.Data
		start := time.Now()
		if out, err := cl.CombinedOutput(); err != nil {
			t.Fatalf("client push: %v\n%s", err, out)
		}
		times = append(times, time.Since(start))
		if tm, err := exec.LookPath("time"); err == nil && i%10 == 0 {
			m := c.Owner.Cmd(context.Background(), tm, "-f", "%M", pgtest.WalvaultWal(t), "push", seg)
			m.Dir = c.Data
			out, _ := m.CombinedOutput()
			if kb, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
				rss = max(rss, kb)
			}
		}
	}
	t.Logf("walvault-wal push of a durable segment: median %s (process start included), peak RSS %d KiB", median(times), rss)

	c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s push %%p'", pgtest.WalvaultWal(t)))
	c.Psql("SELECT pg_reload_conf()")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	after, err := agentStatus(t, sock)
	if err != nil {
		t.Fatal(err)
	}
	if after.PushRequests < int64(len(ready)) || after.SegmentsArchived > second.SegmentsArchived+2 {
		t.Errorf("archive_command through the agent: %d push requests, %d uploads (before: %d)", after.PushRequests, after.SegmentsArchived, second.SegmentsArchived)
	}
	if n := archiverFailures(t, c); n != 0 {
		t.Fatalf("%d failed archive_command(s)", n)
	}
	checkArchiveMatches(t, tg, c, identity, archivedSegments(t, c))
}

// TestAgentSocketPermissions: an agent refuses a socket directory others
// can write to (exit 2); --socket-group gives the socket mode 0660 and
// that group; and the client never trusts a socket of another user: it
// runs wal-push instead, without even connecting.
func TestAgentSocketPermissions(t *testing.T) {
	tg := newTarget(t, "file")
	c, _, _ := agentCluster(t, tg)
	spool := filepath.Join(c.Data, "pg_wal", ".walvault")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = c.Owner.Chown(spool)
	if err := os.Chmod(spool, 0o777); err != nil { // #nosec G302 -- the mistake under test
		t.Fatal(err)
	}
	bad := tryAgent(t, c, nil)
	<-bad.done
	b, _ := os.ReadFile(bad.log)
	if code := bad.cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(b), "writable by group or others") {
		t.Fatalf("agent with a 0777 socket directory: exit %d\n%s", code, b)
	}
	if err := os.Chmod(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if c.Owner.AsOther {
		// Not as the data directory's owner.
		out, err := exec.Command(pgtest.Walvault(t), "agent", "--pgdata", c.Data, "--store", tg.URL, "--allow-unsigned").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "run the agent as the data directory's owner") {
			t.Fatalf("agent as root on postgres's data directory: %v\n%s", err, out)
		}
	}

	grp := strconv.Itoa(c.Owner.Gid)
	a := startAgent(t, c, nil, "--socket-group="+grp)
	fi, err := os.Lstat(filepath.Join(spool, proto.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || int(st.Gid) != c.Owner.Gid || int(st.Uid) != c.Owner.Uid {
		t.Fatalf("socket mode %v uid %d gid %d, want 0660 %d:%d", fi.Mode(), st.Uid, st.Gid, c.Owner.Uid, c.Owner.Gid)
	}
	a.stop(t)

	// A socket that says yes to everything, owned by nobody.
	nobody, err := user.Lookup("nobody")
	if err != nil || !c.Owner.AsOther {
		t.Skip("needs root and the nobody user")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	dir := pgtest.WorkDir(t)
	fake := filepath.Join(dir, "fake.sock")
	ln, err := net.Listen("unix", fake)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_ = os.Chmod(fake, 0o777) // #nosec G302 -- anyone may connect: the trap under test
	if err := os.Lchown(fake, uid, -1); err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_, _ = conn.Write([]byte(proto.Response{Code: 0, Message: "durable"}.Encode()))
			_ = conn.Close()
		}
	}()
	seg := c.SwitchWAL()
	c.WaitArchived(seg, 60*time.Second) // through the fallback: no agent runs
	cl := c.Owner.Cmd(context.Background(), pgtest.WalvaultWal(t), "push", "--socket", fake, filepath.Join(c.Data, "pg_wal", seg))
	cl.Env = append(os.Environ(), c.Env...)
	out, err := cl.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "not a socket of this user") {
		t.Fatalf("client with another user's socket: %v\n%s", err, out)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the client connected %d time(s) to another user's socket", n)
	}
}
