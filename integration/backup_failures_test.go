package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/integration/pgtest"
)

// TestBackupFailures: a backup killed half-way leaves no trace that
// backup-list or restore would use; bad restore input fails in one line
// without writing anything; broken archiving makes backup-push give up
// with the archiver's failure; a damaged part stops a restore loudly.
func TestBackupFailures(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, recipient := archivingCluster(t, tg)
	c.Run("pgbench", "-i", "-s", "2", "-q")
	good := backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint"))
	backupsDir := tg.ObjectPath("backups")

	listed := func(t *testing.T) []string {
		var list []struct{ Name string }
		js := mustWalvault(t, tg, nil, "backup-list", "--json")
		if err := json.Unmarshal([]byte(js), &list); err != nil {
			t.Fatalf("%v\n%s", err, js)
		}
		var names []string
		for _, b := range list {
			names = append(names, b.Name)
		}
		return names
	}

	t.Run("killed mid-way", func(t *testing.T) { testKilledMidway(t, tg, c, recipient, identity, good, listed) })

	t.Run("bad restore input", func(t *testing.T) {
		work := pgtest.WorkDir(t)
		wrong, _ := keygen(t, pgtest.WorkDir(t))
		nonEmpty := filepath.Join(work, "used")
		if err := os.MkdirAll(nonEmpty, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nonEmpty, "keep.txt"), []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			dest string
			args []string
			code int
			msg  string
		}{
			{"non-empty DEST", nonEmpty, []string{"--identity-file", identity}, 2, "is not empty"},
			{"target time before the oldest backup", "", []string{"--identity-file", identity, "--target-time", "2000-01-01 00:00:00+00"}, 2, "no backup finished before the target time"},
			{"unknown backup", "", []string{"--identity-file", identity, "--backup", "base_20000101T000000Z_000000010000000000000001"}, 2, "no complete backup named"},
			{"wrong identity", "", []string{"--identity-file", wrong}, 4, "identity"},
			{"no identity", "", nil, 2, "--identity-file"},
			{"target lsn before the backup", "", []string{"--identity-file", identity, "--target-lsn", "0/10"}, 2, "no backup stops at or before"},
			{"two targets", "", []string{"--identity-file", identity, "--target-lsn", "0/10", "--target-name", "x"}, 2, "at most one"},
			{"bad target action", "", []string{"--identity-file", identity, "--target-action", "explode"}, 2, "--target-action"},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				dest := tt.dest
				if dest == "" {
					dest = filepath.Join(work, "fresh", strings.Repeat("x", i+1))
				}
				code, stdout, stderr := tg.walvault(t, []string{"WALVAULT_IDENTITY_FILE="}, append([]string{"restore", dest}, tt.args...)...)
				if code != tt.code || !strings.Contains(stderr, tt.msg) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stdout != "" {
					t.Fatalf("exit %d (want %d), stderr %q (want one line with %q), stdout %q", code, tt.code, stderr, tt.msg, stdout)
				}
				if tt.dest == "" {
					if _, err := os.Stat(dest); err == nil {
						t.Fatal("DEST was created")
					}
				} else if ents, _ := os.ReadDir(dest); len(ents) != 1 {
					t.Fatalf("DEST was written: %d entries", len(ents))
				}
			})
		}
	})

	t.Run("archiving broken", func(t *testing.T) {
		c.Psql("ALTER SYSTEM SET archive_command = 'false'")
		c.Psql("SELECT pg_reload_conf()")
		defer func() {
			c.Psql("ALTER SYSTEM RESET archive_command")
			c.Psql("SELECT pg_reload_conf()")
		}()
		before := map[string]bool{}
		if ents, err := os.ReadDir(backupsDir); err == nil {
			for _, e := range ents {
				before[e.Name()] = true
			}
		}
		start := time.Now()
		code, _, stderr := tg.walvault(t, backupEnv(c, recipient), "backup-push", "--fast-checkpoint", "--wal-archive-timeout", "3s")
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if code != 6 || !strings.Contains(last, "pg_stat_archiver") || !strings.Contains(last, "failures") || !strings.Contains(last, "did not reach") {
			t.Fatalf("exit %d (want 6), stderr:\n%s", code, stderr)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("gave up after %s, the timeout was 3s", d)
		}
		if got := listed(t); len(got) != 1 {
			t.Fatalf("backup-list shows %v", got)
		}
		// The failed backup removed its parts again.
		ents, _ := os.ReadDir(backupsDir)
		for _, e := range ents {
			if parts, _ := filepath.Glob(filepath.Join(backupsDir, e.Name(), "part-*")); !before[e.Name()] && len(parts) > 0 {
				t.Fatalf("the failed backup left %v", parts)
			}
		}
	})

	t.Run("damaged part", func(t *testing.T) {
		// The largest part, so that its damage is in file data.
		parts, _ := filepath.Glob(filepath.Join(backupsDir, good, "part-*"))
		var big string
		var size int64
		for _, p := range parts {
			if st, err := os.Stat(p); err == nil && st.Size() > size {
				big, size = p, st.Size()
			}
		}
		flipByte(t, big)
		dest := filepath.Join(pgtest.WorkDir(t), "data")
		code, _, stderr := tg.walvault(t, nil, "restore", dest, "--identity-file", identity)
		if code != 4 || !strings.Contains(stderr, filepath.Base(big)) {
			t.Fatalf("exit %d (want 4), stderr %q (want it to name %s)", code, stderr, filepath.Base(big))
		}
		if _, err := os.Stat(filepath.Join(dest, "global", "pg_control")); err == nil {
			t.Fatal("a failed restore left a startable directory (global/pg_control)")
		}
	})
}

// testKilledMidway: a backup killed with parts stored and no manifest yet
// is no backup: backup-list and restore see only good, the complete one
// (listed says what backup-list lists).
func testKilledMidway(t *testing.T, tg *target, c *pgtest.Cluster, recipient, identity, good string, listed func(*testing.T) []string) {
	backupsDir := tg.ObjectPath("backups")
	// zstd at level 19 and 1 MiB parts one at a time: slow enough to be
	// caught with parts stored and no manifest yet.
	cmd := exec.Command(pgtest.Walvault(t), "backup-push", "--fast-checkpoint", "--compression", "zstd",
		"--compression-level", "19", "--upload-concurrency", "1", "--part-size", "1MiB")
	cmd.Env = append(append(append(os.Environ(), tg.Env...), backupEnv(c, recipient)...), "WALVAULT_LOG_LEVEL=warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killed := ""
	deadline := time.Now().Add(60 * time.Second)
	for killed == "" {
		ents, _ := os.ReadDir(backupsDir)
		for _, e := range ents {
			if e.Name() == good {
				continue
			}
			if _, err := os.Stat(filepath.Join(backupsDir, e.Name(), "part-00001")); err == nil {
				killed = e.Name()
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("backup-push ended (%v) before it could be killed", err)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("no part of the second backup appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Fatal("backup-push succeeded although it was killed")
	}
	if _, err := os.Stat(filepath.Join(backupsDir, killed, repo.ManifestFile)); err == nil {
		t.Fatal("the killed backup has a manifest")
	}
	if got := listed(t); len(got) != 1 || got[0] != good {
		t.Fatalf("backup-list shows %v, want only %s", got, good)
	}
	dest := filepath.Join(pgtest.WorkDir(t), "data")
	out := mustWalvault(t, tg, nil, "restore", dest, "--identity-file", identity)
	if !strings.Contains(out, "restored backup "+good) {
		t.Fatalf("restore did not choose the complete backup:\n%s", out)
	}
	// The server noticed the session ended, and with it the backup.
	deadline = time.Now().Add(30 * time.Second)
	for c.Psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walvault backup-push'") != "0" {
		if time.Now().After(deadline) {
			t.Fatal("the killed backup's session is still open")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
