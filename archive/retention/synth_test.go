package retention

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// synth is a file:// store filled by hand: WAL objects, history files and
// backups with chosen names, LSNs and modification times.
type synth struct {
	t       *testing.T
	ctx     context.Context
	root    string
	r       *repo.Repo
	segSize int64
}

const synthSeg = 1 << 20

var synthT0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func newSynth(t *testing.T) *synth {
	t.Helper()
	root := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &synth{t: t, ctx: context.Background(), root: root, r: &repo.Repo{Store: st, AllowUnsigned: true}, segSize: synthSeg} // objects are written raw, unsigned
}

// tmin is t0 plus minutes.
func tmin(minutes int) time.Time { return synthT0.Add(time.Duration(minutes) * time.Minute) }

func (s *synth) put(key string, body []byte, when time.Time) {
	s.t.Helper()
	if err := s.r.Store.Put(s.ctx, key, bytes.NewReader(body), cloud.PutOptions{}); err != nil {
		s.t.Fatal(err)
	}
	if !when.IsZero() {
		if err := os.Chtimes(filepath.Join(s.root, filepath.FromSlash(key)), when, when); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *synth) segName(tli uint32, n uint64) string { return archive.SegmentName(tli, n, s.segSize) }

// segKey is the store key of segment n of tli.
func (s *synth) segKey(tli uint32, n uint64) string {
	return repo.WALKey(archive.WALFile{Name: s.segName(tli, n)})
}

// segs archives segments from..to of tli, segment n at when(n).
func (s *synth) segs(tli uint32, from, to uint64, when func(n uint64) time.Time) {
	for n := from; n <= to; n++ {
		s.put(s.segKey(tli, n), []byte("segment"), when(n))
	}
}

func (s *synth) history(tli uint32, text string, when time.Time) {
	s.put(repo.HistoryPrefix+archive.HistoryName(tli), []byte(text), when)
}

// backup stores a manifest (and one part) for a backup from segment start
// to stop of tli.
func (s *synth) backup(name string, tli uint32, start, stop uint64, began, ended time.Time, permanent bool, mutate ...func(*repo.Manifest)) *repo.Manifest {
	s.t.Helper()
	m := sampleManifest()
	m.Name, m.Timeline, m.SegmentSize, m.Permanent = name, tli, s.segSize, permanent
	m.StartLSN = archive.LSN(start*uint64(s.segSize) + 0x28)
	m.StopLSN = archive.LSN(stop*uint64(s.segSize) + 0x100)
	m.StartWAL, m.StopWAL = s.segName(tli, start), s.segName(tli, stop)
	m.StartTime, m.StopTime = began, ended
	for _, f := range mutate {
		f(m)
	}
	body, err := repo.EncodeManifest(m)
	if err != nil {
		s.t.Fatal(err)
	}
	// sampleManifest's parts: 10 stored bytes each.
	s.put(repo.BackupKey(name, "part-00000"), []byte("part zero!"), ended)
	s.put(repo.BackupKey(name, "part-00001"), []byte("part one!!"), ended)
	s.put(repo.BackupKey(name, repo.ManifestFile), body, ended)
	return m
}

// keys lists every key in the store.
func (s *synth) keys() map[string]bool {
	s.t.Helper()
	out := map[string]bool{}
	err := s.r.Store.List(s.ctx, "", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		out[o.Key] = true
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *synth) walKeys(tli uint32, from, to uint64) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, s.segKey(tli, n))
	}
	return out
}

// listBackups is what backup-list shows: the complete backups.
func (s *synth) listBackups() ([]*repo.Manifest, error) {
	cat, err := s.r.LoadCatalog(s.ctx, repo.CatalogOptions{})
	if err != nil {
		return nil, err
	}
	return cat.Backups(), nil
}

// sampleManifest is a manifest of a backup with two parts of 10 stored
// bytes each (a copy of the one in repo's tests).
func sampleManifest() *repo.Manifest {
	t0 := time.Date(2026, 11, 29, 21, 15, 0, 0, time.UTC)
	return &repo.Manifest{
		Format: repo.ManifestFormat, Name: "base_20261129T211500Z_000000010000000000000004", PGVersion: 150004,
		SystemIdentifier: "7300000000000000001", Timeline: 1, StartLSN: 0x4000028, StopLSN: 0x4000138,
		StartWAL: "000000010000000000000004", StopWAL: "000000010000000000000004", StartTime: t0, StopTime: t0.Add(3 * time.Second),
		SegmentSize: 16 << 20, Compression: "lz4", DataSize: 30, StoredSize: 20,
		Parts: []repo.Part{
			{Name: "part-00000", Files: 2, Size: 3072, StoredSize: 10, SHA256: strings.Repeat("ab", 32)},
			{Name: "part-00001", Files: 1, Size: 2048, StoredSize: 10, SHA256: strings.Repeat("cd", 32)},
		},
		FileCount: 4,
		Files: []repo.File{
			{Path: "base", Type: repo.TypeDir, Mode: "0700", MTime: t0},
			{Path: "base/1/1259", Size: 10, Mode: "0600", MTime: t0, CRC32C: "0badcafe"},
			{Path: "PG_VERSION", Size: 3, Mode: "0600", MTime: t0, CRC32C: "12345678"},
			{Path: "backup_label", Part: 1, Size: 17, Mode: "0600", MTime: t0, CRC32C: "87654321"},
		},
	}
}
