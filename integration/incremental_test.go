package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/integration/pgtest"
)

// TestIncrementalBackups takes a full backup and a chain of incrementals
// of one cluster, with the kinds of change the issue lists between them,
// and after each restores the newest link to --target-immediate (and some
// to a PITR time), checks it with pg_verifybackup, starts it, compares
// every table with the source at that point and runs amcheck. On the file
// store the cluster has data checksums (incrementals store changed
// blocks); on S3 it has none (a relation file with a changed page is
// stored whole, and hint-bit-only writes are taken from the parent). Each
// runs on PostgreSQL 15, where an incremental reads every page and the
// WAL since its parent, and on 17 with summarize_wal = on, where it reads
// the blocks the WAL summaries list; there the same incremental is also
// taken with summarize_wal off and must store the same blocks. walvault
// check must say which of these an incremental of the server does.
func TestIncrementalBackups(t *testing.T) {
	for _, tc := range []struct {
		kind      string
		major     int
		checksums bool
	}{{"file", 15, true}, {"s3", 15, false}, {"file", 17, true}, {"s3", 17, false}} {
		// Every rule on both stores (a damaged part is made on the file
		// store only).
		t.Run(fmt.Sprintf("%s-pg%d", tc.kind, tc.major), func(t *testing.T) {
			testIncremental(t, newTarget(t, tc.kind), tc.major, tc.checksums)
		})
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
	// checkedOff: check was run with summarize_wal off.
	checkedOff bool
}

func newIncrCluster(t *testing.T, tg *target, major int, checksums bool) *incrCluster {
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	env := append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	initdb := []string{"--wal-segsize=1"}
	if checksums {
		initdb = append(initdb, "--data-checksums")
	} else if major >= 18 {
		initdb = append(initdb, "--no-data-checksums")
	}
	conf := []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", pgtest.Walvault(t)),
		"wal_keep_size = '1GB'",
		"checkpoint_timeout = '1h'",
		"autovacuum = off", // the test decides when vacuum runs
	}
	if major >= 17 {
		conf = append(conf, "summarize_wal = on")
	}
	c := pgtest.New(t, pgtest.Options{Major: major, InitdbArgs: initdb, Env: env, Conf: conf})
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

// incremental takes an incremental and checks it is one, on parent; it
// returns its name and log.
func (ic *incrCluster) incremental(parent string, args ...string) (string, string) {
	ic.t.Helper()
	all := append([]string{"backup-push", "--fast-checkpoint", "--part-size", "1MiB", "--incremental"}, args...)
	code, stdout, stderr := ic.tg.walvault(ic.t, backupEnv(ic.Cluster, ic.recipient), all...)
	if code != 0 || !strings.Contains(stdout, "incremental on "+parent) {
		ic.t.Fatalf("backup-push --incremental (parent %s): exit %d\n%s\n%s", parent, code, stdout, stderr)
	}
	ic.t.Logf("%s", strings.TrimSpace(stdout))
	return backupName(ic.t, stdout), stderr
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
	r := restoreIntoMajor(ic.t, ic.tg, ic.Major, ic.serverEnv, ic.identity, all...)
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

// source is where an incremental of c learns what the WAL since its parent
// says: the server's summaries on 17 and later with summarize_wal on.
func (ic *incrCluster) source() string {
	if ic.Major >= 17 && ic.Psql("SHOW summarize_wal") == "on" {
		return "the WAL summaries"
	}
	return "the WAL"
}

// setSummarize turns summarize_wal on or off (17 and later).
func (ic *incrCluster) setSummarize(on bool) {
	ic.Psql(fmt.Sprintf("ALTER SYSTEM SET summarize_wal = %v", on))
	ic.Psql("SELECT pg_reload_conf()")
	want := map[bool]string{true: "on", false: "off"}[on]
	for i := 0; ic.Psql("SHOW summarize_wal") != want; i++ {
		if i > 100 {
			ic.t.Fatalf("summarize_wal is not %s after a reload", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wholeFor is what an incremental's log says it stored whole for reason
// why: the paths it lists and where it knew it from ("" when it has no
// such line).
func wholeFor(log, why string) (paths []string, from string) {
	re := regexp.MustCompile(`msg="incremental: files stored whole" cmd=backup-push why="` + regexp.QuoteMeta(why) + `" files=\d+ paths=("[^"]*"|\S*)(?: known_from="([^"]*)")?`)
	m := re.FindStringSubmatch(log)
	if m == nil {
		return nil, ""
	}
	return strings.Fields(strings.Trim(m[1], `"`)), m[2]
}

// dbDir is the directory of database db in base/.
func (ic *incrCluster) dbDir(db string) string {
	return "base/" + ic.Psql("SELECT oid FROM pg_database WHERE datname = '"+db+"'") + "/"
}

// checkKnown checks that an incremental learnt from want's source and
// stored whole exactly the databases dbs (none: no such line).
func (ic *incrCluster) checkKnown(log string, dbs ...string) {
	ic.t.Helper()
	src := ic.source()
	if !strings.Contains(log, `msg="incremental: changes since the parent" cmd=backup-push from="`+src+`"`) {
		ic.t.Errorf("the incremental did not learn the changes from %s:\n%s", src, log)
	}
	paths, from := wholeFor(log, "in a database created or dropped since the parent began")
	sort.Strings(paths)
	sort.Strings(dbs)
	if strings.Join(paths, " ") != strings.Join(dbs, " ") || len(dbs) > 0 && from != src {
		ic.t.Errorf("databases stored whole: %v (known from %q), want %v from %s\n%s", paths, from, dbs, src, log)
	}
}

// readManifest reads backup name's manifest from the store.
func readManifest(t *testing.T, tg *target, name string) *repo.Manifest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := cloud.Open(ctx, tg.URL, tg.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close(st)
	m, err := (&repo.Repo{Store: st, AllowUnsigned: true}).ReadManifest(ctx, name, false)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// relFileRe matches the main fork of a relation file.
var relFileRe = regexp.MustCompile(`^(base/\d+|global|pg_tblspc/\d+/PG_[^/]+/\d+)/\d+(\.\d+)?$`)

// sameStored checks that two incrementals on the same parent store the
// same blocks of every relation file, and returns how many files either
// stores as blocks.
func sameStored(t *testing.T, a, b *repo.Manifest) int {
	t.Helper()
	ib := b.Index()
	n := 0
	for _, f := range a.Files {
		if f.Type != repo.TypeFile || !relFileRe.MatchString(f.Path) {
			continue
		}
		g := ib[f.Path]
		if g == nil {
			t.Errorf("%s is in %s, not in %s", f.Path, a.Name, b.Name)
			continue
		}
		if f.Stored != g.Stored || f.Blocks != g.Blocks || f.CRC32C != g.CRC32C || f.Size != g.Size {
			t.Errorf("%s: %s stores %q %q (crc %s), %s stores %q %q (crc %s)", f.Path, a.Name, f.Stored, f.Blocks, f.CRC32C, b.Name, g.Stored, g.Blocks, g.CRC32C)
		}
		if f.Stored == repo.StoredBlocks {
			n++
		}
	}
	return n
}

// readBytes is what an incremental's log says it read of the data
// directory.
func readBytes(t *testing.T, log string) int64 {
	t.Helper()
	m := regexp.MustCompile(`msg="incremental: data directory read" .* read_bytes=(\d+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("the incremental does not say what it read:\n%s", log)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// checkSays checks what walvault check reports about incrementals of the
// server: its status and words in its detail and fix.
func (ic *incrCluster) checkSays(status string, words ...string) {
	ic.t.Helper()
	_, st, text, _ := runCheck(ic.t, ic.tg, ic.Cluster, nil)
	for _, w := range words {
		if st["incremental"] != status || !strings.Contains(text["incremental"], w) {
			ic.t.Errorf("check's incremental: %s %q, want %s with %q", st["incremental"], text["incremental"], status, w)
			return
		}
	}
}

// crossCheck takes, right after the summary-driven incremental sum (on
// parent), the same incremental with summarize_wal off, which reads every
// page, and checks that both store the same blocks and that the summaries
// read less. It returns the second one's name, the newest backup.
func (ic *incrCluster) crossCheck(parent, sum, sumLog string) string {
	ic.t.Helper()
	ic.setSummarize(false)
	if !ic.checkedOff {
		ic.checkedOff = true
		ic.checkSays("warn", "summarize_wal = off: an incremental reads every page", "ALTER SYSTEM SET summarize_wal = on")
	}
	scan, scanLog := ic.push("--parent", parent)
	ic.setSummarize(true)
	if !strings.Contains(scanLog, "reading every page, and the WAL since the parent for the files it created and dropped: summarize_wal is off") {
		ic.t.Errorf("with summarize_wal off the incremental does not say it reads every page:\n%s", scanLog)
	}
	n := sameStored(ic.t, readManifest(ic.t, ic.tg, sum), readManifest(ic.t, ic.tg, scan))
	if r1, r2 := readBytes(ic.t, sumLog), readBytes(ic.t, scanLog); r1 >= r2 {
		ic.t.Errorf("the summary-driven incremental read %d bytes, the page scan %d", r1, r2)
	}
	ic.t.Logf("%s and %s store the same blocks (%d files as blocks)", sum, scan, n)
	return scan
}

func testIncremental(t *testing.T, tg *target, major int, checksums bool) {
	ic := newIncrCluster(t, tg, major, checksums)
	c := ic.Cluster
	c.Psql("CREATE EXTENSION amcheck")
	c.Psql("CREATE TABLESPACE fast LOCATION '" + ic.spcDir + "'")
	c.Run("pgbench", "-i", "-s", "1", "-q")
	for _, tb := range []string{"t_vf", "t_cl", "t_tr", "t_shrink", "t_move", "t_hint"} {
		c.Psql(fmt.Sprintf("CREATE TABLE %s (i int PRIMARY KEY, v text)", tb))
		c.Psql(fmt.Sprintf("INSERT INTO %s SELECT i, md5(i::text) FROM generate_series(1, 20000) i", tb))
	}
	c.Psql("CREATE TABLE t_big AS SELECT i, repeat(md5(i::text), 4) AS v FROM generate_series(1, 120000) i")
	c.Psql("CREATE UNLOGGED TABLE t_unlogged AS SELECT i, md5(i::text) AS v FROM generate_series(1, 5000) i")
	// Made minutes (here: seconds) before the full backup, as every
	// database initdb made: the incremental after it does not store them.
	c.Psql("CREATE DATABASE db_gone STRATEGY = FILE_COPY")
	psqlDB(t, c, "db_gone", "CREATE TABLE old_data AS SELECT i FROM generate_series(1, 3000) i")
	goneOID := c.Psql("SELECT oid FROM pg_database WHERE datname = 'db_gone'")
	c.Psql("CHECKPOINT")

	full, _ := ic.push("--full")
	// check says what an incremental will read and store.
	stores := "stores the changed blocks of a relation file"
	if !checksums {
		stores = "a relation file with a changed page whole"
	}
	if major >= 17 {
		ic.checkSays("ok", "summarize_wal = on: an incremental reads only the blocks the WAL summaries mark as changed", "summaries reach", stores)
	} else {
		ic.checkSays("ok", fmt.Sprintf("PostgreSQL %d keeps no WAL summaries: an incremental reads every page", major), stores)
	}

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
	// A new relation map (base/DB/pg_filenode.map, of the same CRC-32C as
	// any other, as pg_control is): stored whole.
	c.Psql("VACUUM FULL pg_class")
	want1 := state(t, c)
	i1, log1 := ic.incremental(full)
	// The databases made since are stored whole, known from the WAL (its
	// summaries on 17): not those made before the full backup, however
	// young; so are the relation files VACUUM FULL, CLUSTER and TRUNCATE
	// made.
	ic.checkKnown(log1, ic.dbDir("db_copy"), ic.dbDir("db_wal"))
	if paths, from := wholeFor(log1, "a relation file created, dropped or truncated to nothing since the parent began"); len(paths) < 3 || from != ic.source() {
		t.Errorf("relation files made since the parent: %v, known from %q\n%s", paths, from, log1)
	}
	if paths, _ := wholeFor(log1, "ends with its own CRC-32C, so a CRC-32C cannot tell it from the parent's (every time)"); !strings.Contains(strings.Join(paths, " "), "global/pg_control") {
		t.Errorf("pg_control was not stored whole: %v\n%s", paths, log1)
	}
	if major >= 17 {
		i1 = ic.crossCheck(full, i1, log1)
	}
	ic.checkRestore(i1, false, want1, "--target-immediate")

	// 2: extension then truncation by vacuum, SET TABLESPACE, unlogged to
	// logged, a database dropped and made again with its OID by copying
	// another template (old page LSNs at the same paths), and a change to
	// a few pages of a large table.
	c.Psql("INSERT INTO t_shrink SELECT i, md5(i::text) FROM generate_series(20001, 40000) i")
	c.Psql("DELETE FROM t_shrink WHERE i > 15000")
	c.Psql("VACUUM t_shrink")
	c.Psql("ALTER TABLE t_move SET TABLESPACE fast")
	c.Psql("ALTER TABLE t_unlogged SET LOGGED")
	c.Psql("DROP DATABASE db_gone")
	c.Psql("CREATE DATABASE db_gone OID = " + goneOID + " STRATEGY = FILE_COPY TEMPLATE = template1")
	psqlDB(t, c, "db_gone", "CREATE TABLE new_data AS SELECT i FROM generate_series(1, 10) i")
	c.Psql("UPDATE t_big SET v = 'changed' WHERE i BETWEEN 60000 AND 60300")
	want2 := state(t, c)
	i2, log2 := ic.incremental(i1)
	ic.checkKnown(log2, "base/"+goneOID+"/")
	if major >= 17 && checksums {
		// Blocks of a few ranges changed: only those ranges are read (and
		// the files that are not relations' main forks).
		m := regexp.MustCompile(`msg="incremental: data directory read" .* percent=([0-9.]+)`).FindStringSubmatch(log2)
		if pct, err := strconv.ParseFloat(m[len(m)-1], 64); m == nil || err != nil || pct > 50 {
			t.Errorf("the summary-driven incremental read more than half the data directory:\n%s", log2)
		}
	}
	if major >= 17 {
		i2sum := i2
		i2 = ic.crossCheck(i1, i2, log2)
		ic.checkRestore(i2sum, false, want2, "--target-immediate")
	}
	// A point in time after i2, reached by replaying WAL from it.
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	wantPITR := state(t, c)
	pitr := c.Psql("SELECT clock_timestamp()")
	time.Sleep(50 * time.Millisecond)
	c.Psql("DELETE FROM t_cl")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	ic.checkRestore(i2, false, want2, "--target-immediate")
	ic.checkRestore(i2, true, wantPITR, "--target-time", pitr)

	// 3: a clean restart between parent and child; on 17 the WAL
	// summaries since the parent are removed (as wal_summary_keep_time
	// does; the running summarizer does not write them again): the
	// incremental reads every page, saying why.
	c.Stop()
	c.Start()
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	c.Psql("UPDATE t_big SET v = 'changed again' WHERE i BETWEEN 1000 AND 1100")
	want3 := state(t, c)
	if major >= 17 {
		c.Psql("CHECKPOINT") // a redo point: the summarizer ends a summary there
		deadline := time.Now().Add(30 * time.Second)
		for c.Psql("SELECT count(*) FROM pg_available_wal_summaries() WHERE end_lsn >= pg_current_wal_insert_lsn() - 1024*1024") == "0" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		sums, _ := filepath.Glob(filepath.Join(c.Data, "pg_wal", "summaries", "*.summary"))
		if len(sums) == 0 {
			t.Fatal("no WAL summaries to remove")
		}
		for _, f := range sums {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	i3, log3 := ic.incremental(i2)
	if major >= 17 && !regexp.MustCompile(`reading every page, and the WAL since the parent for the files it created and dropped: the WAL summaries of timeline 1 do not cover `).MatchString(log3) {
		t.Errorf("with its summaries gone, the incremental does not say it reads every page:\n%s", log3)
	}
	if !strings.Contains(log3, `from="the WAL"`) {
		t.Errorf("the incremental did not read the WAL:\n%s", log3)
	}
	ic.checkRestore(i3, false, want3, "--target-immediate")

	// 4: a crash between parent and child; on 17 the summaries are there
	// again from i3's start.
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	c.StopIfRunning() // pg_ctl -m immediate
	c.Start()
	c.Psql("UPDATE t_move SET v = 'moved and changed' WHERE i % 100 = 0")
	c.Psql("UPDATE t_big SET v = 'changed a third time' WHERE i BETWEEN 100000 AND 100200")
	want4 := state(t, c)

	// An incremental killed midway is not listed; the next one works.
	before := completeBackups(t, tg)
	killMidway(t, ic)
	if after := completeBackups(t, tg); after != before {
		t.Fatalf("a killed backup-push left %d complete backups, %d before", after, before)
	}
	i4, log4 := ic.incremental(i3)
	ic.checkKnown(log4)
	ic.checkRestore(i4, false, want4, "--target-immediate")

	testIncrementalLimits(t, ic, full, i4)
}

// testIncrementalLimits: the chain limit, wal_level = minimal periods,
// unusable --parent, and a damaged ancestor, after the chain full..i4.
func testIncrementalLimits(t *testing.T, ic *incrCluster, full, i4 string) {
	c, tg, major := ic.Cluster, ic.tg, ic.Major
	// The chain limit makes the next backup full, saying why.
	code, stdout, stderr := tg.walvault(t, backupEnv(c, ic.recipient), "backup-push", "--fast-checkpoint", "--incremental", "--incremental-max-chain", "4")
	if code != 0 || strings.Contains(stdout, "incremental on") || !strings.Contains(stderr, "already holds 4 incremental backups") {
		t.Fatalf("backup-push at the chain limit: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// A period with wal_level = minimal within one segment, whose WAL
	// reaches the store when archiving is back: the WAL says so, and the
	// next --incremental takes a full backup, saying why.
	minimal := func(work func()) {
		if major >= 17 {
			ic.setSummarize(false) // it needs wal_level replica
		}
		c.Stop()
		c.AppendConf("wal_level = minimal", "archive_mode = off", "max_wal_senders = 0")
		c.Start()
		work()
		c.Stop()
		c.AppendConf("wal_level = replica", "archive_mode = on", "max_wal_senders = 4")
		c.Start()
		if major >= 17 {
			ic.setSummarize(true)
		}
	}
	c.Psql("CREATE TABLE t_before_minimal AS SELECT 1 AS i") // a switch needs WAL to switch from
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	minimal(func() {
		c.Psql("BEGIN; CREATE TABLE t_minimal1 (i int); INSERT INTO t_minimal1 SELECT generate_series(1, 100); COMMIT")
	})
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	code, stdout, stderr = tg.walvault(t, backupEnv(c, ic.recipient), "backup-push", "--fast-checkpoint", "--incremental")
	if code != 0 || strings.Contains(stdout, "incremental on") || !strings.Contains(stderr, "taking a full backup instead of an incremental: the server ran with wal_level = minimal since the parent") {
		t.Fatalf("backup-push after a wal_level = minimal period within a segment: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// One across segments (archiving off): its WAL never reaches the
	// store, so the next --incremental takes a full backup, saying why.
	minimal(func() {
		c.Psql("BEGIN; CREATE TABLE t_minimal (i int); INSERT INTO t_minimal SELECT generate_series(1, 10000); COMMIT")
		c.SwitchWAL()
		c.Psql("UPDATE t_move SET v = 'during minimal' WHERE i % 7 = 0")
		c.SwitchWAL()
	})
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

// TestIncrementalWALFromArchive: when pg_wal no longer holds the WAL since
// the parent, an incremental reads it from the archive (authenticated as
// wal-fetch reads it) where the database host can: the archive is not
// encrypted. Archived encrypted, it cannot (the host holds no identity):
// the backup is taken full, saying why. On PostgreSQL 15 and on 17 with
// summarize_wal off, S3.
func TestIncrementalWALFromArchive(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) { testWALFromArchive(t, major) })
	}
}

func testWALFromArchive(t *testing.T, major int) {
	tg := newTarget(t, "s3")
	work := pgtest.WorkDir(t)
	_, recipient := keygen(t, work)
	env := append([]string{"AWS_EC2_METADATA_DISABLED=true"}, tg.Env...) // archive_command does not encrypt
	c := pgtest.New(t, pgtest.Options{Major: major, InitdbArgs: []string{"--wal-segsize=1", "--data-checksums"}, Env: env, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", pgtest.Walvault(t)),
		"wal_keep_size = 0",
		"min_wal_size = '2MB'",
		"checkpoint_timeout = '1h'",
		"autovacuum = off",
	}})
	c.Start()
	spc := filepath.Join(work, "spc")
	if err := os.Mkdir(spc, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = c.Owner.Chown(spc)
	ic := &incrCluster{Cluster: c, t: t, tg: tg, serverEnv: env, spcDir: spc} // restores read it unencrypted
	c.Psql("CREATE TABLESPACE fast LOCATION '" + spc + "'")
	c.Run("pgbench", "-i", "-s", "1", "-q")
	c.Psql("CREATE TABLE t_fast TABLESPACE fast AS SELECT generate_series(1, 1000) AS i")
	// forget drops the WAL before the current segment from pg_wal: once
	// archived, a checkpoint removes or recycles it.
	forget := func(name string) {
		t.Helper()
		for i := 0; i < 3; i++ {
			c.Psql("SELECT pg_create_restore_point('forget')")
			c.WaitArchived(c.SwitchWAL(), 90*time.Second)
			c.Psql("CHECKPOINT")
		}
		if _, err := os.Stat(filepath.Join(c.Data, "pg_wal", name)); err == nil {
			t.Fatalf("pg_wal still holds %s", name)
		}
	}

	full, _ := ic.push("--full")
	c.Psql("CREATE DATABASE db_copy STRATEGY = FILE_COPY")
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	want := state(t, c)
	forget(readManifest(t, tg, full).StartWAL)
	i1, log1 := ic.incremental(full)
	if !regexp.MustCompile(`msg="incremental: WAL since the parent read" cmd=backup-push segments_from_pg_wal=\d+ segments_from_archive=[1-9]`).MatchString(log1) {
		t.Errorf("the incremental did not read the WAL from the archive:\n%s", log1)
	}
	ic.checkKnown(log1, ic.dbDir("db_copy"))
	ic.checkRestore(i1, false, want, "--target-immediate")

	// From now on archive_command encrypts.
	c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s wal-push --recipient %s %%p'", pgtest.Walvault(t), recipient))
	c.Psql("SELECT pg_reload_conf()")
	c.Psql("SELECT pg_create_restore_point('encrypting')") // a switch needs WAL to switch from
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	full2, _ := ic.push("--full")
	c.Psql("CREATE DATABASE db_later STRATEGY = FILE_COPY")
	forget(readManifest(t, tg, full2).StartWAL)
	code, stdout, stderr := tg.walvault(t, backupEnv(c, ""), "backup-push", "--fast-checkpoint", "--incremental")
	if code != 0 || strings.Contains(stdout, "incremental on") ||
		!strings.Contains(stderr, "taking a full backup instead of an incremental: the WAL since the parent cannot be read") ||
		!strings.Contains(stderr, "archived encrypted, and this host holds no identity") {
		t.Fatalf("an incremental whose WAL is only archived, encrypted: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestIncrementalStandby takes an incremental on a streaming standby
// whose parent is the primary's full backup: the standby's pg_wal holds the
// WAL since the parent (streamed), which says a database was copied since,
// so it is stored whole; the incremental restores to the primary's state.
// (PostgreSQL 15: pg_basebackup 15 makes the standby.)
func TestIncrementalStandby(t *testing.T) {
	tg := newTarget(t, "file")
	p, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient}, tg.Env...)
	p.Run("pgbench", "-i", "-s", "2", "-q")
	p.Psql("CREATE DATABASE db_old STRATEGY = FILE_COPY") // before the parent: not stored whole

	s := streamingStandby(t, p, serverEnv)

	full := backupName(t, mustWalvault(t, tg, backupEnv(p, recipient), "backup-push", "--fast-checkpoint", "--full"))
	p.Psql("CREATE DATABASE db_copy STRATEGY = FILE_COPY")
	p.Run("pgbench", "-n", "-t", "300", "-c", "2")
	lsn := p.Psql("SELECT pg_current_wal_insert_lsn()")
	waitFor(t, "the standby replaying "+lsn, func() bool {
		return s.Psql("SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn") == "t"
	})

	// The primary switches segments while the standby is backed up, so
	// the backup's last segment reaches the store.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				_, _ = p.TryPsql("SELECT pg_create_restore_point('standby'); SELECT pg_switch_wal()")
			}
		}
	})
	code, stdout, stderr := tg.walvault(t, backupEnv(s, recipient), "backup-push", "--fast-checkpoint", "--incremental")
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(stdout, "incremental on "+full) {
		t.Fatalf("backup-push --incremental on the standby: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`msg="incremental: WAL since the parent read" cmd=backup-push segments_from_pg_wal=[1-9]`).MatchString(stderr) {
		t.Errorf("the standby's incremental did not read the WAL from its pg_wal:\n%s", stderr)
	}
	checkCopied(t, s, stderr, "db_copy", "the WAL")
	incr := backupName(t, stdout)

	want := tableChecksums(t, p)
	p.WaitArchived(p.SwitchWAL(), 90*time.Second)
	r := restoreInto(t, tg, serverEnv, identity, "--backup", incr, "--target-immediate")
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
}
