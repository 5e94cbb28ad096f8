package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// TestAgentClientConfig: with no agent running, walvault-wal's fallback
// finds the store the way walvault does: from --config FILE (the flag and
// its value as two words, as archive_command is usually written), and with
// no flag at all from the default config file (/etc/walvault/walvault.yaml,
// moved here by WALVAULT_TEST_DEFAULT_CONFIG). The server's environment
// names no store.
func TestAgentClientConfig(t *testing.T) {
	tg := newTarget(t, "file")
	work := pgtest.WorkDir(t)
	cfg := filepath.Join(work, "walvault.yaml")
	if err := os.WriteFile(cfg, []byte("store: "+tg.URL+"\n"), 0o644); err != nil { // #nosec G306 -- read by the server's user; no secret in it
		t.Fatal(err)
	}
	c := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Env:        []string{"AWS_EC2_METADATA_DISABLED=true", "WALVAULT_TEST_DEFAULT_CONFIG=" + cfg},
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s push --config %s %%p'", pgtest.WalvaultWal(t), cfg),
		},
	})
	c.Start()
	seg := c.SwitchWAL()
	c.WaitArchived(seg, 60*time.Second)
	if _, err := os.Stat(tg.ObjectPath(walKey(seg))); err != nil {
		t.Fatalf("--config FILE: %s not in the store: %v", seg, err)
	}
	c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s push %%p'", pgtest.WalvaultWal(t)))
	c.Psql("SELECT pg_reload_conf()")
	seg = c.SwitchWAL()
	c.WaitArchived(seg, 60*time.Second)
	if _, err := os.Stat(tg.ObjectPath(walKey(seg))); err != nil {
		t.Fatalf("the default config file: %s not in the store: %v", seg, err)
	}
	if n := archiverFailures(t, c); n != 0 {
		t.Fatalf("%d failed archive_command(s)\n%s", n, c.LogTail(20))
	}
}

// walKey is a WAL segment's key in the store.
func walKey(seg string) string { return "wal/" + seg[:16] + "/" + seg }
