package restore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

func bk(name string, tli uint32, stop string, finished time.Time, nextXID uint64) *repo.Manifest {
	return &repo.Manifest{Name: name, Timeline: tli, StopLSN: mustLSN(stop), StopTime: finished, StopNextXID: nextXID}
}

func TestSelectBackup(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	backups := []*repo.Manifest{
		bk("b1", 1, "0/3000100", t0, 700),
		bk("b2", 1, "0/9000100", t0.Add(time.Hour), 900),
		bk("b3", 2, "0/C000100", t0.Add(2*time.Hour), 1200),
	}
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	lsn := func(s string) *archive.LSN { l, _ := archive.ParseLSN(s); return &l }
	// Timeline 2 branched from timeline 1 at 0/5000000: b2 (stop 0/9000100
	// on timeline 1) is not on its history, b1 is.
	hist2 := []archive.HistoryEntry{{TLI: 1, End: 0x5000000}}
	tests := []struct {
		name string
		sel  Selection
		want string // backup name, or an error substring
	}{
		{"latest by default", Selection{}, "b3"},
		{"LATEST", Selection{Backup: "LATEST"}, "b3"},
		{"by name", Selection{Backup: "b1"}, "b1"},
		{"unknown name", Selection{Backup: "nope"}, "no complete backup named"},
		{"time picks the newest finished before", Selection{Time: at(90 * time.Minute)}, "b2"},
		{"time equal to a finish is not before it", Selection{Time: at(time.Hour)}, "b1"},
		{"time before all", Selection{Time: at(-time.Minute)}, "no backup finished before"},
		{"named backup after the target time", Selection{Backup: "b2", Time: at(30 * time.Minute)}, "not before the target time"},
		{"lsn at the stop", Selection{LSN: lsn("0/9000100")}, "b2"},
		{"lsn between", Selection{LSN: lsn("0/8000000")}, "b1"},
		{"lsn before all", Selection{LSN: lsn("0/1000000")}, "no backup stops at or before"},
		{"xid after b2 began", Selection{XID: 950}, "b2"},
		{"xid before all", Selection{XID: 10}, "no backup ended before transaction"},
		{"timeline 2 skips b2", Selection{TargetTLI: 2, History: hist2, Time: at(150 * time.Minute)}, "b3"},
		{"timeline 2 before b3", Selection{TargetTLI: 2, History: hist2, Time: at(90 * time.Minute)}, "b1"},
		{"timeline 1 only", Selection{TargetTLI: 1}, "b2"},
		{"named backup off the timeline", Selection{TargetTLI: 2, History: hist2, Backup: "b2"}, "not on the history of timeline 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := selectBackup(backups, tt.sel)
			if strings.HasPrefix(tt.want, "b") && !strings.Contains(tt.want, " ") {
				if err != nil || got.Name != tt.want {
					t.Fatalf("got %v, %v; want %s", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, archive.ErrBadInput) {
				t.Fatalf("got %v, %v; want ErrBadInput containing %q", got, err, tt.want)
			}
		})
	}
	if _, err := selectBackup(nil, Selection{}); err == nil || !strings.Contains(err.Error(), "no complete backup") {
		t.Fatalf("empty store: %v", err)
	}
}

// The onHistory half of the old TestParseHistory (the parsing half is in
// archive/history_test.go).
func TestOnHistory(t *testing.T) {
	h, err := archive.ParseHistory("1\t0/5000000\tno recovery target specified\n\n2\t0/7A000D8\tbefore 2026-11-29 21:15:00+00\n")
	if err != nil || len(h) != 2 {
		t.Fatalf("got %+v, %v", h, err)
	}
	m := bk("b", 1, "0/4000000", time.Time{}, 0)
	if !onHistory(m, 2, h) || !onHistory(m, 0, nil) || !onHistory(m, 1, nil) {
		t.Fatal("a backup before the branch point is on the history")
	}
	m.StopLSN = 0x6000000
	if onHistory(m, 3, h) || onHistory(m, 2, nil) {
		t.Fatal("a backup after the branch point is not on the history")
	}
}
