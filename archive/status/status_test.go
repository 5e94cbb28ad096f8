package status

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// synth is a file:// store filled by hand, as verify's tests build one:
// objects written raw (so the repo allows unsigned ones) with chosen
// modification times.
type synth struct {
	t    *testing.T
	ctx  context.Context
	root string
	r    *repo.Repo
}

const segSize = 1 << 20

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func tmin(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

func newSynth(t *testing.T) *synth {
	t.Helper()
	root := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &synth{t: t, ctx: context.Background(), root: root, r: &repo.Repo{Store: st, AllowUnsigned: true}}
}

func (s *synth) put(key string, body []byte, when time.Time) {
	s.t.Helper()
	if err := s.r.Store.Put(s.ctx, key, cloud.Bytes(body), cloud.PutOptions{}); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(s.root, filepath.FromSlash(key)), when, when); err != nil {
		s.t.Fatal(err)
	}
}

func segKey(tli uint32, n uint64) string {
	return repo.WALKey(archive.WALFile{Name: archive.SegmentName(tli, n, segSize)})
}

func (s *synth) segs(tli uint32, from, to uint64) {
	for n := from; n <= to; n++ {
		s.put(segKey(tli, n), []byte("segment!"), tmin(int(n))) // 8 bytes
	}
}

func (s *synth) drop(tli uint32, from, to uint64) {
	for n := from; n <= to; n++ {
		if err := os.Remove(filepath.Join(s.root, filepath.FromSlash(segKey(tli, n)))); err != nil {
			s.t.Fatal(err)
		}
	}
}

// backup stores a manifest and its two parts (10 bytes each) for a backup
// of tli from segment start to stop, finished at ended.
func (s *synth) backup(name string, start, stop uint64, ended time.Time) {
	s.t.Helper()
	m := &repo.Manifest{
		Format: repo.ManifestFormat, Name: name, PGVersion: 150004, SystemIdentifier: "7300000000000000001", Timeline: 1,
		StartLSN: archive.LSN(start*segSize + 0x28), StopLSN: archive.LSN(stop*segSize + 0x100),
		StartWAL: archive.SegmentName(1, start, segSize), StopWAL: archive.SegmentName(1, stop, segSize),
		StartTime: ended.Add(-time.Minute), StopTime: ended, SegmentSize: segSize, Compression: "lz4", DataSize: 30, StoredSize: 20,
		Parts: []repo.Part{
			{Name: "part-00000", Files: 2, Size: 3072, StoredSize: 10, SHA256: strings.Repeat("ab", 32), Sums: strings.Repeat("a1", 32)},
			{Name: "part-00001", Files: 1, Size: 2048, StoredSize: 10, SHA256: strings.Repeat("cd", 32), Sums: strings.Repeat("c1", 32)},
		},
		FileCount: 4,
		Files: []repo.File{
			{Path: "base", Type: repo.TypeDir, Mode: "0700", MTime: ended},
			{Path: "base/1/1259", Size: 10, Mode: "0600", MTime: ended, CRC32C: "0badcafe"},
			{Path: "PG_VERSION", Size: 3, Mode: "0600", MTime: ended, CRC32C: "12345678"},
			{Path: "backup_label", Part: 1, Size: 17, Mode: "0600", MTime: ended, CRC32C: "87654321"},
		},
	}
	body, err := repo.EncodeManifest(m)
	if err != nil {
		s.t.Fatal(err)
	}
	s.put(repo.BackupKey(name, "part-00000"), []byte("part zero!"), ended)
	s.put(repo.BackupKey(name, "part-00001"), []byte("part one!!"), ended)
	s.put(repo.SumsKey(repo.BackupKey(name, "part-00000")), make([]byte, repo.SumsLen(10)), ended)
	s.put(repo.SumsKey(repo.BackupKey(name, "part-00001")), make([]byte, repo.SumsLen(10)), ended)
	s.put(repo.BackupKey(name, repo.ManifestFile), body, ended)
}

// scenario: segments 1 to 30 of timeline 1 with 25 and 26 missing; b1
// (segments 3-4) and b2 (20-21); b3 with a damaged manifest, finished
// last; and an interrupted backup folder. Now is 30 hours after segment
// 30: the newest backup is stale.
func scenario(t *testing.T) (*synth, time.Time) {
	s := newSynth(t)
	s.segs(1, 1, 30)
	s.drop(1, 25, 26)
	s.backup("b1", 3, 4, tmin(4))
	s.backup("b2", 20, 21, tmin(21))
	s.put(repo.BackupKey("b3", "part-00000"), []byte("part"), tmin(29))
	s.put(repo.BackupKey("b3", repo.ManifestFile), []byte("{not a manifest"), tmin(29))
	s.put(repo.BackupKey("b4", "part-00000"), []byte("part"), tmin(29))
	return s, tmin(30).Add(30 * time.Hour)
}

func gapNames(gs []repo.WALGap) string {
	var out []string
	for _, g := range gs {
		out = append(out, g.String())
	}
	return strings.Join(out, "; ")
}

func TestFigures(t *testing.T) {
	s, now := scenario(t)
	state := filepath.Join(t.TempDir(), "state", "status.json")
	rep, err := Collect(s.ctx, s.r, Options{Now: now, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if b := rep.NewestBackup; b == nil || b.Name != "b2" || !b.FinishTime.Equal(tmin(21)) || b.AgeSeconds != now.Sub(tmin(21)).Seconds() {
		t.Fatalf("newest backup %+v", b)
	}
	if rep.Backups != 2 || len(rep.BadBackups) != 1 || rep.BadBackups[0].Name != "b3" || rep.BadBackups[0].Mark != "DAMAGED" || rep.Incomplete != 1 {
		t.Fatalf("backups %d bad %+v incomplete %d", rep.Backups, rep.BadBackups, rep.Incomplete)
	}
	if rep.NewestDump != nil {
		t.Fatal("newest_dump without a dump in the store")
	}
	if l := rep.LastSegment; l == nil || l.Name != archive.SegmentName(1, 30, segSize) || !l.Time.Equal(tmin(30)) || l.AgeSeconds != 30*3600 {
		t.Fatalf("last segment %+v", l)
	}
	if w := rep.PITR; w == nil || w.StartBackup != "b1" || !w.Start.Equal(tmin(4)) || !w.End.Equal(tmin(24)) ||
		w.EndSegment != archive.SegmentName(1, 24, segSize) || w.EndLSN != "0/1900000" {
		t.Fatalf("PITR window %+v", rep.PITR)
	}
	if len(rep.WAL.Gaps) != 1 || rep.WAL.Gaps[0].First != archive.SegmentName(1, 25, segSize) || rep.WAL.Gaps[0].Count != 2 || rep.WAL.Segments != 2 {
		t.Fatalf("gaps %s", gapNames(rep.WAL.Gaps))
	}
	// The first run checks from the newest backup's start.
	if c := rep.WAL.Checked; len(c) != 1 || c[0].First != archive.SegmentName(1, 20, segSize) || c[0].Last != archive.SegmentName(1, 30, segSize) {
		t.Fatalf("checked %+v", c)
	}
	// 28 segments of 8 bytes; the backup folders as listed.
	var want int64 = 28 * 8
	var backupBytes int64
	if err := s.r.Store.List(s.ctx, repo.BackupPrefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		backupBytes += o.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if rep.Size.WALBytes != want || rep.Size.BackupBytes != backupBytes || rep.Size.Bytes < want+backupBytes {
		t.Fatalf("size %+v (want WAL %d, backups %d)", rep.Size, want, backupBytes)
	}

	t.Run("next run checks only what is new and remembers the gap", func(t *testing.T) {
		s.segs(1, 31, 34)
		s.drop(1, 32, 32)
		rep, err := Collect(s.ctx, s.r, Options{Now: now, StateFile: state})
		if err != nil {
			t.Fatal(err)
		}
		if c := rep.WAL.Checked; len(c) != 1 || c[0].First != archive.SegmentName(1, 30, segSize) || c[0].Last != archive.SegmentName(1, 34, segSize) {
			t.Fatalf("checked %+v", c)
		}
		if len(rep.WAL.Gaps) != 2 || rep.WAL.Segments != 3 {
			t.Fatalf("gaps %s", gapNames(rep.WAL.Gaps))
		}
		// Filling the old gap clears it.
		s.segs(1, 25, 26)
		rep, err = Collect(s.ctx, s.r, Options{Now: now, StateFile: state})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.WAL.Gaps) != 1 || rep.WAL.Gaps[0].First != archive.SegmentName(1, 32, segSize) {
			t.Fatalf("gaps %s", gapNames(rep.WAL.Gaps))
		}
		if w := rep.PITR; w == nil || w.EndSegment != archive.SegmentName(1, 31, segSize) {
			t.Fatalf("PITR window %+v", w)
		}
	})
}

func TestThresholds(t *testing.T) {
	s, now := scenario(t)
	probe := func(ready int, lastArchived time.Duration, failing bool) ServerProbe {
		return func(_ context.Context, now time.Time) (*Server, error) {
			la := now.Add(-lastArchived)
			srv := &Server{SegSize: segSize, LastArchived: "00000001000000000000001E", LastArchivedTime: &la, ReadyFiles: &ready, Failing: failing}
			srv.lag(now)
			return srv, nil
		}
	}
	th := Thresholds{MaxBackupAge: 26 * time.Hour, MaxArchiveLag: 15 * time.Minute}
	for _, tc := range []struct {
		name  string
		probe ServerProbe
		now   time.Time
		want  []string // substrings of the reasons, in order
	}{
		{"stale backup and lagging archiver", probe(3, 20*time.Minute, false), now, []string{"the newest backup b2 finished 30h9m0s ago", "WAL has waited 20m0s"}},
		{"fresh backup, idle server", probe(0, 5*time.Hour, false), tmin(30), nil},
		{"failing archiver", probe(0, 16*time.Minute, true), tmin(30), []string{"WAL has waited 16m0s"}},
		{"server unreachable", func(context.Context, time.Time) (*Server, error) {
			return nil, archive.ErrPostgres
		}, tmin(30), []string{"the archive lag cannot be read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Collect(s.ctx, s.r, Options{Now: tc.now, Server: tc.probe})
			if err != nil {
				t.Fatal(err)
			}
			got := rep.Exceeded(th)
			if len(got) != len(tc.want) {
				t.Fatalf("reasons %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Fatalf("reason %q lacks %q", got[i], w)
				}
			}
		})
	}
	t.Run("unreachable server leaves the fields null", func(t *testing.T) {
		rep, err := Collect(s.ctx, s.r, Options{Now: now, Server: func(context.Context, time.Time) (*Server, error) {
			return nil, archive.ErrPostgres
		}})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Server != nil || rep.ArchiveLag() != nil || rep.ReadyFiles() != nil || rep.ServerError == "" {
			t.Fatalf("server %+v lag %v ready %v error %q", rep.Server, rep.ArchiveLag(), rep.ReadyFiles(), rep.ServerError)
		}
	})
	t.Run("no backup at all", func(t *testing.T) {
		e := newSynth(t)
		rep, err := Collect(e.ctx, e.r, Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.Exceeded(Thresholds{MaxBackupAge: time.Hour}); len(got) != 1 || !strings.Contains(got[0], "no complete backup") {
			t.Fatalf("reasons %q", got)
		}
	})
}

func TestTextfile(t *testing.T) {
	s, now := scenario(t)
	ready := 4
	la := now.Add(-90 * time.Second)
	rep, err := Collect(s.ctx, s.r, Options{Now: now, Server: func(context.Context, time.Time) (*Server, error) {
		srv := &Server{SegSize: segSize, LastArchivedTime: &la, ReadyFiles: &ready}
		srv.lag(now)
		return srv, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "walvault.prom")
	if err := rep.WriteTextfile(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		t.Helper()
		mf, ok := mfs[name]
		if !ok || len(mf.GetMetric()) != 1 {
			t.Fatalf("no single %s in the textfile", name)
		}
		m := mf.GetMetric()[0]
		if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "store" || m.GetLabel()[0].GetValue() != rep.Store {
			t.Fatalf("%s labels %v", name, m.GetLabel())
		}
		return m.GetGauge().GetValue()
	}
	for name, want := range map[string]float64{
		"walvault_last_backup_age_seconds":             now.Sub(tmin(21)).Seconds(),
		"walvault_last_backup_timestamp_seconds":       float64(tmin(21).Unix()),
		"walvault_last_archived_wal_age_seconds":       30 * 3600,
		"walvault_archive_lag_seconds":                 90,
		"walvault_ready_wal_files":                     4,
		"walvault_wal_gaps":                            1,
		"walvault_wal_gap_segments":                    2,
		"walvault_archive_bytes":                       float64(rep.Size.Bytes),
		"walvault_pitr_window_start_timestamp_seconds": float64(tmin(4).Unix()),
		"walvault_pitr_window_end_timestamp_seconds":   float64(tmin(24).Unix()),
		"walvault_damaged_backups":                     1,
		"walvault_backups":                             2,
		"walvault_server_up":                           1,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("textfile mode: %v %v", st, err)
	}
	t.Run("unknown figures are left out", func(t *testing.T) {
		e := newSynth(t)
		rep, err := Collect(e.ctx, e.r, Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		mfs, err := rep.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "walvault_last_backup_age_seconds", "walvault_archive_lag_seconds", "walvault_ready_wal_files", "walvault_pitr_window_start_timestamp_seconds":
				t.Fatalf("%s present without a value to give", mf.GetName())
			}
		}
	})
}
