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
		if time.Now().After(deadline) {
			why := "pg_stat_archiver unavailable"
			if aerr == nil {
				why = a.String()
			}
			return fmt.Errorf("%w: the backup's WAL %s (and %d more) did not reach %s within %s: %s; is archive_command 'walvault wal-push %%p' with this store?",
				archive.ErrPostgres, missing[0], len(missing)-1, r.Store, timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 2*time.Second)
	}
}
