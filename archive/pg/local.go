package pg

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walvault/walvault/archive"
)

// A server walvault started itself (the drill's), reached on its private
// unix socket, and what walvault asks it: where replay got, its databases,
// a catalog-wide sanity query, amcheck.

// conninfo quotes a value for a libpq keyword/value string.
func conninfo(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// ConnectLocal connects to the server listening on the unix socket in
// sockDir, and to nothing else: whatever the PG* environment or a service
// file says, the host is that directory and there is no fallback. The
// session loads no per-session library the restored catalog asks for
// (per-role or per-database session_preload_libraries), runs without time
// limits, and resolves unqualified names in pg_catalog first.
func ConnectLocal(ctx context.Context, sockDir string, port int, user, db string) (*Server, error) {
	cc, err := localConfig(sockDir, port, user, db)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		if archive.IsContextErr(err) {
			return nil, err
		}
		// The server's error stays in the chain: SQLState tells a missing
		// role or database.
		return nil, fmt.Errorf("%w: connecting as %s to database %s: %w", archive.ErrPostgres, user, db, err)
	}
	s := &Server{conn: conn}
	if err := s.load(ctx); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return s, nil
}

// localConfig is ConnectLocal's connection: the socket, the role, the
// database, no password, no TLS, no fallback, the drill's session
// settings; nothing from the environment that could lead elsewhere.
func localConfig(sockDir string, port int, user, db string) (*pgx.ConnConfig, error) {
	if !filepath.IsAbs(sockDir) || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("%w: a local server is reached on a socket directory (an absolute path) and a port, not %q:%d", archive.ErrBadInput, sockDir, port)
	}
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=30",
		conninfo(sockDir), port, conninfo(user), conninfo(db)))
	if err != nil {
		return nil, fmt.Errorf("%w: connection settings: %w", archive.ErrBadInput, err)
	}
	cc.Password, cc.Fallbacks, cc.TLSConfig = "", nil, nil
	if cc.Host != sockDir || int(cc.Port) != port {
		return nil, fmt.Errorf("%w: the connection settings point at %s:%d, not at the socket in %s", archive.ErrBadInput, cc.Host, cc.Port, sockDir)
	}
	cc.RuntimeParams = map[string]string{
		"application_name":          "walvault drill",
		"search_path":               "pg_catalog, pg_temp",
		"session_preload_libraries": "",
		"local_preload_libraries":   "",
	}
	return cc, nil
}

// SQLState is the SQLSTATE of a server error, or "".
func SQLState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Message is a server error's severity and message on one line (with its
// detail), or the error's text.
func Message(err error) string {
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

// Database is one database of a cluster.
type Database struct {
	OID       uint32
	Name      string
	AllowConn bool
	Template  bool
	// Invalid: an interrupted DROP DATABASE left it (15.4+ mark it).
	Invalid bool
}

// ListDatabases lists the cluster's databases, by name, with what decides whether they take connections.
func (s *Server) ListDatabases(ctx context.Context) ([]Database, error) {
	rows, err := s.conn.Query(ctx, `SELECT oid::int8, datname, datallowconn, datistemplate, datconnlimit = -2 FROM pg_catalog.pg_database ORDER BY datname`)
	if err != nil {
		return nil, err
	}
	var out []Database
	for rows.Next() {
		var db Database
		var oid int64
		if err := rows.Scan(&oid, &db.Name, &db.AllowConn, &db.Template, &db.Invalid); err != nil {
			return nil, err
		}
		db.OID = uint32(oid) // #nosec G115 -- an OID
		out = append(out, db)
	}
	return out, rows.Err()
}

// Replay is where a server's recovery got.
type Replay struct {
	// LSN is the last WAL location replayed (after a promotion, where
	// recovery ended); 0 when the server never was in recovery.
	LSN archive.LSN
	// Timeline is the server's timeline now (after a promotion, the new
	// one; in recovery, the last restartpoint's).
	Timeline   uint32
	InRecovery bool
	// Paused: recovery is paused (at its target, or for another reason
	// the server log gives).
	Paused bool
}

// ReplayState reads where recovery got.
func (s *Server) ReplayState(ctx context.Context) (Replay, error) {
	var r Replay
	var lsn string
	var tl int64
	err := s.conn.QueryRow(ctx, `SELECT coalesce(pg_catalog.pg_last_wal_replay_lsn()::text, ''), pg_catalog.pg_is_in_recovery(),
		(SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())::int8`).Scan(&lsn, &r.InRecovery, &tl)
	if err != nil {
		return r, err
	}
	r.Timeline = uint32(tl) // #nosec G115 -- a timeline
	if r.InRecovery {
		paused := "pg_catalog.pg_is_wal_replay_paused()"
		if s.Version >= 140000 {
			paused = "pg_catalog.pg_get_wal_replay_pause_state() = 'paused'"
		}
		if err := s.conn.QueryRow(ctx, `SELECT `+paused).Scan(&r.Paused); err != nil {
			return r, err
		}
	}
	if lsn != "" {
		if r.LSN, err = archive.ParseLSN(lsn); err != nil {
			return r, err
		}
	}
	return r, nil
}

// CatalogFigures is a database as its catalog describes it.
type CatalogFigures struct {
	Tables, UserTables int64
	// RelationBytes is the size of the files of its own relations (all
	// forks; shared catalogs, which live in global/, left out).
	RelationBytes int64
	// Missing counts the permanent relations whose main file is not on
	// disk; FirstMissing names one.
	Missing      int64
	FirstMissing string
}

// catalogSQL counts a database's tables and sums its relations' files,
// from the catalog, and counts the relations whose main file the catalog
// lists but the disk lacks. Temporary relations are left out (their files
// go at start-up), and so are unlogged ones from the missing count (a
// server in recovery has only their init fork).
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

// Catalog runs the catalog-wide sanity query in the session's database
// (pg_stat_file needs a superuser).
func (s *Server) Catalog(ctx context.Context) (CatalogFigures, error) {
	var f CatalogFigures
	err := s.conn.QueryRow(ctx, catalogSQL).Scan(&f.Tables, &f.UserTables, &f.RelationBytes, &f.Missing, &f.FirstMissing)
	return f, err
}

// AmcheckResult is what amcheck found in one database.
type AmcheckResult struct {
	// Skipped says why nothing was checked ("" when something was).
	Skipped string
	Indexes int
	// Tables is the number checked with verify_heapam (-1: that function
	// is missing, amcheck older than PostgreSQL 14's).
	Tables int
	// Damaged counts the relations that failed; First says how.
	Damaged int
	First   string
}

// amcheckSchema is where walvault creates amcheck when a database lacks
// it, and drops it again.
const amcheckSchema = "walvault_drill_amcheck"

// Amcheck checks every valid B-tree index of the session's database with
// bt_index_check and, with heap, every table with verify_heapam (and its
// TOAST table). It uses the amcheck extension installed in the database,
// else creates it in a schema of its own and drops it afterwards, when
// install allows (a server in recovery is read-only). A damaged relation
// is counted, not returned as an error; the error is for what stops the
// check itself.
func (s *Server) Amcheck(ctx context.Context, heap, install bool) (AmcheckResult, error) {
	var res AmcheckResult
	var schema string
	err := s.conn.QueryRow(ctx, `SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'`).Scan(&schema)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		var avail bool
		if err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'amcheck')`).Scan(&avail); err != nil {
			return res, fmt.Errorf("listing the available extensions: %w", err)
		}
		if !avail {
			res.Skipped = "the server has no amcheck extension (install PostgreSQL's contrib modules)"
			return res, nil
		}
		if !install {
			res.Skipped = "amcheck is not installed in this database, and the server in recovery is read-only"
			return res, nil
		}
		schema = amcheckSchema
		if _, err := s.conn.Exec(ctx, `CREATE SCHEMA `+amcheckSchema+`; CREATE EXTENSION amcheck SCHEMA `+amcheckSchema); err != nil {
			return res, fmt.Errorf("creating the amcheck extension: %w", err)
		}
		defer func() { _, _ = s.conn.Exec(context.WithoutCancel(ctx), `DROP SCHEMA `+amcheckSchema+` CASCADE`) }()
	case err != nil:
		return res, fmt.Errorf("looking for the amcheck extension: %w", err)
	}
	ns := pgx.Identifier{schema}.Sanitize()
	n, bad, first, err := s.checkEach(ctx,
		`SELECT c.oid::int8, n.nspname || '.' || c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
		 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_am a ON a.oid = c.relam
		 WHERE a.amname = 'btree' AND c.relpersistence = 'p' AND i.indisvalid AND i.indisready ORDER BY c.oid`,
		`SELECT NULL::pg_catalog.text FROM `+ns+`.bt_index_check($1::pg_catalog.oid::pg_catalog.regclass)`, "index")
	if err != nil {
		return res, fmt.Errorf("checking the B-tree indexes: %w", err)
	}
	res.Indexes, res.Damaged, res.First = n, bad, first
	if !heap {
		return res, nil
	}
	var has bool
	if err := s.conn.QueryRow(ctx, `SELECT pg_catalog.to_regproc($1) IS NOT NULL`, ns+".verify_heapam").Scan(&has); err != nil || !has {
		res.Tables = -1
		return res, nil
	}
	n, bad, first, err = s.checkEach(ctx,
		`SELECT c.oid::int8, n.nspname || '.' || c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind IN ('r','m') AND c.relpersistence = 'p' ORDER BY c.oid`,
		`SELECT CASE WHEN count(*) = 0 THEN NULL ELSE pg_catalog.min(coalesce(msg, '')) END FROM `+ns+`.verify_heapam($1::pg_catalog.oid::pg_catalog.regclass, on_error_stop => true, check_toast => true)`, "table")
	if err != nil {
		return res, fmt.Errorf("checking the tables: %w", err)
	}
	res.Tables, res.Damaged = n, res.Damaged+bad
	if res.First == "" {
		res.First = first
	}
	return res, nil
}

// checkEach runs check on every relation list returns (OID, name), one
// statement each; a relation fails when check raises an error or returns
// a text. It returns how many were checked, how many failed, and the
// first failure.
func (s *Server) checkEach(ctx context.Context, list, check, kind string) (n, bad int, first string, err error) {
	rows, err := s.conn.Query(ctx, list)
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
		err := s.conn.QueryRow(ctx, check, r.oid).Scan(&msg)
		if ctx.Err() != nil {
			return n, bad, first, ctx.Err()
		}
		switch {
		case SQLState(err) == "42P01": // gone meanwhile
			continue
		case err != nil:
			bad++
			if first == "" {
				first = fmt.Sprintf("%s %s: %s", kind, r.name, Message(err))
			}
		case msg != nil:
			bad++
			if first == "" {
				first = fmt.Sprintf("%s %s: %s", kind, r.name, archive.OneLine(*msg))
			}
		}
		n++
	}
	return n, bad, first, nil
}
