package restore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// reachable reads the catalog of s as restore does and checks m's WAL.
func reachable(s *synth, m *repo.Manifest, tg Target) error {
	s.T.Helper()
	cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{WAL: repo.WALOfBackups, History: true})
	if err != nil {
		s.T.Fatal(err)
	}
	return CheckWALReachable(cat, m, tg, s.R.Store.String())
}

func TestCheckWALReachable(t *testing.T) {
	s := newSynth(t)
	s.Segs(1, 1, 20, func(n uint64) time.Time { return tmin(int(n)) })
	m := s.Backup("b", 1, 3, 4, tmin(3), tmin(4), false)
	lsn := func(s string) *archive.LSN { l, _ := archive.ParseLSN(s); return &l }
	check := func(tg Target) error {
		t.Helper()
		if err := tg.Validate(); err != nil {
			t.Fatal(err)
		}
		return reachable(s, m, tg)
	}
	if err := check(Target{}); err != nil {
		t.Fatalf("whole archive: %v", err)
	}
	if err := check(Target{LSN: lsn("0/1500000")}); err == nil || !strings.Contains(err.Error(), "past the newest archived WAL") {
		t.Fatalf("target past the end: %v", err)
	}
	// Segment 20, the newest, was stored at tmin(20): a time after it is
	// past the archive, and the message says how far it reaches.
	for _, tt := range []struct {
		target Target
		want   string // "" = accepted
	}{
		{Target{Time: timePtr(tmin(19))}, ""},
		{Target{Time: timePtr(tmin(20))}, ""},
		{Target{Time: timePtr(tmin(20).Add(1500 * time.Millisecond))}, ""}, // S3 has whole seconds; clocks differ a little
		{Target{Time: timePtr(tmin(20).Add(3 * time.Second))}, "the latest moment the archive reaches is about " + archive.FormatTime(tmin(20))},
		{Target{Time: timePtr(tmin(21))}, "the latest moment the archive reaches is about " + archive.FormatTime(tmin(20))},
		{Target{Time: timePtr(tmin(21)), BeyondArchive: true}, ""},
		{Target{LSN: lsn("0/1500000"), BeyondArchive: true}, ""},
	} {
		err := check(tt.target)
		if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), tt.want) ||
			!strings.Contains(err.Error(), "--allow-target-beyond-archive")) {
			t.Errorf("%+v: %v, want %q", tt.target, err, tt.want)
		}
	}
	for _, k := range s.WALKeys(1, 10, 11) {
		_ = s.R.Store.Delete(s.Ctx, k)
	}
	tests := []struct {
		name   string
		target Target
		want   string // "" = reachable
	}{
		{"latest", Target{}, "would stop short"},
		{"lsn before the gap", Target{LSN: lsn("0/9FFFFF")}, ""},
		{"lsn in the gap", Target{LSN: lsn("0/A00000")}, "cannot be reached"},
		{"lsn after the gap", Target{LSN: lsn("0/1000000")}, "cannot be reached"},
		{"lsn far after", Target{LSN: lsn("0/12000000")}, "cannot be reached"},
		{"time before the gap", Target{Time: timePtr(tmin(7))}, ""},
		{"time after the gap", Target{Time: timePtr(tmin(15))}, "--target-time"},
		{"immediate", Target{Immediate: true}, ""},
		{"xid: unknown position, a warning", Target{XID: "1234"}, ""},
		{"timeline 1 explicitly", Target{Timeline: "1"}, "would stop short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(tt.target)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want reachable: %v", err)
				}
				return
			}
			if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "00000001000000000000000A - 00000001000000000000000B (2 segments") {
				t.Fatalf("got %v, want ErrIntegrity with %q naming the gap", err, tt.want)
			}
		})
	}
	_ = s.R.Store.Delete(s.Ctx, repo.WALKey(archive.WALFile{Name: m.StopWAL}))
	if err := check(Target{Immediate: true}); !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "cannot be made consistent") {
		t.Fatalf("stop segment missing: %v", err)
	}

	// Across timelines: b2 follows timeline 2 from the switch at segment 15.
	tl := twoTimelines(t)
	b2, err := tl.R.ReadManifest(tl.Ctx, "b2", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := reachable(tl, b2, Target{Timeline: "latest"}); err != nil {
		t.Fatalf("b2 to timeline 2: %v", err)
	}
	_ = tl.R.Store.Delete(tl.Ctx, repo.WALKey(archive.WALFile{Name: "000000020000000000000014"}))
	err = reachable(tl, b2, Target{Timeline: "latest"})
	if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "000000020000000000000014 (1 segment, timeline 2)") {
		t.Fatalf("gap on timeline 2: %v", err)
	}
	if err := reachable(tl, b2, Target{Timeline: "current"}); err != nil {
		t.Fatalf("timeline 1 has no gap: %v", err)
	}
	b3, _ := tl.R.ReadManifest(tl.Ctx, "b3", true)
	if err := reachable(tl, b3, Target{Timeline: "2"}); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("b3 is after the branch: %v", err)
	}
}
