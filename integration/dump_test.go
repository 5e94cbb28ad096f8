package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/integration/pgtest"
)

// Logical dumps as a DBA uses them: dump-push a database with tables,
// indexes, a sequence, a view and a function into the store, restore it
// into new databases (streamed, and in parallel from a temp file), compare
// schema and data with the original, and the ways it must fail.

const dumpSchema = `
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, created timestamptz DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(12,2), note text);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_total_idx ON orders (total) WHERE total > 100;
CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
CREATE TABLE invoices (no int DEFAULT nextval('invoice_no'), order_id bigint REFERENCES orders(id), payload jsonb);
CREATE VIEW big_orders AS SELECT o.id, c.name, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total > 100;
CREATE FUNCTION order_total(cust int) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(total), 0) FROM orders WHERE customer_id = cust $$;
INSERT INTO customers (name, email) SELECT 'customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, 2000) i;
INSERT INTO orders (customer_id, total, note) SELECT 1 + i % 2000, (i * 37 % 50000) / 100.0, repeat('x', i % 50) FROM generate_series(1, 20000) i;
INSERT INTO invoices (order_id, payload) SELECT i, jsonb_build_object('n', i, 'tag', 'inv' || i) FROM generate_series(1, 5000) i;
SELECT setval('invoice_no', 99999);
`

var dumpTables = []string{"customers", "orders", "invoices"}

// dumpPSQL runs SQL in database db of c.
func dumpPSQL(t *testing.T, c *pgtest.Cluster, db, sql string) string {
	t.Helper()
	return strings.TrimSpace(c.Run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", c.ConnString(db), "-c", sql))
}

// schemaOf is pg_dump --schema-only of db, without the \restrict lines
// whose key pg_dump 15.14+ draws at random.
func schemaOf(t *testing.T, c *pgtest.Cluster, db string) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(c.Run("pg_dump", "--schema-only", "-d", c.ConnString(db)), "\n") {
		if strings.HasPrefix(l, `\restrict`) || strings.HasPrefix(l, `\unrestrict`) {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// dataOf is a checksum of every table's rows, and the sequence's state.
func dataOf(t *testing.T, c *pgtest.Cluster, db string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tbl := range dumpTables {
		out[tbl] = dumpPSQL(t, c, db, fmt.Sprintf("SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM %s t", tbl))
	}
	out["invoice_no"] = dumpPSQL(t, c, db, "SELECT last_value FROM invoice_no")
	out["order_total(7)"] = dumpPSQL(t, c, db, "SELECT order_total(7)")
	out["big_orders"] = dumpPSQL(t, c, db, "SELECT count(*) FROM big_orders")
	return out
}

// sameDatabase fails unless db holds what src holds.
func sameDatabase(t *testing.T, c *pgtest.Cluster, src, db string) {
	t.Helper()
	if a, b := schemaOf(t, c, src), schemaOf(t, c, db); a != b {
		t.Fatalf("schema of %s differs from %s:\n--- %s\n%s\n--- %s\n%s", db, src, src, a, db, b)
	}
	a, b := dataOf(t, c, src), dataOf(t, c, db)
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: %s has %q, %s has %q", k, src, v, db, b[k])
		}
	}
}

// dumpNameOf pulls the name from dump-push's summary line.
func dumpNameOf(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "dump" || f[2] != "complete:" {
		t.Fatalf("dump-push printed %q", out)
	}
	return f[1]
}

type listedDump struct {
	Name, Database string
	Size           int64
	StoredSize     int64 `json:"stored_size"`
	Encrypted      bool
	PGVersion      int    `json:"pg_version"`
	PGDumpVersion  string `json:"pg_dump_version"`
}

func listDumps(t *testing.T, tg *target) []listedDump {
	t.Helper()
	var list []listedDump
	if err := json.Unmarshal([]byte(mustWalvault(t, tg, nil, "dump-list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

func TestDumps(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) { testDumps(t, newTarget(t, kind)) })
	}
}

func testDumps(t *testing.T, tg *target) {
	c := pgtest.New(t, pgtest.Options{})
	c.Start()
	c.Psql("CREATE DATABASE shop")
	dumpPSQL(t, c, "shop", dumpSchema)
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	env := append(c.PGEnv(), "WALVAULT_RECIPIENT="+recipient)

	out := mustWalvault(t, tg, env, "dump-push", "shop")
	name := dumpNameOf(t, out)
	if !strings.HasPrefix(name, "dump_") || !strings.HasSuffix(name, "_shop") {
		t.Fatalf("dump name %q", name)
	}
	list := listDumps(t, tg)
	if len(list) != 1 || list[0].Name != name || list[0].Database != "shop" || !list[0].Encrypted || list[0].PGVersion < 150000 ||
		!strings.Contains(list[0].PGDumpVersion, "pg_dump (PostgreSQL) 15") || list[0].Size <= 0 || list[0].StoredSize <= 0 {
		t.Fatalf("dump-list --json: %+v", list)
	}
	if table := mustWalvault(t, tg, nil, "dump-list"); !strings.Contains(table, name) || !strings.Contains(table, "shop") {
		t.Fatalf("dump-list:\n%s", table)
	}

	// Streamed into pg_restore, and in parallel from a temp file (LATEST).
	tmp := filepath.Join(work, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ db, which, jobs string }{{"copy1", name, "1"}, {"copy2", "LATEST", "2"}} {
		c.Psql("CREATE DATABASE " + r.db)
		mustWalvault(t, tg, nil, "dump-restore", r.which, "--dbname", c.ConnString(r.db), "--database", "shop", "--identity-file", identity,
			"--jobs", r.jobs, "--temp-dir", tmp)
		sameDatabase(t, c, "shop", r.db)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("--temp-dir not cleaned up: %v", ents)
	}

	// --create makes the database itself (it keeps the name "shop", so
	// drop the original first, keeping copy1 as the reference).
	c.Psql("DROP DATABASE shop")
	mustWalvault(t, tg, nil, "dump-restore", name, "--dbname", c.ConnString("postgres"), "--identity-file", identity, "--create")
	sameDatabase(t, c, "copy1", "shop")

	// dump-fetch writes a file pg_restore reads, and never overwrites one.
	file := filepath.Join(work, "shop.dump")
	mustWalvault(t, tg, nil, "dump-fetch", name, file, "--identity-file", identity)
	if toc := c.Run("pg_restore", "-l", file); !strings.Contains(toc, "VIEW public big_orders") || !strings.Contains(toc, "FUNCTION public order_total") {
		t.Fatalf("pg_restore -l of the fetched dump:\n%s", toc)
	}
	if code, _, stderr := tg.walvault(t, nil, "dump-fetch", name, file, "--identity-file", identity); code != 2 || !strings.Contains(stderr, "already exists") {
		t.Fatalf("dump-fetch over an existing file: exit %d: %s", code, stderr)
	}

	// A database that does not exist: exit 6, nothing stored.
	if code, _, stderr := tg.walvault(t, env, "dump-push", "nosuchdb"); code != 6 || !strings.Contains(stderr, `"nosuchdb" does not exist`) {
		t.Fatalf("dump-push of a missing database: exit %d: %s", code, stderr)
	}
	// pg_dump killed mid-stream: exit 6 with its last message, no
	// manifest, no dump object left.
	fake := filepath.Join(work, "fakebin")
	if err := os.Mkdir(fake, 0o755); err != nil { // #nosec G301 -- test scripts
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\n[ \"$1\" = --version ] && exec %s --version\n%s \"$@\" | head -c 100000\necho 'pg_dump: error: killed by the test' >&2\nkill -9 $$\n",
		filepath.Join(c.Bin, "pg_dump"), filepath.Join(c.Bin, "pg_dump"))
	if err := os.WriteFile(filepath.Join(fake, "pg_dump"), []byte(script), 0o755); err != nil { // #nosec G306 -- an executable test script
		t.Fatal(err)
	}
	code, _, stderr := tg.walvault(t, env, "dump-push", "copy1", "--pg-bin-dir", fake)
	if code != 6 || !strings.Contains(stderr, "killed by the test") {
		t.Fatalf("dump-push with pg_dump killed: exit %d: %s", code, stderr)
	}
	if list := listDumps(t, tg); len(list) != 1 {
		t.Fatalf("a failed dump-push left a dump: %+v", list)
	}
	if tg.Kind == "file" {
		ents, _ := os.ReadDir(tg.ObjectPath(repo.DumpPrefix))
		for _, e := range ents {
			if e.Name() != name {
				if objs, _ := os.ReadDir(filepath.Join(tg.ObjectPath(repo.DumpPrefix), e.Name())); len(objs) > 0 {
					t.Fatalf("a failed dump-push left %s/%v", e.Name(), objs)
				}
			}
		}
	}

	// The wrong identity: exit 4.
	other, _ := keygen(t, filepath.Join(work, "tmp"))
	c.Psql("CREATE DATABASE copy3")
	if code, _, stderr := tg.walvault(t, nil, "dump-restore", name, "--dbname", c.ConnString("copy3"), "--database", "shop", "--identity-file", other); code != 4 {
		t.Fatalf("dump-restore with the wrong identity: exit %d: %s", code, stderr)
	}
	_ = os.Remove(other)
	// Conflicting objects without --clean: pg_restore's error, exit 6;
	// with --clean it replaces them.
	code, _, stderr = tg.walvault(t, nil, "dump-restore", name, "--dbname", c.ConnString("copy1"), "--database", "shop", "--identity-file", identity)
	if code != 6 || !strings.Contains(stderr, "already exists") || !strings.Contains(stderr, "pg_restore failed") {
		t.Fatalf("dump-restore over conflicting objects: exit %d: %s", code, stderr)
	}
	dumpPSQL(t, c, "copy1", "DELETE FROM invoices WHERE no % 2 = 0")
	mustWalvault(t, tg, nil, "dump-restore", name, "--dbname", c.ConnString("copy1"), "--database", "shop", "--identity-file", identity, "--clean")
	sameDatabase(t, c, "shop", "copy1")

	// A damaged dump object: the streamed restore fails at the point of
	// damage and says the database may be partly restored; the parallel
	// restore and dump-fetch refuse it before pg_restore or the rename.
	if tg.Kind != "file" {
		return
	}
	flipByte(t, tg.ObjectPath(repo.DumpKey(name, repo.DumpFile)))
	// (Encrypted and lz4-compressed, the damage is found when its age
	// chunk or lz4 block is decoded, before pg_restore sees that part.)
	if code, _, stderr := tg.walvault(t, nil, "dump-restore", name, "--dbname", c.ConnString("copy3"), "--database", "shop", "--identity-file", identity); code != 4 {
		t.Fatalf("streamed dump-restore of a damaged dump: exit %d: %s", code, stderr)
	}
	// Plain (neither compressed nor encrypted) the damage is found all the
	// same, at the chunk that holds it, before pg_restore reads a byte of
	// that chunk: what it restored before is the dump's own.
	plainEnv := append(c.PGEnv(), "WALVAULT_COMPRESSION=none")
	plainName := dumpNameOf(t, mustWalvault(t, tg, plainEnv, "dump-push", "copy2"))
	flipByte(t, tg.ObjectPath(repo.DumpKey(plainName, repo.DumpFile)))
	c.Psql("CREATE DATABASE copy5")
	code, _, stderr = tg.walvault(t, nil, "dump-restore", plainName, "--dbname", c.ConnString("copy5"), "--database", "copy2", "--identity-file", identity)
	if code != 4 || !strings.Contains(stderr, "chunk") {
		t.Fatalf("streamed dump-restore of a damaged plain dump: exit %d: %s", code, stderr)
	}
	c.Psql("CREATE DATABASE copy4")
	code, _, stderr = tg.walvault(t, nil, "dump-restore", name, "--dbname", c.ConnString("copy4"), "--database", "shop", "--identity-file", identity, "--jobs", "2", "--temp-dir", tmp)
	if code != 4 || strings.Contains(stderr, "partial restore") {
		t.Fatalf("parallel dump-restore of a damaged dump: exit %d: %s", code, stderr)
	}
	if n := dumpPSQL(t, c, "copy4", "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"); n != "0" {
		t.Fatalf("the parallel restore of a damaged dump touched the database: %s relations", n)
	}
	damaged := filepath.Join(work, "damaged.dump")
	if code, _, stderr = tg.walvault(t, nil, "dump-fetch", name, damaged, "--identity-file", identity); code != 4 {
		t.Fatalf("dump-fetch of a damaged dump: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(damaged); err == nil {
		t.Fatal("dump-fetch of a damaged dump left the file")
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("--temp-dir not cleaned up after a failure: %v", ents)
	}
}

// BenchmarkDumpPush compares dump-push to a file:// store with
// `pg_dump -Fc | lz4 > file`, the cron script it replaces, on the same
// database (pgbench scale 20, about 300 MB).
func BenchmarkDumpPush(b *testing.B) {
	c := pgtest.New(b, pgtest.Options{})
	c.Start()
	c.Run("pgbench", "-i", "-q", "-s", "20")
	size := c.Psql("SELECT pg_database_size('postgres')")
	b.Logf("database size: %s bytes", size)
	work := pgtest.WorkDir(b)
	pgtest.Walvault(b) // built before the clock starts
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tg := newTarget(b, "file")
		start := time.Now()
		cmd := exec.Command(pgtest.Walvault(b), "dump-push", "postgres") // #nosec G204 -- the binary under test
		cmd.Env = append(append(os.Environ(), tg.Env...), c.PGEnv()...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("dump-push: %v\n%s", err, out)
		} else {
			b.Logf("%s", strings.TrimSpace(string(out)))
		}
		walvault := time.Since(start)

		b.ReportMetric(walvault.Seconds(), "s-dump-push")
		// As the cron script runs it (pg_dump's own zlib, then lz4), and
		// with the same work as dump-push (-Z0, lz4 only).
		for j, flags := range []string{"-Fc", "-Fc -Z0"} {
			file := filepath.Join(work, fmt.Sprintf("plain-%d-%d.dump.lz4", i, j))
			start = time.Now()
			sh := exec.Command("sh", "-c", fmt.Sprintf("%s %s | lz4 -q > %s", filepath.Join(c.Bin, "pg_dump"), flags, file)) // #nosec G204 -- test command
			sh.Env = append(os.Environ(), c.PGEnv()...)
			if out, err := sh.CombinedOutput(); err != nil {
				b.Fatalf("pg_dump | lz4: %v\n%s", err, out)
			}
			plain := time.Since(start)
			st, _ := os.Stat(file)
			b.Logf("dump-push %.2f s; pg_dump %s | lz4 %.2f s (%d bytes)", walvault.Seconds(), flags, plain.Seconds(), st.Size())
			b.ReportMetric(plain.Seconds(), "s-pg_dump"+strings.ReplaceAll(flags, " ", "")+"|lz4")
		}
	}
}

// dump-push --all as the nightly unit runs it: the globals (a role) and
// every database, each its own dump; the globals restore the role into a
// new cluster, each database restores there with --create; one database
// failing does not stop the others.
func TestDumpAll(t *testing.T) {
	tg := newTarget(t, "file")
	c := pgtest.New(t, pgtest.Options{})
	c.Start()
	c.Psql("CREATE ROLE shop_owner LOGIN")
	c.Psql("CREATE DATABASE alpha OWNER shop_owner")
	c.Psql("CREATE DATABASE beta")
	dumpPSQL(t, c, "alpha", "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 500) i; ALTER TABLE a OWNER TO shop_owner")
	dumpPSQL(t, c, "beta", "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 300)")
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	env := append(c.PGEnv(), "WALVAULT_RECIPIENT="+recipient)

	// DBNAME and --all, or neither: usage errors.
	for _, args := range [][]string{{"dump-push", "--all", "alpha"}, {"dump-push"}} {
		if code, _, stderr := tg.walvault(t, env, args...); code != 2 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}

	out := mustWalvault(t, tg, env, "dump-push", "--all")
	// The globals first, then alpha, beta, postgres by name (the
	// templates are left out).
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		names = append(names, dumpNameOf(t, l))
	}
	if len(names) != 4 || !strings.HasPrefix(names[0], "dumpall_") || !strings.HasSuffix(names[0], "_globals") ||
		!strings.HasSuffix(names[1], "_alpha") || !strings.HasSuffix(names[2], "_beta") || !strings.HasSuffix(names[3], "_postgres") {
		t.Fatalf("dump-push --all printed:\n%s", out)
	}
	var list []struct{ Name, Kind, Database string }
	if err := json.Unmarshal([]byte(mustWalvault(t, tg, nil, "dump-list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, d := range list {
		kinds[d.Kind+":"+d.Database] = d.Name
	}
	if len(list) != 4 || kinds["globals:"] != names[0] || kinds["database:alpha"] != names[1] || kinds["database:beta"] != names[2] {
		t.Fatalf("dump-list --json: %+v", list)
	}
	if table := mustWalvault(t, tg, nil, "dump-list"); !strings.Contains(table, "KIND") || !strings.Contains(table, "globals") {
		t.Fatalf("dump-list:\n%s", table)
	}

	// dump-fetch of the globals: the SQL file.
	sqlFile := filepath.Join(work, "globals.sql")
	mustWalvault(t, tg, nil, "dump-fetch", names[0], sqlFile, "--identity-file", identity)
	if b, err := os.ReadFile(sqlFile); err != nil || !strings.Contains(string(b), "CREATE ROLE shop_owner") {
		t.Fatalf("the fetched globals dump: %v\n%s", err, b)
	}

	// A new cluster: the globals create the role (CREATE ROLE postgres
	// fails there, a warning), then each database restores.
	c2 := pgtest.New(t, pgtest.Options{})
	c2.Start()
	code, stdout, stderr := tg.walvault(t, nil, "dump-restore", names[0], "--dbname", c2.ConnString("postgres"), "--identity-file", identity)
	if code != 0 || !strings.Contains(stderr, "warning") || !strings.Contains(stdout, "restored: globals") {
		t.Fatalf("dump-restore of the globals: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("dump-restore of the globals:\n%s%s", stdout, stderr)
	if got := c2.Psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'shop_owner'"); got != "t" {
		t.Fatalf("the role after the globals restore: %q", got)
	}
	if code, _, stderr := tg.walvault(t, nil, "dump-restore", names[0], "--dbname", c2.ConnString("postgres"), "--identity-file", identity, "--create"); code != 2 {
		t.Fatalf("dump-restore --create of a globals dump: exit %d: %s", code, stderr)
	}
	for _, n := range names[1:3] {
		mustWalvault(t, tg, nil, "dump-restore", n, "--dbname", c2.ConnString("postgres"), "--identity-file", identity, "--create")
	}
	if got := dumpPSQL(t, c2, "alpha", "SELECT count(*) || ':' || pg_get_userbyid(relowner) FROM a, pg_class WHERE relname = 'a' GROUP BY relowner"); got != "500:shop_owner" {
		t.Fatalf("alpha restored: %q", got)
	}
	if got := dumpPSQL(t, c2, "alpha", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'alpha'"); got != "shop_owner" {
		t.Fatalf("alpha's owner: %q", got)
	}
	if got := dumpPSQL(t, c2, "beta", "SELECT count(*) FROM b"); got != "300" {
		t.Fatalf("beta restored: %q", got)
	}

	// One database failing (a pg_dump that refuses beta): the others are
	// dumped, the failure is listed, exit 6.
	fake := filepath.Join(work, "fakebin")
	if err := os.Mkdir(fake, 0o755); err != nil { // #nosec G301 -- test scripts
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *beta*) echo 'pg_dump: error: beta refused by the test' >&2; exit 1;; esac\nexec %s \"$@\"\n",
		filepath.Join(c.Bin, "pg_dump"))
	if err := os.WriteFile(filepath.Join(fake, "pg_dump"), []byte(script), 0o755); err != nil { // #nosec G306 -- an executable test script
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(c.Bin, "pg_dumpall"), filepath.Join(fake, "pg_dumpall")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // new names
	code, stdout, stderr = tg.walvault(t, env, "dump-push", "--all", "--pg-bin-dir", fake)
	if code != 6 || !strings.Contains(stderr, "database beta failed") || !strings.Contains(stderr, "beta refused by the test") ||
		strings.Count(stdout, " complete: ") != 3 {
		t.Fatalf("dump-push --all with beta failing: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if list := listDumps(t, tg); len(list) != 7 {
		t.Fatalf("after a partly failed --all: %d dumps", len(list))
	}
}
