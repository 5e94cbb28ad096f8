package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// jsonResult runs walvault with --json and parses the one object it
// prints; it fails the test unless the exit code is want.
func jsonResult(t *testing.T, tg *target, env []string, want int, args ...string) map[string]any {
	t.Helper()
	code, stdout, stderr := tg.walvault(t, env, append(args, "--json")...)
	var obj map[string]any
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&obj); err != nil || dec.More() {
		t.Fatalf("walvault %s --json: stdout is not one JSON object (%v):\n%s\nstderr: %s", args[0], err, stdout, stderr)
	}
	if code != want || obj["exit_code"] != float64(code) {
		t.Fatalf("walvault %s: exit %d (object says %v), want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, obj["exit_code"], want, stdout, stderr)
	}
	return obj
}

// TestDeltaRestore rebuilds a primary's own data directory, stopped after
// it changed since its backup (rows changed, a table and a stray file
// added, a relation file lost), with restore --delta, replays to the end of
// the archive and gets the last state back; a delta restore is refused
// while the server runs and into another cluster's directory.
func TestDeltaRestore(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) { testDeltaRestore(t, kind) })
	}
}

// testDeltaRestore is TestDeltaRestore on a store of kind: on S3 the
// parts' blocks are fetched with Range requests.
func testDeltaRestore(t *testing.T, kind string) {
	tg := newTarget(t, kind)
	c, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient}, tg.Env...)
	c.Run("pgbench", "-i", "-s", "2", "-q")
	obj := jsonResult(t, tg, backupEnv(c, recipient), 0, "backup-push", "--fast-checkpoint", "--part-size", "2MiB")
	name, _ := obj["name"].(string)
	if !strings.HasPrefix(name, "base_") || obj["stored_size"].(float64) <= 0 || obj["from_standby"] != false {
		t.Fatalf("backup-push --json: %v", obj)
	}

	c.Run("pgbench", "-n", "-t", "300", "-c", "2")
	c.Psql("CREATE TABLE after_backup AS SELECT generate_series(1, 5000) AS i")
	c.Psql("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 2000")
	want := tableChecksums(t, c)
	branches := c.Psql("SELECT pg_relation_filepath('pgbench_branches')")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)

	// Refused while the server runs: nothing is touched.
	obj = jsonResult(t, tg, nil, 2, "restore", c.Data, "--delta", "--identity-file", identity)
	if !strings.Contains(obj["error"].(string), "is running") {
		t.Fatalf("delta restore over a running server: %v", obj)
	}
	c.Stop()
	stray := filepath.Join(c.Data, "base", "stray-file")
	if err := os.WriteFile(stray, []byte("not PostgreSQL's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(c.Data, branches)); err != nil {
		t.Fatal(err)
	}

	// Another cluster's directory is refused, and left alone.
	other := pgtest.New(t, pgtest.Options{})
	before, _ := os.ReadFile(filepath.Join(other.Data, "global", "pg_control"))
	obj = jsonResult(t, tg, nil, 2, "restore", other.Data, "--delta", "--identity-file", identity)
	if !strings.Contains(obj["error"].(string), "system identifier") {
		t.Fatalf("delta restore into another cluster: %v", obj)
	}
	if after, _ := os.ReadFile(filepath.Join(other.Data, "global", "pg_control")); string(after) != string(before) {
		t.Fatal("a refused delta restore touched the other cluster's pg_control")
	}

	obj = jsonResult(t, tg, nil, 0, "restore", c.Data, "--delta", "--identity-file", identity)
	d, _ := obj["delta"].(map[string]any)
	if obj["backup"] != name || d == nil || d["kept_files"].(float64) == 0 || d["fetched_files"].(float64) == 0 || d["removed"].(float64) == 0 {
		t.Fatalf("restore --delta --json: %v", obj)
	}
	if obj["parts_read"].(float64) >= obj["parts_total"].(float64) {
		t.Errorf("the delta restore read %v of %v parts", obj["parts_read"], obj["parts_total"])
	}
	// The big parts (encrypted) by ranges, through their block indexes:
	// fewer bytes than the parts hold.
	if obj["parts_read_by_ranges"].(float64) == 0 || d["patched_files"].(float64) == 0 || obj["stored_bytes_read"].(float64) >= obj["stored_bytes_total"].(float64) {
		t.Errorf("the delta restore read %v parts by ranges, patched %v files, read %v of %v stored bytes", obj["parts_read_by_ranges"], d["patched_files"], obj["stored_bytes_read"], obj["stored_bytes_total"])
	}
	t.Logf("delta restore: %v of %v stored bytes read, %v parts whole, %v by ranges, delta %v", obj["stored_bytes_read"], obj["stored_bytes_total"], obj["parts_read"], obj["parts_read_by_ranges"], d)
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("the stray file survived the delta restore: %v", err)
	}
	// pg_verifybackup finds every file of the backup as it was, and none
	// that is not in it.
	verifyBackup(t, c, true)
	c.Env = serverEnv
	startAndRecover(t, c)
	compareChecksums(t, tableChecksums(t, c), want)
}

// TestStandbyBackup takes a backup from a streaming standby (pg_basebackup
// -R of an archiving primary, archive_mode = on, so only the primary
// archives): without a segment switch on the primary the backup's last
// segment never comes and backup-push says which archives could have
// stored it; with them it completes, is marked as taken on a standby, and
// restores and replays like a primary's.
func TestStandbyBackup(t *testing.T) {
	tg := newTarget(t, "file")
	p, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient}, tg.Env...)
	p.Run("pgbench", "-i", "-s", "2", "-q")

	s := streamingStandby(t, p, serverEnv)

	// No switch on the primary: the backup's last segment, in which the
	// standby has replayed this, is never archived.
	p.Psql("CREATE TABLE quiet AS SELECT generate_series(1, 1000) AS i")
	lsn := p.Psql("SELECT pg_current_wal_insert_lsn()")
	waitFor(t, "the standby replaying "+lsn, func() bool {
		return s.Psql("SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn") == "t"
	})
	obj := jsonResult(t, tg, backupEnv(s, recipient), 6, "backup-push", "--fast-checkpoint", "--wal-archive-timeout", "3s")
	if e := obj["error"].(string); !strings.Contains(e, "standby") || !strings.Contains(e, "primary's archive_command") || !strings.Contains(e, "archive_mode = on") {
		t.Fatalf("backup-push on a standby whose WAL never comes: %v", obj)
	}

	// The primary keeps working and switching segments while the standby
	// is backed up.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				_, _ = p.TryPsql("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now()); SELECT pg_switch_wal()")
			}
		}
	})
	obj = jsonResult(t, tg, backupEnv(s, recipient), 0, "backup-push", "--fast-checkpoint")
	close(stop)
	wg.Wait()
	name, _ := obj["name"].(string)
	if obj["from_standby"] != true || obj["pgdata"] != s.Data {
		t.Fatalf("backup-push on the standby: %v", obj)
	}
	list := mustWalvault(t, tg, nil, "backup-list")
	if !strings.Contains(list, name) || !strings.Contains(list, "stby") {
		t.Fatalf("backup-list does not show the standby's backup as such:\n%s", list)
	}
	if info := mustWalvault(t, tg, nil, "backup-info", name); !strings.Contains(info, "a standby") {
		t.Fatalf("backup-info:\n%s", info)
	}

	p.Run("pgbench", "-n", "-t", "200", "-c", "2")
	want := tableChecksums(t, p)
	p.WaitArchived(p.SwitchWAL(), 90*time.Second)
	r := restoreInto(t, tg, serverEnv, identity, "--backup", name)
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
}

func itoa(n int) string { return strconv.Itoa(n) }

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestJSONResults: dump-push (one database, --all, a missing database),
// dump-restore, dump-fetch (and over an existing file) and delete
// --confirm with --json end with one object on stdout whose fields say
// what happened, on success and on failure.
func TestJSONResults(t *testing.T) {
	tg := newTarget(t, "file")
	c := pgtest.New(t, pgtest.Options{})
	c.Start()
	c.Psql("CREATE DATABASE shop")
	dumpPSQL(t, c, "shop", dumpSchema)
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	env := append(c.PGEnv(), "WALVAULT_RECIPIENT="+recipient)

	obj := jsonResult(t, tg, env, 0, "dump-push", "shop")
	name, _ := obj["name"].(string)
	dumps, _ := obj["dumps"].([]any)
	if !strings.HasSuffix(name, "_shop") || obj["database"] != "shop" || obj["stored_size"].(float64) <= 0 || len(dumps) != 1 || obj["error"] != nil {
		t.Fatalf("dump-push --json: %v", obj)
	}
	obj = jsonResult(t, tg, env, 6, "dump-push", "nosuchdb")
	if e, _ := obj["error"].(string); obj["ok"] != false || !strings.Contains(e, `"nosuchdb" does not exist`) {
		t.Fatalf("dump-push of a missing database --json: %v", obj)
	}
	time.Sleep(1100 * time.Millisecond) // dump names carry the second
	obj = jsonResult(t, tg, env, 0, "dump-push", "--all")
	dumps, _ = obj["dumps"].([]any)
	if len(dumps) < 3 || obj["failures"] == nil || len(obj["failures"].([]any)) != 0 {
		t.Fatalf("dump-push --all --json (globals, postgres, shop and failures []): %v", obj)
	}

	c.Psql("CREATE DATABASE copy1")
	obj = jsonResult(t, tg, nil, 0, "dump-restore", name, "--dbname", c.ConnString("copy1"), "--database", "shop", "--identity-file", identity)
	if obj["name"] != name || obj["database"] != "shop" || obj["duration_seconds"] == nil {
		t.Fatalf("dump-restore --json: %v", obj)
	}
	sameDatabase(t, c, "shop", "copy1")
	obj = jsonResult(t, tg, nil, 6, "dump-restore", name, "--dbname", c.ConnString("nosuchdb"), "--database", "shop", "--identity-file", identity)
	if e, _ := obj["error"].(string); obj["name"] != name || !strings.Contains(e, "nosuchdb") {
		t.Fatalf("dump-restore into a missing database --json: %v", obj)
	}

	file := filepath.Join(work, "shop.dump")
	obj = jsonResult(t, tg, nil, 0, "dump-fetch", name, file, "--identity-file", identity)
	st, err := os.Stat(file)
	if err != nil || obj["file"] != file || obj["size"] != float64(st.Size()) || obj["name"] != name {
		t.Fatalf("dump-fetch --json: %v (file: %v)", obj, err)
	}
	obj = jsonResult(t, tg, nil, 2, "dump-fetch", name, file, "--identity-file", identity)
	if e, _ := obj["error"].(string); !strings.Contains(e, "already exists") {
		t.Fatalf("dump-fetch over an existing file --json: %v", obj)
	}

	obj = jsonResult(t, tg, nil, 0, "delete", "--retain-dumps", "1", "--confirm")
	res, _ := obj["result"].(map[string]any)
	if obj["dry_run"] != false || res == nil || res["dumps"] != float64(1) {
		t.Fatalf("delete --confirm --json (the first shop dump goes): %v", obj)
	}
	if list := listDumps(t, tg); len(list) != len(dumps) {
		t.Fatalf("after delete: %+v", list)
	}
}

// streamingStandby makes a standby of p with pg_basebackup -R (its server
// environment env), starts it and waits until it streams from p.
func streamingStandby(t *testing.T, p *pgtest.Cluster, env []string) *pgtest.Cluster {
	t.Helper()
	s := pgtest.New(t, pgtest.Options{NoInit: true, Env: env})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bb := s.Owner.Cmd(ctx, filepath.Join(p.Bin, "pg_basebackup"), "-D", s.Data, "-R", "-X", "stream", "-c", "fast",
		"-h", "127.0.0.1", "-p", itoa(p.Port), "-U", "postgres")
	if out, err := bb.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	s.Start()
	waitFor(t, "the standby streaming", func() bool {
		return s.Psql("SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')") == "t"
	})
	return s
}
