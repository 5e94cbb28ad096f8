package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/integration/pgtest"
)

// TestPostgresMajors runs the physical path on every supported major, two
// at a time (the machine has two cores): archiving through walvault
// wal-push, then through walvault-wal and the agent, a full and an
// incremental backup, PITR onto timeline 2 (archived through walvault-wal
// with no agent: its fallback), a restore to latest that follows it, and
// pg_verifybackup on each restored directory. What differs by version is
// checked where it shows: the backup API (pg_start_backup up to 14,
// pg_backup_start from 15), WAL summaries (17+, summarize_wal = on: the
// server keeps pg_wal/summaries, which the backup keeps empty), data
// checksums on by default from 18 (an incremental then takes changed
// blocks; without checksums or wal_log_hints it stores changed files
// whole), and the backup_manifest walvault writes (version 1, which every
// pg_verifybackup reads) passing PostgreSQL 15's pg_verifybackup. Logical
// dumps run where the installed pg_dump can dump the server, and are
// refused with pg_dump's own message where it cannot.
func TestPostgresMajors(t *testing.T) {
	for _, major := range pgtest.Majors {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			testMajor(t, major)
		})
	}
}

func testMajor(t *testing.T, major int) {
	began := time.Now()
	tg := newTarget(t, "file")
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	conf := []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", pgtest.Walvault(t)),
		"wal_keep_size = '1GB'",
		"checkpoint_timeout = '1h'",
	}
	if major >= 17 {
		conf = append(conf, "summarize_wal = on")
	}
	c := pgtest.New(t, pgtest.Options{Major: major, InitdbArgs: []string{"--wal-segsize=1"}, Env: serverEnv, Conf: conf})
	c.Start()
	if v := c.Psql("SELECT current_setting('server_version_num')::int / 10000"); v != strconv.Itoa(major) {
		t.Fatalf("server is PostgreSQL %s, want %d", v, major)
	}
	checksums := c.Psql("SHOW data_checksums")
	if want := map[bool]string{true: "on", false: "off"}[major >= 18]; checksums != want {
		t.Fatalf("PostgreSQL %d's initdb: data_checksums = %s, want %s (on by default from 18)", major, checksums, want)
	}
	c.Run("pgbench", "-i", "-s", "1", "-q")
	// Databases as old as a production cluster's: one made within the hour
	// before a backup is stored whole by the incremental after it.
	backdatePGVersion(t, c.Data, 2*time.Hour)

	// A full backup, archived through walvault wal-push.
	out := mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint", "--part-size", "4MiB")
	full := backupName(t, out)
	if !regexp.MustCompile(`complete: .* s \(checkpoint \d+\.\d\d s, copy \d+\.\d\d s at [0-9.]+ [KMG]?i?B/s, WAL archiving \d+\.\d\d s\)`).MatchString(out) {
		t.Errorf("the summary does not split the time: %s", out)
	}
	// (Each major knows only one of the backup APIs' names: pg_start_backup
	// is gone from 15, pg_backup_start new in it, so a backup with the
	// wrong one fails here.)
	if major >= 17 {
		waitSummaries(t, c)
	}

	// From here on the agent archives, through walvault-wal.
	c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s push %%p'", pgtest.WalvaultWal(t)))
	c.Psql("SELECT pg_reload_conf()")
	ag := startAgent(t, c, nil)
	c.Run("pgbench", "-n", "-t", "300", "-c", "2")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	st, err := agentStatus(t, proto.DefaultSocket(filepath.Join(c.Data, "pg_wal")))
	if err != nil || st.SegmentsArchived < 1 {
		t.Fatalf("the agent archived nothing (%+v, %v)", st, err)
	}

	// An incremental on the full one. With data checksums (18's default)
	// its relation files are taken block by block; without them, or
	// wal_log_hints, a changed file is stored whole.
	code, out, stderr := tg.walvault(t, backupEnv(c, recipient), "backup-push", "--incremental", "--fast-checkpoint", "--log-level", "debug")
	if code != 0 {
		t.Fatalf("incremental backup-push: exit %d\n%s\n%s", code, out, stderr)
	}
	incr := backupName(t, out)
	if !strings.Contains(out, "incremental on "+full) {
		t.Fatalf("not an incremental on %s: %s", full, out)
	}
	blocks := regexp.MustCompile(`incremental backup files.* blocks=(\d+)`).FindStringSubmatch(stderr)
	if blocks == nil {
		t.Fatalf("no summary of the incremental's files in its log:\n%s", stderr)
	}
	// It says which files it stored whole, and why: pg_xact always
	// changes; without checksums, so do the relations pgbench wrote.
	if !regexp.MustCompile(`msg="incremental: files stored whole" cmd=backup-push why="changed \(compared whole[^"]*" files=\d+ paths="[^"]*pg_xact/0000`).MatchString(stderr) ||
		checksums == "off" && !strings.Contains(stderr, `why="changed, and without data_checksums or wal_log_hints`) {
		t.Errorf("the incremental does not say which files it stored whole and why:\n%s", stderr)
	}
	if n, _ := strconv.Atoi(blocks[1]); (n > 0) != (checksums == "on") {
		t.Errorf("data_checksums = %s, and the incremental stored %s files as changed blocks\n%s", checksums, blocks[1], stderr)
	}

	// backup-list fits 120 columns; backup-info shows one backup whole.
	list := mustWalvault(t, tg, nil, "backup-list")
	for _, l := range strings.Split(strings.TrimRight(list, "\n"), "\n") {
		if len(l) > 120 {
			t.Errorf("backup-list line of %d columns: %q", len(l), l)
		}
	}
	if !regexp.MustCompile(`(?m)^` + full + ` .* -\n` + incr + ` .* ` + full[5:21] + `$`).MatchString(list) {
		t.Errorf("backup-list: %s", list)
	}
	info := mustWalvault(t, tg, nil, "backup-info", incr)
	for _, w := range []string{"parent        " + full, "databases     template1 ", "postgres                 OID ", fmt.Sprintf("PostgreSQL    %d.", major), "PITR window   ", "data checksums " + checksums} {
		if !strings.Contains(info, w) {
			t.Errorf("backup-info %s: no %q in\n%s", incr, w, info)
		}
	}
	if major == pgtest.DefaultMajor {
		t.Logf("backup-list:\n%s\nbackup-info %s:\n%s", list, incr, info)
	}

	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	want := tableChecksums(t, c)
	target := c.Psql("SELECT clock_timestamp()")
	time.Sleep(50 * time.Millisecond)
	c.Run("pgbench", "-n", "-t", "100", "-c", "2")
	c.Psql("DROP TABLE pgbench_tellers")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	if n := archiverFailures(t, c); n != 0 {
		t.Fatalf("%d failed archive_command(s)\n%s", n, c.LogTail(20))
	}
	majorDumps(t, tg, c, identity, recipient)
	majorDrill(t, tg, major, incr, identity)
	if code := ag.stop(t); code != 0 {
		t.Errorf("agent exit %d on SIGTERM", code)
	}
	c.Stop()

	// PITR from the incremental onto timeline 2.
	r := restoreMajor(t, tg, major, serverEnv, identity, "--target-time", target)
	if !strings.Contains(r.Stdout, "restored backup "+incr) {
		t.Fatalf("PITR did not restore the incremental %s:\n%s", incr, r.Stdout)
	}
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
	if tl := r.Psql("SELECT timeline_id FROM pg_control_checkpoint()"); tl != "2" {
		t.Fatalf("after PITR the server is on timeline %s, want 2", tl)
	}
	// Its archive_command is walvault-wal's, with no agent: the client
	// runs walvault wal-push itself.
	r.Psql("CREATE TABLE after_pitr AS SELECT generate_series(1, 1000) AS i")
	r.WaitArchived(r.SwitchWAL(), 60*time.Second)
	if n := archiverFailures(t, r.Cluster); n != 0 {
		t.Fatalf("timeline 2: %d failed archive_command(s)\n%s", n, r.LogTail(20))
	}
	r.Stop()

	r2 := restoreMajor(t, tg, major, serverEnv, identity)
	startAndRecover(t, r2.Cluster)
	if got := r2.Psql("SELECT count(*) FROM after_pitr"); got != "1000" {
		t.Fatalf("timeline 2's writes are missing: %s rows", got)
	}
	if tl := r2.Psql("SELECT timeline_id FROM pg_control_checkpoint()"); tl != "3" {
		t.Fatalf("timeline %s after following timeline 2, want 3", tl)
	}
	t.Logf("PostgreSQL %s: %s", r2.Psql("SHOW server_version"), time.Since(began).Round(100*time.Millisecond))
}

// majorDrill drills backup with this major's server binaries, beside the
// running production server: the drill's server settings are chosen by
// version (archive_library from 15, event_triggers from 17, ...), and a
// setting a major does not know would keep it from starting.
func majorDrill(t *testing.T, tg *target, major int, backup, identity string) {
	t.Helper()
	bin, err := pgtest.ServerBinDir(major)
	if err != nil {
		t.Fatal(err)
	}
	tmp := pgtest.WorkDir(t)
	code, out, stderr := tg.walvault(t, []string{"TMPDIR=" + tmp}, "drill", "--backup", backup, "--identity-file", identity,
		"--pg-bin-dir", bin, "--amcheck", "--drill-state-file", "none")
	if code != 0 || !strings.Contains(out, "drill ok: backup "+backup) || !strings.Contains(out, fmt.Sprintf("PostgreSQL %d.", major)) {
		t.Fatalf("drill on PostgreSQL %d: exit %d\n%s%s", major, code, out, stderr)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("the drill left %v behind", ents)
	}
	if major == pgtest.DefaultMajor {
		t.Logf("drill:\n%s", out)
	}
}

// restoreMajor is restoreInto for a server of major: restore into a fresh
// directory, then pg_verifybackup -n (PostgreSQL 15's) on it.
func restoreMajor(t *testing.T, tg *target, major int, serverEnv []string, identity string, args ...string) *restored {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{Major: major, NoInit: true, Env: serverEnv})
	all := append([]string{"restore", c.Data, "--identity-file", identity}, args...)
	out := mustWalvault(t, tg, nil, all...)
	verifyBackup(t, c, true)
	if major >= 17 {
		// The server's summaries stay behind, as pg_basebackup leaves them:
		// they describe the old server's WAL, not this one's.
		ents, err := os.ReadDir(filepath.Join(c.Data, "pg_wal", "summaries"))
		if err != nil || len(ents) != 0 {
			t.Errorf("PostgreSQL %d: the restored pg_wal/summaries should be there and empty: %d entries, %v", major, len(ents), err)
		}
	}
	return &restored{Cluster: c, Stdout: out}
}

// waitSummaries waits until the WAL summarizer (17+) has written a
// summary, so the backup after it has one to leave out.
func waitSummaries(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n := c.Psql("SELECT count(*) FROM pg_available_wal_summaries()"); n != "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no WAL summary after 30 s with summarize_wal = on\n%s", c.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// majorDumps: dump-push and dump-restore where the installed pg_dump can
// dump the server (its own major and older); a newer server is refused
// with pg_dump's message and exit 6, leaving no dump behind.
func majorDumps(t *testing.T, tg *target, c *pgtest.Cluster, identity, recipient string) {
	t.Helper()
	dumpMajor := pgDumpMajor(t, c)
	code, out, stderr := tg.walvault(t, backupEnv(c, recipient), "dump-push", "postgres")
	if c.Major > dumpMajor {
		if code != 6 || !strings.Contains(stderr, "server version") {
			t.Fatalf("dump-push of PostgreSQL %d with pg_dump %d: exit %d, want 6 with pg_dump's version message\n%s%s", c.Major, dumpMajor, code, out, stderr)
		}
		if list := mustWalvault(t, tg, nil, "dump-list", "--json"); strings.Contains(list, "dump_") {
			t.Fatalf("a refused dump-push left a dump:\n%s", list)
		}
		return
	}
	if code != 0 {
		t.Fatalf("dump-push: exit %d\n%s%s", code, out, stderr)
	}
	c.Psql("CREATE DATABASE copy")
	mustWalvault(t, tg, []string{"WALVAULT_IDENTITY_FILE=" + identity}, "dump-restore", "LATEST", "--database", "postgres", "--dbname", c.ConnString("copy"))
	n := psqlDB(t, c, "copy", "SELECT count(*) FROM pgbench_accounts")
	if want := c.Psql("SELECT count(*) FROM pgbench_accounts"); n != want {
		t.Fatalf("the restored dump has %s accounts, the server %s", n, want)
	}
}

// pgDumpMajor is the major version of the pg_dump walvault finds.
func pgDumpMajor(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	v := c.Run("pg_dump", "--version") // "pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
	m := regexp.MustCompile(`\) (\d+)\.`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("pg_dump --version: %q", v)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
