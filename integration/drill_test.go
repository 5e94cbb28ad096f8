package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// The restore drill (issue 23), end to end: a production cluster archiving
// to a store, backups, and walvault drill run as a DBA's timer would run it
// (as root, so the drill's server runs as postgres). Every drill must leave
// nothing behind (its TMPDIR empty, no process of the server running) and
// touch neither the production server nor the store.

// drillSite is a production cluster with its store, and where drills go.
type drillSite struct {
	t         *testing.T
	tg        *target
	c         *pgtest.Cluster
	identity  string
	recipient string
	tmp       string // TMPDIR of every drill: must be empty after each
	state     string // --drill-state-file
	work      string
}

func newDrillSite(t *testing.T, kind string) *drillSite {
	tg := newTarget(t, kind)
	c, identity, recipient := archivingCluster(t, tg)
	work := pgtest.WorkDir(t)
	s := &drillSite{t: t, tg: tg, c: c, identity: identity, recipient: recipient, work: work,
		tmp: filepath.Join(work, "tmp"), state: filepath.Join(work, "state", "drill.json")}
	if err := os.Mkdir(s.tmp, 0o755); err != nil { // #nosec G301 -- the drill's server (postgres) must get through it
		t.Fatal(err)
	}
	return s
}

// drill runs walvault drill as root and returns what it did.
func (s *drillSite) drill(t *testing.T, args ...string) runResult {
	t.Helper()
	all := append([]string{"drill", "--identity-file", s.identity, "--drill-state-file", s.state}, args...)
	res := runWalvault(t, s.tg, s.env(), all...)
	t.Logf("walvault %s: exit %d\n%s%s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	return res
}

func (s *drillSite) env() []string {
	return []string{"TMPDIR=" + s.tmp, "WALVAULT_VERIFY_KEY=" + os.Getenv("WALVAULT_VERIFY_KEY")}
}

// backup takes a backup of the production cluster and returns its name.
func (s *drillSite) backup(t *testing.T, args ...string) string {
	t.Helper()
	all := append([]string{"backup-push", "--fast-checkpoint", "--part-size", "4MiB"}, args...)
	return backupName(t, mustWalvault(t, s.tg, backupEnv(s.c, s.recipient), all...))
}

// nothingLeft checks that the drill left no file, directory or process.
func (s *drillSite) nothingLeft(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("the drill left %s in its TMPDIR", filepath.Join(s.tmp, e.Name()))
	}
	if socks, _ := filepath.Glob("/tmp/wvd-*"); len(socks) > 0 {
		t.Errorf("the drill left socket directories %v", socks)
	}
	if procs := processesIn(s.tmp); len(procs) > 0 {
		t.Errorf("processes still run in the drill's directory: %v", procs)
	}
}

// processesIn lists the processes (pid: command line) whose working
// directory or command line lies in dir.
func processesIn(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd")
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.HasPrefix(cwd, dir) || strings.Contains(args, dir+"/") {
			out = append(out, e.Name()+": "+args)
		}
	}
	return out
}

// storeState lists every object of a store kept as files (file://,
// versitygw) with its size and modification time.
func storeState(t *testing.T, tg *target) map[string]string {
	t.Helper()
	root := tg.ObjectPath("")
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, root)] = fmt.Sprintf("%d@%d", fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameStore(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diff []string
	for k, v := range after {
		if before[k] != v {
			diff = append(diff, "new or changed "+k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			diff = append(diff, "gone "+k)
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("%s changed the store: %v", what, diff)
	}
}

// drillJSON is the part of drill --json the tests read.
type drillJSON struct {
	Backup          string  `json:"backup"`
	BackupType      string  `json:"backup_type"`
	Success         bool    `json:"success"`
	Reason          string  `json:"reason"`
	DurationSeconds float64 `json:"duration_seconds"`
	RestoredBytes   int64   `json:"restored_bytes"`
	Dir             string  `json:"dir"`
	Timeline        uint32  `json:"timeline"`
	ReplayLSN       string  `json:"replay_lsn"`
	Checks          []struct {
		Name     string  `json:"name"`
		Database string  `json:"database"`
		Result   string  `json:"result"`
		Seconds  float64 `json:"seconds"`
		Detail   string  `json:"detail"`
	} `json:"checks"`
	Databases []struct {
		Name          string `json:"name"`
		Tables        int64  `json:"tables"`
		RelationBytes int64  `json:"relation_bytes"`
		RecordedBytes int64  `json:"recorded_bytes"`
	} `json:"databases"`
}

func parseDrill(t *testing.T, res runResult) drillJSON {
	t.Helper()
	var d drillJSON
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatalf("drill --json: %v\n%s", err, res)
	}
	return d
}

// checked returns the checks of d by "name" or "name db", with results.
func (d drillJSON) results() map[string]string {
	out := map[string]string{}
	for _, c := range d.Checks {
		k := c.Name
		if c.Database != "" {
			k += " " + c.Database
		}
		out[k] = c.Result
	}
	return out
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// timeline is the production server's current timeline.
func timeline(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	return c.Psql("SELECT timeline_id FROM pg_control_checkpoint()")
}

// TestDrill drills a full backup and an incremental chain of a cluster
// with two databases and a tablespace, checks that status reports it, and
// makes drills fail for each reason the issue names; none may leave
// anything behind or touch the production server or store. The subtests
// run in order: the last ones damage the cluster or the store.
func TestDrill(t *testing.T) {
	b := newDrillBackups(t)
	for _, st := range []struct {
		name string
		fn   func(*testing.T, *drillBackups)
	}{
		{"full", drillFull},
		{"incremental chain", drillIncrementalChain},
		{"as the cluster's user", drillAsTheClustersUser},
		{"status", drillStatus},
		{"pause at the target", drillPauseAtTheTarget},
		{"keep", drillKeep},
		{"failing sql", drillFailingSql},
		{"target before the backup", drillTargetBeforeTheBackup},
		{"bad input", drillBadInput},
		{"SIGTERM", drillSIGTERM},
		{"SIGKILL", drillSIGKILL},
		{"production untouched", drillProductionUntouched},
		{"amcheck finds a damaged index", drillAmcheckFindsADamagedIndex},
		{"corrupted part", drillCorruptedPart},
		{"missing WAL segment", drillMissingWALSegment},
	} {
		t.Run(st.name, func(t *testing.T) { st.fn(t, b) })
	}
}

// drillBackups is TestDrill's production cluster with its backups: a
// full one and an incremental chain on it, and WAL after them.
type drillBackups struct {
	site                     *drillSite
	full, incr1, incr2       string
	beforeIncr2              string   // a time before incr2 finished
	afterIncr2               []string // segments archived after incr2
	storeBefore              map[string]string
	tlBefore                 string
	okSQL, everywhere, sleep string
}

func newDrillBackups(t *testing.T) *drillBackups {
	s := newDrillSite(t, "file")
	c := s.c
	spc := filepath.Join(s.work, "spc")
	if err := os.Mkdir(spc, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = c.Owner.Chown(spc)
	c.Run("pgbench", "-i", "-s", "1", "-q")
	c.Psql("CREATE DATABASE shop")
	c.Psql(fmt.Sprintf("CREATE TABLESPACE spc LOCATION '%s'", spc))
	psqlDB(t, c, "shop", `CREATE TABLE orders (id int PRIMARY KEY, amount numeric, note text) TABLESPACE spc;
		INSERT INTO orders SELECT g, g * 1.5, repeat('x', g % 50) FROM generate_series(1, 1000) g;
		CREATE INDEX orders_amount ON orders (amount)`)
	full := s.backup(t)
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	psqlDB(t, c, "shop", "INSERT INTO orders SELECT g, g, 'incr1' FROM generate_series(1001, 2000) g")
	incr1 := s.backup(t, "--incremental")
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	beforeIncr2 := c.Psql("SELECT now()")
	time.Sleep(20 * time.Millisecond)
	psqlDB(t, c, "shop", "INSERT INTO orders SELECT g, g, 'incr2' FROM generate_series(2001, 3000) g")
	incr2 := s.backup(t, "--incremental")
	// WAL after the newest backup, in several segments: replay must
	// reach the last (the drill checks it does), and a gap can be made
	// between them.
	var afterIncr2 []string
	for i := 0; i < 4; i++ {
		psqlDB(t, c, "shop", fmt.Sprintf("INSERT INTO orders SELECT g, g, 'after' FROM generate_series(%d, %d) g", 3001+i*1000, 4000+i*1000))
		afterIncr2 = append(afterIncr2, c.SwitchWAL())
	}
	c.WaitArchived(afterIncr2[len(afterIncr2)-1], 90*time.Second)
	t.Logf("full %s, incremental %s and %s", full, incr1, incr2)

	storeBefore := storeState(t, s.tg)
	tlBefore := timeline(t, c)
	okSQL := writeFile(t, filepath.Join(s.work, "orders.sql"), `-- the user's own assertions
DO $$ BEGIN
  IF (SELECT count(*) FROM orders) < 1000 THEN RAISE EXCEPTION 'too few orders'; END IF;
END $$;
SELECT count(*) FROM orders WHERE amount > 0;
`)
	everywhere := writeFile(t, filepath.Join(s.work, "everywhere.sql"), "SELECT 1 / (count(*) > 0)::int FROM pg_class;\n")

	sleep := writeFile(t, filepath.Join(s.work, "sleep.sql"), "SELECT pg_sleep(120);\n")
	return &drillBackups{site: s, full: full, incr1: incr1, incr2: incr2, beforeIncr2: beforeIncr2, afterIncr2: afterIncr2,
		storeBefore: storeBefore, tlBefore: tlBefore, okSQL: okSQL, everywhere: everywhere, sleep: sleep}
}

// midDrill starts a drill whose --sql sleeps, and returns once psql
// runs in the drill's server.
func (b *drillBackups) midDrill(t *testing.T) (*exec.Cmd, *bytes.Buffer, chan error) {
	s := b.site
	cmd := exec.Command(pgtest.Walvault(t), "drill", "--identity-file", s.identity, "--drill-state-file", s.state, "--sql", b.sleep, "--sql-database", "shop")
	cmd.Env = walvaultEnv(s.tg, s.env())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "catalog template1") {
				running <- sc.Text()
			}
		}
	}()
	select {
	case <-running:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("the drill did not get to its checks:\n%s", stderr.String())
	}
	time.Sleep(500 * time.Millisecond) // psql sleeps in database shop now
	if procs := processesIn(s.tmp); len(procs) == 0 {
		t.Fatal("no process runs in the drill's directory before the signal: the test would prove nothing")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, &stderr, done
}

func drillFull(t *testing.T, fx *drillBackups) {
	s, full, afterIncr2, okSQL := fx.site, fx.full, fx.afterIncr2, fx.okSQL
	res := s.drill(t, "--backup", full, "--amcheck=heap", "--sql", okSQL, "--sql-database", "shop", "--json")
	if res.code != 0 {
		t.Fatalf("drill of the full backup: %s", res)
	}
	d := parseDrill(t, res)
	got := d.results()
	for _, k := range []string{"restore", "pg_verifybackup", "recovery", "connect", "catalog postgres", "catalog shop", "catalog template1",
		"amcheck postgres", "amcheck shop", "amcheck template1", "sql shop"} {
		if got[k] != "ok" {
			t.Errorf("check %s: %q, want ok (all: %v)", k, got[k], got)
		}
	}
	if _, ran := got["sql postgres"]; ran {
		t.Error("--sql-database shop ran the SQL in postgres too")
	}
	if !d.Success || d.Backup != full || d.BackupType != "full" || d.RestoredBytes <= 0 || d.Timeline != 2 || d.DurationSeconds <= 0 {
		t.Errorf("report: %+v", d)
	}
	var shop bool
	for _, db := range d.Databases {
		if db.Name == "shop" {
			shop = db.RecordedBytes > 0 && db.RelationBytes >= db.RecordedBytes && db.Tables > 0
		}
	}
	if !shop {
		t.Errorf("no sound figures for database shop: %+v", d.Databases)
	}
	for _, ch := range d.Checks {
		if ch.Name == "amcheck" && (!strings.Contains(ch.Detail, "verify_heapam") || !strings.Contains(ch.Detail, "B-tree indexes")) {
			t.Errorf("amcheck=heap in %s: %s", ch.Database, ch.Detail)
		}
		if ch.Name == "recovery" && !strings.Contains(ch.Detail, afterIncr2[len(afterIncr2)-1]) {
			t.Errorf("recovery did not say it reached the archive's last segment %s: %s", afterIncr2[len(afterIncr2)-1], ch.Detail)
		}
	}
	s.nothingLeft(t)
}

func drillIncrementalChain(t *testing.T, fx *drillBackups) {
	s, incr1, incr2, everywhere := fx.site, fx.incr1, fx.incr2, fx.everywhere
	prom := filepath.Join(s.work, "drill.prom")
	res := s.drill(t, "--amcheck", "--sql", everywhere, "--prometheus", prom)
	if res.code != 0 {
		t.Fatalf("drill of the newest backup: %s", res)
	}
	for _, want := range []string{"ok    restore", "backup " + incr2 + " (incremental on " + incr1 + ", a chain of 3",
		"ok    pg_verifybackup", "ok    recovery", "promoted onto timeline 2", "ok    amcheck shop", "ok    sql shop", "ok    sql postgres",
		"drill ok: backup " + incr2 + " (incremental"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("drill printed no %q", want)
		}
	}
	if strings.Contains(res.stdout, "sql template1") {
		t.Error("--sql ran in a template database")
	}
	if lines := strings.Count(strings.TrimSpace(res.stdout), "\n") + 1; !strings.HasPrefix(finalLine(res.stdout), "drill ok: ") || lines < 8 {
		t.Errorf("the summary is not the last line:\n%s", res.stdout)
	}
	b, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"walvault_drill_last_success_timestamp_seconds{backup=\"" + incr2 + "\"", "walvault_drill_duration_seconds{backup=\"" + incr2 + "\"",
		"walvault_drill_restored_bytes{backup=\"" + incr2 + "\"", "walvault_drill_success{backup=\"" + incr2 + "\""} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the textfile has no %s:\n%s", want, b)
		}
	}
	s.nothingLeft(t)
}

func drillAsTheClustersUser(t *testing.T, fx *drillBackups) {
	s, incr1 := fx.site, fx.incr1
	// As the systemd unit runs it: no switching of users, the server
	// runs as the drill's own user.
	o, _ := pgtest.ServerOwner()
	if !o.AsOther {
		t.Fatal("these tests run as root (as CI does); this one checks the drill run by the server's user")
	}
	tmp := filepath.Join(s.work, "pgtmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = o.Chown(tmp)
	state := filepath.Join(s.work, "pgstate", "drill.json")
	cmd := o.Cmd(context.Background(), pgtest.Walvault(t), "drill", "--identity-file", s.identity, "--drill-state-file", state, "--amcheck", "--backup", incr1)
	cmd.Env = append(walvaultEnv(s.tg, s.env()), "TMPDIR="+tmp, "HOME="+s.work)
	out, err := cmd.CombinedOutput()
	t.Logf("drill as postgres: %v\n%s", err, out)
	if err != nil || !strings.Contains(string(out), "drill ok: backup "+incr1) {
		t.Fatalf("drill as the server's user: %v", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left in TMPDIR: %v", ents)
	}
	if fi, err := os.Stat(state); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(o.Uid) {
		t.Errorf("the drill record: %v", err)
	}
}

func drillStatus(t *testing.T, fx *drillBackups) {
	s, incr2 := fx.site, fx.incr2
	prom := filepath.Join(s.work, "status.prom")
	out := mustWalvault(t, s.tg, nil, "status", "--no-server", "--state-file", "none", "--drill-state-file", s.state, "--max-drill-age", "1h", "--prometheus", prom)
	if !strings.Contains(out, "last drill        ok: backup "+incr2) {
		t.Errorf("status does not show the drill:\n%s", out)
	}
	if b, _ := os.ReadFile(prom); !strings.Contains(string(b), "walvault_drill_last_success_timestamp_seconds{backup=\""+incr2+"\"") {
		t.Errorf("status's textfile has no drill:\n%s", b)
	}
	time.Sleep(10 * time.Millisecond)
	code, _, stderr := s.tg.walvault(t, nil, "status", "--no-server", "--state-file", "none", "--drill-state-file", s.state, "--max-drill-age", "5ms")
	if code != 7 || !strings.Contains(stderr, "--max-drill-age") || !strings.Contains(stderr, incr2) {
		t.Errorf("status past --max-drill-age: exit %d, %s", code, stderr)
	}
	code, _, stderr = s.tg.walvault(t, nil, "status", "--no-server", "--state-file", "none", "--drill-state-file", filepath.Join(s.work, "none.json"), "--max-drill-age", "1h")
	if code != 7 || !strings.Contains(stderr, "no successful restore drill") {
		t.Errorf("status without any drill: exit %d, %s", code, stderr)
	}
}

func drillPauseAtTheTarget(t *testing.T, fx *drillBackups) {
	s, full := fx.site, fx.full
	res := s.drill(t, "--backup", full, "--target-immediate", "--target-action", "pause", "--amcheck", "--json")
	if res.code != 0 {
		t.Fatalf("drill: %s", res)
	}
	d := parseDrill(t, res)
	for _, ch := range d.Checks {
		if ch.Name == "recovery" && !strings.Contains(ch.Detail, "paused at the target") {
			t.Errorf("recovery: %s", ch.Detail)
		}
	}
	if got := d.results(); got["catalog shop"] != "ok" || got["connect"] != "ok" {
		t.Errorf("checks of a paused server: %v", got)
	}
	s.nothingLeft(t)
}

func drillKeep(t *testing.T, fx *drillBackups) {
	s, c, incr1 := fx.site, fx.site.c, fx.incr1
	dir := filepath.Join(s.work, "kept")
	res := s.drill(t, "--backup", incr1, "--dir", dir, "--keep")
	if res.code != 0 || !strings.Contains(res.stdout, "kept "+dir) {
		t.Fatalf("drill --keep: %s", res)
	}
	start := lineAfter(res.stdout, "start it: ")
	connect := lineAfter(res.stdout, "connect:  ")
	if start == "" || connect == "" {
		t.Fatalf("drill --keep did not say how to start it:\n%s", res.stdout)
	}
	if out, err := exec.Command("sh", "-c", start).CombinedOutput(); err != nil { // #nosec G204 -- what the drill printed
		t.Fatalf("%s: %v\n%s", start, err, out)
	}
	out, err := exec.Command("sh", "-c", connect+" -X -A -t -c 'SELECT count(*) FROM orders' -d shop").CombinedOutput() // #nosec G204 -- what the drill printed
	if err != nil || strings.TrimSpace(string(out)) != "7000" {
		t.Errorf("%s: %v: %s", connect, err, out)
	}
	_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(c.Bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop").Run()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}

func drillFailingSql(t *testing.T, fx *drillBackups) {
	s, incr1, incr2 := fx.site, fx.incr1, fx.incr2
	bad := writeFile(t, filepath.Join(s.work, "bad.sql"), `SELECT 1;
DO $$ BEGIN
  IF (SELECT count(*) FROM orders) < 1000000 THEN RAISE EXCEPTION 'fewer than a million orders'; END IF;
END $$;
`)
	res := s.drill(t, "--sql", bad, "--sql-database", "shop")
	if res.code != 7 || !strings.Contains(res.stderr, "sql in database shop") || !strings.Contains(res.stderr, "fewer than a million orders") ||
		!strings.Contains(res.stderr, "bad.sql:") || !strings.Contains(res.stdout, "drill FAILED") {
		t.Errorf("a failing assertion: %s", res)
	}
	s.nothingLeft(t)
	out := mustWalvault(t, s.tg, nil, "status", "--no-server", "--state-file", "none", "--drill-state-file", s.state, "--max-drill-age", "1h")
	if !strings.Contains(out, "last drill        FAILED of backup "+incr2) || !strings.Contains(out, "last success: backup "+incr1) {
		t.Errorf("status after a failed drill:\n%s", out)
	}
}

func drillTargetBeforeTheBackup(t *testing.T, fx *drillBackups) {
	s, incr2, beforeIncr2 := fx.site, fx.incr2, fx.beforeIncr2
	res := s.drill(t, "--backup", incr2, "--target-time", beforeIncr2)
	if res.code != 2 || !strings.Contains(res.stderr, "not before the target time") {
		t.Errorf("a target before the backup: %s", res)
	}
	s.nothingLeft(t)
}

func drillBadInput(t *testing.T, fx *drillBackups) {
	s := fx.site
	full := filepath.Join(s.work, "full")
	if err := os.Mkdir(full, 0o755); err != nil { // #nosec G301 -- test data
		t.Fatal(err)
	}
	keep := writeFile(t, filepath.Join(full, "precious"), "mine")
	// An identity only root can read: restore (as root) could use it,
	// the server's restore_command (as postgres) could not.
	rootOnly := filepath.Join(t.TempDir(), "root.key")
	b, err := os.ReadFile(s.identity)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, rootOnly, string(b))
	hidden := filepath.Join(s.work, "hidden")
	if err := os.Mkdir(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.tg.ObjectPath(""), filepath.Join(hidden, "store")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--dir", full}, 2, "is not empty"},
		{[]string{"--max-size", "1MiB"}, 2, "--max-size"},
		{[]string{"--amcheck=maybe"}, 2, "--amcheck"},
		{[]string{"--sql-database", "shop"}, 2, "--sql"},
		{[]string{"--target-action", "shutdown"}, 2, "--target-action"},
		{[]string{"--owner", "root"}, 2, "root"},
		{[]string{"--pg-bin-dir", s.work}, 2, "--pg-bin-dir"},
		{[]string{"--identity-file", rootOnly}, 2, "who cannot read the identity file"},
		// A store only root can get to: restore (as root) reads it,
		// the server's restore_command (as postgres) could not; the
		// probe finds out before anything is written.
		{[]string{"--store", "file://" + filepath.Join(hidden, "store")}, 2, "restore_command fails when run as postgres"},
	} {
		res := s.drill(t, tt.args...)
		if res.code != tt.code || !strings.Contains(res.stderr, tt.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") > 0 {
			t.Errorf("drill %v: want exit %d naming %s; got %s", tt.args, tt.code, tt.want, res)
		}
		s.nothingLeft(t)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "mine" {
		t.Errorf("a refused --dir lost its file: %q %v", b, err)
	}
}

func drillSIGTERM(t *testing.T, fx *drillBackups) {
	s := fx.site
	cmd, stderr, done := fx.midDrill(t)
	began := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("the drill ended: %v", err)
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("the drill did not end within a minute of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 9 || !strings.Contains(stderr.String(), "stopped by a signal") {
		t.Errorf("after SIGTERM: exit %d, stderr %s", code, stderr.String())
	}
	t.Logf("ended %.1f s after SIGTERM", time.Since(began).Seconds())
	s.nothingLeft(t)
}

func drillSIGKILL(t *testing.T, fx *drillBackups) {
	s := fx.site
	// Nothing cleans up after SIGKILL, but the kernel stops the
	// drill's server with it (an immediate shutdown).
	cmd, _, done := fx.midDrill(t)
	_ = cmd.Process.Kill()
	t.Logf("the drill ended: %v", <-done)
	deadline := time.Now().Add(30 * time.Second)
	for len(processesIn(s.tmp)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if procs := processesIn(s.tmp); len(procs) > 0 {
		t.Errorf("the drill's server outlived a SIGKILLed drill: %v", procs)
	}
	ents, _ := os.ReadDir(s.tmp)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(s.tmp, e.Name()))
	}
}

func drillProductionUntouched(t *testing.T, fx *drillBackups) {
	s, c, storeBefore, tlBefore := fx.site, fx.site.c, fx.storeBefore, fx.tlBefore
	sameStore(t, "the drills", storeBefore, storeState(t, s.tg))
	if tl := timeline(t, c); tl != tlBefore {
		t.Errorf("the production server is on timeline %s, was %s", tl, tlBefore)
	}
	if got := psqlDB(t, c, "shop", "SELECT count(*) FROM orders"); got != "7000" {
		t.Errorf("production has %s orders", got)
	}
	// The drills' servers promoted onto timeline 2 of their own: had
	// any archived, the store would hold 00000002.history.
	if _, err := os.Stat(s.tg.ObjectPath("wal/history/00000002.history")); err == nil {
		t.Error("a drill archived a timeline history file into the store")
	}
}

func drillAmcheckFindsADamagedIndex(t *testing.T, fx *drillBackups) {
	s, c := fx.site, fx.site.c
	psqlDB(t, c, "shop", "CREATE TABLE victim AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g; CREATE INDEX victim_v ON victim (v)")
	file := filepath.Join(c.Data, psqlDB(t, c, "shop", "SELECT pg_relation_filepath('victim_v')"))
	c.Stop()
	b, err := os.ReadFile(file)
	if err != nil || len(b) < 3*8192 {
		t.Fatalf("index file %s: %d bytes, %v", file, len(b), err)
	}
	// Reverse the tuple data of a leaf page: keys out of order, the
	// page header intact.
	page := b[8192 : 2*8192]
	for i, j := 1024, 8192-64; i < j; i, j = i+1, j-1 {
		page[i], page[j] = page[j], page[i]
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Start()
	damaged := s.backup(t)
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	res := s.drill(t, "--backup", damaged, "--amcheck")
	if res.code != 7 || !strings.Contains(res.stderr, "amcheck in database shop") || !strings.Contains(res.stderr, "victim_v") {
		t.Errorf("a damaged index: %s", res)
	}
	s.nothingLeft(t)
}

func drillCorruptedPart(t *testing.T, fx *drillBackups) {
	s, full := fx.site, fx.full
	parts, _ := filepath.Glob(s.tg.ObjectPath("backups/" + full + "/part-*"))
	if len(parts) == 0 {
		t.Fatal("no parts")
	}
	sort.Strings(parts)
	flipByte(t, parts[0])
	res := s.drill(t, "--backup", full)
	if res.code != 4 || !strings.Contains(res.stderr, filepath.Base(parts[0])) || !strings.Contains(res.stdout, "FAIL  restore") {
		t.Errorf("a corrupted part: %s", res)
	}
	s.nothingLeft(t)
}

func drillMissingWALSegment(t *testing.T, fx *drillBackups) {
	s, incr2, afterIncr2 := fx.site, fx.incr2, fx.afterIncr2
	gone := afterIncr2[1]
	p := s.tg.ObjectPath("wal/" + gone[:16] + "/" + gone)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	res := s.drill(t, "--backup", incr2)
	if res.code != 4 || !strings.Contains(res.stderr, gone) {
		t.Errorf("a missing segment before the target: %s", res)
	}
	s.nothingLeft(t)
}

func finalLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// lineAfter is the rest of the first line holding prefix.
func lineAfter(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if _, after, ok := strings.Cut(l, prefix); ok {
			return strings.TrimSpace(after)
		}
	}
	return ""
}

// TestDrillS3 drills a backup in an S3 store: restore and the server's
// restore_command read it, and nothing is written to it.
func TestDrillS3(t *testing.T) {
	s := newDrillSite(t, "s3")
	s.c.Run("pgbench", "-i", "-s", "1", "-q")
	name := s.backup(t)
	s.c.Run("pgbench", "-n", "-t", "100")
	s.c.WaitArchived(s.c.SwitchWAL(), 90*time.Second)
	before := storeState(t, s.tg)
	res := s.drill(t, "--amcheck", "--json")
	if res.code != 0 {
		t.Fatalf("drill: %s", res)
	}
	if d := parseDrill(t, res); d.Backup != name || !d.Success {
		t.Errorf("report: %+v", d)
	}
	s.nothingLeft(t)
	sameStore(t, "the drill", before, storeState(t, s.tg))
}
