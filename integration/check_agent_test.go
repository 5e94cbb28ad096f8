package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// TestCheckAgent: with archive_command = 'walvault-wal push %p', check
// reports the agent (running for this data directory, its backlog; or not
// running, a warning), says where the client's fallback gets its store,
// and fails a segment switch that reached the store while archive_command
// itself failed (the agent uploaded it; PostgreSQL counted a failure).
func TestCheckAgent(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, _ := agentCluster(t, tg)
	idEnv := []string{"WALVAULT_IDENTITY_FILE=" + identity}
	c.Run("pgbench", "-i", "-s", "1", "-q")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)

	t.Run("agent down", func(t *testing.T) {
		code, status, text, stderr := runCheck(t, tg, c, idEnv)
		if code != 0 || status["agent"] != "warn" || !strings.Contains(text["agent"], "no walvault agent answers") ||
			!strings.Contains(text["agent"], "walvault agent --pgdata "+c.Data) {
			t.Fatalf("exit %d: agent %s: %s\n%s", code, status["agent"], text["agent"], stderr)
		}
		if status["archive_command"] != "ok" || !strings.Contains(text["archive_command"], "its fallback, walvault wal-push when no agent answers, has store "+tg.URL) {
			t.Fatalf("archive_command %s: %s", status["archive_command"], text["archive_command"])
		}
		if status["segment switch"] != "ok" || !strings.Contains(text["segment switch"], "PostgreSQL's archiver reports it archived") {
			t.Fatalf("segment switch %s: %s", status["segment switch"], text["segment switch"])
		}
	})

	ag := startAgent(t, c, nil)
	t.Run("agent up", func(t *testing.T) {
		code, status, text, stderr := runCheck(t, tg, c, idEnv)
		if code != 0 || status["agent"] != "ok" || !strings.Contains(text["agent"], "walvault agent running for "+c.Data) ||
			!strings.Contains(text["agent"], "uploading") {
			t.Fatalf("exit %d: agent %s: %s\n%s", code, status["agent"], text["agent"], stderr)
		}
	})

	t.Run("archive_command fails while the agent uploads", func(t *testing.T) {
		c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s push %%p && false'", pgtest.WalvaultWal(t)))
		c.Psql("SELECT pg_reload_conf()")
		defer func() {
			c.Psql("ALTER SYSTEM RESET archive_command")
			c.Psql("SELECT pg_reload_conf()")
		}()
		badBackupInputs.Add(1)
		code, status, text, stderr := runCheck(t, tg, c, idEnv, "--timeout", "20s")
		if code != 7 || status["segment switch"] != "FAIL" || !strings.Contains(text["segment switch"], "reached the store, but archive_command failed") ||
			!strings.Contains(text["segment switch"], "PostgreSQL log") {
			t.Fatalf("exit %d: segment switch %s: %s\n%s", code, status["segment switch"], text["segment switch"], stderr)
		}
	})

	t.Run("fallback without a store", func(t *testing.T) {
		c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = 'WALVAULT_STORE= %s push %%p'", pgtest.WalvaultWal(t)))
		c.Psql("SELECT pg_reload_conf()")
		defer func() {
			c.Psql("ALTER SYSTEM RESET archive_command")
			c.Psql("SELECT pg_reload_conf()")
		}()
		badBackupInputs.Add(1)
		code, status, text, _ := runCheck(t, tg, c, idEnv, "--no-switch")
		if code != 7 || status["archive_command"] != "FAIL" || !strings.Contains(text["archive_command"], "fallback") ||
			!strings.Contains(text["archive_command"], "keep walvault-wal") {
			t.Fatalf("exit %d: archive_command %s: %s", code, status["archive_command"], text["archive_command"])
		}
	})
	if code := ag.stop(t); code != 0 {
		t.Errorf("agent exit %d", code)
	}
}
