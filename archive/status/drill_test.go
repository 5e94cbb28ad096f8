package status

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/internal/drillrecord"
)

// The drill record this host keeps: shown, gauged, and --max-drill-age.
func TestDrillRecord(t *testing.T) {
	s, now := scenario(t)
	path := filepath.Join(t.TempDir(), "drill.json")
	store := "file://" + s.root
	collect := func() *Report {
		t.Helper()
		rep, err := Collect(s.ctx, s.r, Options{Now: now, DrillStateFile: path})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	th := Thresholds{MaxDrillAge: 8 * 24 * time.Hour}
	rep := collect()
	if rep.Drill == nil || rep.Drill.Last != nil || rep.Drill.StateFile != path {
		t.Fatalf("no record yet: %+v", rep.Drill)
	}
	if got := rep.Exceeded(th); len(got) != 1 || !strings.Contains(got[0], "no successful restore drill recorded") {
		t.Errorf("no drill: %q", got)
	}
	save := func(o drillrecord.Outcome) {
		t.Helper()
		if _, err := drillrecord.Save(path, store, o); err != nil {
			t.Fatal(err)
		}
	}
	save(drillrecord.Outcome{Backup: "b1", Finished: now.Add(-10 * 24 * time.Hour), Success: true})
	save(drillrecord.Outcome{Backup: "b2", Finished: now.Add(-time.Hour), Reason: "sql in database shop: too few orders"})
	rep = collect()
	d := rep.Drill
	if d.Last == nil || d.Last.Success || d.Last.AgeSeconds != 3600 || d.LastSuccess == nil || d.LastSuccess.Backup != "b1" {
		t.Fatalf("record: last %+v, last success %+v", d.Last, d.LastSuccess)
	}
	got := rep.Exceeded(th)
	if len(got) != 1 || !strings.Contains(got[0], "(backup b1) finished 240h0m0s ago, more than --max-drill-age 192h0m0s") || !strings.Contains(got[0], "FAILED: sql in database shop") {
		t.Errorf("a stale success and a failure: %q", got)
	}
	save(drillrecord.Outcome{Backup: "b2", Finished: now.Add(-time.Minute), Success: true})
	if got := collect().Exceeded(th); len(got) != 0 {
		t.Errorf("a fresh success: %q", got)
	}
	prom := filepath.Join(t.TempDir(), "status.prom")
	if err := collect().WriteTextfile(prom); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(prom); !strings.Contains(string(b), `walvault_drill_last_success_timestamp_seconds{backup="b2"`) || !strings.Contains(string(b), "walvault_backups{") {
		t.Errorf("status's textfile:\n%s", b)
	}
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := collect().Exceeded(th); len(got) != 1 || !strings.Contains(got[0], "cannot be read") {
		t.Errorf("a damaged record: %q", got)
	}
	rep, err := Collect(s.ctx, s.r, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Drill != nil {
		t.Errorf("no drill state file, yet %+v", rep.Drill)
	}
}
