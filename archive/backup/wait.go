package backup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
)

// waitArchived waits until every WAL segment from the backup's start to its
// stop is in the store, as pg_backup_stop(wait_for_archive) would, but
// bounded, checking the store itself, and naming the archiver's failure
// when it gives up.
func waitArchived(ctx context.Context, r *repo.Repo, srv *pg.Server, m *repo.Manifest, timeout time.Duration) error {
	first, _ := archive.ParseWALName(m.StartWAL)
	last, _ := archive.ParseWALName(m.StopWAL)
	deadline := time.Now().Add(timeout)
	delay := 50 * time.Millisecond
	warned := false
	for {
		missing, err := r.MissingSegments(ctx, m.Timeline, first.SegNo(m.SegmentSize), last.SegNo(m.SegmentSize), m.SegmentSize)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			return nil
		}
		a, aerr := srv.Archiver(ctx)
		if aerr == nil && a.Failing() && !warned {
			slog.Warn("WAL archiving is failing; still waiting", "archiver", a.String())
			warned = true
		}
		if srv.InRecovery && !warned && time.Since(deadline.Add(-timeout)) > 5*time.Second {
			slog.Info("waiting for the backup's WAL from the primary's archive: on a standby, a segment reaches the store once the primary has finished it (its archive_timeout bounds the wait)",
				"missing", missing[0], "standby_archive_mode", srv.ArchiveMode)
			warned = true
		}
		if time.Now().After(deadline) {
			return notArchived(r, srv, missing, timeout, a, aerr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 2*time.Second)
	}
}

// notArchived says why the backup's WAL did not come: on a primary, its
// archiver; on a standby, which of the two archives could have stored
// it and which does not.
func notArchived(r *repo.Repo, srv *pg.Server, missing []string, timeout time.Duration, a pg.ArchiverStatus, aerr error) error {
	why := "pg_stat_archiver unavailable"
	if aerr == nil {
		why = a.String()
	}
	head := fmt.Sprintf("the backup's WAL %s (and %d more) did not reach %s within %s", missing[0], len(missing)-1, r.Store, timeout)
	if !srv.InRecovery {
		return fmt.Errorf("%w: %s: %s; is archive_command 'walvault wal-push %%p' with this store?", archive.ErrPostgres, head, why)
	}
	standby := "this standby does not archive (archive_mode = " + srv.ArchiveMode + "; archive_mode = always makes it archive what it replays)"
	if srv.ArchiveMode == "always" {
		standby = "this standby archives with archive_mode = always but has not stored it (" + why + ")"
	}
	return fmt.Errorf("%w: %s: this is a standby, and neither archive stored it: the primary's archive_command has not (check it on the primary; a segment is archived only once the primary finishes it, so set archive_timeout there, e.g. 60s, or run SELECT pg_switch_wal() on the primary), and %s",
		archive.ErrPostgres, head, standby)
}
