package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/pgwal"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// summarizerStall is how long an incremental waits for a WAL summarizer
// that reads no further before it reads every page instead.
const summarizerStall = 30 * time.Second

// gatherChanges learns, once the backup has started (its start is where
// the WAL it needs to know about ends), what the WAL since the parent's
// start says about relation files: from the server's WAL summaries on
// PostgreSQL 17 and later (summarize_wal = on), which also say which
// blocks changed, else from the WAL itself. When neither can be had, the
// backup is taken full, saying why.
func (b *pusher) gatherChanges(ctx context.Context) error {
	if b.parent == nil {
		return nil
	}
	began := time.Now()
	cm, why, err := b.summaryChanges(ctx)
	if err != nil {
		return err
	}
	if cm == nil {
		if why != "" {
			slog.Info("incremental: reading every page, and the WAL since the parent for the files it created and dropped: " + why)
		}
		if cm, why, err = b.walChanges(ctx); err != nil {
			return err
		}
		if cm == nil {
			b.dropParent(why)
			return nil
		}
	}
	b.changes = cm
	slog.Info("incremental: changes since the parent", append(cm.describe(), "from_lsn", b.parent.m.StartLSN.String(), "to_lsn", b.m.StartLSN.String(), "ms", sinceMs(began))...)
	return nil
}

// dropParent makes the backup a full one after it started, saying why.
func (b *pusher) dropParent(why string) {
	slog.Info("taking a full backup instead of an incremental: " + why)
	b.parent = nil
	b.m.Type, b.m.Parent, b.m.ParentManifestSHA256, b.m.Chain = "", "", "", nil
}

// summaryChanges reads the WAL summaries from the parent's start to this
// backup's: nil and why not when they cannot be used (nil and "" before
// PostgreSQL 17), an error only for what also fails the backup.
func (b *pusher) summaryChanges(ctx context.Context) (*changeMap, string, error) {
	if b.srv.Version < 170000 {
		return nil, "", nil
	}
	if !b.facts.SummarizeWAL {
		return nil, "summarize_wal is off (turn it on to read only the blocks that changed)", nil
	}
	from, to := b.parent.m.StartLSN, b.m.StartLSN
	if err := b.srv.WaitSummarized(ctx, b.tli, to, summarizerStall); err != nil {
		if archive.IsContextErr(err) {
			return nil, "", err
		}
		return nil, fmt.Sprintf("the WAL summaries do not reach %s: %s", to, archive.OneLine(err.Error())), nil
	}
	all, err := b.srv.WALSummaries(ctx)
	if err != nil {
		return nil, "cannot list the WAL summaries: " + archive.OneLine(err.Error()), nil
	}
	use, gap := coverage(all, b.tli, from, to)
	if gap != "" {
		return nil, fmt.Sprintf("the WAL summaries of timeline %d do not cover %s: %s (summaries are kept for wal_summary_keep_time, and none are written while summarize_wal is off or wal_level is minimal)", b.tli, lsnRange(from, to), gap), nil
	}
	cm := newChangeMap("the WAL summaries", true, b.facts.RelSegBlocks)
	for _, w := range use {
		err := b.srv.WALSummaryContents(ctx, w, func(e pg.SummaryEntry) error { cm.addSummary(e); return nil })
		if archive.IsContextErr(err) {
			return nil, "", err
		}
		if err != nil {
			return nil, "cannot read the WAL summaries: " + archive.OneLine(err.Error()), nil
		}
	}
	return cm, "", nil
}

// coverage picks the summaries of timeline tli that overlap [from, to)
// and says where they leave a gap ("" when they cover it all).
func coverage(all []pg.WALSummary, tli uint32, from, to archive.LSN) ([]pg.WALSummary, string) {
	var use []pg.WALSummary
	for _, w := range all {
		if w.TLI == tli && w.End > from && w.Start < to {
			use = append(use, w)
		}
	}
	sort.Slice(use, func(i, j int) bool { return use[i].Start < use[j].Start })
	at := from
	for _, w := range use {
		if w.Start > at {
			return nil, "none covers " + lsnRange(at, w.Start)
		}
		at = max(at, w.End)
	}
	if at < to {
		return nil, "none covers " + lsnRange(at, to)
	}
	return use, ""
}

// walChanges reads the WAL from the parent's start to this backup's, each
// segment from pg_wal while PostgreSQL keeps it, else from the archive
// (which the database host can read when the archive is not encrypted):
// nil and why not when it cannot be read whole or says an incremental
// cannot be trusted.
func (b *pusher) walChanges(ctx context.Context) (*changeMap, string, error) {
	from, to := b.parent.m.StartLSN, b.m.StartLSN
	sc := pgwal.NewScanner(b.tli, b.srv.SystemID, b.srv.SegSize, from, to)
	last := uint64(to) / uint64(b.srv.SegSize) // #nosec G115 -- segment sizes are positive
	var local, archived int
	for !sc.Done() {
		segNo := sc.NextSegment()
		name := archive.SegmentName(b.tli, segNo, b.srv.SegSize)
		if segNo > last {
			return nil, fmt.Sprintf("the WAL since the parent ends before this backup's start %s", to), nil
		}
		lerr := b.localSegment(sc, segNo, name)
		if lerr == nil {
			local++
			sc.Commit()
			continue
		}
		aerr := b.archivedSegment(ctx, sc, segNo, name)
		if aerr == nil {
			archived++
			sc.Commit()
			continue
		}
		if errors.Is(aerr, archive.ErrStore) || archive.IsContextErr(aerr) {
			return nil, "", aerr
		}
		return nil, fmt.Sprintf("the WAL since the parent cannot be read, so which databases and relation files were created since is not known: %s: %s; %s (keep the WAL since the last backup in pg_wal with wal_keep_size, or on PostgreSQL 17 and later set summarize_wal = on)",
			name, lerr, archive.OneLine(aerr.Error())), nil
	}
	ch := sc.Changes()
	switch {
	case ch.Minimal != 0:
		return nil, fmt.Sprintf("the server ran with wal_level = minimal since the parent (WAL record at %s), writing pages without WAL", ch.Minimal), nil
	case ch.Unknown != 0:
		return nil, fmt.Sprintf("the WAL record at %s (resource manager %d) changes relation files in a way walvault does not read", ch.Unknown, ch.UnknownRmgr), nil
	}
	records, bytes := sc.Stats()
	slog.Info("incremental: WAL since the parent read", "segments_from_pg_wal", local, "segments_from_archive", archived, "records", records, "bytes", bytes)
	cm := newChangeMap("the WAL", false, b.facts.RelSegBlocks)
	cm.addWAL(ch)
	return cm, "", nil
}

// localSegment reads a segment from pg_wal. An error says why it could
// not be used there: absent, recycled, or not yet written that far.
func (b *pusher) localSegment(sc *pgwal.Scanner, segNo uint64, name string) error {
	f, err := os.Open(filepath.Join(b.pgdata, "pg_wal", name)) // #nosec G304 -- a segment of the data directory being backed up
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("not in pg_wal")
		}
		return err
	}
	defer func() { _ = f.Close() }()
	if err := sc.Segment(segNo, f); err != nil {
		return fmt.Errorf("not usable in pg_wal (%w)", err)
	}
	return nil
}

// segmentErr is the WAL reader's own error, inside a load.
type segmentErr struct{ err error }

func (e *segmentErr) Error() string { return e.err.Error() }
func (e *segmentErr) Unwrap() error { return e.err }

// archivedSegment reads a segment from the archive, authenticated as
// wal-fetch reads it.
func (b *pusher) archivedSegment(ctx context.Context, sc *pgwal.Scanner, segNo uint64, name string) error {
	wf, err := archive.ParseWALName(name)
	if err != nil {
		return err
	}
	err = b.r.Load(ctx, repo.WALKey(wf), b.r.WantWAL(ctx, wf), func(rd io.Reader, _ cloud.ObjectInfo) error {
		if err := sc.Segment(segNo, rd); err != nil {
			return &segmentErr{err}
		}
		return nil
	})
	var se *segmentErr
	switch {
	case err == nil:
		return nil
	case errors.Is(err, archive.ErrNotInArchive):
		return errors.New("not archived either")
	case errors.Is(err, crypto.ErrNoIdentity):
		return errors.New("archived encrypted, and this host holds no identity to decrypt it (as it should not)")
	case errors.As(err, &se):
		return fmt.Errorf("archived, but %w", se.err)
	}
	return err
}
