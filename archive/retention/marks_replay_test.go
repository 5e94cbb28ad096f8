package retention

import (
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
)

// Marks cannot be replayed: the newest record by its signed time decides
// whatever its key says, and a record copied from another backup's folder
// is refused.
func TestMarksCannotBeReplayed(t *testing.T) {
	s := backuptest.NewSynth(t)
	w := backuptest.SignedRepo(t, s.R.Store)
	w.Cluster = "7300000000000000001"
	s.R = &repo.Repo{Store: s.R.Store, Verify: w.Verify}
	s.Segs(1, 1, 12, func(n uint64) time.Time { return tmin(int(n)) })
	for _, b := range []string{"b1", "b2"} {
		m := backuptest.SampleManifest()
		m.Name = b
		m.StartWAL, m.StopWAL, m.SegmentSize = s.SegName(1, 2), s.SegName(1, 2), s.SegSize
		m.StartLSN, m.StopLSN = 0, 0
		if err := w.WriteManifest(s.Ctx, m, true); err != nil {
			t.Fatal(err)
		}
	}
	permanent := func(name string) bool {
		t.Helper()
		cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cat.Folder(name).Manifest.Permanent
	}
	t0 := time.Now().Add(-time.Hour)
	if err := w.WriteMark(s.Ctx, "b1", true, t0); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMark(s.Ctx, "b1", false, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if permanent("b1") {
		t.Fatal("the newest mark says ordinary")
	}
	// The older "permanent" record put back under a newer key: its signed
	// time is still the older one.
	old, meta := backuptest.GetObject(t, s.R.Store, repo.MarkKey("b1", t0))
	backuptest.PutObject(t, s.R.Store, repo.MarkKey("b1", t0.Add(time.Hour)), old, meta)
	if permanent("b1") {
		t.Fatal("a replayed mark record changed the flag")
	}
	// b1's records copied into b2's folder: refused (each names b1).
	if err := w.WriteMark(s.Ctx, "b1", true, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	body, meta := backuptest.GetObject(t, s.R.Store, repo.MarkKey("b1", t0.Add(2*time.Minute)))
	backuptest.PutObject(t, s.R.Store, repo.MarkKey("b2", t0.Add(2*time.Minute)), body, meta)
	if !permanent("b1") || permanent("b2") {
		t.Fatalf("b1 %v, b2 %v: want only b1 permanent", permanent("b1"), permanent("b2"))
	}
	if !strings.HasPrefix(repo.MarkKey("b1", t0), "backups/b1/mark-") {
		t.Fatal(repo.MarkKey("b1", t0))
	}
}
