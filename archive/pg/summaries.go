package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/walvault/walvault/archive"
)

// PostgreSQL 17 and later summarize the WAL (summarize_wal = on): for each
// stretch between two checkpoints' redo points, which blocks of which
// relation forks changed, and which forks (and whole databases) were
// created, dropped or truncated. These are the server's functions for
// reading them.

// ErrSummarizerStalled is WaitSummarized's error when the WAL summarizer
// stopped getting closer.
var ErrSummarizerStalled = errors.New("the WAL summarizer is not progressing")

// SummarizerState is pg_get_wal_summarizer_state().
type SummarizerState struct {
	TLI        uint32
	Summarized archive.LSN // summaries on disk reach this far
	Pending    archive.LSN // the summarizer has read this far
	PID        int         // -1: not running
}

// SummarizerState reads the WAL summarizer's progress.
func (s *Server) SummarizerState(ctx context.Context) (SummarizerState, error) {
	var st SummarizerState
	var tli int64
	var done, pending string
	err := s.conn.QueryRow(ctx, `SELECT summarized_tli, summarized_lsn::text, pending_lsn::text, coalesce(summarizer_pid, -1)
		FROM pg_get_wal_summarizer_state()`).Scan(&tli, &done, &pending, &st.PID)
	if err != nil {
		return st, Err("reading pg_get_wal_summarizer_state()", err)
	}
	st.TLI = uint32(tli) // #nosec G115 -- a timeline
	if st.Summarized, err = archive.ParseLSN(done); err != nil {
		return st, fmt.Errorf("%w: summarized_lsn: %w", archive.ErrPostgres, err)
	}
	if st.Pending, err = archive.ParseLSN(pending); err != nil {
		return st, fmt.Errorf("%w: pending_lsn: %w", archive.ErrPostgres, err)
	}
	return st, nil
}

// WaitSummarized waits until the summaries on disk reach lsn on timeline
// tli. It gives up with ErrSummarizerStalled when the summarizer is not
// running or has not read further for stall, and returns ctx's error.
func (s *Server) WaitSummarized(ctx context.Context, tli uint32, lsn archive.LSN, stall time.Duration) error {
	var last archive.LSN
	since := time.Now()
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		st, err := s.SummarizerState(ctx)
		if err != nil {
			return err
		}
		if st.TLI == tli && st.Summarized >= lsn || st.TLI > tli {
			return nil
		}
		if st.PID < 0 {
			return fmt.Errorf("%w: it is not running (summaries reach %s, %s is needed)", ErrSummarizerStalled, st.Summarized, lsn)
		}
		if st.Pending > last {
			last, since = st.Pending, time.Now()
		} else if time.Since(since) > stall {
			return fmt.Errorf("%w: it has read up to %s and not further for %s (summaries reach %s, %s is needed)", ErrSummarizerStalled, st.Pending, stall, st.Summarized, lsn)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// WALSummary is one summary file: the WAL of timeline TLI from Start to
// End.
type WALSummary struct {
	TLI        uint32
	Start, End archive.LSN
}

// WALSummaries lists the summaries the server keeps
// (pg_available_wal_summaries()), in no particular order.
func (s *Server) WALSummaries(ctx context.Context) ([]WALSummary, error) {
	rows, err := s.conn.Query(ctx, `SELECT tli, start_lsn::text, end_lsn::text FROM pg_available_wal_summaries()`)
	if err != nil {
		return nil, Err("listing WAL summaries", err)
	}
	defer rows.Close()
	var out []WALSummary
	for rows.Next() {
		var tli int64
		var start, end string
		if err := rows.Scan(&tli, &start, &end); err != nil {
			return nil, Err("listing WAL summaries", err)
		}
		w := WALSummary{TLI: uint32(tli)} // #nosec G115 -- a timeline
		var err1, err2 error
		w.Start, err1 = archive.ParseLSN(start)
		w.End, err2 = archive.ParseLSN(end)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%w: a WAL summary's range: %w", archive.ErrPostgres, err)
		}
		out = append(out, w)
	}
	return out, errOrNil("listing WAL summaries", rows.Err())
}

// SummaryEntry is one row of pg_wal_summary_contents(): block Block of a
// relation fork changed, or, with Limit, the fork was cut to Block blocks
// (0: created or dropped). Relation 0 stands for every relation of the
// database in the tablespace: the database was created or dropped.
type SummaryEntry struct {
	Relation, Tablespace, Database uint32
	Fork                           uint8
	Block                          uint32
	Limit                          bool
}

// WALSummaryContents streams what summary w says, row by row, to fn.
func (s *Server) WALSummaryContents(ctx context.Context, w WALSummary, fn func(SummaryEntry) error) error {
	what := fmt.Sprintf("reading the WAL summary of timeline %d from %s to %s", w.TLI, w.Start, w.End)
	rows, err := s.conn.Query(ctx, `SELECT relfilenode::int8, reltablespace::int8, reldatabase::int8, relforknumber, relblocknumber, is_limit_block
		FROM pg_wal_summary_contents($1, $2::text::pg_lsn, $3::text::pg_lsn)`, int64(w.TLI), w.Start.String(), w.End.String())
	if err != nil {
		return Err(what, err)
	}
	defer rows.Close()
	for rows.Next() {
		var rel, spc, db, blk int64
		var fork int16
		var e SummaryEntry
		if err := rows.Scan(&rel, &spc, &db, &fork, &blk, &e.Limit); err != nil {
			return Err(what, err)
		}
		if rel < 0 || rel > 1<<32-1 || spc < 0 || spc > 1<<32-1 || db < 0 || db > 1<<32-1 || fork < 0 || fork > 3 || blk < 0 || blk > 1<<32-1 {
			return fmt.Errorf("%w: %s: a row out of range (%d %d %d %d %d)", archive.ErrPostgres, what, rel, spc, db, fork, blk)
		}
		e.Relation, e.Tablespace, e.Database, e.Fork, e.Block = uint32(rel), uint32(spc), uint32(db), uint8(fork), uint32(blk) // #nosec G115 -- checked above
		if err := fn(e); err != nil {
			return err
		}
	}
	return errOrNil(what, rows.Err())
}
