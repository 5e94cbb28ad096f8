package verify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// The data directory and backups these tests verify are built by
// archive/internal/backuptest, shared with restore's tests.
var (
	pushTestBackup = backuptest.Push
	writeTree      = backuptest.WriteTree
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

// segs archives segments from..to of tli, segment n at when(n).
func (s *synth) segs(tli uint32, from, to uint64, when func(n uint64) time.Time) {
	for n := from; n <= to; n++ {
		s.put(repo.WALKey(archive.WALFile{Name: s.segName(tli, n)}), []byte("segment"), when(n))
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

func (s *synth) walKeys(tli uint32, from, to uint64) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, repo.WALKey(archive.WALFile{Name: s.segName(tli, n)}))
	}
	return out
}

// twoTimelines builds the scenario: on timeline 1, b1, then b2
// (permanent), then b3; meanwhile a restore from b2 to a point at segment
// 15 started timeline 2 (promoted later, archiving the .partial of
// timeline 1's segment 15), where b4 and b5 were taken. Timeline 1 went on
// to segment 30 before it was abandoned.
func twoTimelines(t *testing.T) *synth {
	s := newSynth(t)
	s.segs(1, 1, 30, func(n uint64) time.Time { return tmin(int(n)) })
	s.backup("b1", 1, 3, 4, tmin(3), tmin(4), false)
	s.backup("b2", 1, 10, 11, tmin(10), tmin(11), true)
	s.backup("b3", 1, 20, 21, tmin(20), tmin(21), false)
	s.history(2, "1\t0/F12345\tbefore 2026-11-01 00:15:00+00\n", tmin(60))
	s.put(repo.WALKey(archive.WALFile{Name: s.segName(1, 15) + ".partial"}), []byte("partial"), tmin(60))
	s.segs(2, 15, 40, func(n uint64) time.Time { return tmin(60 + int(n)) })
	s.backup("b4", 2, 25, 26, tmin(85), tmin(86), false)
	s.backup("b5", 2, 35, 36, tmin(95), tmin(96), false)
	return s
}

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

// flakyStore cuts the first download of every part short, as a connection
// reset would, after 80% of its bytes.
type flakyStore struct {
	cloud.Store
	mu     sync.Mutex
	broken map[string]bool
}

func newFlakyStore(st cloud.Store) cloud.Store {
	return cloud.WithRetry(&flakyStore{Store: st, broken: map[string]bool{}}, cloud.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond})
}

func (f *flakyStore) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	rc, info, err := f.Store.Get(ctx, key)
	if err != nil || !strings.Contains(key, "/part-") {
		return rc, info, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken[key] {
		return rc, info, nil
	}
	f.broken[key] = true
	return &cutReader{rc: rc, left: info.Size * 8 / 10}, info, nil
}

type cutReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, syscall.ECONNRESET
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }

// stopSegment is the last segment a backup needs: the one holding the byte
// before the stop LSN.
func stopSegment(tli uint32, stop archive.LSN, segSize int64) string {
	if stop > 0 {
		stop--
	}
	return archive.SegmentOf(tli, stop, segSize)
}

// badChecksumStore fails every read of a part at its end as a store whose
// own checksum of the object does not match would.
type badChecksumStore struct{ cloud.Store }

func (b badChecksumStore) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	rc, info, err := b.Store.Get(ctx, key)
	if err != nil || !strings.Contains(key, "/part-") {
		return rc, info, err
	}
	return &checksumFailure{rc}, info, nil
}

type checksumFailure struct{ io.ReadCloser }

func (c *checksumFailure) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err == io.EOF {
		err = fmt.Errorf("%w: checksum did not match", cloud.ErrChecksum)
	}
	return n, err
}
