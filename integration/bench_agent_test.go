package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// BenchmarkAgentDrain: n or more real 16 MiB segments pile up as .ready
// (empty archive_command), then the agent starts and archive_command
// becomes walvault-wal push; timed until PostgreSQL's archiver has the
// last one archived. Local store and S3, lz4, upload-concurrency 4.
func BenchmarkAgentDrain(b *testing.B) {
	const n = 32
	for _, kind := range []string{"file", "s3"} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				tg := newTarget(b, kind)
				d, segs := agentDrain(b, tg, n)
				b.ReportMetric(float64(segs)/d.Seconds(), "segments/s")
			}
		})
	}
}

func agentDrain(b *testing.B, tg *target, n int) (time.Duration, int) {
	b.Helper()
	_, recipient := keygen(b, pgtest.WorkDir(b))
	c := pgtest.New(b, pgtest.Options{
		Env: append(tg.Env, "AWS_EC2_METADATA_DISABLED=true", "WALVAULT_UPLOAD_CONCURRENCY=4", "WALVAULT_RECIPIENT="+recipient),
		Conf: []string{"archive_mode = on", "archive_command = ''", "max_wal_size = '4GB'",
			"log_min_messages = fatal"},
	})
	c.Start()
	c.Run("pgbench", "-i", "-s", strconv.Itoa(n*4/3+8), "-q")
	last := c.SwitchWAL()
	ready, _ := filepath.Glob(filepath.Join(c.Data, "pg_wal", "archive_status", "*.ready"))
	if len(ready) < n {
		b.Fatalf("only %d segments ready, want %d", len(ready), n)
	}
	c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s push %%p'", pgtest.WalvaultWal(b)))
	start := time.Now()
	var args []string
	if dir := os.Getenv("WALVAULT_BENCH_PROFILE_DIR"); dir != "" {
		args = append(args, "--cpu-profile="+filepath.Join(dir, "agent-"+tg.Kind+".pprof"))
	}
	a := startAgent(b, c, nil, args...)
	c.Psql("SELECT pg_reload_conf()")
	c.WaitArchived(last, 10*time.Minute)
	d := time.Since(start)
	if hwm := vmHWM(a.cmd.Process.Pid); hwm > 0 {
		b.ReportMetric(float64(hwm)/1024, "MiB-agent-peak-RSS")
	}
	a.stop(b)
	return d, len(ready)
}

// BenchmarkAgentReplay: a backup, then over 2 GiB of pgbench WAL
// archived; the same backup restored twice and started until it has
// replayed everything and promoted: once with restore_command =
// walvault wal-fetch, once with --agent and a fetch-only agent. Reports
// both times, the agent's prefetch hits and the share of the agent's
// replay spent inside restore_command: the agent's own time answering
// fetches plus, per fetch, what starting walvault-wal costs here (its
// median over 21 runs), over the replay's wall time.
func BenchmarkAgentReplay(b *testing.B) {
	const n = 170 // pgbench -i -s 170 writes about 140 segments (2.2 GiB)
	for i := 0; i < b.N; i++ {
		tg := newTarget(b, "file")
		identity, recipient := keygen(b, pgtest.WorkDir(b))
		c := pgtest.New(b, pgtest.Options{
			Env: append(tg.Env, "AWS_EC2_METADATA_DISABLED=true", "WALVAULT_RECIPIENT="+recipient),
			Conf: []string{"archive_mode = on", fmt.Sprintf("archive_command = '%s push %%p'", pgtest.WalvaultWal(b)),
				"max_wal_size = '4GB'", "checkpoint_timeout = '1h'", "log_min_messages = fatal"},
		})
		c.Start()
		a := startAgent(b, c, nil)
		c.Run("pgbench", "-i", "-s", "4", "-q")
		mustWalvaultB(b, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint")
		c.Run("pgbench", "-i", "-s", strconv.Itoa(n), "-q")
		c.WaitArchived(c.SwitchWAL(), 10*time.Minute)
		a.stop(b)
		c.Stop()
		serverEnv := append([]string{"AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
		for _, mode := range []string{"wal-fetch", "agent"} {
			r := pgtest.New(b, pgtest.Options{NoInit: true, Env: serverEnv})
			args := []string{"restore", r.Data, "--identity-file", identity}
			if mode == "agent" {
				args = append(args, "--agent")
			}
			mustWalvaultB(b, tg, nil, args...)
			r.AppendConf("archive_mode = off", "log_min_messages = fatal")
			var ra *agentProc
			if mode == "agent" {
				ra = startAgent(b, r, []string{"WALVAULT_IDENTITY_FILE=" + identity}, "--no-archive")
			}
			start := time.Now()
			startAndRecoverB(b, r)
			b.ReportMetric(time.Since(start).Seconds(), "s-replay-"+mode)
			if ra != nil {
				st, err := agentStatus(b, filepath.Join(r.Data, "pg_wal", ".walvault", "agent.sock"))
				if err != nil {
					b.Fatalf("agent status: %v", err)
				}
				replay := time.Since(start).Seconds()
				inCommand := st.FetchSeconds + float64(st.FetchRequests)*clientStart(b).Seconds()
				b.ReportMetric(float64(st.PrefetchHits), "prefetch-hits")
				b.ReportMetric(float64(st.FetchRequests), "fetches")
				b.ReportMetric(st.FetchSeconds, "s-in-agent-fetch")
				b.ReportMetric(100*inCommand/replay, "pct-in-restore_command")
				ra.stop(b)
			}
			r.Stop()
		}
	}
}

// clientStart is the median wall time of starting walvault-wal (run
// without a command, it prints its usage and exits 2) on this machine:
// the part of each restore_command call the agent does not see.
func clientStart(b *testing.B) time.Duration {
	b.Helper()
	var ds []time.Duration
	for range 21 {
		t0 := time.Now()
		err := exec.Command(pgtest.WalvaultWal(b)).Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			b.Fatalf("walvault-wal without a command: %v, want exit 2", err)
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func mustWalvaultB(b *testing.B, tg *target, env []string, args ...string) {
	b.Helper()
	if code, out, errOut := tg.walvault(b, env, args...); code != 0 {
		b.Fatalf("walvault %v: exit %d\n%s%s", args, code, out, errOut)
	}
}

// startAndRecoverB starts a restored cluster and waits until it promoted.
func startAndRecoverB(b *testing.B, c *pgtest.Cluster) {
	b.Helper()
	c.Start()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if out, err := c.TryPsql("SELECT pg_is_in_recovery()"); err == nil && out == "f" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("recovery did not end\n%s", c.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vmHWM is a process's peak resident set size in KiB, or 0.
func vmHWM(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
