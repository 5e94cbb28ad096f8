package archive

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

func bk(name string, tli uint32, stop string, finished time.Time, nextXID uint64) *Manifest {
	return &Manifest{Name: name, Timeline: tli, StopLSN: stop, StopTime: finished, StopNextXID: nextXID}
}

func TestSelectBackup(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	backups := []*Manifest{
		bk("b1", 1, "0/3000100", t0, 700),
		bk("b2", 1, "0/9000100", t0.Add(time.Hour), 900),
		bk("b3", 2, "0/C000100", t0.Add(2*time.Hour), 1200),
	}
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	lsn := func(s string) *LSN { l, _ := ParseLSN(s); return &l }
	// Timeline 2 branched from timeline 1 at 0/5000000: b2 (stop 0/9000100
	// on timeline 1) is not on its history, b1 is.
	hist2 := []historyEntry{{TLI: 1, End: 0x5000000}}
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
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBadInput) {
				t.Fatalf("got %v, %v; want ErrBadInput containing %q", got, err, tt.want)
			}
		})
	}
	if _, err := selectBackup(nil, Selection{}); err == nil || !strings.Contains(err.Error(), "no complete backup") {
		t.Fatalf("empty store: %v", err)
	}
}

func TestParseHistory(t *testing.T) {
	h, err := parseHistory("1\t0/5000000\tno recovery target specified\n\n2\t0/7A000D8\tbefore 2026-11-29 21:15:00+00\n")
	if err != nil || len(h) != 2 || h[0].TLI != 1 || h[0].End != 0x5000000 || h[1].TLI != 2 || h[1].End != 0x7A000D8 {
		t.Fatalf("got %+v, %v", h, err)
	}
	for _, bad := range []string{"x\t0/1\n", "1\n", "1\tzz\n", "0\t0/1\n"} {
		if _, err := parseHistory(bad); err == nil {
			t.Errorf("parseHistory(%q) accepted", bad)
		}
	}
	m := bk("b", 1, "0/4000000", time.Time{}, 0)
	if !onHistory(m, 2, h) || !onHistory(m, 0, nil) || !onHistory(m, 1, nil) {
		t.Fatal("a backup before the branch point is on the history")
	}
	m.StopLSN = "0/6000000"
	if onHistory(m, 3, h) || onHistory(m, 2, nil) {
		t.Fatal("a backup after the branch point is not on the history")
	}
}

func TestWALRangesAndListing(t *testing.T) {
	ctx := context.Background()
	st, err := cloud.Open(ctx, "file://"+t.TempDir(), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, body string) {
		if err := st.Put(ctx, key, strings.NewReader(body), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const seg = 16 << 20
	for _, n := range []string{"000000010000000000000002", "000000010000000000000003", "000000010000000000000004", "000000010000000000000006", "0000000100000001000000FF"} {
		put(WALKey(WALFile{Name: n}), "x")
	}
	put(WALKey(WALFile{Name: "00000002.history", Kind: KindHistory}), "1\t0/5000000\tx\n")
	full := func(name, start, stop string, at time.Time) *Manifest {
		m := sampleManifest()
		m.Name, m.StartWAL, m.StopWAL, m.StopTime, m.SegmentSize = name, start, stop, at, seg
		return m
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := []*Manifest{
		full("b_ok", "000000010000000000000002", "000000010000000000000003", t0),
		full("b_gap", "000000010000000000000004", "000000010000000000000006", t0.Add(time.Minute)),
		full("b_none", "000000010000000000000010", "000000010000000000000010", t0.Add(2*time.Minute)),
	}
	for _, m := range ms {
		body, _ := encodeManifest(m)
		put(BackupKey(m.Name, ManifestFile), string(body))
	}
	put(BackupKey("b_killed", "part-00000"), "half a backup")
	put(BackupKey("b_bad", ManifestFile), "{not json")

	cfg := &Config{Store: st}
	list, err := ListBackups(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "b_ok,b_gap,b_none" {
		t.Fatalf("listed %v: want only complete backups, by finish time", names)
	}
	r, err := WALRanges(ctx, st, list)
	if err != nil {
		t.Fatal(err)
	}
	if got := r["b_ok"]; got.First != "000000010000000000000002" || got.Last != "000000010000000000000004" || !got.Restorable {
		t.Errorf("b_ok: %+v", got)
	}
	if got := r["b_gap"]; got.Last != "000000010000000000000004" || got.Restorable {
		t.Errorf("b_gap: %+v (the stop segment is past a gap)", got)
	}
	if got := r["b_none"]; got.First != "" || got.Restorable {
		t.Errorf("b_none: %+v", got)
	}
	if tli, err := latestTimeline(ctx, st); err != nil || tli != 2 {
		t.Fatalf("latest timeline %d, %v", tli, err)
	}
	h, err := readHistory(ctx, cfg, 2)
	if err != nil || len(h) != 1 || h[0].End != 0x5000000 {
		t.Fatalf("history %+v, %v", h, err)
	}
	if _, err := readHistory(ctx, cfg, 3); !errors.Is(err, ErrBadInput) {
		t.Fatalf("missing history: %v", err)
	}
	if _, err := ReadManifest(ctx, cfg, "b_killed", true); !errors.Is(err, ErrNotInArchive) {
		t.Fatalf("a backup without manifest: %v", err)
	}
	m, err := ReadManifest(ctx, cfg, "b_ok", false)
	if err != nil || len(m.Files) != 4 {
		t.Fatalf("full manifest: %v", err)
	}
}
