package pg

import (
	"context"
	"time"
)

// Facts are the settings that decide whether an incremental backup may
// build on an earlier one, and what its manifest records.
type Facts struct {
	WALLevel       string
	FullPageWrites bool
	DataChecksums  string // "on" or "off"
	WALLogHints    bool
	BlockSize      int
	// RelSegBlocks is how many blocks one file of a relation holds
	// (segment_size, 1 GB unless PostgreSQL was built otherwise).
	RelSegBlocks int64
	// SummarizeWAL is summarize_wal (PostgreSQL 17 and later; false
	// before).
	SummarizeWAL bool
	// Started is when the postmaster started: settings that need a
	// restart (wal_level, wal_log_hints) are as now since then.
	Started time.Time
}

// Facts reads them.
func (s *Server) Facts(ctx context.Context) (Facts, error) {
	var f Facts
	var summarize string
	err := s.conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('full_page_writes')::bool,
		current_setting('data_checksums'), current_setting('wal_log_hints')::bool,
		current_setting('block_size')::int, pg_size_bytes(current_setting('segment_size')) / current_setting('block_size')::int,
		coalesce(current_setting('summarize_wal', true), 'off'), pg_postmaster_start_time()`).Scan(
		&f.WALLevel, &f.FullPageWrites, &f.DataChecksums, &f.WALLogHints, &f.BlockSize, &f.RelSegBlocks, &summarize, &f.Started)
	if err != nil {
		return f, Err("reading the server's settings for an incremental backup", err)
	}
	f.SummarizeWAL = summarize == "on"
	return f, nil
}
