package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	a.stop(b)
	return d, len(ready)
}
