package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// TestIncrementalBackups takes a full backup and a chain of incrementals
// of one cluster, with the kinds of change the issue lists between them,
// and after each restores the newest link to --target-immediate (and some
// to a PITR time), checks it with pg_verifybackup, starts it, compares
// every table with the source at that point and runs amcheck. On the file
// store the cluster has data checksums (incrementals store changed
// blocks); on S3 it has none (a relation file with a changed page is
// stored whole, and hint-bit-only writes are taken from the parent).
func TestIncrementalBackups(t *testing.T) {
	for _, tc := range []struct {
		kind      string
		checksums bool
	}{{"file", true}, {"s3", false}} {
		// The steps after the second incremental do not depend on the
		// store: S3 stops there, to keep the test short.
		t.Run(tc.kind, func(t *testing.T) { testIncremental(t, newTarget(t, tc.kind), tc.checksums, tc.kind == "file") })
	}
}

// incrCluster is an archiving cluster with a tablespace and amcheck.
type incrCluster struct {
	*pgtest.Cluster
	t         *testing.T
	tg        *target
	identity  string
	recipient string
	serverEnv []string
	spcDir    string
}

func newIncrCluster(t *testing.T, tg *target, checksums bool) *incrCluster {
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	env := append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	initdb := []string{"--wal-segsize=1"}
	if checksums {
		initdb = append(initdb, "--data-checksums")
	}
	c := pgtest.New(t, pgtest.Options{InitdbArgs: initdb, Env: env, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", pgtest.Walvault(t)),
		"wal_keep_size = '1GB'",
		"checkpoint_timeout = '1h'",
		"autovacuum = off", // the test decides when vacuum runs
	}})
	c.Start()
	spc := filepath.Join(work, "spc")
	if err := os.Mkdir(spc, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = c.Owner.Chown(spc)
	ic := &incrCluster{Cluster: c, t: t, tg: tg, identity: identity, recipient: recipient, serverEnv: env, spcDir: spc}
	return ic
}

// psqlDB runs SQL in database db.
func psqlDB(t *testing.T, c *pgtest.Cluster, db, sql string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", c.ConnString(db), "-c", sql) // #nosec G204 -- test SQL
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psql %s %q: %v: %s", db, sql, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// state is every user table's checksum in every database but the
// templates, by "db.table".
func state(t *testing.T, c *pgtest.Cluster) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, db := range strings.Fields(c.Psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")) {
		// Unlogged tables come back empty, as from any base backup.
		tables := strings.Fields(psqlDB(t, c, db, "SELECT 'public.' || relname FROM pg_class WHERE relkind = 'r' AND relpersistence = 'p' AND relnamespace = 'public'::regnamespace ORDER BY 1"))
		for _, tb := range tables {
			out[db+"."+tb] = psqlDB(t, c, db, fmt.Sprintf("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM %s x", tb))
		}
	}
	return out
}

// amcheck runs bt_index_check on every btree index of every database.
func amcheck(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	for _, db := range strings.Fields(c.Psql("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")) {
		psqlDB(t, c, db, "CREATE EXTENSION IF NOT EXISTS amcheck")
		n := psqlDB(t, c, db, `SELECT count(bt_index_check(c.oid, true)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisvalid`)
		if n == "0" {
			t.Fatalf("amcheck checked no index in %s", db)
		}
	}
}

// push takes a backup and returns its name and backup-push's stderr.
func (ic *incrCluster) push(args ...string) (string, string) {
	ic.t.Helper()
	all := append([]string{"backup-push", "--fast-checkpoint", "--part-size", "1MiB"}, args...)
	code, stdout, stderr := ic.tg.walvault(ic.t, backupEnv(ic.Cluster, ic.recipient), all...)
	if code != 0 {
		ic.t.Fatalf("backup-push %v: exit %d\n%s\n%s", args, code, stdout, stderr)
	}
	return backupName(ic.t, stdout), stderr
}

// incremental takes an incremental and checks it is one, on parent.
func (ic *incrCluster) incremental(parent string) string {
	ic.t.Helper()
	all := []string{"backup-push", "--fast-checkpoint", "--part-size", "1MiB", "--incremental"}
	code, stdout, stderr := ic.tg.walvault(ic.t, backupEnv(ic.Cluster, ic.recipient), all...)
	if code != 0 || !strings.Contains(stdout, "incremental on "+parent) {
		ic.t.Fatalf("backup-push --incremental (parent %s): exit %d\n%s\n%s", parent, code, stdout, stderr)
	}
	ic.t.Logf("%s", strings.TrimSpace(stdout))
	return backupName(ic.t, stdout)
}

// checkRestore restores backup name with args, verifies, starts it and
// compares with want; the restored server is stopped again.
// With pick set, restore picks the backup by the target and must pick
// name.
func (ic *incrCluster) checkRestore(name string, pick bool, want map[string]string, args ...string) {
	ic.t.Helper()
	spcMap := filepath.Join(pgtest.WorkDir(ic.t), "spc-restored")
	all := append([]string{"--tablespace-map", "fast=" + spcMap}, args...)
	if !pick {
		all = append(all, "--backup", name)
	}
	r := restoreInto(ic.t, ic.tg, ic.serverEnv, ic.identity, all...)
	if !strings.Contains(r.Stdout, "restored backup "+name) {
		ic.t.Fatalf("restore printed:\n%s", r.Stdout)
	}
	// Its own timeline stays out of the store the chain goes on in.
	r.AppendConf("archive_mode = off")
	startAndRecover(ic.t, r.Cluster)
	compareChecksums(ic.t, state(ic.t, r.Cluster), want)
	amcheck(ic.t, r.Cluster)
	r.Stop()
}

func testIncremental(t *testing.T, tg *target, checksums, all bool) {
	ic := newIncrCluster(t, tg, checksums)
	c := ic.Cluster
	c.Psql("CREATE EXTENSION amcheck")
	c.Psql("CREATE TABLESPACE fast LOCATION '" + ic.spcDir + "'")
	c.Run("pgbench", "-i", "-s", "1", "-q")
	for _, tb := range []string{"t_vf", "t_cl", "t_tr", "t_shrink", "t_move", "t_hint"} {
		c.Psql(fmt.Sprintf("CREATE TABLE %s (i int PRIMARY KEY, v text)", tb))
		c.Psql(fmt.Sprintf("INSERT INTO %s SELECT i, md5(i::text) FROM generate_series(1, 20000) i", tb))
	}
	c.Psql("CREATE UNLOGGED TABLE t_unlogged AS SELECT i, md5(i::text) AS v FROM generate_series(1, 5000) i")
	c.Psql("CREATE DATABASE db_gone")
	psqlDB(t, c, "db_gone", "CREATE TABLE old_data AS SELECT i FROM generate_series(1, 3000) i")
	goneOID := c.Psql("SELECT oid FROM pg_database WHERE datname = 'db_gone'")
	c.Psql("CHECKPOINT")

	full, _ := ic.push("--full")

	// 1: updates spread over a table, extension, both CREATE DATABASE
	// strategies, VACUUM FULL, CLUSTER, TRUNCATE; hint bits set by
	// reading t_hint, loaded before the full backup and never read.
	c.Psql("SELECT count(*) FROM t_hint WHERE v <> ''")
	c.Run("pgbench", "-n", "-t", "300", "-c", "2")
	c.Psql("INSERT INTO t_vf SELECT i, 'grown' FROM generate_series(20001, 30000) i")
	c.Psql("CREATE DATABASE db_copy STRATEGY = FILE_COPY TEMPLATE = db_gone")
	c.Psql("CREATE DATABASE db_wal STRATEGY = WAL_LOG TEMPLATE = db_gone")
	c.Psql("DELETE FROM t_vf WHERE i % 3 = 0")
	c.Psql("VACUUM FULL t_vf")
	c.Psql("CLUSTER t_cl USING t_cl_pkey")
	c.Psql("TRUNCATE t_tr")
	c.Psql("INSERT INTO t_tr VALUES (1, 'after truncate')")
	want1 := state(t, c)
	i1 := ic.incremental(full)
	ic.checkRestore(i1, false, want1, "--target-immediate")

	// 2: extension then truncation by vacuum, SET TABLESPACE, unlogged to
	// logged, a database dropped and made again with its OID by copying
	// another template (old page LSNs at the same paths).
	c.Psql("INSERT INTO t_shrink SELECT i, md5(i::text) FROM generate_series(20001, 40000) i")
	c.Psql("DELETE FROM t_shrink WHERE i > 15000")
	c.Psql("VACUUM t_shrink")
	c.Psql("ALTER TABLE t_move SET TABLESPACE fast")
	c.Psql("ALTER TABLE t_unlogged SET LOGGED")
	c.Psql("DROP DATABASE db_gone")
	c.Psql("CREATE DATABASE db_gone OID = " + goneOID + " STRATEGY = FILE_COPY TEMPLATE = template1")
	psqlDB(t, c, "db_gone", "CREATE TABLE new_data AS SELECT i FROM generate_series(1, 10) i")
	want2 := state(t, c)
	i2 := ic.incremental(i1)
	// A point in time after i2, reached by replaying WAL from it.
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	wantPITR := state(t, c)
	pitr := c.Psql("SELECT clock_timestamp()")
	time.Sleep(50 * time.Millisecond)
	c.Psql("DELETE FROM t_cl")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	ic.checkRestore(i2, false, want2, "--target-immediate")
	ic.checkRestore(i2, true, wantPITR, "--target-time", pitr)
	if !all {
		return
	}

	// 3: a clean restart between parent and child.
	c.Stop()
	c.Start()
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	want3 := state(t, c)
	i3 := ic.incremental(i2)
	ic.checkRestore(i3, false, want3, "--target-immediate")

	// 4: a crash between parent and child.
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	c.StopIfRunning() // pg_ctl -m immediate
	c.Start()
	c.Psql("UPDATE t_move SET v = 'moved and changed' WHERE i % 100 = 0")
	want4 := state(t, c)

	// An incremental killed midway is not listed; the next one works.
	before := completeBackups(t, tg)
	killMidway(t, ic)
	if after := completeBackups(t, tg); after != before {
		t.Fatalf("a killed backup-push left %d complete backups, %d before", after, before)
	}
	i4 := ic.incremental(i3)
	ic.checkRestore(i4, false, want4, "--target-immediate")

	// The chain limit makes the next backup full, saying why.
	code, stdout, stderr := tg.walvault(t, backupEnv(c, ic.recipient), "backup-push", "--fast-checkpoint", "--incremental", "--incremental-max-chain", "4")
	if code != 0 || strings.Contains(stdout, "incremental on") || !strings.Contains(stderr, "already holds 4 incremental backups") {
		t.Fatalf("backup-push at the chain limit: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// A period with wal_level = minimal (archiving off) after that full
	// backup: its WAL never reaches the store, so the next --incremental
	// takes a full backup, saying why.
	c.Stop()
	c.AppendConf("wal_level = minimal", "archive_mode = off", "max_wal_senders = 0")
	c.Start()
	c.Psql("BEGIN; CREATE TABLE t_minimal (i int); INSERT INTO t_minimal SELECT generate_series(1, 10000); COMMIT")
	c.SwitchWAL()
	c.Psql("UPDATE t_move SET v = 'during minimal' WHERE i % 7 = 0")
	c.SwitchWAL()
	c.Stop()
	c.AppendConf("wal_level = replica", "archive_mode = on", "max_wal_senders = 4")
	c.Start()
	c.Psql("CREATE TABLE t_after_minimal AS SELECT 1 AS i")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	code, stdout, stderr = tg.walvault(t, backupEnv(c, ic.recipient), "backup-push", "--fast-checkpoint", "--incremental")
	if code != 0 || strings.Contains(stdout, "incremental on") || !strings.Contains(stderr, "the WAL archive has a gap") {
		t.Fatalf("backup-push after a wal_level = minimal period: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// --parent that cannot be used is an error; --full with --incremental
	// a usage error.
	if code, _, stderr := tg.walvault(t, backupEnv(c, ic.recipient), "backup-push", "--parent", "base_nope"); code != 2 || !strings.Contains(stderr, "base_nope") {
		t.Fatalf("--parent base_nope: exit %d\n%s", code, stderr)
	}
	if code, _, _ := tg.walvault(t, backupEnv(c, ic.recipient), "backup-push", "--full", "--incremental"); code != 2 {
		t.Fatalf("--full --incremental: exit %d", code)
	}

	// Damaged parts of an ancestor: restoring the child fails, naming
	// the ancestor's part. (Every part of the full backup: files no
	// incremental changed, PG_VERSION for one, come from it.)
	if tg.ObjectPath != nil {
		parts, _ := filepath.Glob(tg.ObjectPath("backups/" + full + "/part-*"))
		if len(parts) == 0 {
			t.Fatal("no parts of the full backup found")
		}
		for _, p := range parts {
			flipByte(t, p)
		}
		dest := filepath.Join(pgtest.WorkDir(t), "damaged")
		code, stdout, stderr := tg.walvault(t, nil, "restore", dest, "--identity-file", ic.identity, "--backup", i4, "--target-immediate",
			"--tablespace-map", "fast="+filepath.Join(pgtest.WorkDir(t), "spc-damaged"))
		if code != 4 || !strings.Contains(stderr, "backups/"+full+"/part-") {
			t.Fatalf("restore with a damaged ancestor part: exit %d\n%s\n%s", code, stdout, stderr)
		}
	}
}

// completeBackups counts backup-list --json's backups.
func completeBackups(t *testing.T, tg *target) int {
	t.Helper()
	out := mustWalvault(t, tg, nil, "backup-list", "--json")
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, out)
	}
	return len(list)
}

// killMidway starts an incremental and SIGKILLs it while it uploads.
func killMidway(t *testing.T, ic *incrCluster) {
	t.Helper()
	cmd := exec.Command(pgtest.Walvault(t), "backup-push", "--fast-checkpoint", "--incremental", "--part-size", "1MiB", "--upload-concurrency", "1") // #nosec G204 -- the binary under test
	cmd.Env = append(append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true"), ic.tg.Env...), backupEnv(ic.Cluster, ic.recipient)...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "backup started") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if !strings.Contains(stderr.String(), "backup started") {
		t.Fatalf("the backup did not start:\n%s", stderr.String())
	}
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// backdatePGVersion sets the mtime of every database's PG_VERSION back by
// age.
func backdatePGVersion(t *testing.T, pgdata string, age time.Duration) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(pgdata, "base", "*", "PG_VERSION"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no PG_VERSION in %s/base: %v", pgdata, err)
	}
	when := time.Now().Add(-age)
	for _, f := range files {
		if err := os.Chtimes(f, when, when); err != nil {
			t.Fatal(err)
		}
	}
}
