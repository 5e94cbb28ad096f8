package status

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// Every figure the textfile can hold passes Prometheus' own lint (names,
// units, help, no _total on a gauge).
func TestTextfileNamesPassPromlint(t *testing.T) {
	now := time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)
	age, lag, ready := 12.0, 0.0, 3
	r := &Report{
		Store: "file:///srv/store", Time: now,
		NewestBackup: &Backup{Name: "base_1", FinishTime: now, AgeSeconds: 1},
		NewestDump:   &Dump{Name: "dump_1", FinishTime: now, AgeSeconds: 1},
		LastSegment:  &Segment{Name: "000000010000000000000001", Time: now, AgeSeconds: 1},
		Server:       &Server{FailedCount: 2, Failing: true, LastArchivedAgeSeconds: &age, ArchiveLagSeconds: &lag, ReadyFiles: &ready},
		PITR:         &Window{Start: now.Add(-time.Hour), End: now, Seconds: 3600},
	}
	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) < 25 {
		t.Fatalf("only %d metrics: the report is not filled in", len(mfs))
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if mf.GetName() == "walvault_archiver_failed_total" {
			t.Error("walvault_archiver_failed_total is back: it is a gauge (walvault_archiver_failures)")
		}
	}
}
