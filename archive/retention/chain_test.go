package retention

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/archive/verify"
)

// chains builds, on timeline 1 with segments 1 to 60 archived, three
// fulls each with incrementals: f1 <- i1a <- i1b, f2 <- i2a <- i2b,
// f3 <- i3a; each backup starts and stops at the segment its minute says
// (f1 at 2, i1a 4, i1b 6, f2 10, i2a 12, i2b 14, f3 20, i3a 22).
// permanent names backups to mark.
func chains(t *testing.T, permanent ...string) *backuptest.Synth {
	s := newSynth(t)
	s.Segs(1, 1, 60, func(n uint64) time.Time { return tmin(int(n)) })
	perm := map[string]bool{}
	for _, p := range permanent {
		perm[p] = true
	}
	for _, b := range []struct {
		name, parent string
		seg          uint64
	}{{"f1", "", 2}, {"i1a", "f1", 4}, {"i1b", "i1a", 6}, {"f2", "", 10}, {"i2a", "f2", 12}, {"i2b", "i2a", 14}, {"f3", "", 20}, {"i3a", "f3", 22}} {
		at := tmin(int(b.seg))
		if b.parent == "" {
			s.Backup(b.name, 1, b.seg, b.seg, at, at, perm[b.name])
		} else {
			s.Incremental(b.name, b.parent, 1, b.seg, b.seg, at, at, perm[b.name])
		}
	}
	return s
}

func reasonsOf(p *Plan, name string) string {
	for _, b := range p.Backups {
		if b.Name == name {
			return strings.Join(b.Reasons, "; ")
		}
	}
	return ""
}

// walDecision is the decision on segment n of timeline 1.
func walDecision(t *testing.T, s *backuptest.Synth, p *Plan, n uint64) (bool, string) {
	name := s.SegName(1, n)
	for _, r := range p.WAL {
		if r.Timeline == 1 && r.First <= name && name <= r.Last {
			return r.Delete, r.Reason
		}
	}
	t.Fatalf("segment %s not in the plan", name)
	return false, ""
}

func TestRetentionChains(t *testing.T) {
	tests := []struct {
		name      string
		permanent []string
		breakIt   func(s *backuptest.Synth)
		pol       Policy
		del       string
		reasons   map[string]string // backup -> words of a reason to keep it
		walKeep   []uint64          // segments kept
		walDelete []uint64          // segments deleted
	}{
		{name: "retain-full 1 keeps the newest full and its incrementals", pol: Policy{RetainFull: 1},
			del: "f1,i1a,i1b,f2,i2a,i2b", reasons: map[string]string{"f3": "the newest (--retain-full 1)", "i3a": "newer than the newest full backup (--retain-full 1)"},
			walKeep: []uint64{20, 60}, walDelete: []uint64{19}},
		{name: "retain-full 2 counts fulls, not backups", pol: Policy{RetainFull: 2},
			del: "f1,i1a,i1b", reasons: map[string]string{"i2a": "newer than the 2nd newest full backup", "f2": "one of the 2 newest"},
			walKeep: []uint64{10}, walDelete: []uint64{9}},
		{name: "retain-full larger than the fulls", pol: Policy{RetainFull: 9}, del: ""},
		{name: "before keeps the chain of what it keeps, and the WAL from its full's start", pol: Policy{Before: timePtr(tmin(13))},
			del: "f1,i1a,i1b", reasons: map[string]string{"i2a": "parent of i2b (kept)", "f2": "parent of i2a (kept)"},
			walKeep: []uint64{10, 11, 14}, walDelete: []uint64{9}},
		{name: "window keeps the chain of the backup before it", pol: Policy{RetainWindow: 80 * time.Minute},
			del: "f1,i1a,i1b", reasons: map[string]string{"i2b": "start of --retain-window", "f2": "parent of i2a (kept)"}},
		{name: "min-keep keeps chains too", pol: Policy{RetainFull: 1, MinKeep: 3},
			del: "f1,i1a,i1b", reasons: map[string]string{"i2b": "--min-keep 3", "i2a": "parent of i2b (kept)"}},
		{name: "a permanent incremental keeps its ancestors, each with its own WAL", permanent: []string{"i1a"}, pol: Policy{RetainFull: 1},
			del: "i1b,f2,i2a,i2b", reasons: map[string]string{"i1a": reasonPermanent, "f1": "parent of i1a (kept)"},
			walKeep: []uint64{2, 4, 20}, walDelete: []uint64{1, 3, 5, 19}},
		{name: "a permanent incremental two links down", permanent: []string{"i1b"}, pol: Policy{RetainFull: 1},
			del: "f2,i2a,i2b", reasons: map[string]string{"i1a": "parent of i1b (kept)", "f1": "parent of i1a (kept)"},
			walKeep: []uint64{2, 4, 6, 20}, walDelete: []uint64{3, 5, 7, 19}},
		{name: "a damaged full breaks its incrementals, which do not count", breakIt: func(s *backuptest.Synth) {
			_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("f2", "part-00001"))
		}, pol: Policy{RetainFull: 2}, del: "",
			reasons: map[string]string{"f1": "one of the 2 newest", "i2b": "cannot be restored (its ancestor f2 cannot be read (part-00001 is missing))"}},
		{name: "a damaged full's chain goes with the fulls before the kept one", breakIt: func(s *backuptest.Synth) {
			_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("f2", "part-00001"))
		}, pol: Policy{RetainFull: 1}, del: "f1,i1a,i1b,f2,i2a,i2b"},
		{name: "an incremental whose parent's manifest is gone can be deleted", breakIt: func(s *backuptest.Synth) {
			_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("i2a", repo.ManifestFile))
		}, pol: Policy{RetainFull: 1}, del: "f1,i1a,i1b,f2,i2b"},
		{name: "the ancestors of the newest are kept", pol: Policy{Before: timePtr(tmin(1000))},
			del: "f1,i1a,i1b,f2,i2a,i2b", reasons: map[string]string{"i3a": reasonNewest, "f3": "parent of i3a (kept)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := chains(t, tt.permanent...)
			if tt.breakIt != nil {
				tt.breakIt(s)
			}
			tt.pol.Now = tmin(100)
			plan, err := Decide(s.Ctx, s.R, tt.pol)
			if err != nil {
				t.Fatal(err)
			}
			del, _ := decisions(plan)
			if strings.Join(del, ",") != tt.del {
				t.Fatalf("deletes %v, want %s\n%+v", del, tt.del, plan.Backups)
			}
			for name, want := range tt.reasons {
				if got := reasonsOf(plan, name); !strings.Contains(got, want) {
					t.Errorf("%s kept for %q, want %q", name, got, want)
				}
			}
			for _, n := range tt.walKeep {
				if d, why := walDecision(t, s, plan, n); d {
					t.Errorf("segment %d deleted (%s)", n, why)
				}
			}
			for _, n := range tt.walDelete {
				if d, why := walDecision(t, s, plan, n); !d {
					t.Errorf("segment %d kept (%s)", n, why)
				}
			}
			// Whatever delete leaves can be restored: every kept
			// incremental still has its whole chain.
			if _, err := Apply(s.Ctx, s.R, plan); err != nil {
				t.Fatal(err)
			}
			cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range cat.Folders {
				if f.Broken != nil && tt.breakIt == nil {
					t.Errorf("after delete %s is broken: %v", f.Name, f.Err)
				}
			}
			if tt.breakIt == nil {
				if rep, err := verify.Run(s.Ctx, s.R, verify.Options{}); err != nil || !rep.OK {
					t.Fatalf("verify after delete: %v %v", err, rep.Problems)
				}
			}
		})
	}
}

// delete NAME deletes exactly the named backups, and refuses what would
// leave a kept backup without its parent.
func TestRetentionDeleteNamed(t *testing.T) {
	tests := []struct {
		names     []string
		permanent []string
		del       string
		err       error
		words     string
	}{
		{names: []string{"i1b"}, del: "i1b"},
		{names: []string{"i1a", "i1b"}, del: "i1a,i1b"},
		{names: []string{"i1a"}, err: archive.ErrConflict, words: "parent of incremental backup i1b, which is kept"},
		{names: []string{"f3"}, err: archive.ErrConflict, words: "parent of incremental backup i3a"},
		{names: []string{"i3a"}, err: archive.ErrConflict, words: "newest backup that can be restored"},
		{names: []string{"i2b"}, permanent: []string{"i2b"}, err: archive.ErrConflict, words: "permanent"},
		{names: []string{"nope"}, err: archive.ErrBadInput, words: `no backup named "nope"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, "+"), func(t *testing.T) {
			s := chains(t, tt.permanent...)
			plan, err := Decide(s.Ctx, s.R, Policy{Names: tt.names, Now: tmin(100)})
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.words) {
					t.Fatalf("got %v, want %v: %s", err, tt.err, tt.words)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if del, _ := decisions(plan); strings.Join(del, ",") != tt.del {
				t.Fatalf("deletes %v, want %s", del, tt.del)
			}
			if _, err := Apply(s.Ctx, s.R, plan); err != nil {
				t.Fatal(err)
			}
			list, _ := s.ListBackups()
			if len(list) != 8-len(tt.names) {
				t.Fatalf("%d backups left", len(list))
			}
		})
	}
}

// A delete of chains cut short after any number of deletions never
// leaves a listed backup without a part or an ancestor, and a re-run
// reaches what an uninterrupted run does.
func TestRetentionChainsCrashAnywhere(t *testing.T) {
	pol := Policy{RetainFull: 1, Now: tmin(100)}
	ref := chains(t)
	plan, err := Decide(ref.Ctx, ref.R, pol)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ref.Ctx, ref.R, plan); err != nil {
		t.Fatal(err)
	}
	want := strings.Join(sortedKeys(ref.Keys()), "\n")
	for n := 0; n < 60; n++ {
		s := chains(t)
		good := s.R.Store
		s.R.Store = killedAfter(good, n)
		plan, err := Decide(s.Ctx, s.R, pol)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Apply(s.Ctx, s.R, plan)
		s.R.Store = good
		if err == nil {
			t.Logf("killed after 0 to %d deletes: no listed backup lost a part or an ancestor", n-1)
			break
		}
		cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range cat.Folders {
			if f.Broken != nil {
				t.Fatalf("killed after %d deletes: %v", n, f.Err)
			}
		}
		for _, m := range cat.Backups() {
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

// Marked permanent between plan and delete: the incremental and its
// ancestors are skipped. A parent can be marked too: marks are records of
// their own, and its child's record of its manifest's digest stays true.
func TestRetentionChainsMark(t *testing.T) {
	s := chains(t)
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := MarkPermanent(s.Ctx, s.R, "i2a", true); err != nil || !changed {
		t.Fatalf("marking a parent: %v", err)
	}
	if _, _, err := MarkPermanent(s.Ctx, s.R, "i2a", false); err != nil {
		t.Fatalf("unmarking a parent: %v", err)
	}
	m, changed, err := MarkPermanent(s.Ctx, s.R, "i2b", true)
	if err != nil || !changed || strings.Join(m.Chain, ",") != "i2a,f2" {
		t.Fatalf("marking i2b: %v %v %v", m, changed, err)
	}
	res, err := Apply(s.Ctx, s.R, plan)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Skipped, ",") != "f2,i2a,i2b" || res.Backups != 3 {
		t.Fatalf("result %+v: want f2, i2a and i2b skipped", res)
	}
	cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f := cat.Folder("i2b"); f == nil || f.Manifest == nil {
		t.Fatalf("i2b is not restorable after the delete: %+v", f)
	}
	// Now the rules keep the chain for the permanent mark.
	plan, err = Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if del, _ := decisions(plan); len(del) != 0 || !strings.Contains(reasonsOf(plan, "f2"), "parent of i2a (kept)") {
		t.Fatalf("deletes %v; f2 kept for %s", del, reasonsOf(plan, "f2"))
	}
}

// An incremental taken since the plan on a backup the plan deletes keeps
// that backup and its ancestors.
func TestRetentionChainsNewChild(t *testing.T) {
	s := chains(t)
	plan, err := Decide(s.Ctx, s.R, Policy{RetainFull: 1, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	s.Incremental("i1c", "i1b", 1, 30, 30, tmin(30), tmin(30), false)
	res, err := Apply(s.Ctx, s.R, plan)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Skipped, ",") != "f1,i1a,i1b" || res.Backups != 3 {
		t.Fatalf("result %+v: want f1, i1a and i1b skipped", res)
	}
	cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f := cat.Folder("i1c"); f == nil || f.Manifest == nil {
		t.Fatalf("the new incremental lost its chain: %+v", f)
	}
}
