package backuptest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Synth is a file:// store filled by hand, for restore's, verify's and
// retention's tests: WAL objects, history files and backups with chosen
// names, LSNs and modification times. Objects are written raw, unsigned,
// so its repository reads with AllowUnsigned.
type Synth struct {
	T       testing.TB
	Ctx     context.Context
	Root    string
	R       *repo.Repo
	SegSize int64
}

// SynthSegSize is the synthetic cluster's WAL segment size.
const SynthSegSize = 1 << 20

// SynthT0 is the moment Tmin counts from.
var SynthT0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// NewSynth makes an empty synthetic store.
func NewSynth(t testing.TB) *Synth {
	t.Helper()
	root := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &Synth{T: t, Ctx: context.Background(), Root: root, R: &repo.Repo{Store: st, AllowUnsigned: true}, SegSize: SynthSegSize}
}

// Tmin is SynthT0 plus minutes.
func Tmin(minutes int) time.Time { return SynthT0.Add(time.Duration(minutes) * time.Minute) }

// Put stores body under key, with modification time when (unless zero).
func (s *Synth) Put(key string, body []byte, when time.Time) {
	s.T.Helper()
	s.put(key, body, nil, when)
}

// put is Put with metadata.
func (s *Synth) put(key string, body []byte, meta map[string]string, when time.Time) {
	s.T.Helper()
	if err := s.R.Store.Put(s.Ctx, key, cloud.Bytes(body), cloud.PutOptions{Metadata: meta}); err != nil {
		s.T.Fatal(err)
	}
	if !when.IsZero() {
		if err := os.Chtimes(filepath.Join(s.Root, filepath.FromSlash(key)), when, when); err != nil {
			s.T.Fatal(err)
		}
	}
}

// SegName names segment n of tli.
func (s *Synth) SegName(tli uint32, n uint64) string { return archive.SegmentName(tli, n, s.SegSize) }

// SegKey is the store key of segment n of tli.
func (s *Synth) SegKey(tli uint32, n uint64) string {
	return repo.WALKey(archive.WALFile{Name: s.SegName(tli, n)})
}

// Segs archives segments from..to of tli, segment n at when(n).
func (s *Synth) Segs(tli uint32, from, to uint64, when func(n uint64) time.Time) {
	body := []byte("segment")
	sum := sha256.Sum256(body)
	// The content's digest, as an unsigned walvault wrote it (read back
	// whole by verify --full).
	meta := map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(body))}
	for n := from; n <= to; n++ {
		s.put(s.SegKey(tli, n), body, meta, when(n))
	}
}

// History archives the history file of tli.
func (s *Synth) History(tli uint32, text string, when time.Time) {
	s.Put(repo.HistoryPrefix+archive.HistoryName(tli), []byte(text), when)
}

// Backup stores a manifest (and its two parts) for a backup from segment
// start to stop of tli.
func (s *Synth) Backup(name string, tli uint32, start, stop uint64, began, ended time.Time, permanent bool, mutate ...func(*repo.Manifest)) *repo.Manifest {
	s.T.Helper()
	m := SampleManifest()
	m.Name, m.Timeline, m.SegmentSize, m.Permanent = name, tli, s.SegSize, permanent
	m.StartLSN = archive.LSN(start*uint64(s.SegSize) + 0x28) // #nosec G115 -- small test segment numbers
	m.StopLSN = archive.LSN(stop*uint64(s.SegSize) + 0x100)  // #nosec G115 -- small test segment numbers
	m.StartWAL, m.StopWAL = s.SegName(tli, start), s.SegName(tli, stop)
	m.StartTime, m.StopTime = began, ended
	for _, f := range mutate {
		f(m)
	}
	body, err := repo.EncodeManifest(m)
	if err != nil {
		s.T.Fatal(err)
	}
	// SampleManifest's parts: 10 stored bytes each.
	s.Put(repo.BackupKey(name, "part-00000"), []byte("part zero!"), ended)
	s.Put(repo.BackupKey(name, "part-00001"), []byte("part one!!"), ended)
	// Sums objects of the size those parts' have (verify checks sizes).
	s.Put(repo.SumsKey(repo.BackupKey(name, "part-00000")), make([]byte, repo.SumsLen(10)), ended)
	s.Put(repo.SumsKey(repo.BackupKey(name, "part-00001")), make([]byte, repo.SumsLen(10)), ended)
	s.Put(repo.BackupKey(name, repo.ManifestFile), body, ended)
	return m
}

// WALKeys are the keys of segments from..to of tli.
func (s *Synth) WALKeys(tli uint32, from, to uint64) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, s.SegKey(tli, n))
	}
	return out
}

// Keys lists every key in the store.
func (s *Synth) Keys() map[string]bool {
	s.T.Helper()
	out := map[string]bool{}
	err := s.R.Store.List(s.Ctx, "", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		out[o.Key] = true
		return nil
	})
	if err != nil {
		s.T.Fatal(err)
	}
	return out
}

// ListBackups is what backup-list shows: the complete backups.
func (s *Synth) ListBackups() ([]*repo.Manifest, error) {
	cat, err := s.R.LoadCatalog(s.Ctx, repo.CatalogOptions{})
	if err != nil {
		return nil, err
	}
	return cat.Backups(), nil
}

// TwoTimelines builds the retention issue's scenario: on timeline 1, b1,
// then b2 (permanent), then b3; meanwhile a restore from b2 to a point at
// segment 15 started timeline 2 (promoted later, archiving the .partial of
// timeline 1's segment 15), where b4 and b5 were taken. Timeline 1 went
// on to segment 30 before it was abandoned.
func TwoTimelines(t testing.TB) *Synth {
	s := NewSynth(t)
	s.Segs(1, 1, 30, func(n uint64) time.Time { return Tmin(int(n)) }) // #nosec G115 -- small test segment numbers
	s.Backup("b1", 1, 3, 4, Tmin(3), Tmin(4), false)
	s.Backup("b2", 1, 10, 11, Tmin(10), Tmin(11), true)
	s.Backup("b3", 1, 20, 21, Tmin(20), Tmin(21), false)
	s.History(2, "1\t0/F12345\tbefore 2026-11-01 00:15:00+00\n", Tmin(60))
	s.Put(repo.WALKey(archive.WALFile{Name: s.SegName(1, 15) + ".partial"}), []byte("partial"), Tmin(60))
	s.Segs(2, 15, 40, func(n uint64) time.Time { return Tmin(60 + int(n)) }) // #nosec G115 -- small test segment numbers
	s.Backup("b4", 2, 25, 26, Tmin(85), Tmin(86), false)
	s.Backup("b5", 2, 35, 36, Tmin(95), Tmin(96), false)
	return s
}

// SampleManifest is a manifest of a backup with two parts of 10 stored
// bytes each (a copy of the one in repo's tests).
func SampleManifest() *repo.Manifest {
	t0 := time.Date(2026, 11, 29, 21, 15, 0, 0, time.UTC)
	return &repo.Manifest{
		Format: repo.ManifestFormat, Name: "base_20261129T211500Z_000000010000000000000004", PGVersion: 150004,
		SystemIdentifier: "7300000000000000001", Timeline: 1, StartLSN: 0x4000028, StopLSN: 0x4000138,
		StartWAL: "000000010000000000000004", StopWAL: "000000010000000000000004", StartTime: t0, StopTime: t0.Add(3 * time.Second),
		SegmentSize: 16 << 20, Compression: "lz4", DataSize: 30, StoredSize: 20,
		Parts: []repo.Part{
			{Name: "part-00000", Files: 2, Size: 3072, StoredSize: 10, SHA256: strings.Repeat("ab", 32), Sums: strings.Repeat("a1", 32)},
			{Name: "part-00001", Files: 1, Size: 2048, StoredSize: 10, SHA256: strings.Repeat("cd", 32), Sums: strings.Repeat("c1", 32)},
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
