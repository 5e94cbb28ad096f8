package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// Benchmarks run with `make bench`; each reports medians of whole-process
// runs (start-up included), because that is what archive_command costs.

// realSegments makes a cluster, runs pgbench, and copies n full 16 MiB
// segments of real WAL into a directory.
func realSegments(b *testing.B, n int) (string, []string) {
	b.Helper()
	c := pgtest.New(b, pgtest.Options{Conf: []string{"max_wal_size = '4GB'", "wal_keep_size = '4GB'"}})
	c.Start()
	c.Run("pgbench", "-i", "-s", strconv.Itoa(n+3), "-q")
	c.SwitchWAL()
	ents, _ := os.ReadDir(filepath.Join(c.Data, "pg_wal"))
	dir := pgtest.WorkDir(b)
	var names []string
	for _, e := range ents {
		if len(e.Name()) == 24 && len(names) < n {
			data, err := os.ReadFile(filepath.Join(c.Data, "pg_wal", e.Name()))
			if err != nil || len(data) != 16<<20 {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
				b.Fatal(err)
			}
			names = append(names, e.Name())
		}
	}
	if len(names) < n {
		b.Fatalf("only %d full segments generated", len(names))
	}
	c.Stop()
	return dir, names
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// peakRSS runs a command under GNU time and returns its wall time and
// maximum resident set size in KiB.
func timedRun(b *testing.B, env []string, args ...string) (time.Duration, int) {
	b.Helper()
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "RSS=%M"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%v: %v\n%s", args, err, out)
	}
	rss := 0
	if i := strings.LastIndex(string(out), "RSS="); i >= 0 {
		rss, _ = strconv.Atoi(strings.TrimSpace(string(out[i+4:])))
	}
	return d, rss
}

func BenchmarkWALPushSegment(b *testing.B) {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		b.Fatal("/usr/bin/time (Debian package 'time') is needed to measure peak RSS")
	}
	const runs = 15
	dir, names := realSegments(b, runs)
	bin := pgtest.Walvault(b)
	for _, kind := range []string{"file", "s3"} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				tg := newTarget(b, kind)
				var times []time.Duration
				maxRSS := 0
				for _, n := range names {
					d, rss := timedRun(b, tg.Env, bin, "wal-push", "--upload-concurrency", "1", filepath.Join(dir, n))
					times = append(times, d)
					maxRSS = max(maxRSS, rss)
				}
				b.ReportMetric(float64(median(times).Microseconds())/1000, "ms/segment(median)")
				b.ReportMetric(float64(maxRSS)/1024, "MiB-peak-RSS")
			}
		})
	}
}

func BenchmarkArchiverDrain64(b *testing.B) {
	for _, conc := range []int{1, 4} {
		b.Run(fmt.Sprintf("s3/upload-concurrency=%d", conc), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				tg := newTarget(b, "s3")
				d := drain(b, tg, conc, 64)
				b.ReportMetric(d.Seconds(), "s/64-segments")
			}
		})
	}
}

// drain lets n or more segments pile up as .ready (archive_mode on with an
// empty archive_command: PostgreSQL waits without failing, so no retry
// back-off pollutes the timing), then sets walvault as archive_command and
// times the archiver until the last one is stored.
func drain(b *testing.B, tg *target, conc, n int) time.Duration {
	bin := pgtest.Walvault(b)
	c := pgtest.New(b, pgtest.Options{
		Env: append(tg.Env, "AWS_EC2_METADATA_DISABLED=true", fmt.Sprintf("WALVAULT_UPLOAD_CONCURRENCY=%d", conc)),
		Conf: []string{"archive_mode = on", "archive_command = ''", "max_wal_size = '4GB'",
			"log_min_messages = fatal"},
	})
	c.Start()
	// Real WAL: pgbench's load writes about one 16 MiB segment per scale unit.
	c.Run("pgbench", "-i", "-s", strconv.Itoa(n*4/3+8), "-q")
	last := c.SwitchWAL()
	ready, _ := filepath.Glob(filepath.Join(c.Data, "pg_wal", "archive_status", "*.ready"))
	if len(ready) < n {
		b.Fatalf("only %d segments ready, want %d", len(ready), n)
	}
	b.ReportMetric(float64(len(ready)), "segments")
	c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s wal-push %%p'", bin))
	start := time.Now()
	c.Psql("SELECT pg_reload_conf()")
	c.WaitArchived(last, 10*time.Minute)
	return time.Since(start)
}
