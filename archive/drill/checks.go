package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/drillrecord"
)

// Amcheck modes.
const (
	AmcheckOff   = ""
	AmcheckBtree = "btree"
	AmcheckHeap  = "heap"
)

// conninfo quotes a value for a libpq keyword/value string.
func conninfo(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// connect opens a session on the drill's server, and on nothing else: the
// socket directory is the drill's own, whatever the PG* environment says.
// The session runs without time limits, loads no per-session library the
// backup's catalog asks for, and resolves names in pg_catalog first.
func (d *drill) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=30",
		conninfo(d.sock), serverPort, conninfo(d.role), conninfo(db)))
	if err != nil {
		return nil, fmt.Errorf("%w: connection settings: %w", archive.ErrBadInput, err)
	}
	cc.Password, cc.Fallbacks, cc.TLSConfig = "", nil, nil
	if cc.Host != d.sock || cc.Port != serverPort {
		return nil, fmt.Errorf("the drill's connection settings point at %s:%d, not at its own socket %s", cc.Host, cc.Port, d.sock)
	}
	cc.RuntimeParams = map[string]string{
		"application_name":                    "walvault drill",
		"search_path":                         "pg_catalog, pg_temp",
		"session_preload_libraries":           "",
		"local_preload_libraries":             "",
		"statement_timeout":                   "0",
		"lock_timeout":                        "0",
		"idle_in_transaction_session_timeout": "0",
	}
	return pgx.ConnectConfig(ctx, cc)
}

// sqlState is the SQLSTATE of a server error, or "".
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// errText is a server error's message on one line.
func errText(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		s := pe.Severity + ": " + pe.Message
		if pe.Detail != "" {
			s += " (" + pe.Detail + ")"
		}
		return archive.OneLine(s)
	}
	return archive.OneLine(err.Error())
}

// findRole finds the role and database the drill connects with: the given
// role, else the server's user and then postgres; the database postgres,
// else template1.
func (d *drill) findRole(ctx context.Context, want string) error {
	roles := []string{want}
	if want == "" {
		roles = []string{d.acct.Name}
		if d.acct.Name != "postgres" {
			roles = append(roles, "postgres")
		}
	}
	var last error
	for _, role := range roles {
		for _, db := range []string{"postgres", "template1"} {
			d.role = role
			conn, err := d.connect(ctx, db)
			if err == nil {
				_ = conn.Close(ctx)
				d.maintDB = db
				return nil
			}
			last = err
			if ctx.Err() != nil {
				return ctx.Err()
			}
			switch sqlState(err) {
			case "3D000": // no such database: try the next
				continue
			case "28000", "28P01": // no such role
			default:
				return fmt.Errorf("connecting as %s to database %s: %s", role, db, errText(err))
			}
			break
		}
	}
	return fmt.Errorf("no role to connect as (tried %s): %s; give --db-user with the cluster's superuser", strings.Join(roles, ", "), errText(last))
}

// database is one database of the restored cluster.
type database struct {
	oid       uint32
	name      string
	allowConn bool
	template  bool
	invalid   bool // an interrupted DROP DATABASE left it (15.4+)
}

func (d *drill) databases(ctx context.Context) ([]database, error) {
	conn, err := d.connect(ctx, d.maintDB)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, `SELECT oid::int8, datname, datallowconn, datistemplate, datconnlimit = -2 FROM pg_catalog.pg_database ORDER BY datname`)
	if err != nil {
		return nil, err
	}
	var out []database
	for rows.Next() {
		var db database
		var oid int64
		if err := rows.Scan(&oid, &db.name, &db.allowConn, &db.template, &db.invalid); err != nil {
			return nil, err
		}
		db.oid = uint32(oid) // #nosec G115 -- an OID
		out = append(out, db)
	}
	return out, rows.Err()
}

// replayState reads where recovery got: the last LSN replayed, and the
// timeline the server is on now (after a promotion, the new one).
func (d *drill) replayState(ctx context.Context) (lsn archive.LSN, tli uint32, paused bool, err error) {
	conn, err := d.connect(ctx, d.maintDB)
	if err != nil {
		return 0, 0, false, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	pausedExpr := "pg_catalog.pg_is_wal_replay_paused()"
	if d.version >= 140000 {
		pausedExpr = "pg_catalog.pg_get_wal_replay_pause_state() = 'paused'"
	}
	var s string
	var inRecovery bool
	var tl int64
	err = conn.QueryRow(ctx, `SELECT coalesce(pg_catalog.pg_last_wal_replay_lsn()::text, ''), pg_catalog.pg_is_in_recovery(),
		(SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())::int8`).Scan(&s, &inRecovery, &tl)
	if err != nil {
		return 0, 0, false, err
	}
	if inRecovery {
		if err := conn.QueryRow(ctx, `SELECT `+pausedExpr).Scan(&paused); err != nil {
			return 0, 0, false, err
		}
	}
	if s != "" {
		if lsn, err = archive.ParseLSN(s); err != nil {
			return 0, 0, false, err
		}
	}
	return lsn, uint32(tl), paused, nil // #nosec G115 -- a timeline
}

// catalogFigures is the sanity query's answer in one database.
type catalogFigures struct {
	tables, userTables int64
	relBytes           int64
	missing            int64
	firstMissing       string
}

// catalogSQL counts a database's tables and sums its relations' files,
// from the catalog, and counts the relations whose main file the catalog
// lists but the disk lacks. Shared catalogs are counted in no database's
// size (they live in global/), but their files must be there too.
// Temporary relations are left out (their files go at start-up), and so is
// the size of unlogged ones (a restart makes them empty).
const catalogSQL = `
SELECT count(*) FILTER (WHERE c.relkind IN ('r','p')),
       count(*) FILTER (WHERE c.relkind IN ('r','p') AND n.nspname <> 'information_schema' AND pg_catalog.left(n.nspname, 3) <> 'pg_'),
       coalesce(sum(pg_catalog.pg_relation_size(c.oid, 'main') + pg_catalog.pg_relation_size(c.oid, 'fsm')
                  + pg_catalog.pg_relation_size(c.oid, 'vm') + pg_catalog.pg_relation_size(c.oid, 'init'))
                FILTER (WHERE c.relkind IN ('r','i','S','t','m') AND NOT c.relisshared), 0)::int8,
       count(*) FILTER (WHERE c.relkind IN ('r','i','S','t','m') AND c.relpersistence = 'p'
                AND (pg_catalog.pg_stat_file(pg_catalog.pg_relation_filepath(c.oid), true)).size IS NULL),
       coalesce(min(n.nspname || '.' || c.relname) FILTER (WHERE c.relkind IN ('r','i','S','t','m') AND c.relpersistence = 'p'
                AND (pg_catalog.pg_stat_file(pg_catalog.pg_relation_filepath(c.oid), true)).size IS NULL), '')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence <> 't'`

func (d *drill) catalog(ctx context.Context, conn *pgx.Conn) (catalogFigures, error) {
	var f catalogFigures
	err := conn.QueryRow(ctx, catalogSQL).Scan(&f.tables, &f.userTables, &f.relBytes, &f.missing, &f.firstMissing)
	return f, err
}

// amcheckIn checks every B-tree index of the database (and with heap,
// every table) with the amcheck extension: the one installed there, else
// one the drill creates in a schema of its own and drops again (a
// promoted server only: a paused one is read-only).
func (d *drill) amcheckIn(ctx context.Context, conn *pgx.Conn) drillrecord.Check {
	c := drillrecord.Check{Name: "amcheck"}
	var schema string
	err := conn.QueryRow(ctx, `SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'`).Scan(&schema)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		var avail bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'amcheck')`).Scan(&avail); err != nil {
			return fail(c, "listing the available extensions: "+errText(err))
		}
		if !avail {
			c.Result, c.Detail = drillrecord.Skip, "the server has no amcheck extension (install PostgreSQL's contrib modules)"
			return c
		}
		if d.paused {
			c.Result, c.Detail = drillrecord.Skip, "amcheck is not installed in this database, and the server paused at the target is read-only"
			return c
		}
		schema = "walvault_drill_amcheck"
		if _, err := conn.Exec(ctx, `CREATE SCHEMA walvault_drill_amcheck; CREATE EXTENSION amcheck SCHEMA walvault_drill_amcheck`); err != nil {
			return fail(c, "creating the amcheck extension: "+errText(err))
		}
		defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `DROP SCHEMA walvault_drill_amcheck CASCADE`) }()
	case err != nil:
		return fail(c, "looking for the amcheck extension: "+errText(err))
	}
	ns := pgx.Identifier{schema}.Sanitize()
	indexes, bad, first, err := d.checkEach(ctx, conn,
		`SELECT c.oid::int8, n.nspname || '.' || c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
		 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_am a ON a.oid = c.relam
		 WHERE a.amname = 'btree' AND c.relpersistence = 'p' AND i.indisvalid AND i.indisready ORDER BY c.oid`,
		`SELECT NULL::pg_catalog.text FROM `+ns+`.bt_index_check($1::pg_catalog.oid::pg_catalog.regclass)`, "index")
	if err != nil {
		return fail(c, "listing the B-tree indexes: "+errText(err))
	}
	what := fmt.Sprintf("%d B-tree indexes", indexes)
	if d.amcheck == AmcheckHeap {
		var has bool
		if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regproc($1) IS NOT NULL`, ns+".verify_heapam").Scan(&has); err != nil || !has {
			what += " (no verify_heapam: amcheck is older than PostgreSQL 14's)"
		} else {
			tables, tbad, tfirst, err := d.checkEach(ctx, conn,
				`SELECT c.oid::int8, n.nspname || '.' || c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
				 WHERE c.relkind IN ('r','m') AND c.relpersistence = 'p' ORDER BY c.oid`,
				`SELECT CASE WHEN count(*) = 0 THEN NULL ELSE pg_catalog.min(coalesce(msg, '')) END FROM `+ns+`.verify_heapam($1::pg_catalog.oid::pg_catalog.regclass, on_error_stop => true, check_toast => true)`, "table")
			if err != nil {
				return fail(c, "listing the tables: "+errText(err))
			}
			what += fmt.Sprintf(" and %d tables (verify_heapam)", tables)
			bad += tbad
			if first == "" {
				first = tfirst
			}
		}
	}
	if bad > 0 {
		return fail(c, fmt.Sprintf("%d of %s are damaged: %s", bad, what, first))
	}
	c.Result, c.Detail = drillrecord.OK, what+" checked, no corruption"
	return c
}

// checkEach runs check on every relation list returns (OID, name); check
// fails by raising an error or by returning a non-NULL text. It returns
// how many were checked, how many failed, and the first failure.
func (d *drill) checkEach(ctx context.Context, conn *pgx.Conn, list, check, kind string) (n, bad int, first string, err error) {
	rows, err := conn.Query(ctx, list)
	if err != nil {
		return 0, 0, "", err
	}
	type rel struct {
		oid  int64
		name string
	}
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.oid, &r.name); err != nil {
			return 0, 0, "", err
		}
		rels = append(rels, r)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, "", err
	}
	for _, r := range rels {
		var msg *string
		err := conn.QueryRow(ctx, check, r.oid).Scan(&msg)
		if ctx.Err() != nil {
			return n, bad, first, ctx.Err()
		}
		n++
		switch {
		case sqlState(err) == "42P01": // dropped meanwhile (none should be)
			n--
		case err != nil:
			bad++
			if first == "" {
				first = fmt.Sprintf("%s %s: %s", kind, r.name, errText(err))
			}
		case msg != nil:
			bad++
			if first == "" {
				first = fmt.Sprintf("%s %s: %s", kind, r.name, archive.OneLine(*msg))
			}
		}
	}
	return n, bad, first, nil
}

func fail(c drillrecord.Check, detail string) drillrecord.Check {
	c.Result, c.Detail = drillrecord.Fail, detail
	return c
}

// psqlEnv is the environment psql runs with: none of the caller's PG*
// settings (a PGHOSTADDR or PGSERVICE could point elsewhere), only the
// drill's socket, role and database.
func (d *drill) psqlEnv(db string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGHOST="+d.sock, "PGPORT="+strconv.Itoa(serverPort), "PGUSER="+d.role, "PGDATABASE="+db,
		"PGSSLMODE=disable", "PGAPPNAME=walvault drill", "PGCONNECT_TIMEOUT=30",
		"PGOPTIONS=-c session_preload_libraries= -c local_preload_libraries=")
}

// maxSQLOutput bounds what is kept of psql's output.
const maxSQLOutput = 64 << 10

// runSQL runs the user's SQL file in db with psql, stopping at the first
// error. psql runs as the server's user and reads the file from its
// standard input, opened by the drill.
func (d *drill) runSQL(ctx context.Context, db string) drillrecord.Check {
	c := drillrecord.Check{Name: "sql", Database: db}
	f, err := os.Open(d.opts.SQLFile)
	if err != nil {
		return fail(c, fmt.Sprintf("--sql %s: %v", d.opts.SQLFile, err))
	}
	defer func() { _ = f.Close() }()
	cmd := exec.CommandContext(ctx, d.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-") // #nosec G204 -- psql, with the operator's SQL file on stdin
	cmd.Env = d.psqlEnv(db)
	cmd.Stdin = f
	var out bytes.Buffer
	cmd.Stdout = &capped{w: &out, n: maxSQLOutput}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = d.childAttr()
	err = cmd.Run()
	text := strings.ReplaceAll(out.String(), "<stdin>", filepath.Base(d.opts.SQLFile))
	if ctx.Err() != nil {
		return fail(c, "stopped")
	}
	if err != nil {
		return fail(c, fmt.Sprintf("%s failed (%v): %s", filepath.Base(d.opts.SQLFile), err, errorLines(text)))
	}
	c.Result, c.Detail = drillrecord.OK, filepath.Base(d.opts.SQLFile)+" ran without error"
	return c
}

// errorLines picks psql's error lines from its output.
func errorLines(text string) string {
	var keep []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "ERROR:") || strings.Contains(l, "FATAL:") || strings.Contains(l, "error:") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		lines := strings.Split(strings.TrimSpace(text), "\n")
		keep = lines[max(0, len(lines)-3):]
	}
	return archive.OneLine(strings.Join(keep, " / "))
}

// capped keeps the first n bytes written to it and drops the rest.
type capped struct {
	w io.Writer
	n int
}

func (c *capped) Write(p []byte) (int, error) {
	if c.n > 0 {
		k := min(len(p), c.n)
		_, _ = c.w.Write(p[:k])
		c.n -= k
	}
	return len(p), nil
}

// timed runs f and fills in how long it took.
func timed(f func() drillrecord.Check) drillrecord.Check {
	began := time.Now()
	c := f()
	c.Seconds = time.Since(began).Seconds()
	return c
}
