package archive

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgServer is the one connection a backup holds from pg_backup_start to
// pg_backup_stop: the non-exclusive backup API ties the backup to the
// session, and PostgreSQL aborts it if the connection drops.
type pgServer struct {
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

// pgErr tags a PostgreSQL failure for the exit code and keeps the server's
// message on one line.
func pgErr(what string, err error) error {
	if isContextErr(err) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s: %s (SQLSTATE %s)", ErrPostgres, what, pe.Message, pe.Code)
	}
	return fmt.Errorf("%w: %s: %w", ErrPostgres, what, err)
}

// connectPG connects with dsn, or with the libpq environment (PGHOST,
// PGPORT, PGUSER, PGDATABASE, ...) when dsn is empty, and reads what a
// backup needs to know about the server.
func connectPG(ctx context.Context, dsn string) (*pgServer, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: connection settings: %w", ErrBadInput, err)
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "walvault backup-push"
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, pgErr(fmt.Sprintf("connecting to %s:%d as %s", cc.Host, cc.Port, cc.User), err)
	}
	s := &pgServer{conn: conn}
	if err := s.load(ctx); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return s, nil
}

func (s *pgServer) Close() {
	if s.conn != nil {
		_ = s.conn.Close(context.Background())
	}
}

func (s *pgServer) load(ctx context.Context) error {
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
		return pgErr("reading server settings", err)
	}
	if s.Version < 100000 {
		return fmt.Errorf("%w: PostgreSQL %s is not supported: walvault needs 10 or later", ErrPostgres, s.VersionString)
	}
	if s.SystemID, err = strconv.ParseUint(sysid, 10, 64); err != nil {
		return fmt.Errorf("%w: system identifier %q", ErrPostgres, sysid)
	}
	cv, err := strconv.ParseUint(catver, 10, 32)
	if err != nil {
		return fmt.Errorf("%w: catalog version %q", ErrPostgres, catver)
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
		return pgErr("clearing session timeouts", err)
	}
	return nil
}

// checkArchiving refuses to start a backup that could never be restored:
// without WAL archiving the WAL written during the backup is lost.
func (s *pgServer) checkArchiving() error {
	switch {
	case s.ArchiveMode == "off":
		return fmt.Errorf("%w: archive_mode is off, so the WAL a restore needs would never reach the store: set archive_mode = on and archive_command = 'walvault wal-push %%p', then restart PostgreSQL", ErrPostgres)
	case s.InRecovery && s.ArchiveMode != "always":
		return fmt.Errorf("%w: this server is a standby with archive_mode = %s: a backup taken from a standby needs archive_mode = always", ErrPostgres, s.ArchiveMode)
	case strings.TrimSpace(s.ArchiveCmd) == "":
		return fmt.Errorf("%w: archive_command is empty: set archive_command = 'walvault wal-push %%p'", ErrPostgres)
	}
	return nil
}

// dataDirectory asks the server where its data directory is (superusers
// and members of pg_read_all_settings may see it).
func (s *pgServer) dataDirectory(ctx context.Context) (string, error) {
	var dir string
	if err := s.conn.QueryRow(ctx, `SELECT current_setting('data_directory')`).Scan(&dir); err != nil {
		return "", pgErr("reading data_directory (give --pgdata or PGDATA if this role may not see it)", err)
	}
	return dir, nil
}

func (s *pgServer) tablespaces(ctx context.Context) (map[uint32]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT oid::int8, spcname FROM pg_tablespace`)
	if err != nil {
		return nil, pgErr("listing tablespaces", err)
	}
	out := map[uint32]string{}
	for rows.Next() {
		var oid int64
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return nil, pgErr("listing tablespaces", err)
		}
		out[uint32(oid)] = name // #nosec G115 -- OIDs are 32 bits
	}
	return out, pgErrOrNil("listing tablespaces", rows.Err())
}

func pgErrOrNil(what string, err error) error {
	if err == nil {
		return nil
	}
	return pgErr(what, err)
}

// startBackup enters non-exclusive backup mode and returns the start LSN.
func (s *pgServer) startBackup(ctx context.Context, label string, fast bool) (LSN, error) {
	q := `SELECT pg_backup_start($1, $2)::text`
	if s.Version < 150000 {
		q = `SELECT pg_start_backup($1, $2, false)::text`
	}
	var lsn string
	if err := s.conn.QueryRow(ctx, q, label, fast).Scan(&lsn); err != nil {
		return 0, pgErr("starting the backup", err)
	}
	return ParseLSN(lsn)
}

// stopResult is what the stop call hands back: the files that must be in
// the backup for recovery to start at the right place.
type stopResult struct {
	LSN           LSN
	Label         string
	TablespaceMap string
	NextXID       uint64
}

// stopBackup leaves backup mode without waiting for archiving: walvault
// waits itself, with a timeout, checking the store rather than trusting
// that archive_command points at it.
func (s *pgServer) stopBackup(ctx context.Context) (stopResult, error) {
	q := `SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(false)`
	if s.Version < 150000 {
		q = `SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_stop_backup(false, false)`
	}
	var r stopResult
	var lsn string
	if err := s.conn.QueryRow(ctx, q).Scan(&lsn, &r.Label, &r.TablespaceMap); err != nil {
		return r, pgErr("stopping the backup", err)
	}
	var err error
	if r.LSN, err = ParseLSN(lsn); err != nil {
		return r, fmt.Errorf("%w: stop LSN: %w", ErrPostgres, err)
	}
	var xid string
	if err := s.conn.QueryRow(ctx, `SELECT txid_snapshot_xmax(txid_current_snapshot())::text`).Scan(&xid); err == nil {
		r.NextXID, _ = strconv.ParseUint(xid, 10, 64)
	}
	return r, nil
}

// archiverStatus is pg_stat_archiver, for telling the user why WAL does
// not arrive.
type archiverStatus struct {
	LastArchived     string
	LastArchivedTime time.Time
	Failed           int64
	LastFailed       string
	LastFailedTime   time.Time
}

func (s *pgServer) archiver(ctx context.Context) (archiverStatus, error) {
	var a archiverStatus
	var at, ft *time.Time
	err := s.conn.QueryRow(ctx, `SELECT coalesce(last_archived_wal, ''), last_archived_time, failed_count,
		coalesce(last_failed_wal, ''), last_failed_time FROM pg_stat_archiver`).Scan(
		&a.LastArchived, &at, &a.Failed, &a.LastFailed, &ft)
	if err != nil {
		return a, pgErr("reading pg_stat_archiver", err)
	}
	if at != nil {
		a.LastArchivedTime = *at
	}
	if ft != nil {
		a.LastFailedTime = *ft
	}
	return a, nil
}

// failing says whether the archiver's latest attempt failed.
func (a archiverStatus) failing() bool {
	return a.LastFailed != "" && !a.LastFailedTime.Before(a.LastArchivedTime)
}

func (a archiverStatus) String() string {
	if a.LastFailed == "" {
		last := a.LastArchived
		if last == "" {
			last = "nothing yet"
		}
		return fmt.Sprintf("pg_stat_archiver: no failures, last archived %s", last)
	}
	return fmt.Sprintf("pg_stat_archiver: %d failures, last for %s at %s (last archived: %s): see the PostgreSQL log for archive_command's error",
		a.Failed, a.LastFailed, a.LastFailedTime.UTC().Format(time.RFC3339), orNone(a.LastArchived))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// timelineOfLabel reads the timeline from backup_label's START WAL
// LOCATION line, which every supported version writes.
func timelineOfLabel(label string) (uint32, error) {
	for _, line := range strings.Split(label, "\n") {
		rest, ok := strings.CutPrefix(line, "START WAL LOCATION: ")
		if !ok {
			continue
		}
		_, file, ok := strings.Cut(rest, "(file ")
		if ok && len(file) >= 24 {
			if wf, err := ParseWALName(file[:24]); err == nil {
				return wf.Timeline, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: backup_label has no START WAL LOCATION line", ErrPostgres)
}

// currentTimeline is the timeline the server writes (or, on a standby,
// replays) now.
func (s *pgServer) currentTimeline(ctx context.Context) (uint32, error) {
	q := `SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)`
	if s.InRecovery {
		q = `SELECT lpad(to_hex(timeline_id), 8, '0') FROM pg_control_checkpoint()`
	}
	var hexTLI string
	if err := s.conn.QueryRow(ctx, q).Scan(&hexTLI); err != nil {
		return 0, pgErr("reading the current timeline", err)
	}
	v, err := strconv.ParseUint(hexTLI, 16, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: timeline %q", ErrPostgres, hexTLI)
	}
	return uint32(v), nil
}
