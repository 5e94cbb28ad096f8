package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// These tests drive walvault as a DBA would: the real binary, a real
// PostgreSQL 15 archiving through wal-push, backup-push, a disaster,
// restore into a fresh directory, pg_ctl start, and a look at the data.

// mustWalvault runs walvault and fails the test on a non-zero exit.
func mustWalvault(t *testing.T, tg *target, env []string, args ...string) string {
	t.Helper()
	code, stdout, stderr := tg.walvault(t, env, args...)
	if code != 0 {
		t.Fatalf("walvault %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// backupEnv is what backup-push needs: the libpq settings of c and the
// archive's recipient.
func backupEnv(c *pgtest.Cluster, recipient string) []string {
	env := c.PGEnv()
	if recipient != "" {
		env = append(env, "WALVAULT_RECIPIENT="+recipient)
	}
	return env
}

// backupName pulls the backup's name from backup-push's summary line.
func backupName(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "backup" || f[2] != "complete:" {
		t.Fatalf("backup-push printed %q", out)
	}
	return f[1]
}

// restored is a cluster made by walvault restore, not yet started.
type restored struct {
	*pgtest.Cluster
	Stdout string
}

// restoreInto restores into a fresh directory and returns the cluster,
// after checking the result with pg_verifybackup -n as PostgreSQL's own
// tool sees it (before the server has touched it).
func restoreInto(t *testing.T, tg *target, serverEnv []string, identity string, args ...string) *restored {
	t.Helper()
	return restoreIntoMajor(t, tg, 0, serverEnv, identity, args...)
}

// restoreIntoMajor is restoreInto for a server of PostgreSQL major (0: the
// default).
func restoreIntoMajor(t *testing.T, tg *target, major int, serverEnv []string, identity string, args ...string) *restored {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{NoInit: true, Env: serverEnv, Major: major})
	all := []string{"restore", c.Data}
	if identity != "" { // "": an archive that is not encrypted
		all = append(all, "--identity-file", identity)
	}
	all = append(all, args...)
	out := mustWalvault(t, tg, nil, all...)
	verifyBackup(t, c, true)
	return &restored{Cluster: c, Stdout: out}
}

// verifyBackup runs pg_verifybackup -n (no WAL parsing) on c's directory.
func verifyBackup(t *testing.T, c *pgtest.Cluster, wantOK bool) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(c.Bin, "pg_verifybackup"), "-n", c.Data).CombinedOutput()
	if (err == nil) != wantOK {
		t.Fatalf("pg_verifybackup -n %s: %v (want success %v)\n%s", c.Data, err, wantOK, out)
	}
	return string(out)
}

// startAndRecover starts a restored cluster and waits until recovery has
// ended and the server has promoted.
func startAndRecover(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Start()
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := c.TryPsql("SELECT pg_is_in_recovery()")
		if err == nil && out == "f" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("recovery did not end (pg_is_in_recovery: %q, %v)\n--- server log ---\n%s", out, err, c.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tableChecksums is an md5 over every user table's rows, in order.
func tableChecksums(t *testing.T, c *pgtest.Cluster) map[string]string {
	t.Helper()
	tables := strings.Fields(c.Psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"))
	sums := map[string]string{}
	for _, tb := range tables {
		sums[tb] = c.Psql(fmt.Sprintf("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM %s x", tb))
	}
	return sums
}

func compareChecksums(t *testing.T, got, want map[string]string) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if got[n] != want[n] {
			t.Errorf("table %s: %s after restore, %s at the target", n, got[n], want[n])
		}
	}
	if len(got) != len(want) {
		t.Errorf("tables after restore %v, at the target %v", got, want)
	}
}

// TestDisasterRecoveryDrill is the drill: archive with encryption,
// back up, write, note time T and every table's checksum, write more and
// drop a table, lose the server, restore to T on a fresh directory and
// port, and get exactly the data at T back. Then the restored server, on
// timeline 2, writes and archives; a second restore to "latest" follows
// the history file onto timeline 2 and has those writes.
func TestDisasterRecoveryDrill(t *testing.T) {
	for _, kind := range []string{"file", "s3", "gcs", "azure"} {
		t.Run(kind, func(t *testing.T) { testDrill(t, newTarget(t, kind)) })
	}
}

func testDrill(t *testing.T, tg *target) {
	c, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	c.Run("pgbench", "-i", "-s", "2", "-q")
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")

	// Small parts, so the backup has many and restore extracts in parallel.
	out := mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint", "--part-size", "4MiB", "--annotation", "drill=yes")
	name := backupName(t, out)

	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	want := tableChecksums(t, c)
	target := c.Psql("SELECT clock_timestamp()")
	time.Sleep(50 * time.Millisecond)
	c.Run("pgbench", "-n", "-t", "100", "-c", "2")
	c.Psql("DROP TABLE pgbench_tellers")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)

	// The disaster: the server and its data directory are gone.
	c.Stop()
	if err := os.RemoveAll(c.Data); err != nil {
		t.Fatal(err)
	}

	list := mustWalvault(t, tg, nil, "backup-list")
	if !strings.Contains(list, name) || strings.Contains(list, "INCOMPLETE") || strings.Contains(list, "MISSING") {
		t.Fatalf("backup-list:\n%s", list)
	}

	r := restoreInto(t, tg, serverEnv, identity, "--target-time", target)
	if !strings.Contains(r.Stdout, "restored backup "+name) || !strings.Contains(r.Stdout, "recovery_target_time") || !strings.Contains(r.Stdout, "pg_ctl -D") {
		t.Fatalf("restore printed:\n%s", r.Stdout)
	}
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
	if got := r.Psql("SELECT count(*) FROM pgbench_tellers"); got != "20" {
		t.Fatalf("the dropped table is not back: %s rows", got)
	}
	if tl := r.Psql("SELECT timeline_id FROM pg_control_checkpoint()"); tl != "2" {
		t.Fatalf("after PITR the server is on timeline %s, want 2", tl)
	}

	// Life goes on on timeline 2; then that server is lost too.
	r.Psql("CREATE TABLE after_pitr AS SELECT generate_series(1, 1000) AS i")
	r.WaitArchived(r.SwitchWAL(), 90*time.Second)
	r.Stop()

	r2 := restoreInto(t, tg, serverEnv, identity)
	if !strings.Contains(r2.Stdout, "restored backup "+name) {
		t.Fatalf("restore to latest printed:\n%s", r2.Stdout)
	}
	startAndRecover(t, r2.Cluster)
	if got := r2.Psql("SELECT count(*) FROM after_pitr"); got != "1000" {
		t.Fatalf("timeline 2's writes are missing: %s rows", got)
	}
	if !strings.Contains(r2.LogTail(200), `restored log file "00000002`) {
		t.Fatalf("recovery did not replay timeline 2's WAL:\n%s", r2.LogTail(60))
	}
	if tl := r2.Psql("SELECT timeline_id FROM pg_control_checkpoint()"); tl != "3" {
		t.Fatalf("timeline %s after following timeline 2, want 3", tl)
	}
}

// TestRestoreTargets restores one (unencrypted) backup to each kind of
// target, checks pg_verifybackup against an altered file, and backup-list.
func TestRestoreTargets(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient}, tg.Env...)
	c.Run("pgbench", "-i", "-s", "1", "-q")
	c.Psql("CREATE TABLE marks (i int)")
	out := mustWalvault(t, tg, backupEnv(c, ""), "backup-push", "--fast-checkpoint", "--permanent")
	name := backupName(t, out)

	c.Psql("INSERT INTO marks VALUES (1)")
	lsn := c.Psql("SELECT pg_current_wal_insert_lsn()")
	c.Psql("INSERT INTO marks VALUES (2)")
	c.Psql("SELECT pg_create_restore_point('before_three')")
	c.Psql("INSERT INTO marks VALUES (3)")
	xid := c.Psql("INSERT INTO marks VALUES (4); SELECT txid_current()")
	c.Psql("INSERT INTO marks VALUES (5)")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)

	t.Run("backup-list", func(t *testing.T) {
		var list []struct {
			Name      string `json:"name"`
			Permanent bool   `json:"permanent"`
			Encrypted bool   `json:"encrypted"`
			WAL       struct {
				First, Last string
				Restorable  bool
			} `json:"wal"`
		}
		js := mustWalvault(t, tg, nil, "backup-list", "--json")
		if err := json.Unmarshal([]byte(js), &list); err != nil {
			t.Fatalf("%v\n%s", err, js)
		}
		if len(list) != 1 || list[0].Name != name || !list[0].Permanent || list[0].Encrypted || !list[0].WAL.Restorable || list[0].WAL.Last <= list[0].WAL.First {
			t.Fatalf("backup-list --json:\n%s", js)
		}
		table := mustWalvault(t, tg, nil, "backup-list")
		if !strings.Contains(table, "PITR UNTIL (UTC)") || !strings.Contains(table, name) || !regexp.MustCompile(`(?m)^`+name+` .* perm +-$`).MatchString(table) {
			t.Fatalf("backup-list:\n%s", table)
		}
	})

	marks := func(c *pgtest.Cluster) string {
		return strings.Join(strings.Fields(c.Psql("SELECT i FROM marks ORDER BY i")), ",")
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"lsn", []string{"--target-lsn", lsn}, "1"},
		{"restore point", []string{"--target-name", "before_three"}, "1,2"},
		{"xid", []string{"--target-xid", xid}, "1,2,3,4"},
		{"latest", nil, "1,2,3,4,5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := restoreInto(t, tg, serverEnv, identity, tt.args...)
			// A trial restore must not archive its new timeline into the
			// production archive: later restores to "latest" would follow it.
			r.AppendConf("archive_mode = off")
			startAndRecover(t, r.Cluster)
			if got := marks(r.Cluster); got != tt.want {
				t.Fatalf("marks %s, want %s\n%s", got, tt.want, r.LogTail(30))
			}
			r.Stop()
		})
	}

	t.Run("standby follows the archive", func(t *testing.T) {
		r := restoreInto(t, tg, serverEnv, identity, "--standby")
		if _, err := os.Stat(filepath.Join(r.Data, "standby.signal")); err != nil {
			t.Fatal("no standby.signal")
		}
		r.Start()
		deadline := time.Now().Add(60 * time.Second)
		for {
			got, err := r.TryPsql("SELECT string_agg(i::text, ',' ORDER BY i) FROM marks")
			if err == nil && got == "1,2,3,4,5" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the standby did not replay the archive: %q, %v\n%s", got, err, r.LogTail(30))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := r.Psql("SELECT pg_is_in_recovery()"); got != "t" {
			t.Fatalf("a standby restore promoted (pg_is_in_recovery = %s)", got)
		}
		r.Stop()
	})

	t.Run("pg_verifybackup catches an altered file", func(t *testing.T) {
		r := restoreInto(t, tg, serverEnv, identity)
		rel := c.Psql("SELECT pg_relation_filepath('pgbench_branches')")
		f, err := os.OpenFile(filepath.Join(r.Data, rel), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.Write([]byte("x"))
		if err := errors.Join(werr, f.Close()); err != nil {
			t.Fatal(err)
		}
		if out := verifyBackup(t, r.Cluster, false); !strings.Contains(out, rel) {
			t.Fatalf("pg_verifybackup does not name %s:\n%s", rel, out)
		}
	})
}

// TestBackupTablespaces backs up a tablespace outside the data directory
// and restores it once in place and once moved with --tablespace-map.
func TestBackupTablespaces(t *testing.T) {
	tg := newTarget(t, "file")
	c, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient}, tg.Env...)
	o, _ := pgtest.ServerOwner()
	spc := filepath.Join(pgtest.WorkDir(t), "fast_disk")
	if err := os.Mkdir(spc, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = o.Chown(spc)
	c.Psql(fmt.Sprintf("CREATE TABLESPACE fast LOCATION '%s'", spc))
	c.Psql("CREATE TABLE hot TABLESPACE fast AS SELECT i, md5(i::text) AS v FROM generate_series(1, 50000) i")
	c.Psql("CREATE INDEX ON hot (v) TABLESPACE fast")
	want := tableChecksums(t, c)
	mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint")
	c.Psql("INSERT INTO hot VALUES (0, 'after the backup')")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	want["hot"] = tableChecksums(t, c)["hot"]
	c.Stop()
	if err := os.RemoveAll(spc); err != nil {
		t.Fatal(err)
	}

	t.Run("in place", func(t *testing.T) {
		r := restoreInto(t, tg, serverEnv, identity)
		if !strings.Contains(r.Stdout, "restored at "+spc) {
			t.Fatalf("restore printed:\n%s", r.Stdout)
		}
		startAndRecover(t, r.Cluster)
		compareChecksums(t, tableChecksums(t, r.Cluster), want)
		if loc := r.Psql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'fast'"); loc != spc {
			t.Fatalf("tablespace at %s, want %s", loc, spc)
		}
		r.Stop()
	})
	t.Run("remapped", func(t *testing.T) {
		moved := filepath.Join(pgtest.WorkDir(t), "new_disk")
		r := restoreInto(t, tg, serverEnv, identity, "--tablespace-map", "fast="+moved)
		startAndRecover(t, r.Cluster)
		compareChecksums(t, tableChecksums(t, r.Cluster), want)
		if loc := r.Psql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'fast'"); loc != moved {
			t.Fatalf("tablespace at %s, want %s", loc, moved)
		}
	})
}
