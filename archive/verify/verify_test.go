package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

// verifiedBackup stores a real backup (tar parts, checksums) of a small
// tree with 1 MiB WAL segments 0x20 to 0x30 archived around it.
func verifiedBackup(t *testing.T, s *synth, name string) *repo.Manifest {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, map[string]string{
		"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": strings.Repeat("relation data ", 5000),
		"base/1/1249": "x", "base/1/2608": strings.Repeat("y", 3000), "postgresql.auto.conf": "# auto\n", "pg_wal/archive_status/.keep": "",
	})
	m := pushTestBackup(t, s.R, src, name, func(m *repo.Manifest) {
		m.SegmentSize = backuptest.SynthSegSize
		m.StartWAL, m.StopWAL = archive.SegmentOf(1, m.StartLSN, backuptest.SynthSegSize), stopSegment(1, m.StopLSN, backuptest.SynthSegSize)
	})
	return m
}

func partPath(s *synth, m *repo.Manifest) (string, repo.Part) {
	big := m.Parts[0]
	for _, p := range m.Parts {
		if p.StoredSize > big.StoredSize {
			big = p
		}
	}
	return filepath.Join(s.Root, filepath.FromSlash(repo.BackupKey(m.Name, big.Name))), big
}

func problemsText(r *Report) string {
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
	s.Segs(1, 0x20, 0x30, func(n uint64) time.Time { return tmin(int(n)) })
	files := 0
	for _, f := range m.Files {
		if f.Type == repo.TypeFile {
			files++
		}
	}

	rep, err := Run(s.Ctx, s.R, Options{Full: true, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	b := rep.Backups[0]
	if !rep.OK || !b.Consistent || b.FilesChecked != files || b.RestorableTo == nil || b.RestorableTo.Segment != "000000010000000000000030" ||
		b.RestorableTo.LSN != "0/3100000" || len(rep.Timelines) != 1 || rep.Timelines[0].Segments != 17 {
		t.Fatalf("whole store: %+v %+v\n%s", b, rep.Timelines, problemsText(rep))
	}

	t.Run("gap", func(t *testing.T) {
		for _, k := range s.WALKeys(1, 0x25, 0x26) {
			_ = s.R.Store.Delete(s.Ctx, k)
		}
		defer s.Segs(1, 0x25, 0x26, func(n uint64) time.Time { return tmin(int(n)) })
		rep, err := Run(s.Ctx, s.R, Options{})
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
		key := repo.WALKey(archive.WALFile{Name: m.StopWAL})
		_ = s.R.Store.Delete(s.Ctx, key)
		defer s.Segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
		rep, _ := Run(s.Ctx, s.R, Options{})
		if rep.OK || rep.Backups[0].Consistent || !strings.Contains(problemsText(rep), "cannot be made consistent") {
			t.Fatalf("%+v\n%s", rep.Backups[0], problemsText(rep))
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		path, part := partPath(s, m)
		orig, _ := os.ReadFile(path)
		defer putBack(t, path, orig, 0o600)
		flipped := bytes.Clone(orig)
		flipped[len(flipped)-len(flipped)/3] ^= 0x10
		if err := os.WriteFile(path, flipped, 0o600); err != nil {
			t.Fatal(err)
		}
		if rep, _ := Run(s.Ctx, s.R, Options{}); !rep.OK {
			t.Fatalf("a size check found a flipped byte? %s", problemsText(rep))
		}
		rep, err := Run(s.Ctx, s.R, Options{Backup: "base_1", Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK || !strings.Contains(problemsText(rep), repo.BackupKey("base_1", part.Name)+": ") {
			t.Fatalf("full check of a flipped byte:\n%s", problemsText(rep))
		}
	})
	t.Run("truncated part", func(t *testing.T) {
		path, part := partPath(s, m)
		orig, _ := os.ReadFile(path)
		defer putBack(t, path, orig, 0o600)
		if err := os.WriteFile(path, orig[:len(orig)-100], 0o600); err != nil {
			t.Fatal(err)
		}
		rep, _ := Run(s.Ctx, s.R, Options{})
		if rep.OK || !strings.Contains(problemsText(rep), repo.BackupKey("base_1", part.Name)+": is ") {
			t.Fatalf("%s", problemsText(rep))
		}
		rep, _ = Run(s.Ctx, s.R, Options{Full: true})
		if rep.OK {
			t.Fatal("full check passed a truncated part")
		}
	})
	t.Run("missing part", func(t *testing.T) {
		path, part := partPath(s, m)
		orig, _ := os.ReadFile(path)
		defer putBack(t, path, orig, 0o600)
		_ = os.Remove(path)
		rep, err := Run(s.Ctx, s.R, Options{Full: true})
		if err != nil || rep.OK || !strings.Contains(problemsText(rep), repo.BackupKey("base_1", part.Name)+": missing") {
			t.Fatalf("%v\n%s", err, problemsText(rep))
		}
	})
	t.Run("truncated manifest", func(t *testing.T) {
		path := filepath.Join(s.Root, filepath.FromSlash(repo.BackupKey("base_1", repo.ManifestFile)))
		orig, _ := os.ReadFile(path)
		defer putBack(t, path, orig, 0o600)
		if err := os.WriteFile(path, orig[:len(orig)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		for _, opts := range []Options{{}, {Backup: "base_1"}} {
			rep, err := Run(s.Ctx, s.R, opts)
			if err != nil || rep.OK || !strings.Contains(problemsText(rep), "backups/base_1/manifest.json: ") {
				t.Fatalf("%+v: %v\n%s", opts, err, problemsText(rep))
			}
		}
	})
	t.Run("incomplete folder is not a failure", func(t *testing.T) {
		s.Put(repo.BackupKey("base_killed", "part-00000"), []byte("x"), time.Time{})
		defer func() { _ = s.R.Store.Delete(s.Ctx, repo.BackupKey("base_killed", "part-00000")) }()
		rep, _ := Run(s.Ctx, s.R, Options{})
		if !rep.OK || len(rep.Incomplete) != 1 {
			t.Fatalf("%+v %s", rep.Incomplete, problemsText(rep))
		}
		rep, _ = Run(s.Ctx, s.R, Options{Backup: "base_killed"})
		if rep.OK || !strings.Contains(problemsText(rep), "no manifest.json") {
			t.Fatalf("asked for by name: %s", problemsText(rep))
		}
	})
	if _, err := Run(s.Ctx, s.R, Options{Backup: "nope"}); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("unknown backup: %v", err)
	}
	empty := newSynth(t)
	if rep, err := Run(empty.Ctx, empty.R, Options{}); err != nil || rep.OK {
		t.Fatalf("an empty store verified OK (%v)", err)
	}
}

// A manifest that records other checksums than the backup's: the full
// check names the file or the part.
func TestVerifyManifestDamage(t *testing.T) {
	t.Run("manifest checksum of a file wrong", func(t *testing.T) {
		s2 := newSynth(t)
		src := filepath.Join(t.TempDir(), "src")
		writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": "data"})
		pushTestBackup(t, s2.R, src, "base_x", func(m *repo.Manifest) {
			m.SegmentSize = backuptest.SynthSegSize
			m.StartWAL, m.StopWAL = "000000010000000000000020", "000000010000000000000020"
			for i := range m.Files {
				if m.Files[i].Path == "base/1/1259" {
					m.Files[i].CRC32C = "00000000"
				}
			}
		})
		s2.Segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
		rep, _ := Run(s2.Ctx, s2.R, Options{Full: true})
		if rep.OK || !strings.Contains(problemsText(rep), "file base/1/1259 fails its checksum") {
			t.Fatalf("%s", problemsText(rep))
		}
	})
	t.Run("manifest records other sums", func(t *testing.T) {
		s2 := newSynth(t)
		src := filepath.Join(t.TempDir(), "src")
		writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": "data"})
		pushTestBackup(t, s2.R, src, "base_x", func(m *repo.Manifest) {
			m.SegmentSize = backuptest.SynthSegSize
			m.StartWAL, m.StopWAL = "000000010000000000000020", "000000010000000000000020"
			m.Parts[0].Sums = strings.Repeat("ab", 32)
		})
		s2.Segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
		rep, _ := Run(s2.Ctx, s2.R, Options{Full: true})
		if rep.OK || !strings.Contains(problemsText(rep), "backups/base_x/part-00000.sums in ") || !strings.Contains(problemsText(rep), "SHA-256") {
			t.Fatalf("%s", problemsText(rep))
		}
	})
	t.Run("legacy manifest records another SHA-256", func(t *testing.T) {
		s2 := newSynth(t)
		src := filepath.Join(t.TempDir(), "src")
		writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": "data"})
		pushTestBackup(t, s2.R, src, "base_x", func(m *repo.Manifest) {
			m.SegmentSize = backuptest.SynthSegSize
			m.StartWAL, m.StopWAL = "000000010000000000000020", "000000010000000000000020"
			m.Parts[0].SHA256, m.Parts[0].Sums, m.Format = strings.Repeat("ab", 32), "", repo.ManifestFormatIncremental
		})
		s2.Segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
		rep, _ := Run(s2.Ctx, s2.R, Options{Full: true})
		if rep.OK || !strings.Contains(problemsText(rep), "backups/base_x/part-00000: SHA-256") {
			t.Fatalf("%s", problemsText(rep))
		}
	})
}

// putBack writes a file a test damaged back as it was.
func putBack(t *testing.T, path string, orig []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, orig, perm); err != nil {
		t.Error(err)
	}
}

func TestVerifyEncrypted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	s := newSynth(t)
	s.R.Codec = codec.Settings{Recipients: []age.Recipient{id.Recipient()}}
	m := verifiedBackup(t, s, "base_enc")
	m.Encrypted = true
	body, _ := repo.EncodeManifest(m)
	s.Put(repo.BackupKey(m.Name, repo.ManifestFile), body, time.Time{})
	// The WAL encrypted too, as wal-push writes it with a recipient.
	for n := uint64(0x20); n <= 0x21; n++ {
		plain := []byte("segment")
		sum := sha256.Sum256(plain)
		meta := map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(plain))}
		if _, err := s.R.Put(s.Ctx, s.SegKey(1, n), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(plain)), nil },
			repo.PutOptions{PutOptions: cloud.PutOptions{Metadata: meta}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Run(s.Ctx, s.R, Options{Full: true}); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "--identity-file") {
		t.Fatalf("full check without identity: %v", err)
	}
	if rep, err := Run(s.Ctx, s.R, Options{}); err != nil || !rep.OK {
		t.Fatalf("size check needs no identity: %v %s", err, problemsText(rep))
	}
	s.R.Identities = []age.Identity{id}
	if rep, err := Run(s.Ctx, s.R, Options{Full: true}); err != nil || !rep.OK || rep.Backups[0].FilesChecked == 0 {
		t.Fatalf("with the identity: %v %s", err, problemsText(rep))
	}
	wrong, _ := age.GenerateX25519Identity()
	s.R.Identities = []age.Identity{wrong}
	if _, err := Run(s.Ctx, s.R, Options{Full: true}); err == nil || !strings.Contains(err.Error(), "part-0000") {
		t.Fatalf("wrong identity: %v", err)
	}
}

func TestVerifyAcrossTimelines(t *testing.T) {
	s := twoTimelines(t)
	rep, err := Run(s.Ctx, s.R, Options{})
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
	_ = s.R.Store.Delete(s.Ctx, repo.WALKey(archive.WALFile{Name: "00000002000000000000000F"}))
	rep, _ = Run(s.Ctx, s.R, Options{})
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
	_ = s.R.Store.Delete(s.Ctx, repo.HistoryPrefix+"00000002.history")
	rep, _ = Run(s.Ctx, s.R, Options{})
	if !strings.Contains(problemsText(rep), "00000002.history: missing") {
		t.Fatalf("%s", problemsText(rep))
	}
}

// A download that breaks midway starts the part over: its files are
// counted once, and nothing is reported.
func TestVerifyBrokenDownload(t *testing.T) {
	s := newSynth(t)
	src := filepath.Join(t.TempDir(), "src")
	// Incompressible and over several lz4 blocks, so files are checked
	// before the download breaks.
	rnd := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(rnd)
	writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1249": "x", "base/1/1259": string(rnd), "base/1/2608": string(rnd[:1000])})
	m := pushTestBackup(t, s.R, src, "base_1", func(m *repo.Manifest) {
		m.SegmentSize = backuptest.SynthSegSize
		m.StartWAL, m.StopWAL = "000000010000000000000020", "000000010000000000000020"
	})
	s.Segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
	want, err := Run(s.Ctx, s.R, Options{Full: true})
	if err != nil || !want.OK {
		t.Fatalf("%v %s", err, problemsText(want))
	}
	s.R.Store = newFlakyStore(s.R.Store)
	rep, err := Run(s.Ctx, s.R, Options{Full: true, Concurrency: 2})
	if err != nil || !rep.OK || rep.Backups[0].FilesChecked != want.Backups[0].FilesChecked {
		t.Fatalf("%v: %d files checked, want %d\n%s", err, rep.Backups[0].FilesChecked, want.Backups[0].FilesChecked, problemsText(rep))
	}
	if n := backuptest.BrokenDownloads(s.R.Store); n != len(m.Parts) {
		t.Fatalf("%d of %d downloads broken", n, len(m.Parts))
	}
}

// The store's own checksum failing on a part is the part's damage, not a
// failure of the store.
func TestVerifyStoreChecksum(t *testing.T) {
	s := newSynth(t)
	verifiedBackup(t, s, "base_1")
	s.Segs(1, 0x20, 0x20, func(n uint64) time.Time { return tmin(int(n)) })
	bad := storetest.NewFaults(s.R.Store)
	bad.Set(storetest.Rule{Op: storetest.Get, Keys: "/part-", AtEnd: true, Err: fmt.Errorf("%w: checksum did not match", cloud.ErrChecksum)})
	s.R.Store = bad
	rep, err := Run(s.Ctx, s.R, Options{Full: true})
	// (The wording "the store's own checksum of the object does not
	// match its content" needs codec's reader to keep the cause in the
	// chain; either way the part is reported, not the store.)
	if err != nil || rep.OK || !strings.Contains(problemsText(rep), repo.BackupKey("base_1", "part-00000")+": ") || !strings.Contains(problemsText(rep), "store's own checksum") {
		t.Fatalf("%v\n%s", err, problemsText(rep))
	}
}

// verify counts only authenticated WAL: a planted segment without a proof
// is a problem and a gap; a segment whose body was replaced while its
// signed metadata was kept passes the proof (metadata) check, and --full,
// which reads every object back, finds it.
func TestVerifyAuthenticatesWAL(t *testing.T) {
	s := newSynth(t)
	w := backuptest.SignedRepo(t, s.R.Store)
	s.R = &repo.Repo{Store: s.R.Store, Verify: w.Verify}
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "base/1/1259": "data"})
	pushTestBackup(t, w, src, "base_x", func(m *repo.Manifest) {
		m.SegmentSize = backuptest.SynthSegSize
		m.StartWAL, m.StopWAL = "000000010000000000000020", "000000010000000000000020"
	})
	for n := uint64(0x20); n <= 0x23; n++ {
		backuptest.PutWAL(t, w, s.SegName(1, n))
	}
	if rep, err := Run(s.Ctx, s.R, Options{Full: true}); err != nil || !rep.OK {
		t.Fatalf("a sound archive: %v %s", err, problemsText(rep))
	}
	// A name planted in a gap: 21 deleted, an unsigned object in its place.
	s.Put(s.SegKey(1, 0x21), []byte("planted"), time.Time{})
	rep, err := Run(s.Ctx, s.R, Options{})
	if err != nil || rep.OK || !strings.Contains(problemsText(rep), "000000010000000000000021: fails authentication") ||
		len(rep.Timelines) != 1 || len(rep.Timelines[0].Gaps) != 1 {
		t.Fatalf("a planted segment: %v %s", err, problemsText(rep))
	}
	// The body of 22 replaced, its signed metadata kept.
	backuptest.PutWAL(t, w, s.SegName(1, 0x21))
	key := s.SegKey(1, 0x22)
	info, err := s.R.Store.Stat(s.Ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.R.Store.Put(s.Ctx, key, cloud.Bytes([]byte("wal 000000010000000000000099")), cloud.PutOptions{Metadata: info.Metadata}); err != nil {
		t.Fatal(err)
	}
	if rep, err := Run(s.Ctx, s.R, Options{}); err != nil || !rep.OK {
		t.Fatalf("sizes and proofs only cannot see a replaced body: %v %s", err, problemsText(rep))
	}
	rep, err = Run(s.Ctx, s.R, Options{Full: true})
	if err != nil || rep.OK || !strings.Contains(problemsText(rep), "000000010000000000000022: fails authentication") ||
		!strings.Contains(problemsText(rep), "does not match") {
		t.Fatalf("--full with a replaced body: %v %s", err, problemsText(rep))
	}
}

// The block index restore --delta reads a part by is checked by the full
// verify: a damaged or missing one is named (restore would fall back to
// reading the part whole, but the archive is no longer what was written).
func TestVerifyBlockIndex(t *testing.T) {
	s := newSynth(t)
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, map[string]string{
		"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": strings.Repeat("relation data ", 5000),
		"postgresql.auto.conf": "# auto\n", "pg_wal/archive_status/.keep": "",
	})
	m := backuptest.PushWith(t, s.R, src, "base_1", backuptest.PushOptions{Indexed: true}, func(m *repo.Manifest) {
		m.SegmentSize = backuptest.SynthSegSize
		m.StartWAL, m.StopWAL = archive.SegmentOf(1, m.StartLSN, backuptest.SynthSegSize), stopSegment(1, m.StopLSN, backuptest.SynthSegSize)
	})
	s.Segs(1, 0x20, 0x30, func(n uint64) time.Time { return tmin(int(n)) })
	path, part := partPath(s, m)
	if part.Index == "" {
		t.Fatal("the indexed test backup's part has no block index")
	}
	if rep, err := Run(s.Ctx, s.R, Options{Full: true}); err != nil || !rep.OK {
		t.Fatalf("intact: %v\n%s", err, problemsText(rep))
	}
	ipath := path + repo.IndexSuffix
	orig, err := os.ReadFile(ipath)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(orig)
	flipped[len(flipped)/2] ^= 0x01
	want := repo.IndexKey(repo.BackupKey("base_1", part.Name)) + ": block index: "
	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"flipped byte", func() error { return os.WriteFile(ipath, flipped, 0o600) }},
		{"missing", func() error { return os.Remove(ipath) }},
	} {
		if err := tc.fn(); err != nil {
			t.Fatal(err)
		}
		rep, err := Run(s.Ctx, s.R, Options{Full: true})
		if err != nil || rep.OK || !strings.Contains(problemsText(rep), want) {
			t.Fatalf("%s index: %v\n%s", tc.name, err, problemsText(rep))
		}
	}
}
