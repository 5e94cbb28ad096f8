package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// checkSegmentSwitch forces a switch when everything it needs is there.
func checkSegmentSwitch(ctx context.Context, rep *Report, r *repo.Repo, srv *pg.Server, opts Options, storeOK, archiving bool) {
	switch {
	case opts.NoSwitch:
		rep.add("segment switch", Skip, "--no-switch", "")
	case !storeOK:
		rep.add("segment switch", Skip, "the store is not usable", "")
	case srv.InRecovery:
		rep.add("segment switch", Skip, "a standby cannot switch segments; run check on the primary", "")
	case !archiving:
		rep.add("segment switch", Skip, "archiving is off", "")
	default:
		checkSwitch(ctx, rep, r, srv, opts.Timeout)
	}
	if !rep.has("signing") {
		rep.add("signing", Skip, "no segment reached the store to check", "")
	}
}

// checkSwitch makes PostgreSQL finish a segment and waits for it to reach
// the store, then (with an identity) fetches it back and checks it.
func checkSwitch(ctx context.Context, rep *Report, r *repo.Repo, srv *pg.Server, timeout time.Duration) {
	// The archiver's failures before the switch: a failure after it means
	// archive_command fails, whatever reached the store.
	before, err := srv.Archiver(ctx)
	if err != nil {
		rep.add("segment switch", Fail, err.Error(), "run check as a superuser or a member of pg_monitor")
		return
	}
	// SwitchSegment writes a record first, so the switch has something to
	// finish: otherwise it may return a segment archived long ago, which
	// proves nothing.
	seg, err := srv.SwitchSegment(ctx)
	if err != nil {
		rep.add("segment switch", Fail, err.Error(), "run check as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() to the role")
		return
	}
	wf, err := archive.ParseWALName(seg)
	if err != nil {
		rep.add("segment switch", Fail, "the server named segment "+seg+": "+err.Error(), "")
		return
	}
	key := repo.WALKey(wf)
	began := time.Now()
	if !waitForSegment(ctx, rep, r, srv, seg, key, timeout) {
		return
	}
	took := time.Since(began).Round(10 * time.Millisecond)
	checkSigning(ctx, rep, r, seg, key)
	// The store having the segment is not enough: something else (an
	// agent) may have put it there while archive_command fails, and then
	// PostgreSQL keeps every segment and pg_wal grows until the disk is full.
	if !waitForArchiver(ctx, rep, srv, seg, before, began.Add(timeout)) {
		return
	}
	if len(r.Identities) == 0 {
		rep.add("segment switch", OK, fmt.Sprintf("forced a switch; segment %s reached the store in %s, and PostgreSQL's archiver reports it archived", seg, took), "")
		return
	}
	// The proof is the signing check's to report: here only the identity
	// and the content are.
	unproven := *r
	unproven.AllowUnsigned = true
	size, err := fetchBack(ctx, &unproven, key, seg)
	if err != nil {
		rep.add("segment switch", Fail, fmt.Sprintf("segment %s reached the store in %s, but fetching it back failed: %v", seg, took, err),
			"use the identity that belongs to archive_command's recipient")
		return
	}
	rep.add("segment switch", OK, fmt.Sprintf("forced a switch; segment %s reached the store in %s, PostgreSQL's archiver reports it archived, and fetched back with the identity it is whole (%s, checksum matches)", seg, took, archive.HumanBytes(size)), "")
}

// waitForArchiver polls pg_stat_archiver until its last archived WAL has
// reached seg (true), or reports a failure of archive_command since
// before (its failed_count grew) or a deadline passed.
func waitForArchiver(ctx context.Context, rep *Report, srv *pg.Server, seg string, before pg.ArchiverStatus, deadline time.Time) bool {
	const fix = "read archive_command's error in the PostgreSQL log: until archive_command itself succeeds, PostgreSQL keeps every segment (pg_wal grows) even when the store has it"
	delay := 50 * time.Millisecond
	for {
		a, err := srv.Archiver(ctx)
		if err != nil {
			rep.add("segment switch", Fail, err.Error(), "")
			return false
		}
		if a.Failed > before.Failed {
			rep.add("segment switch", Fail, fmt.Sprintf("segment %s reached the store, but archive_command failed %d time(s) since the switch, the last for %s at %s (last archived: %s)",
				seg, a.Failed-before.Failed, a.LastFailed, archive.FormatTime(a.LastFailedTime), archive.OrNone(a.LastArchived)), fix)
			return false
		}
		if archivedThrough(a.LastArchived, seg) {
			return true
		}
		if time.Now().After(deadline) {
			rep.add("segment switch", Fail, fmt.Sprintf("segment %s reached the store, but PostgreSQL's archiver has not reported it archived (%s)", seg, a), fix)
			return false
		}
		select {
		case <-ctx.Done():
			rep.add("segment switch", Fail, ctx.Err().Error(), "")
			return false
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 500*time.Millisecond)
	}
}

// archivedThrough says whether last, pg_stat_archiver's last archived WAL
// file, is segment seg or one after it (a later timeline counts as
// after). A history or other file that is not a segment says nothing.
func archivedThrough(last, seg string) bool {
	lf, err1 := archive.ParseWALName(last)
	_, err2 := archive.ParseWALName(seg)
	if err1 != nil || err2 != nil || len(last) < 24 || lf.Kind == archive.KindHistory {
		return false
	}
	return last[:24] >= seg[:24]
}

// waitForSegment polls the store for key until it is there (true), or
// reports why not.
func waitForSegment(ctx context.Context, rep *Report, r *repo.Repo, srv *pg.Server, seg, key string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	delay := 100 * time.Millisecond
	for {
		_, err := r.Store.Stat(ctx, key)
		if err == nil {
			return true
		}
		if !errors.Is(err, cloud.ErrNotFound) {
			rep.add("segment switch", Fail, fmt.Sprintf("%s: looking for %s: %v", r.Store, key, err), "")
			return false
		}
		if time.Now().After(deadline) {
			why := "pg_stat_archiver unavailable"
			if a, err := srv.Archiver(ctx); err == nil {
				why = a.String()
			}
			rep.add("segment switch", Fail, fmt.Sprintf("forced a switch; segment %s did not reach %s within %s (%s)", seg, r.Store, timeout, why),
				"archive_command must be 'walvault wal-push %p' with settings that reach this store (same --store or WALVAULT_STORE, endpoint and credentials in the server's environment or a --config file)")
			return false
		}
		select {
		case <-ctx.Done():
			rep.add("segment switch", Fail, ctx.Err().Error(), "")
			return false
		case <-time.After(delay):
		}
		delay = min(delay*3/2, time.Second)
	}
}

// fetchBack downloads the segment at key with the identities into a temp
// file, checking it against the checksum its object records, and returns
// its size.
func fetchBack(ctx context.Context, r *repo.Repo, key, seg string) (int64, error) {
	dir, err := os.MkdirTemp("", "walvault-check-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	f, err := os.OpenFile(filepath.Join(dir, seg), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- our own temp dir
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	var size int64
	err = r.Load(ctx, key, repo.Want{Proof: true, ContentFromMeta: true, Encrypted: true, MaxSize: 1 << 30}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		// Called again from the start when the connection breaks.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := f.Truncate(0); err != nil {
			return err
		}
		var err error
		size, err = io.Copy(f, rd)
		return err
	})
	return size, err
}
