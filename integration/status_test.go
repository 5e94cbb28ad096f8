package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// statusJSON is the part of walvault status --json this test reads.
type statusJSON struct {
	NewestBackup *struct {
		Name       string  `json:"name"`
		AgeSeconds float64 `json:"age_seconds"`
	} `json:"newest_backup"`
	NewestDump  *struct{} `json:"newest_dump"`
	LastSegment *struct {
		Name string `json:"name"`
	} `json:"last_archived_segment"`
	Server *struct {
		LastArchived      string   `json:"last_archived_wal"`
		ArchiveLagSeconds *float64 `json:"archive_lag_seconds"`
		ReadyFiles        *int     `json:"ready_wal_files"`
		Failing           bool     `json:"failing"`
	} `json:"server"`
	ServerError string `json:"server_error"`
	PITR        *struct {
		StartBackup string `json:"start_backup"`
		EndSegment  string `json:"end_segment"`
	} `json:"pitr_window"`
	WAL struct {
		Gaps []any `json:"gaps"`
	} `json:"wal_gaps"`
	Size struct {
		Bytes int64 `json:"bytes"`
	} `json:"archive_size"`
}

func parseStatus(t *testing.T, out string) statusJSON {
	t.Helper()
	var s statusJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return s
}

// TestStatus runs walvault status against a real PostgreSQL 15 archiving
// to file://: the archiver's figures and the .ready count are filled when
// the server is reached, null when it is not; a stuck archive_command
// makes --max-archive-lag exit 7.
func TestStatus(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, recipient := archivingCluster(t, tg)
	c.Psql("CREATE TABLE t AS SELECT i FROM generate_series(1, 1000) i")
	name := backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint"))
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	work := pgtest.WorkDir(t)
	state := filepath.Join(work, "status.json")
	prom := filepath.Join(work, "walvault.prom")
	args := []string{"status", "--json", "--identity-file", identity, "--state-file", state}

	out := mustWalvault(t, tg, c.PGEnv(), append(args, "--prometheus", prom, "--max-backup-age", "1h", "--max-archive-lag", "15m")...)
	s := parseStatus(t, out)
	if s.NewestBackup == nil || s.NewestBackup.Name != name || s.NewestDump != nil || s.LastSegment == nil || s.PITR == nil || s.PITR.StartBackup != name || len(s.WAL.Gaps) != 0 || s.Size.Bytes == 0 {
		t.Fatalf("status:\n%s", out)
	}
	if s.Server == nil || s.Server.ArchiveLagSeconds == nil || s.Server.ReadyFiles == nil || s.Server.LastArchived == "" {
		t.Fatalf("server figures not filled:\n%s", out)
	}
	text, err := os.ReadFile(prom) // #nosec G304 -- the test's own file
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"walvault_last_backup_age_seconds{", "walvault_archive_lag_seconds{", "walvault_ready_wal_files{", "walvault_pitr_window_end_timestamp_seconds{"} {
		if !strings.Contains(string(text), m) {
			t.Fatalf("textfile lacks %s:\n%s", m, text)
		}
	}

	t.Run("stuck archiving", func(t *testing.T) {
		c.Psql("ALTER SYSTEM SET archive_command = 'false'")
		c.Psql("SELECT pg_reload_conf()")
		time.Sleep(time.Second)
		c.Psql("INSERT INTO t SELECT generate_series(1, 1000)")
		c.SwitchWAL()
		c.Psql("INSERT INTO t SELECT generate_series(1, 1000)")
		c.SwitchWAL()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, out, stderr := tg.walvault(t, c.PGEnv(), append(args, "--max-archive-lag", "2s")...)
			s := parseStatus(t, out)
			if s.Server != nil && s.Server.ReadyFiles != nil && *s.Server.ReadyFiles >= 2 && s.Server.ArchiveLagSeconds != nil && *s.Server.ArchiveLagSeconds > 2 {
				if code != 7 || !strings.Contains(stderr, "more than --max-archive-lag 2s") {
					t.Fatalf("exit %d, stderr %s", code, stderr)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no .ready files or lag after 30s (exit %d):\n%s\n%s", code, out, stderr)
			}
			time.Sleep(500 * time.Millisecond)
		}
		c.Psql("ALTER SYSTEM RESET archive_command")
		c.Psql("SELECT pg_reload_conf()")
	})

	t.Run("no server", func(t *testing.T) {
		env := []string{"PGHOST=/nonexistent", "PGPORT=1"}
		code, out, stderr := tg.walvault(t, env, append(args, "--max-backup-age", "1h")...)
		s := parseStatus(t, out)
		if code != 0 || s.Server != nil || s.ServerError == "" || s.NewestBackup == nil {
			t.Fatalf("exit %d:\n%s\n%s", code, out, stderr)
		}
		code, _, stderr = tg.walvault(t, env, append(args, "--max-archive-lag", "15m")...)
		if code != 7 || !strings.Contains(stderr, "the archive lag cannot be read") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		code, _, stderr = tg.walvault(t, env, append(args, "--max-backup-age", "1s")...)
		if code != 7 || !strings.Contains(stderr, "more than --max-backup-age 1s") {
			t.Fatalf("stale backup: exit %d: %s", code, stderr)
		}
	})
}
