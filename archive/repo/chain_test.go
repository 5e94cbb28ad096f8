package repo_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
)

var tmin = backuptest.Tmin

// chainStore holds f1 <- i1 <- i2 and f2 <- i3 (each link its parent's
// manifest digest and chain), then lets a case break it.
func chainStore(t *testing.T) *backuptest.Synth {
	s := backuptest.NewSynth(t)
	s.Segs(1, 1, 20, func(n uint64) time.Time { return tmin(int(n)) })
	s.Backup("f1", 1, 2, 2, tmin(2), tmin(2), false)
	s.Incremental("i1", "f1", 1, 4, 4, tmin(4), tmin(4), false)
	s.Incremental("i2", "i1", 1, 6, 6, tmin(6), tmin(6), false)
	s.Backup("f2", 1, 8, 8, tmin(8), tmin(8), false)
	s.Incremental("i3", "f2", 1, 10, 10, tmin(10), tmin(10), false)
	return s
}

func TestCatalogChains(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(s *backuptest.Synth)
		broken  map[string]string // backup -> words of the reason
	}{
		{"whole", func(*backuptest.Synth) {}, nil},
		{"parent deleted", func(s *backuptest.Synth) {
			for k := range s.Keys() {
				if strings.HasPrefix(k, repo.BackupPrefix+"i1/") {
					_ = s.R.Store.Delete(s.Ctx, k)
				}
			}
		}, map[string]string{"i2": "needs its ancestor i1, which is not in file://"}},
		{"full's manifest gone: the whole chain is", func(s *backuptest.Synth) {
			_ = s.R.Store.Delete(s.Ctx, repo.BackupKey("f1", repo.ManifestFile))
		}, map[string]string{"i1": "needs its ancestor f1, which is not in", "i2": "cannot be restored: needs its ancestor f1, which is not in"}},
		{"parent damaged", func(s *backuptest.Synth) {
			s.Put(repo.BackupKey("i1", repo.ManifestFile), []byte(`{"format": 2, "name": "i1"`), time.Time{})
		}, map[string]string{"i2": "needs its ancestor i1, whose manifest cannot be used"}},
		{"parent rewritten", func(s *backuptest.Synth) {
			s.Backup("f2", 1, 8, 8, tmin(8), tmin(8), true) // backup-mark would do this
		}, map[string]string{"i3": "its ancestor f2 is not the backup i3 was taken against"}},
		{"chain that skips a link", func(s *backuptest.Synth) {
			s.Incremental("i4", "i2", 1, 12, 12, tmin(12), tmin(12), false, func(m *repo.Manifest) { m.Chain = []string{"i2", "f1"} })
		}, map[string]string{"i4": "is not its parent i2 followed by the parent's chain (i1, f1)"}},
		{"parent of another timeline", func(s *backuptest.Synth) {
			s.Incremental("i4", "f2", 1, 12, 12, tmin(12), tmin(12), false, func(m *repo.Manifest) {
				m.Timeline = 2
				m.StartWAL, m.StopWAL = s.SegName(2, 12), s.SegName(2, 12)
			})
		}, map[string]string{"i4": "on timeline 1, not 2"}},
		{"parent newer than the child", func(s *backuptest.Synth) {
			s.Incremental("i4", "i3", 1, 9, 9, tmin(12), tmin(12), false)
		}, map[string]string{"i4": "after it"}},
		{"parent of another cluster", func(s *backuptest.Synth) {
			s.Incremental("i4", "i3", 1, 12, 12, tmin(12), tmin(12), false, func(m *repo.Manifest) { m.SystemIdentifier = "42" })
		}, map[string]string{"i4": "another cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := chainStore(t)
			tt.breakIt(s)
			cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
			if err != nil {
				t.Fatal(err)
			}
			listed := map[string]bool{}
			for _, m := range cat.Backups() {
				listed[m.Name] = true
			}
			for _, f := range cat.Folders {
				want, bad := tt.broken[f.Name]
				switch {
				case bad && (f.Broken == nil || f.Manifest != nil || listed[f.Name] || !errors.Is(f.Err, archive.ErrIntegrity) || !strings.Contains(f.Err.Error(), want)):
					t.Errorf("%s: broken %v, err %v; want listed as damaged: %s", f.Name, f.Broken != nil, f.Err, want)
				case !bad && f.Broken != nil:
					t.Errorf("%s: broken: %v", f.Name, f.Err)
				}
			}
		})
	}
}

func TestCatalogChainView(t *testing.T) {
	s := chainStore(t)
	cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i2 := cat.Folder("i2").Manifest
	var names []string
	for _, a := range cat.Ancestors(i2) {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "i1,f1" {
		t.Fatalf("ancestors of i2: %v", names)
	}
	// Synth backups store 20 bytes each.
	if n := cat.ChainStoredSize(i2); n != 3*i2.StoredSize {
		t.Fatalf("chain stored size %d", n)
	}
	if n := cat.ChainStoredSize(cat.Folder("f2").Manifest); n != i2.StoredSize {
		t.Fatalf("a full's chain stored size %d", n)
	}
	if c := cat.Children("f1"); len(c) != 1 || c[0].Name != "i1" {
		t.Fatalf("children of f1: %v", c)
	}
	if c := cat.Children("i2"); len(c) != 0 {
		t.Fatalf("children of i2: %v", c)
	}
	for _, f := range cat.Folders {
		if f.ManifestSHA256 == "" {
			t.Fatalf("%s: no manifest digest", f.Name)
		}
	}
	list := cat.Backups()
	repo.ChainOrder(list)
	pos := map[string]int{}
	for i, m := range list {
		pos[m.Name] = i
	}
	if !(pos["i2"] < pos["i1"] && pos["i1"] < pos["f1"] && pos["i3"] < pos["f2"]) {
		t.Fatalf("chain order %v", pos)
	}
}
