package status

import (
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
)

// The newest backup may be incremental: status says of which, and what
// restoring it reads; one whose chain is broken is a bad backup, not the
// newest.
func TestStatusChains(t *testing.T) {
	s := backuptest.NewSynth(t)
	s.Segs(1, 1, 12, func(n uint64) time.Time { return backuptest.Tmin(int(n)) })
	f := s.Backup("f", 1, 2, 2, backuptest.Tmin(2), backuptest.Tmin(2), false)
	s.Incremental("i1", "f", 1, 4, 4, backuptest.Tmin(4), backuptest.Tmin(4), false)
	now := backuptest.Tmin(20)
	rep, err := Collect(s.Ctx, s.R, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if b := rep.NewestBackup; b == nil || b.Name != "i1" || b.Type != repo.BackupIncremental || b.Parent != "f" || b.ChainStoredSize != 2*f.StoredSize {
		t.Fatalf("newest backup %+v", rep.NewestBackup)
	}
	// i2 built on a parent that is gone.
	s.Incremental("i2", "i1", 1, 6, 6, backuptest.Tmin(6), backuptest.Tmin(6), false)
	_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("i1", repo.ManifestFile))
	rep, err = Collect(s.Ctx, s.R, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if b := rep.NewestBackup; b == nil || b.Name != "f" || b.Type != repo.BackupFull || rep.Backups != 1 {
		t.Fatalf("newest backup %+v, %d backups", rep.NewestBackup, rep.Backups)
	}
	if len(rep.BadBackups) != 1 || rep.BadBackups[0].Name != "i2" || !strings.Contains(rep.BadBackups[0].Error, "needs its ancestor i1") {
		t.Fatalf("bad backups %+v", rep.BadBackups)
	}
}
