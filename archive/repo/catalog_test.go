package repo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

func TestWALRangesAndListing(t *testing.T) {
	ctx := context.Background()
	st, err := cloud.Open(ctx, "file://"+t.TempDir(), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, body string) {
		if err := st.Put(ctx, key, cloud.Bytes([]byte(body)), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const seg = 16 << 20
	for _, n := range []string{"000000010000000000000002", "000000010000000000000003", "000000010000000000000004", "000000010000000000000006", "0000000100000001000000FF"} {
		put(WALKey(archive.WALFile{Name: n}), "x")
	}
	put(WALKey(archive.WALFile{Name: "00000002.history", Kind: archive.KindHistory}), "1\t0/5000000\tx\n")
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
		body, _ := EncodeManifest(m)
		put(BackupKey(m.Name, ManifestFile), string(body))
	}
	put(BackupKey("b_killed", "part-00000"), "half a backup")
	put(BackupKey("b_bad", ManifestFile), "{not json")

	r := &Repo{Store: st, AllowUnsigned: true} // objects written raw, as before walvault signed them
	cat, err := r.LoadCatalog(ctx, CatalogOptions{WAL: WALOfBackups, History: true})
	if err != nil {
		t.Fatal(err)
	}
	list := cat.Backups()
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "b_ok,b_gap,b_none" {
		t.Fatalf("listed %v: want only complete backups, by finish time", names)
	}
	inv := cat.WAL(seg)
	ranges := map[string]WALRange{}
	for _, m := range list {
		ranges[m.Name] = inv.Range(m)
	}
	if got := ranges["b_ok"]; got.First != "000000010000000000000002" || got.Last != "000000010000000000000004" || !got.Restorable {
		t.Errorf("b_ok: %+v", got)
	}
	if got := ranges["b_gap"]; got.Last != "000000010000000000000004" || got.Restorable {
		t.Errorf("b_gap: %+v (the stop segment is past a gap)", got)
	}
	if got := ranges["b_none"]; got.First != "" || got.Restorable {
		t.Errorf("b_none: %+v", got)
	}
	if tli := cat.LatestTimeline(); tli != 2 {
		t.Fatalf("latest timeline %d", tli)
	}
	h, err := cat.History(2)
	if err != nil || len(h) != 1 || h[0].End != 0x5000000 {
		t.Fatalf("history %+v, %v", h, err)
	}
	if h, err := r.ReadHistory(ctx, 2); err != nil || len(h) != 1 || h[0].End != 0x5000000 {
		t.Fatalf("history %+v, %v", h, err)
	}
	if _, err := r.ReadHistory(ctx, 3); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("missing history: %v", err)
	}
	if _, err := cat.History(3); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("missing history in the catalog: %v", err)
	}
	if _, err := r.ReadManifest(ctx, "b_killed", true); !errors.Is(err, archive.ErrNotInArchive) {
		t.Fatalf("a backup without manifest: %v", err)
	}
	m, err := r.ReadManifest(ctx, "b_ok", false)
	if err != nil || len(m.Files) != 4 {
		t.Fatalf("full manifest: %v", err)
	}
}
