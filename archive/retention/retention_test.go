package retention

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	// The judge of "what delete leaves can be restored" is verify itself;
	// only this test imports it, never the package.
	"github.com/walvault/walvault/archive/verify"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

func decisions(p *Plan) (del, keep []string) {
	for _, b := range p.Backups {
		if b.Delete {
			del = append(del, b.Name)
		} else {
			keep = append(keep, b.Name)
		}
	}
	return
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestRetentionAcrossTimelines(t *testing.T) {
	s := twoTimelines(t)
	before := s.Keys()
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 2, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	del, keep := decisions(plan)
	if strings.Join(del, ",") != "b1,b3" || strings.Join(keep, ",") != "b2,b4,b5" {
		t.Fatalf("delete %v keep %v; want delete b1,b3 keep b2,b4,b5", del, keep)
	}
	for _, b := range plan.Backups {
		if b.Name == "b2" && (len(b.Reasons) != 1 || b.Reasons[0] != reasonPermanent) {
			t.Fatalf("b2 kept for %v, want only: permanent", b.Reasons)
		}
	}
	if got := s.Keys(); len(got) != len(before) {
		t.Fatal("planning changed the store")
	}

	res, err := Apply(s.Ctx, s.R, plan)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{repo.ClusterKey: false}
	delete(want, repo.ClusterKey)
	for _, k := range append(append(s.WALKeys(1, 10, 11), s.WALKeys(2, 25, 40)...), repo.HistoryPrefix+"00000002.history") {
		want[k] = true
	}
	for _, b := range []string{"b2", "b4", "b5"} {
		for _, f := range []string{"part-00000", "part-00001", "part-00000.sums", "part-00001.sums", repo.ManifestFile} {
			want[repo.BackupKey(b, f)] = true
		}
	}
	got := s.Keys()
	if strings.Join(sortedKeys(got), "\n") != strings.Join(sortedKeys(want), "\n") {
		t.Fatalf("after delete the store holds\n%s\nwant\n%s", strings.Join(sortedKeys(got), "\n"), strings.Join(sortedKeys(want), "\n"))
	}
	// Deleted: timeline 1 but b2's island (1-9, 12-30, the .partial), and
	// timeline 2 before b4 (15-24); plus two backups of 5 objects each
	// (two parts, their sums, the manifest).
	if res.Backups != 2 || res.WALObjects != 9+19+1+10 || res.Objects != 2*5+1*2+res.WALObjects {
		t.Fatalf("result %+v", res)
	}

	// A re-run finds nothing more to delete.
	again, err := Decide(s.Ctx, s.R, Policy{RetainFull: 2, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Delete != (Totals{}) {
		t.Fatalf("second run would delete %+v:\n%+v", again.Delete, again.WAL)
	}
	// And what is left verifies.
	rep, err := verify.Run(s.Ctx, s.R, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("verify after delete: %v", rep.Problems)
	}
}

func TestRetentionRules(t *testing.T) {
	s := twoTimelines(t)
	tests := []struct {
		name string
		pol  Policy
		del  string
	}{
		{"retain-full 1 keeps the newest by time, permanent too", Policy{RetainFull: 1}, "b1,b3,b4"},
		{"retain-full larger than the count", Policy{RetainFull: 9}, ""},
		{"before", Policy{Before: timePtr(tmin(30))}, "b1,b3"},
		{"before everything still keeps the newest", Policy{Before: timePtr(tmin(1000))}, "b1,b3,b4"},
		{"window keeps the backup before it", Policy{RetainWindow: 10 * time.Minute}, "b1,b3"},
		{"window with no backup in it keeps the one before", Policy{RetainWindow: time.Minute}, "b1,b3,b4"},
		{"min-keep", Policy{RetainFull: 1, MinKeep: 3}, "b1"},
		{"rules combine by keeping", Policy{RetainFull: 1, Before: timePtr(tmin(15))}, "b1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.pol.Now = tmin(100)
			plan, err := Decide(s.Ctx, s.R, tt.pol)
			if err != nil {
				t.Fatal(err)
			}
			del, _ := decisions(plan)
			if strings.Join(del, ",") != tt.del {
				t.Fatalf("deletes %v, want %s\n%+v", del, tt.del, plan.Backups)
			}
		})
	}
	// window 10m at 100: b5 (finished 96) inside, b4 (86) is the base.
	plan, _ := Decide(s.Ctx, s.R, Policy{RetainWindow: 10 * time.Minute, Now: tmin(100)})
	for _, b := range plan.Backups {
		if b.Name == "b4" && !strings.Contains(strings.Join(b.Reasons, ";"), "start of --retain-window") {
			t.Fatalf("b4 kept for %v", b.Reasons)
		}
	}
}

func timePtr[T any](v T) *T { return &v }

// A timeline number says nothing about age: after an upgrade-like reset,
// newer backups may sit on a lower timeline. Order is by finish time.
func TestRetentionIgnoresTimelineNumbers(t *testing.T) {
	s := newSynth(t)
	s.Segs(3, 1, 10, func(n uint64) time.Time { return tmin(int(n)) })
	s.History(3, "1\t0/100000\tx\n2\t0/180000\ty\n", tmin(0))
	s.Backup("old_on_tl3", 3, 2, 2, tmin(2), tmin(2), false)
	s.Backup("new_on_tl3", 3, 8, 8, tmin(8), tmin(8), false)
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(20)})
	if err != nil {
		t.Fatal(err)
	}
	if del, _ := decisions(plan); strings.Join(del, ",") != "old_on_tl3" {
		t.Fatalf("deletes %v", del)
	}

	// Timeline 2 backups finished after the timeline 5 ones.
	s = newSynth(t)
	s.Segs(5, 1, 6, func(n uint64) time.Time { return tmin(int(n)) })
	s.History(5, "1\t0/80000\tx\n", tmin(0))
	s.Segs(2, 7, 12, func(n uint64) time.Time { return tmin(100 + int(n)) })
	s.History(2, "1\t0/700000\tx\n", tmin(100))
	s.Backup("tl5", 5, 2, 2, tmin(2), tmin(3), false)
	s.Backup("tl2a", 2, 8, 8, tmin(108), tmin(108), false)
	s.Backup("tl2b", 2, 10, 10, tmin(110), tmin(110), false)
	plan, err = Decide(s.Ctx, s.R, Policy{RetainFull: 2, Now: tmin(200)})
	if err != nil {
		t.Fatal(err)
	}
	if del, _ := decisions(plan); strings.Join(del, ",") != "tl5" {
		t.Fatalf("deletes %v, want the timeline 5 backup (finished first)", del)
	}
}

// The live timeline's only backup is old: it must stay, whatever the rule.
func TestRetentionKeepsWhatRestoresTheLatestWAL(t *testing.T) {
	s := newSynth(t)
	s.Segs(1, 1, 20, func(n uint64) time.Time { return tmin(int(n)) })
	s.Backup("b1", 1, 2, 2, tmin(2), tmin(2), false)
	s.Backup("b2", 1, 10, 10, tmin(10), tmin(10), false)
	s.Backup("b3", 1, 15, 15, tmin(15), tmin(15), false)
	// A restore from b1 to segment 5 made timeline 2, the one in use now.
	s.History(2, "1\t0/500000\tx\n", tmin(30))
	s.Segs(2, 5, 12, func(n uint64) time.Time { return tmin(30 + int(n)) })
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(60)})
	if err != nil {
		t.Fatal(err)
	}
	del, keep := decisions(plan)
	if strings.Join(del, ",") != "b2" || strings.Join(keep, ",") != "b1,b3" {
		t.Fatalf("delete %v keep %v: b1 is the only backup that restores timeline 2", del, keep)
	}
	for _, r := range plan.WAL {
		if r.Timeline == 2 && r.Delete {
			t.Fatalf("deletes timeline 2's WAL: %+v", r)
		}
	}
}

func TestRetentionIncompleteFolders(t *testing.T) {
	s := newSynth(t)
	s.Segs(1, 1, 20, func(n uint64) time.Time { return tmin(int(n)) })
	s.Backup("b1", 1, 2, 2, tmin(2), tmin(2), false)
	s.Backup("b2", 1, 10, 10, tmin(10), tmin(10), false)
	// An interrupted delete: tombstone and a part, no manifest; recent.
	s.Put(repo.BackupKey("half_deleted", repo.TombstoneFile), []byte("{}"), tmin(99))
	s.Put(repo.BackupKey("half_deleted", "part-00003"), []byte("x"), tmin(99))
	// A killed backup from long ago, and one that may be running now.
	s.Put(repo.BackupKey("killed", "part-00000"), []byte("x"), tmin(1))
	s.Put(repo.BackupKey("running", "part-00000"), []byte("x"), tmin(99))
	// A backup killed after b2 started: newer than the oldest kept backup.
	s.Put(repo.BackupKey("killed_late", "part-00000"), []byte("x"), tmin(11))

	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, OrphanAge: time.Hour, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range plan.Incomplete {
		got[f.Name] = f.Delete
	}
	want := map[string]bool{"half_deleted": true, "killed": true, "running": false, "killed_late": false}
	for k, v := range want {
		if d, ok := got[k]; !ok || d != v {
			t.Errorf("%s: delete=%v (listed %v), want %v", k, d, ok, v)
		}
	}
	// With a short orphan age the running one is still protected by being
	// newer than the oldest kept backup.
	plan2, _ := Decide(s.Ctx, s.R, Policy{RetainFull: 1, OrphanAge: 0, Now: tmin(100)})
	for _, f := range plan2.Incomplete {
		if f.Name == "running" && f.Delete {
			t.Fatal("a folder written after the oldest kept backup started is deleted")
		}
	}
	if _, err := Apply(s.Ctx, s.R, plan); err != nil {
		t.Fatal(err)
	}
	keys := s.Keys()
	for _, k := range []string{repo.BackupKey("half_deleted", repo.TombstoneFile), repo.BackupKey("half_deleted", "part-00003"), repo.BackupKey("killed", "part-00000"), repo.BackupKey("b1", repo.ManifestFile)} {
		if keys[k] {
			t.Errorf("%s survived", k)
		}
	}
	for _, k := range []string{repo.BackupKey("running", "part-00000"), repo.BackupKey("killed_late", "part-00000"), repo.BackupKey("b2", repo.ManifestFile)} {
		if !keys[k] {
			t.Errorf("%s deleted", k)
		}
	}
}

// An interrupted delete at any step leaves something the next run
// finishes, and the backup stops being one when its manifest goes.
func TestRetentionInterruptedDelete(t *testing.T) {
	for step := 1; step <= 3; step++ {
		s := newSynth(t)
		s.Segs(1, 1, 12, func(n uint64) time.Time { return tmin(int(n)) })
		s.Backup("b1", 1, 2, 2, tmin(2), tmin(2), false)
		s.Backup("b2", 1, 10, 10, tmin(10), tmin(10), false)
		st := s.R.Store
		// Do by hand what deleteBackup does, up to step.
		if step >= 1 {
			s.Put(repo.BackupKey("b1", repo.TombstoneFile), []byte("{}"), time.Time{})
		}
		if step >= 2 {
			_ = st.Delete(s.Ctx, repo.BackupKey("b1", repo.ManifestFile))
		}
		if step >= 3 {
			_ = st.Delete(s.Ctx, repo.BackupKey("b1", "part-00000"))
		}
		list, err := s.ListBackups()
		if err != nil {
			t.Fatal(err)
		}
		if step >= 2 && len(list) != 1 {
			t.Fatalf("step %d: a half-deleted backup is still listed: %d backups", step, len(list))
		}
		plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, OrphanAge: 24 * time.Hour, Now: tmin(20)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(s.Ctx, s.R, plan); err != nil {
			t.Fatal(err)
		}
		for k := range s.Keys() {
			if strings.HasPrefix(k, repo.BackupPrefix+"b1/") {
				t.Fatalf("step %d: %s left after the re-run", step, k)
			}
		}
	}
}

func TestRetentionRefusals(t *testing.T) {
	t.Run("damaged manifest", func(t *testing.T) {
		s := twoTimelines(t)
		s.Put(repo.BackupKey("b3", repo.ManifestFile), []byte(`{"format": 1, "name": "b3", "par`), time.Time{})
		_, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1})
		if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "backups/b3/manifest.json") || !strings.Contains(err.Error(), "by hand") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("two clusters", func(t *testing.T) {
		s := twoTimelines(t)
		s.Backup("other", 1, 28, 28, tmin(28), tmin(28), false, func(m *repo.Manifest) { m.SystemIdentifier = "42" })
		_, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1})
		if !errors.Is(err, archive.ErrOtherCluster) || !strings.Contains(err.Error(), "42") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cluster.json names another", func(t *testing.T) {
		s := twoTimelines(t)
		// Every backup is then one of another cluster: none is a backup of
		// this archive's, and delete refuses to guess whose WAL is whose.
		s.Put(repo.ClusterKey, []byte(`{"system_identifier": "99"}`), time.Time{})
		_, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1})
		if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "another cluster") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no backups deletes nothing", func(t *testing.T) {
		s := newSynth(t)
		s.Segs(1, 1, 5, func(n uint64) time.Time { return tmin(int(n)) })
		plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1})
		if err != nil || plan.Delete != (Totals{}) || len(plan.Notes) == 0 {
			t.Fatalf("%+v, %v", plan, err)
		}
	})
	t.Run("timeline without history keeps its WAL", func(t *testing.T) {
		s := newSynth(t)
		s.Segs(1, 1, 10, func(n uint64) time.Time { return tmin(int(n)) })
		s.Segs(3, 2, 4, func(n uint64) time.Time { return tmin(int(n)) })
		s.Backup("b1", 1, 2, 2, tmin(2), tmin(2), false)
		s.Backup("b2", 1, 8, 8, tmin(8), tmin(8), false)
		plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(20)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range plan.WAL {
			if r.Timeline == 3 && r.Delete {
				t.Fatalf("deletes WAL of a timeline without history: %+v", r)
			}
		}
	})
}

func TestMarkPermanent(t *testing.T) {
	s := twoTimelines(t)
	m, changed, err := MarkPermanent(s.Ctx, s.R, "b3", true)
	if err != nil || !changed || !m.Permanent {
		t.Fatalf("%v %v %v", m, changed, err)
	}
	// The manifest is not rewritten: a signed mark record decides.
	full, sum, err := s.R.ReadManifestSum(s.Ctx, "b3", false)
	if err != nil || full.Permanent || len(full.Files) != 4 || full.StopLSN != m.StopLSN {
		t.Fatalf("the manifest changed: %+v, %v", full, err)
	}
	cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
	if err != nil || !cat.Folder("b3").Manifest.Permanent || cat.Folder("b3").ManifestSHA256 != sum {
		t.Fatalf("the catalog does not see the mark: %v", err)
	}
	if _, changed, err := MarkPermanent(s.Ctx, s.R, "b3", true); err != nil || changed {
		t.Fatalf("second mark: changed=%v err=%v", changed, err)
	}
	plan, _ := Decide(s.Ctx, s.R, Policy{RetainFull: 2, Now: tmin(100)})
	if del, _ := decisions(plan); strings.Join(del, ",") != "b1" {
		t.Fatalf("after marking b3 permanent, deletes %v", del)
	}
	if _, _, err := MarkPermanent(s.Ctx, s.R, "b3", false); err != nil {
		t.Fatal(err)
	}
	// Marked permanent between plan and delete: skipped.
	plan, _ = Decide(s.Ctx, s.R, Policy{RetainFull: 2, Now: tmin(100)})
	if _, _, err := MarkPermanent(s.Ctx, s.R, "b3", true); err != nil {
		t.Fatal(err)
	}
	res, err := Apply(s.Ctx, s.R, plan)
	if err != nil || len(res.Skipped) != 1 || res.Skipped[0] != "b3" {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, err := s.R.ReadManifest(s.Ctx, "b3", true); err != nil {
		t.Fatalf("b3 deleted although marked permanent: %v", err)
	}
	// A delete under way refuses the mark, and changes nothing.
	s.Put(repo.BackupKey("b4", repo.TombstoneFile), []byte("{}"), time.Time{})
	if _, _, err := MarkPermanent(s.Ctx, s.R, "b4", true); !errors.Is(err, archive.ErrConflict) {
		t.Fatalf("mark during a delete: %v", err)
	}
	if b4, err := s.R.ReadManifest(s.Ctx, "b4", true); err != nil || b4.Permanent {
		t.Fatalf("a refused mark changed the manifest: %+v, %v", b4, err)
	}
	if _, _, err := MarkPermanent(s.Ctx, s.R, "nope", true); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("unknown backup: %v", err)
	}
	// Parts gone: the mark must not resurrect the backup.
	_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("b5", "part-00001"))
	if _, _, err := MarkPermanent(s.Ctx, s.R, "b5", true); !errors.Is(err, archive.ErrConflict) {
		t.Fatalf("mark of a backup losing its parts: %v", err)
	}
	for k := range s.Keys() {
		if strings.HasPrefix(k, repo.BackupKey("b5", repo.MarkPrefix)) {
			t.Fatalf("a refused mark left its record %s", k)
		}
	}
}

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour,
		"1d12h": 36 * time.Hour, "90m": 90 * time.Minute, "1.5d": 36 * time.Hour, " 12h ": 12 * time.Hour} {
		if got, err := ParseWindow(in); err != nil || got != want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "7", "d", "-1d", "0d", "7 days", "1y", "abc"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
	}
	for d, want := range map[time.Duration]string{7 * 24 * time.Hour: "7d", 36 * time.Hour: "1d12h", 90 * time.Minute: "1h30m", 12 * time.Hour: "12h",
		24*time.Hour + 30*time.Minute: "1d30m", 24*time.Hour + 12*time.Hour + 30*time.Minute: "1d12h30m"} {
		if got := FormatWindow(d); got != want {
			t.Errorf("FormatWindow(%v) = %q, want %q", d, got, want)
		}
	}
}

var errKilled = errors.New("killed")

// killedAfter is st where every Delete after the first n fails, as a
// walvault killed at that moment would leave the store.
func killedAfter(st cloud.Store, n int) cloud.Store {
	f := storetest.NewFaults(st)
	f.Set(storetest.Rule{Op: storetest.Delete, Skip: n, Err: errKilled})
	return f
}

// A delete cut short after any number of deletions never leaves a
// backup listed that is not whole, and a re-run reaches exactly the state
// an uninterrupted run does.
func TestRetentionCrashAnywhere(t *testing.T) {
	pol := Policy{RetainFull: 2, Now: tmin(100)}
	ref := twoTimelines(t)
	plan, err := Decide(ref.Ctx, ref.R, pol)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ref.Ctx, ref.R, plan); err != nil {
		t.Fatal(err)
	}
	want := strings.Join(sortedKeys(ref.Keys()), "\n")
	for n := 0; n < 50; n++ {
		s := twoTimelines(t)
		good := s.R.Store
		s.R.Store = killedAfter(good, n)
		plan, err := Decide(s.Ctx, s.R, pol)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Apply(s.Ctx, s.R, plan)
		s.R.Store = good
		if err == nil {
			if n < 10 {
				t.Fatalf("killed after %d deletes, but the run finished", n)
			}
			t.Logf("killed after 0 to %d deletes: every re-run finished the job, no listed backup lost an object", n-1)
			break
		}
		list, lerr := s.ListBackups()
		if lerr != nil {
			t.Fatal(lerr)
		}
		for _, m := range list {
			if miss, _ := missingParts(s.Ctx, good, m); miss != "" {
				t.Fatalf("killed after %d deletes: backup %s is listed but %s is gone", n, m.Name, miss)
			}
		}
		plan, err = Decide(s.Ctx, s.R, pol)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(s.Ctx, s.R, plan); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(sortedKeys(s.Keys()), "\n"); got != want {
			t.Fatalf("killed after %d deletes, the re-run left\n%s\nwant\n%s", n, got, want)
		}
	}
}

// WAL on no kept backup's path is deleted only when it was archived before
// the oldest kept backup started: a timeline a trial restore left long ago
// goes, one written since (maybe in use) stays.
func TestRetentionAbandonedTimelines(t *testing.T) {
	s := newSynth(t)
	s.Segs(1, 1, 30, func(n uint64) time.Time { return tmin(2 * int(n)) })
	s.Backup("b1", 1, 2, 2, tmin(4), tmin(4), false)
	s.Backup("b2", 1, 20, 20, tmin(40), tmin(40), false)
	// Old trial restore from b1: timeline 2 off segment 3, long ago.
	s.History(2, "1\t0/300000\tx\n", tmin(7))
	s.Segs(2, 3, 5, func(n uint64) time.Time { return tmin(7 + int(n)) })
	// Recent restore from b1: timeline 3 off segment 4, archived after b2
	// started, though timeline 1 is still the newest archived.
	s.History(3, "1\t0/400000\tx\n", tmin(45))
	s.Segs(3, 4, 6, func(n uint64) time.Time { return tmin(45 + int(n)) })
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if del, _ := decisions(plan); strings.Join(del, ",") != "b1" {
		t.Fatalf("deletes %v", del)
	}
	for _, r := range plan.WAL {
		if r.Timeline == 2 && !r.Delete || r.Timeline == 3 && r.Delete {
			t.Errorf("timeline %d %s-%s: delete=%v (%s)", r.Timeline, r.First, r.Last, r.Delete, r.Reason)
		}
	}
}

// The store's clock may lag the database host's: WAL a kept backup needs
// is kept because it needs it, whatever its modification time says.
func TestRetentionClockSkew(t *testing.T) {
	s := newSynth(t)
	s.Segs(1, 1, 20, func(n uint64) time.Time { return tmin(2 * int(n)) })
	s.Backup("b0", 1, 2, 2, tmin(4), tmin(4), false)
	// Taken by a host whose clock runs 20 minutes ahead of the store's.
	s.Backup("b1", 1, 10, 10, tmin(50), tmin(50), false)
	s.History(2, "1\t0/C00000\tx\n", tmin(41))
	s.Segs(2, 12, 15, func(n uint64) time.Time { return tmin(30 + int(n)) })
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if del, _ := decisions(plan); strings.Join(del, ",") != "b0" {
		t.Fatalf("deletes %v", del)
	}
	for _, r := range plan.WAL {
		if r.Timeline == 2 && r.Delete {
			t.Fatalf("deletes timeline 2, which b1 can follow: %+v", r)
		}
	}
}

// A permanent backup kept alone keeps its own WAL, an island before the
// newer backup's: verify after delete finds the store whole.
func TestRetentionPermanentIslandVerifies(t *testing.T) {
	s := newSynth(t)
	s.Segs(1, 1, 30, func(n uint64) time.Time { return tmin(int(n)) })
	s.Backup("b1", 1, 5, 6, tmin(5), tmin(6), true)
	s.Backup("b2", 1, 12, 12, tmin(12), tmin(12), false)
	s.Backup("b3", 1, 20, 21, tmin(20), tmin(21), false)
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(60)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(s.Ctx, s.R, plan); err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Run(s.Ctx, s.R, verify.Options{})
	if err != nil || !rep.OK {
		t.Fatalf("%v\n%v", err, rep.Problems)
	}
	if r := rep.Timelines[0].Ranges; len(r) != 2 || r[0].Last != s.SegName(1, 6) || r[1].First != s.SegName(1, 20) {
		t.Fatalf("ranges %+v", r)
	}
	// Losing a segment of either island is found.
	_ = s.R.Store.Delete(s.Ctx, s.SegKey(1, 6))
	if rep, _ := verify.Run(s.Ctx, s.R, verify.Options{}); rep.OK {
		t.Fatal("a segment of the permanent backup's WAL is missing, verify passed")
	}
}

// A backup that cannot be restored does not count toward --retain-full:
// it cannot push a good one out.
func TestRetentionBrokenBackupsDoNotCount(t *testing.T) {
	for _, breakIt := range []string{"part", "wal"} {
		t.Run(breakIt, func(t *testing.T) {
			s := newSynth(t)
			s.Segs(1, 1, 20, func(n uint64) time.Time { return tmin(int(n)) })
			s.Backup("b1", 1, 2, 2, tmin(2), tmin(2), false)
			s.Backup("b2", 1, 8, 8, tmin(8), tmin(8), false)
			s.Backup("b3", 1, 14, 14, tmin(14), tmin(14), false)
			if breakIt == "part" {
				_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("b3", "part-00001"))
			} else {
				_ = s.R.Store.Delete(s.Ctx, s.SegKey(1, 14))
			}
			plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(60)})
			if err != nil {
				t.Fatal(err)
			}
			del, keep := decisions(plan)
			if strings.Join(del, ",") != "b1" || strings.Join(keep, ",") != "b2,b3" {
				t.Fatalf("delete %v keep %v: b3 cannot be restored, b2 is the newest good backup", del, keep)
			}
			if !strings.Contains(strings.Join(plan.Notes, "\n"), "b3 cannot be restored") {
				t.Fatalf("notes %v", plan.Notes)
			}
			// Nothing restorable at all: delete nothing.
			_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("b1", "part-00000"))
			_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("b2", "part-00000"))
			if _, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(60)}); !errors.Is(err, archive.ErrVerifyFailed) {
				t.Fatalf("no good backup: %v", err)
			}
		})
	}
}
