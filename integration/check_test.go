package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

type checkJSON struct {
	Results []struct {
		Check  string `json:"check"`
		Status string `json:"status"`
		Detail string `json:"detail"`
		Fix    string `json:"fix"`
	} `json:"results"`
	Failed int  `json:"failed"`
	OK     bool `json:"ok"`
}

// runCheck runs walvault check --json against c and returns the exit
// code, the results by check name, and stderr.
func runCheck(t *testing.T, tg *target, c *pgtest.Cluster, env []string, args ...string) (int, map[string]string, map[string]string, string) {
	t.Helper()
	code, stdout, stderr := tg.walvault(t, append(c.PGEnv(), env...), append([]string{"check", "--json"}, args...)...)
	var r checkJSON
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("check --json: exit %d: %v\n%s\n%s", code, err, stdout, stderr)
	}
	status, text := map[string]string{}, map[string]string{}
	for _, x := range r.Results {
		status[x.Check] = x.Status
		text[x.Check] = x.Detail + " | fix: " + x.Fix
	}
	secretsIn(t, stdout, stderr)
	return code, status, text, stderr
}

var allChecks = []string{"store", "postgres", "wal_level", "incremental", "archive_mode", "archive_command", "cluster", "pg_stat_archiver", "encryption", "segment switch", "signing"}

// TestCheck: check passes on a correctly configured cluster (archiving
// through the server's environment, encrypted), and FAILs, with the fix,
// on an archive_command aimed at another store, a wrong identity, and
// archive_mode = off.
func TestCheck(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, recipient := archivingCluster(t, tg)
	idEnv := []string{"WALVAULT_IDENTITY_FILE=" + identity}
	c.Run("pgbench", "-i", "-s", "1", "-q")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)

	t.Run("configured", func(t *testing.T) {
		code, status, text, stderr := runCheck(t, tg, c, idEnv)
		for _, n := range allChecks {
			if status[n] != "ok" {
				t.Errorf("%s: %s (%s)", n, status[n], text[n])
			}
		}
		if code != 0 || t.Failed() {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(text["archive_command"], "WALVAULT_STORE in the server's environment") ||
			!strings.Contains(text["encryption"], "WALVAULT_RECIPIENT in the server's environment") ||
			!strings.Contains(text["segment switch"], "fetched back with the identity") {
			t.Fatalf("check does not say how it knows:\n%v", text)
		}
		// The human form: one line per check, a summary.
		code, out, _ := tg.walvault(t, append(c.PGEnv(), idEnv...), "check")
		if code != 0 || strings.Count(out, "\nok ") < len(allChecks)-1 || !strings.Contains(out, "check: all 11 checks passed") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		secretsIn(t, out)
	})

	t.Run("archive_command to another store", func(t *testing.T) {
		other := newTarget(t, "file")
		c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s wal-push --store=%s %%p'", pgtest.Walvault(t), other.URL))
		c.Psql("SELECT pg_reload_conf()")
		defer func() {
			c.Psql("ALTER SYSTEM RESET archive_command")
			c.Psql("SELECT pg_reload_conf()")
		}()
		badBackupInputs.Add(1)
		code, status, text, stderr := runCheck(t, tg, c, idEnv, "--timeout", "5s")
		if code != 7 || status["archive_command"] != "FAIL" || !strings.Contains(text["archive_command"], other.URL) ||
			!strings.Contains(text["archive_command"], "fix: give archive_command and walvault's other commands the same store") {
			t.Fatalf("exit %d: archive_command %s: %s\n%s", code, status["archive_command"], text["archive_command"], stderr)
		}
		if status["segment switch"] != "FAIL" || !strings.Contains(text["segment switch"], "did not reach") || !strings.Contains(stderr, "archive_command") {
			t.Fatalf("segment switch %s: %s\n%s", status["segment switch"], text["segment switch"], stderr)
		}
		if status["store"] != "ok" || status["wal_level"] != "ok" {
			t.Fatalf("unrelated checks failed: %v", status)
		}
	})

	t.Run("wrong identity", func(t *testing.T) {
		wrong, _ := keygen(t, pgtest.WorkDir(t))
		badBackupInputs.Add(1)
		code, status, text, _ := runCheck(t, tg, c, []string{"WALVAULT_IDENTITY_FILE=" + wrong})
		if code != 7 || status["encryption"] != "FAIL" || !strings.Contains(text["encryption"], "cannot decrypt") || status["segment switch"] != "FAIL" {
			t.Fatalf("exit %d: %v\n%v", code, status, text)
		}
		// With the recipient given explicitly, the same.
		code, status, _, _ = runCheck(t, tg, c, []string{"WALVAULT_IDENTITY_FILE=" + wrong, "WALVAULT_RECIPIENT=" + recipient}, "--no-switch")
		if code != 7 || status["encryption"] != "FAIL" || status["segment switch"] != "skip" {
			t.Fatalf("exit %d: %v", code, status)
		}
	})

	t.Run("no server", func(t *testing.T) {
		badBackupInputs.Add(1)
		code, status, text, _ := runCheck(t, tg, c, append(idEnv, fmt.Sprintf("PGPORT=%d", pgtest.FreePort(t))))
		if code != 7 || status["postgres"] != "FAIL" || !strings.Contains(text["postgres"], "PGHOST") || status["store"] != "ok" || status["segment switch"] != "skip" {
			t.Fatalf("exit %d: %v\n%v", code, status, text)
		}
	})

	t.Run("archive_mode off", func(t *testing.T) {
		c.Psql("ALTER SYSTEM SET archive_mode = off")
		c.Stop()
		c.Start()
		defer func() {
			c.Psql("ALTER SYSTEM RESET archive_mode")
			c.Stop()
			c.Start()
		}()
		badBackupInputs.Add(1)
		code, status, text, stderr := runCheck(t, tg, c, idEnv)
		if code != 7 || status["archive_mode"] != "FAIL" || !strings.Contains(text["archive_mode"], "fix: set archive_mode = on") ||
			!strings.Contains(text["archive_mode"], "restart") || status["segment switch"] != "skip" || !strings.Contains(stderr, "archive_mode") {
			t.Fatalf("exit %d: %v\n%v\n%s", code, status, text, stderr)
		}
	})
}

// TestCheckS3: the same check against S3, where the store's endpoint comes
// from the server's environment too.
func TestCheckS3(t *testing.T) {
	tg := newTarget(t, "s3")
	c, identity, _ := archivingCluster(t, tg)
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	code, status, text, stderr := runCheck(t, tg, c, []string{"WALVAULT_IDENTITY_FILE=" + identity})
	for _, n := range allChecks {
		if status[n] != "ok" {
			t.Errorf("%s: %s (%s)", n, status[n], text[n])
		}
	}
	if code != 0 || t.Failed() || !strings.Contains(text["archive_command"], "endpoint http://127.0.0.1:") {
		t.Fatalf("exit %d: %v\n%s", code, text, stderr)
	}
	// The same bucket behind another endpoint is another store.
	badBackupInputs.Add(1)
	_, status, text, _ = runCheck(t, tg, c, []string{"WALVAULT_IDENTITY_FILE=" + identity, "WALVAULT_S3_ENDPOINT=http://localhost:1"}, "--no-switch")
	if status["archive_command"] != "FAIL" || !strings.Contains(text["archive_command"], "endpoint") {
		t.Fatalf("%v\n%v", status, text)
	}
}
