// Package pg is the PostgreSQL server as walvault's commands see it: one
// pgx connection, the settings a backup and check read, the backup API,
// pg_stat_archiver, and the control data on disk. It knows nothing of the
// bucket.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walvault/walvault/archive"
)

// Server is one connection to PostgreSQL and what walvault read about the
// server on connecting. A backup holds it from pg_backup_start to
// pg_backup_stop: the non-exclusive backup API ties the backup to the
// session, and PostgreSQL aborts it if the connection drops.
type Server struct {
	conn          *pgx.Conn
	Version       int // server_version_num
	VersionString string
	SystemID      uint64
	SegSize       int64
	CatVersion    uint32
	InRecovery    bool
	ArchiveMode   string
	ArchiveCmd    string // archive_command, or "library:<name>" when archive_library is set
}

// Err tags a PostgreSQL failure for the exit code and keeps the server's
// message on one line.
func Err(what string, err error) error {
	if archive.IsContextErr(err) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s: %s (SQLSTATE %s)", archive.ErrPostgres, what, pe.Message, pe.Code)
	}
	return fmt.Errorf("%w: %s: %w", archive.ErrPostgres, what, err)
}

// Connect connects with dsn, or with the libpq environment (PGHOST,
// PGPORT, PGUSER, PGDATABASE, ...) when dsn is empty, as application app
// (unless dsn names one), within timeout when dsn sets none (0: pgx's
// default), and reads what the commands need to know about the server.
func Connect(ctx context.Context, dsn, app string, timeout time.Duration) (*Server, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: connection settings: %w", archive.ErrBadInput, err)
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = app
	}
	if cc.ConnectTimeout == 0 && timeout > 0 {
		cc.ConnectTimeout = timeout
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, Err(fmt.Sprintf("connecting to %s:%d as %s", cc.Host, cc.Port, cc.User), err)
	}
	s := &Server{conn: conn}
	if err := s.load(ctx); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return s, nil
}

// Close ends the session (and with it a backup still in progress).
func (s *Server) Close() {
	if s.conn != nil {
		_ = s.conn.Close(context.Background())
	}
}

func (s *Server) load(ctx context.Context) error {
	var sysid, catver, lib string
	err := s.conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int,
		current_setting('server_version'),
		(SELECT system_identifier::text FROM pg_control_system()),
		(SELECT catalog_version_no::text FROM pg_control_system()),
		pg_size_bytes(current_setting('wal_segment_size')),
		pg_is_in_recovery(),
		current_setting('archive_mode'),
		current_setting('archive_command'),
		coalesce(current_setting('archive_library', true), '')`).Scan(
		&s.Version, &s.VersionString, &sysid, &catver, &s.SegSize, &s.InRecovery, &s.ArchiveMode, &s.ArchiveCmd, &lib)
	if err != nil {
		return Err("reading server settings", err)
	}
	if s.Version < 100000 {
		return fmt.Errorf("%w: PostgreSQL %s is not supported: walvault needs 10 or later", archive.ErrPostgres, s.VersionString)
	}
	if s.SystemID, err = strconv.ParseUint(sysid, 10, 64); err != nil {
		return fmt.Errorf("%w: system identifier %q", archive.ErrPostgres, sysid)
	}
	cv, err := strconv.ParseUint(catver, 10, 32)
	if err != nil {
		return fmt.Errorf("%w: catalog version %q", archive.ErrPostgres, catver)
	}
	s.CatVersion = uint32(cv)
	if lib != "" {
		s.ArchiveCmd = "library:" + lib
	}
	// A backup can take hours on an otherwise idle session: make sure no
	// server-side timeout ends it (SET would fail on settings older
	// versions lack, set_config over pg_settings does not).
	_, err = s.conn.Exec(ctx, `SELECT set_config(name, '0', false) FROM pg_settings
		WHERE name IN ('statement_timeout', 'idle_session_timeout', 'idle_in_transaction_session_timeout', 'lock_timeout')`)
	if err != nil {
		return Err("clearing session timeouts", err)
	}
	return nil
}

// CheckArchiving refuses to start a backup that could never be restored:
// without WAL archiving the WAL written during the backup is lost.
func (s *Server) CheckArchiving() error {
	switch {
	case s.InRecovery:
		// A standby's own archive_mode and archive_command matter only
		// with archive_mode = always; otherwise the primary's
		// archive_command stores the WAL a backup taken here needs, which
		// backup-push waits for (and names when it does not come).
		return nil
	case s.ArchiveMode == "off":
		return fmt.Errorf("%w: archive_mode is off, so the WAL a restore needs would never reach the store: set archive_mode = on and archive_command = 'walvault wal-push %%p', then restart PostgreSQL", archive.ErrPostgres)
	case strings.TrimSpace(s.ArchiveCmd) == "":
		return fmt.Errorf("%w: archive_command is empty: set archive_command = 'walvault wal-push %%p'", archive.ErrPostgres)
	}
	return nil
}

// DataDirectory asks the server where its data directory is (superusers
// and members of pg_read_all_settings may see it).
func (s *Server) DataDirectory(ctx context.Context) (string, error) {
	var dir string
	if err := s.conn.QueryRow(ctx, `SELECT current_setting('data_directory')`).Scan(&dir); err != nil {
		return "", Err("reading data_directory (give --pgdata or PGDATA if this role may not see it)", err)
	}
	return dir, nil
}

// Tablespaces names the server's tablespaces by OID.
func (s *Server) Tablespaces(ctx context.Context) (map[uint32]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT oid::int8, spcname FROM pg_tablespace`)
	if err != nil {
		return nil, Err("listing tablespaces", err)
	}
	out := map[uint32]string{}
	for rows.Next() {
		var oid int64
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return nil, Err("listing tablespaces", err)
		}
		out[uint32(oid)] = name // #nosec G115 -- OIDs are 32 bits
	}
	return out, errOrNil("listing tablespaces", rows.Err())
}

// Databases names the server's databases by OID.
func (s *Server) Databases(ctx context.Context) (map[uint32]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT oid::int8, datname FROM pg_database`)
	if err != nil {
		return nil, Err("listing databases", err)
	}
	out := map[uint32]string{}
	for rows.Next() {
		var oid int64
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return nil, Err("listing databases", err)
		}
		out[uint32(oid)] = name // #nosec G115 -- OIDs are 32 bits
	}
	return out, errOrNil("listing databases", rows.Err())
}

func errOrNil(what string, err error) error {
	if err == nil {
		return nil
	}
	return Err(what, err)
}

// StartBackup enters non-exclusive backup mode and returns the start LSN.
func (s *Server) StartBackup(ctx context.Context, label string, fast bool) (archive.LSN, error) {
	q := `SELECT pg_backup_start($1, $2)::text`
	if s.Version < 150000 {
		q = `SELECT pg_start_backup($1, $2, false)::text`
	}
	var lsn string
	if err := s.conn.QueryRow(ctx, q, label, fast).Scan(&lsn); err != nil {
		return 0, Err("starting the backup", err)
	}
	return archive.ParseLSN(lsn)
}

// StopResult is what the stop call hands back: the files that must be in
// the backup for recovery to start at the right place.
type StopResult struct {
	LSN           archive.LSN
	Label         string
	TablespaceMap string
	NextXID       uint64
}

// StopBackup leaves backup mode without waiting for archiving: walvault
// waits itself, with a timeout, checking the store rather than trusting
// that archive_command points at it.
func (s *Server) StopBackup(ctx context.Context) (StopResult, error) {
	q := `SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(false)`
	if s.Version < 150000 {
		q = `SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_stop_backup(false, false)`
	}
	var r StopResult
	var lsn string
	if err := s.conn.QueryRow(ctx, q).Scan(&lsn, &r.Label, &r.TablespaceMap); err != nil {
		return r, Err("stopping the backup", err)
	}
	var err error
	if r.LSN, err = archive.ParseLSN(lsn); err != nil {
		return r, fmt.Errorf("%w: stop LSN: %w", archive.ErrPostgres, err)
	}
	var xid string
	if err := s.conn.QueryRow(ctx, `SELECT txid_snapshot_xmax(txid_current_snapshot())::text`).Scan(&xid); err == nil {
		r.NextXID, _ = strconv.ParseUint(xid, 10, 64)
	}
	return r, nil
}

// ArchiverStatus is pg_stat_archiver, for telling the user why WAL does
// not arrive.
type ArchiverStatus struct {
	LastArchived     string
	LastArchivedTime time.Time
	Failed           int64
	LastFailed       string
	LastFailedTime   time.Time
}

// Archiver reads pg_stat_archiver.
func (s *Server) Archiver(ctx context.Context) (ArchiverStatus, error) {
	var a ArchiverStatus
	var at, ft *time.Time
	err := s.conn.QueryRow(ctx, `SELECT coalesce(last_archived_wal, ''), last_archived_time, failed_count,
		coalesce(last_failed_wal, ''), last_failed_time FROM pg_stat_archiver`).Scan(
		&a.LastArchived, &at, &a.Failed, &a.LastFailed, &ft)
	if err != nil {
		return a, Err("reading pg_stat_archiver", err)
	}
	if at != nil {
		a.LastArchivedTime = *at
	}
	if ft != nil {
		a.LastFailedTime = *ft
	}
	return a, nil
}

// Failing says whether the archiver's latest attempt failed.
func (a ArchiverStatus) Failing() bool {
	return a.LastFailed != "" && !a.LastFailedTime.Before(a.LastArchivedTime)
}

func (a ArchiverStatus) String() string {
	if a.LastFailed == "" {
		last := a.LastArchived
		if last == "" {
			last = "nothing yet"
		}
		return fmt.Sprintf("pg_stat_archiver: no failures, last archived %s", last)
	}
	return fmt.Sprintf("pg_stat_archiver: %d failures, last for %s at %s (last archived: %s): see the PostgreSQL log for archive_command's error",
		a.Failed, a.LastFailed, a.LastFailedTime.UTC().Format(time.RFC3339), archive.OrNone(a.LastArchived))
}

// TimelineOfLabel reads the timeline from backup_label's START WAL
// LOCATION line, which every supported version writes.
func TimelineOfLabel(label string) (uint32, error) {
	for _, line := range strings.Split(label, "\n") {
		rest, ok := strings.CutPrefix(line, "START WAL LOCATION: ")
		if !ok {
			continue
		}
		_, file, ok := strings.Cut(rest, "(file ")
		if ok && len(file) >= 24 {
			if wf, err := archive.ParseWALName(file[:24]); err == nil {
				return wf.Timeline, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: backup_label has no START WAL LOCATION line", archive.ErrPostgres)
}

// CurrentTimeline is the timeline the server writes (or, on a standby,
// replays) now.
func (s *Server) CurrentTimeline(ctx context.Context) (uint32, error) {
	q := `SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)`
	if s.InRecovery {
		q = `SELECT lpad(to_hex(timeline_id), 8, '0') FROM pg_control_checkpoint()`
	}
	var hexTLI string
	if err := s.conn.QueryRow(ctx, q).Scan(&hexTLI); err != nil {
		return 0, Err("reading the current timeline", err)
	}
	v, err := strconv.ParseUint(hexTLI, 16, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: timeline %q", archive.ErrPostgres, hexTLI)
	}
	return uint32(v), nil
}

// WALLevel is the server's wal_level.
func (s *Server) WALLevel(ctx context.Context) (string, error) {
	var v string
	if err := s.conn.QueryRow(ctx, `SELECT current_setting('wal_level')`).Scan(&v); err != nil {
		return "", Err("reading wal_level", err)
	}
	return v, nil
}

// ConfiguredArchiveCommand is archive_command as the configuration files
// set it: PostgreSQL hides the setting while archive_mode is off.
func (s *Server) ConfiguredArchiveCommand(ctx context.Context) (string, error) {
	var cmd string
	err := s.conn.QueryRow(ctx, `SELECT setting FROM pg_file_settings WHERE name = 'archive_command' AND error IS NULL ORDER BY seqno DESC LIMIT 1`).Scan(&cmd)
	return cmd, err
}

// SwitchSegment writes a record (a restore point named for walvault check),
// so there is something to finish, then makes the server finish its
// segment, and names it.
func (s *Server) SwitchSegment(ctx context.Context) (string, error) {
	_, _ = s.conn.Exec(ctx, `SELECT pg_create_restore_point('walvault_check')`)
	var seg string
	if err := s.conn.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&seg); err != nil {
		return "", Err("pg_switch_wal()", err)
	}
	return seg, nil
}

// Postmaster is what identifies the running server on its machine.
type Postmaster struct {
	DataDirectory string
	Port          string
	Started       int64 // Unix seconds
}

// Postmaster reads where the server runs from and since when.
func (s *Server) Postmaster(ctx context.Context) (Postmaster, error) {
	var p Postmaster
	err := s.conn.QueryRow(ctx, `SELECT current_setting('data_directory'), current_setting('port'),
		extract(epoch FROM pg_postmaster_start_time())::bigint`).Scan(&p.DataDirectory, &p.Port, &p.Started)
	return p, err
}
