package status

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// What monitoring reports is authenticated: with a segment and a part
// deleted before the newest backup and an unsigned segment name planted
// after the last real one, status names each, keeps the PITR window on
// this side of the gap, and does not take the planted name for the last
// archived segment.
func TestStatusCountsOnlyAuthenticated(t *testing.T) {
	ctx := context.Background()
	s := backuptest.NewSynth(t)
	w := backuptest.SignedRepo(t, s.R.Store)
	r := &repo.Repo{Store: s.R.Store, Verify: w.Verify}
	src := filepath.Join(t.TempDir(), "src")
	backuptest.WriteTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": "data"})
	backup := func(name, wal string) *repo.Manifest {
		return backuptest.Push(t, w, src, name, func(m *repo.Manifest) {
			m.SegmentSize = backuptest.SynthSegSize
			m.StartWAL, m.StopWAL = wal, wal
			w, _ := archive.ParseWALName(wal)
			m.StartLSN = archive.LSN(w.SegNo(backuptest.SynthSegSize)*uint64(backuptest.SynthSegSize) + 0x28)
			m.StopLSN = m.StartLSN + 0x100
			m.StopTime = time.Now().Add(-time.Hour)
			if name == "b2" {
				m.StopTime = time.Now().Add(-time.Minute)
			}
		})
	}
	b1 := backup("b1", "000000010000000000000020")
	for n := uint64(0x20); n <= 0x26; n++ {
		backuptest.PutWAL(t, w, s.SegName(1, n))
	}
	backup("b2", "000000010000000000000024")
	if rep, err := Collect(ctx, r, Options{}); err != nil || len(rep.Problems()) != 0 || rep.PITR == nil || rep.PITR.StartBackup != "b1" {
		t.Fatalf("a sound archive: %v %q %+v", err, rep.Problems(), rep.PITR)
	}
	time.Sleep(10 * time.Millisecond)
	_ = s.R.Store.Delete(ctx, s.SegKey(1, 0x22))
	_ = s.R.Store.Delete(ctx, repo.BackupKey(b1.Name, b1.Parts[0].Name))
	if err := s.R.Store.Put(ctx, s.SegKey(1, 0x30), cloud.Bytes([]byte("")), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := Collect(ctx, r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	probs := strings.Join(rep.Problems(), "\n")
	for _, want := range []string{"backups/b1/part-00000: missing", "000000010000000000000030 fails authentication", "WAL gap 000000010000000000000022"} {
		if !strings.Contains(probs, want) {
			t.Errorf("problems lack %q:\n%s", want, probs)
		}
	}
	if rep.PITR == nil || rep.PITR.StartBackup != "b2" {
		t.Errorf("PITR window %+v: want it to start at b2, after the gap", rep.PITR)
	}
	if rep.LastSegment == nil || rep.LastSegment.Name != s.SegName(1, 0x26) {
		t.Errorf("last archived %+v: want the last authenticated segment, 000000010000000000000026", rep.LastSegment)
	}
}
