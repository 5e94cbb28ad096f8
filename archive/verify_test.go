package archive

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/walvault/walvault/archive/codec"
)

// verifiedBackup stores a real backup (tar parts, checksums) of a small
// tree with 1 MiB WAL segments 0x20 to 0x30 archived around it.
func verifiedBackup(t *testing.T, s *synth, name string) *Manifest {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, map[string]string{
		"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": strings.Repeat("relation data ", 5000),
		"base/1/1249": "x", "base/1/2608": strings.Repeat("y", 3000), "postgresql.auto.conf": "# auto\n", "pg_wal/archive_status/.keep": "",
	})
	m := pushTestBackup(t, s.cfg, src, name, func(m *Manifest) {
		m.SegmentSize = synthSeg
		m.StartWAL, m.StopWAL = SegmentOf(1, m.Start(), synthSeg), stopSegment(1, m.Stop(), synthSeg)
	})
	return m
}

func partPath(s *synth, m *Manifest) (string, Part) {
	big := m.Parts[0]
	for _, p := range m.Parts {
		if p.StoredSize > big.StoredSize {
			big = p
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(BackupKey(m.Name, big.Name))), big
}

func problemsText(r *VerifyReport) string {
	var out []string
	for _, p := range r.Problems {
		out = append(out, p.String())
	}
	return strings.Join(out, "\n")
}

func TestVerify(t *testing.T) {
	s := newSynth(t)
	m := verifiedBackup(t, s, "base_1")
	if m.StartWAL != "000000010000000000000020" {
		t.Fatalf("start %s", m.StartWAL)
	}
	s.segs(1, 0x20, 0x30, func(n uint64) time.Time { return tmin(int(n)) })
	files := 0
	for _, f := range m.Files {
		if f.Type == TypeFile {
			files++
		}
	}

	rep, err := Verify(s.ctx, s.cfg, VerifyOptions{Full: true, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	b := rep.Backups[0]
	if !rep.OK || !b.Consistent || b.FilesChecked != files || b.RestorableTo == nil || b.RestorableTo.Segment != "000000010000000000000030" ||
		b.RestorableTo.LSN != "0/3100000" || len(rep.Timelines) != 1 || rep.Timelines[0].Segments != 17 {
		t.Fatalf("whole store: %+v %+v\n%s", b, rep.Timelines, problemsText(rep))
	}

	t.Run("gap", func(t *testing.T) {
		for _, k := range s.walKeys(1, 0x25, 0x26) {
			_ = s.cfg.Store.Delete(s.ctx, k)
		}
		defer s.segs(1, 0x25, 0x26, func(n uint64) time.Time { return tmin(int(n)) })
		rep, err := Verify(s.ctx, s.cfg, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g := rep.Timelines[0].Gaps
		if rep.OK || len(g) != 1 || g[0].First != "000000010000000000000025" || g[0].Last != "000000010000000000000026" || g[0].Count != 2 {
			t.Fatalf("gaps %+v\n%s", g, problemsText(rep))
		}
		if to := rep.Backups[0].RestorableTo; to == nil || to.Segment != "000000010000000000000024" {
			t.Fatalf("restorable to %+v, want the segment before the gap", to)
		}
		if !strings.Contains(problemsText(rep), "wal/0000000100000000/000000010000000000000025: missing") {
			t.Fatalf("the gap is not named:\n%s", problemsText(rep))
		}
	})
	t.Run("backup's own WAL missing", func(t *testing.T) {
		key := WALKey(WALFile{Name: m.StopWAL})
		_ = s.cfg.Store.Delete(s.ctx, key)
		defer s.segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
		rep, _ := Verify(s.ctx, s.cfg, VerifyOptions{})
		if rep.OK || rep.Backups[0].Consistent || !strings.Contains(problemsText(rep), "cannot be made consistent") {
			t.Fatalf("%+v\n%s", rep.Backups[0], problemsText(rep))
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		path, part := partPath(s, m)
		orig, _ := os.ReadFile(path)
		defer os.WriteFile(path, orig, 0o600)
		flipped := bytes.Clone(orig)
		flipped[len(flipped)-len(flipped)/3] ^= 0x10
		if err := os.WriteFile(path, flipped, 0o600); err != nil {
			t.Fatal(err)
		}
		if rep, _ := Verify(s.ctx, s.cfg, VerifyOptions{}); !rep.OK {
			t.Fatalf("a size check found a flipped byte? %s", problemsText(rep))
		}
		rep, err := Verify(s.ctx, s.cfg, VerifyOptions{Backup: "base_1", Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK || !strings.Contains(problemsText(rep), BackupKey("base_1", part.Name)+": ") {
			t.Fatalf("full check of a flipped byte:\n%s", problemsText(rep))
		}
	})
	t.Run("truncated part", func(t *testing.T) {
		path, part := partPath(s, m)
		orig, _ := os.ReadFile(path)
		defer os.WriteFile(path, orig, 0o600)
		if err := os.WriteFile(path, orig[:len(orig)-100], 0o600); err != nil {
			t.Fatal(err)
		}
		rep, _ := Verify(s.ctx, s.cfg, VerifyOptions{})
		if rep.OK || !strings.Contains(problemsText(rep), BackupKey("base_1", part.Name)+": is ") {
			t.Fatalf("%s", problemsText(rep))
		}
		rep, _ = Verify(s.ctx, s.cfg, VerifyOptions{Full: true})
		if rep.OK {
			t.Fatal("full check passed a truncated part")
		}
	})
	t.Run("missing part", func(t *testing.T) {
		path, part := partPath(s, m)
		orig, _ := os.ReadFile(path)
		defer os.WriteFile(path, orig, 0o600)
		_ = os.Remove(path)
		rep, err := Verify(s.ctx, s.cfg, VerifyOptions{Full: true})
		if err != nil || rep.OK || !strings.Contains(problemsText(rep), BackupKey("base_1", part.Name)+": missing") {
			t.Fatalf("%v\n%s", err, problemsText(rep))
		}
	})
	t.Run("truncated manifest", func(t *testing.T) {
		path := filepath.Join(s.root, filepath.FromSlash(BackupKey("base_1", ManifestFile)))
		orig, _ := os.ReadFile(path)
		defer os.WriteFile(path, orig, 0o600)
		if err := os.WriteFile(path, orig[:len(orig)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		for _, opts := range []VerifyOptions{{}, {Backup: "base_1"}} {
			rep, err := Verify(s.ctx, s.cfg, opts)
			if err != nil || rep.OK || !strings.Contains(problemsText(rep), "backups/base_1/manifest.json: ") {
				t.Fatalf("%+v: %v\n%s", opts, err, problemsText(rep))
			}
		}
	})
	t.Run("manifest checksum of a file wrong", func(t *testing.T) {
		s2 := newSynth(t)
		src := filepath.Join(t.TempDir(), "src")
		writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": "data"})
		pushTestBackup(t, s2.cfg, src, "base_x", func(m *Manifest) {
			m.SegmentSize = synthSeg
			m.StartWAL, m.StopWAL = "000000010000000000000020", "000000010000000000000020"
			for i := range m.Files {
				if m.Files[i].Path == "base/1/1259" {
					m.Files[i].CRC32C = "00000000"
				}
			}
		})
		s2.segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
		rep, _ := Verify(s2.ctx, s2.cfg, VerifyOptions{Full: true})
		if rep.OK || !strings.Contains(problemsText(rep), "file base/1/1259 fails its checksum") {
			t.Fatalf("%s", problemsText(rep))
		}
	})
	t.Run("manifest records another SHA-256", func(t *testing.T) {
		s2 := newSynth(t)
		src := filepath.Join(t.TempDir(), "src")
		writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": "data"})
		pushTestBackup(t, s2.cfg, src, "base_x", func(m *Manifest) {
			m.SegmentSize = synthSeg
			m.StartWAL, m.StopWAL = "000000010000000000000020", "000000010000000000000020"
			m.Parts[0].SHA256 = strings.Repeat("ab", 32)
		})
		s2.segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
		rep, _ := Verify(s2.ctx, s2.cfg, VerifyOptions{Full: true})
		if rep.OK || !strings.Contains(problemsText(rep), "backups/base_x/part-00000: SHA-256") {
			t.Fatalf("%s", problemsText(rep))
		}
	})
	t.Run("incomplete folder is not a failure", func(t *testing.T) {
		s.put(BackupKey("base_killed", "part-00000"), []byte("x"), time.Time{})
		defer func() { _ = s.cfg.Store.Delete(s.ctx, BackupKey("base_killed", "part-00000")) }()
		rep, _ := Verify(s.ctx, s.cfg, VerifyOptions{})
		if !rep.OK || len(rep.Incomplete) != 1 {
			t.Fatalf("%+v %s", rep.Incomplete, problemsText(rep))
		}
		rep, _ = Verify(s.ctx, s.cfg, VerifyOptions{Backup: "base_killed"})
		if rep.OK || !strings.Contains(problemsText(rep), "no manifest.json") {
			t.Fatalf("asked for by name: %s", problemsText(rep))
		}
	})
	if _, err := Verify(s.ctx, s.cfg, VerifyOptions{Backup: "nope"}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("unknown backup: %v", err)
	}
	empty := newSynth(t)
	if rep, err := Verify(empty.ctx, empty.cfg, VerifyOptions{}); err != nil || rep.OK {
		t.Fatalf("an empty store verified OK (%v)", err)
	}
}

func TestVerifyEncrypted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	s := newSynth(t)
	s.cfg.Codec = codec.Settings{Recipients: []age.Recipient{id.Recipient()}}
	m := verifiedBackup(t, s, "base_enc")
	m.Encrypted = true
	body, _ := encodeManifest(m)
	s.put(BackupKey(m.Name, ManifestFile), body, time.Time{})
	s.segs(1, 0x20, 0x21, func(n uint64) time.Time { return tmin(int(n)) })
	if _, err := Verify(s.ctx, s.cfg, VerifyOptions{Full: true}); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "--identity-file") {
		t.Fatalf("full check without identity: %v", err)
	}
	if rep, err := Verify(s.ctx, s.cfg, VerifyOptions{}); err != nil || !rep.OK {
		t.Fatalf("size check needs no identity: %v %s", err, problemsText(rep))
	}
	s.cfg.Identities = []age.Identity{id}
	if rep, err := Verify(s.ctx, s.cfg, VerifyOptions{Full: true}); err != nil || !rep.OK || rep.Backups[0].FilesChecked == 0 {
		t.Fatalf("with the identity: %v %s", err, problemsText(rep))
	}
	wrong, _ := age.GenerateX25519Identity()
	s.cfg.Identities = []age.Identity{wrong}
	if _, err := Verify(s.ctx, s.cfg, VerifyOptions{Full: true}); err == nil || !strings.Contains(err.Error(), "part-0000") {
		t.Fatalf("wrong identity: %v", err)
	}
}

func TestVerifyAcrossTimelines(t *testing.T) {
	s := twoTimelines(t)
	rep, err := Verify(s.ctx, s.cfg, VerifyOptions{})
	if err != nil || !rep.OK {
		t.Fatalf("%v\n%s", err, problemsText(rep))
	}
	for _, b := range rep.Backups {
		want := "000000020000000000000028" // timeline 2's newest
		if b.Name == "b3" {
			want = "00000001000000000000001E" // after the branch: only timeline 1
		}
		if b.RestorableTo == nil || b.RestorableTo.Segment != want {
			t.Errorf("%s restorable to %+v, want %s", b.Name, b.RestorableTo, want)
		}
	}
	// Timeline 2's first segment gone: b1 and b2 cannot follow it, b4 and
	// b5 are not affected.
	_ = s.cfg.Store.Delete(s.ctx, WALKey(WALFile{Name: "00000002000000000000000F"}))
	rep, _ = Verify(s.ctx, s.cfg, VerifyOptions{})
	if rep.OK || !strings.Contains(problemsText(rep), "00000002000000000000000F: missing") {
		t.Fatalf("%s", problemsText(rep))
	}
	for _, b := range rep.Backups {
		if b.Name == "b1" && (b.RestorableTo == nil || b.RestorableTo.Segment != "00000001000000000000000E") {
			t.Errorf("b1 to %+v: on timeline 2 it stops at the switch", b.RestorableTo)
		}
		if b.Name == "b5" && !b.OK {
			t.Errorf("b5 affected: %v", b.Problems)
		}
	}
	// A history file missing for a timeline with WAL.
	_ = s.cfg.Store.Delete(s.ctx, HistoryPrefix+"00000002.history")
	rep, _ = Verify(s.ctx, s.cfg, VerifyOptions{})
	if !strings.Contains(problemsText(rep), "00000002.history: missing") {
		t.Fatalf("%s", problemsText(rep))
	}
}

func TestCheckWALReachable(t *testing.T) {
	s := newSynth(t)
	s.segs(1, 1, 20, func(n uint64) time.Time { return tmin(int(n)) })
	m := s.backup("b", 1, 3, 4, tmin(3), tmin(4), false)
	lsn := func(s string) *LSN { l, _ := ParseLSN(s); return &l }
	check := func(tg Target) error {
		t.Helper()
		if err := tg.Validate(); err != nil {
			t.Fatal(err)
		}
		return CheckWALReachable(s.ctx, s.cfg, m, tg)
	}
	if err := check(Target{}); err != nil {
		t.Fatalf("whole archive: %v", err)
	}
	if err := check(Target{LSN: lsn("0/1500000")}); err == nil || !strings.Contains(err.Error(), "past the newest archived WAL") {
		t.Fatalf("target past the end: %v", err)
	}
	for _, k := range s.walKeys(1, 10, 11) {
		_ = s.cfg.Store.Delete(s.ctx, k)
	}
	tests := []struct {
		name   string
		target Target
		want   string // "" = reachable
	}{
		{"latest", Target{}, "would stop short"},
		{"lsn before the gap", Target{LSN: lsn("0/9FFFFF")}, ""},
		{"lsn in the gap", Target{LSN: lsn("0/A00000")}, "cannot be reached"},
		{"lsn after the gap", Target{LSN: lsn("0/1000000")}, "cannot be reached"},
		{"lsn far after", Target{LSN: lsn("0/12000000")}, "cannot be reached"},
		{"time before the gap", Target{Time: timePtr(tmin(7))}, ""},
		{"time after the gap", Target{Time: timePtr(tmin(15))}, "--target-time"},
		{"immediate", Target{Immediate: true}, ""},
		{"xid: unknown position, a warning", Target{XID: "1234"}, ""},
		{"timeline 1 explicitly", Target{Timeline: "1"}, "would stop short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(tt.target)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want reachable: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "00000001000000000000000A - 00000001000000000000000B (2 segments") {
				t.Fatalf("got %v, want ErrIntegrity with %q naming the gap", err, tt.want)
			}
		})
	}
	_ = s.cfg.Store.Delete(s.ctx, WALKey(WALFile{Name: m.StopWAL}))
	if err := check(Target{Immediate: true}); !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "cannot be made consistent") {
		t.Fatalf("stop segment missing: %v", err)
	}

	// Across timelines: b2 follows timeline 2 from the switch at segment 15.
	tl := twoTimelines(t)
	b2, err := ReadManifest(tl.ctx, tl.cfg, "b2", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckWALReachable(tl.ctx, tl.cfg, b2, Target{Timeline: "latest"}); err != nil {
		t.Fatalf("b2 to timeline 2: %v", err)
	}
	_ = tl.cfg.Store.Delete(tl.ctx, WALKey(WALFile{Name: "000000020000000000000014"}))
	err = CheckWALReachable(tl.ctx, tl.cfg, b2, Target{Timeline: "latest"})
	if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "000000020000000000000014 (1 segment, timeline 2)") {
		t.Fatalf("gap on timeline 2: %v", err)
	}
	if err := CheckWALReachable(tl.ctx, tl.cfg, b2, Target{Timeline: "current"}); err != nil {
		t.Fatalf("timeline 1 has no gap: %v", err)
	}
	b3, _ := ReadManifest(tl.ctx, tl.cfg, "b3", true)
	if err := CheckWALReachable(tl.ctx, tl.cfg, b3, Target{Timeline: "2"}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("b3 is after the branch: %v", err)
	}
}
