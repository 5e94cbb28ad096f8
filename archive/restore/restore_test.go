package restore

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

func TestRestoreSynthetic(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	src, spc := filepath.Join(root, "src"), filepath.Join(root, "spc")
	big := strings.Repeat("relation data ", 20)
	writeTree(t, src, map[string]string{
		"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": big, "base/1/1249": "x",
		"postgresql.auto.conf": "# auto\n", "pg_wal/archive_status/.keep": "", "pg_tblspc/.keep": "",
	})
	writeTree(t, spc, map[string]string{"PG_15_1/1/16390": "in a tablespace"})
	if err := os.Symlink(spc, filepath.Join(src, "pg_tblspc", "16390")); err != nil {
		t.Fatal(err)
	}
	st, err := cloud.Open(ctx, "file://"+filepath.Join(root, "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := signedRepo(t, st)
	backuptest.PutWAL(t, r, "000000010000000000000002")
	m := pushTestBackup(t, r, src, "base_1", nil)
	if len(m.Parts) < 3 {
		t.Fatalf("want several parts, got %d", len(m.Parts))
	}

	dest := filepath.Join(root, "dest")
	moved := filepath.Join(root, "moved")
	opts := Options{Dest: dest, FetchArgv: []string{"/bin/walvault", "wal-fetch"}, Concurrency: 2,
		TablespaceMap: map[string]string{"16390": moved}, Target: Target{Name: "rp"}}
	res, err := Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"base/1/1259": big, "global/pg_control": "control", "pg_tblspc/16390/PG_15_1/1/16390": "in a tablespace", "recovery.signal": ""} {
		got, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
	if link, _ := os.Readlink(filepath.Join(dest, "pg_tblspc", "16390")); link != moved {
		t.Errorf("tablespace link -> %q, want %q", link, moved)
	}
	auto, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if !strings.HasPrefix(string(auto), "# auto\n") || !strings.Contains(string(auto), "restore_command = '/bin/walvault wal-fetch %f %p'") ||
		!strings.Contains(string(auto), "recovery_target_name = 'rp'") {
		t.Errorf("postgresql.auto.conf:\n%s", auto)
	}
	if st, _ := os.Stat(dest); st.Mode().Perm() != 0o700 {
		t.Errorf("DEST mode %o, want 0700", st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dest, "pg_wal", "archive_status")); err != nil {
		t.Error("pg_wal/archive_status missing")
	}
	if res.Manifest.Name != "base_1" {
		t.Errorf("restored %s", res.Manifest.Name)
	}

	// A second restore into the same place is refused, and writes nothing.
	before, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if _, err := Run(ctx, r, opts); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a used DEST: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf")); !bytes.Equal(before, after) {
		t.Fatal("a refused restore changed DEST")
	}
	// --force overwrites the backup's files and leaves the rest alone.
	if err := os.WriteFile(filepath.Join(dest, "base/1/1259"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "mine.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts.Force = true
	if _, err := Run(ctx, r, opts); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "base/1/1259")); string(got) != big {
		t.Error("--force did not restore base/1/1259")
	}
	if _, err := os.Stat(filepath.Join(dest, "mine.txt")); err != nil {
		t.Error("--force deleted a file it did not write")
	}

	// A backup whose WAL is not archived can never become consistent: it is
	// refused before anything is written.
	pushTestBackup(t, r, src, "base_0", func(m *repo.Manifest) {
		m.StopWAL, m.StopLSN, m.StopTime = "000000010000000000000003", 0x3000100, m.StopTime.Add(-time.Hour)
	})
	nowal := filepath.Join(root, "nowal")
	_, err = Run(ctx, r, Options{Dest: nowal, Backup: "base_0", FetchArgv: []string{"x"}})
	if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "cannot be made consistent") {
		t.Fatalf("backup without its WAL: %v", err)
	}
	if _, err := os.Stat(nowal); err == nil {
		t.Fatal("DEST created for a backup that cannot be restored")
	}

	// A manifest whose checksum disagrees with the data: the restore fails
	// naming the file and part, and leaves no pg_control to start from.
	pushTestBackup(t, r, src, "base_2", func(m *repo.Manifest) {
		for i := range m.Files {
			if m.Files[i].Path == "base/1/1259" {
				m.Files[i].CRC32C = "00000000"
			}
		}
	})
	bad := filepath.Join(root, "bad")
	_, err = Run(ctx, r, Options{Dest: bad, Backup: "base_2", FetchArgv: []string{"x"}, TablespaceMap: map[string]string{"16390": filepath.Join(root, "moved2")}})
	if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "base/1/1259") || !strings.Contains(err.Error(), "part-") {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bad, "global", "pg_control")); err == nil {
		t.Fatal("a failed restore left global/pg_control")
	}
	if _, err := os.Stat(filepath.Join(bad, "recovery.signal")); err == nil {
		t.Fatal("a failed restore wrote recovery settings")
	}
}

// A download that breaks midway starts the part over: the files it wrote
// are written again, and the restore succeeds.
func TestRestoreBrokenDownload(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	src := filepath.Join(root, "src")
	// Incompressible and over several lz4 blocks, so the file is being
	// written when the download breaks.
	rnd := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(rnd)
	big := string(rnd)
	writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": big, "base/1/1249": "x"})
	st, err := cloud.Open(ctx, "file://"+filepath.Join(root, "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := signedRepo(t, st)
	backuptest.PutWAL(t, w, "000000010000000000000002")
	pushTestBackup(t, w, src, "base_1", nil)
	r := &repo.Repo{Store: newFlakyStore(st), Verify: w.Verify}
	dest := filepath.Join(root, "dest")
	if _, err := Run(ctx, r, Options{Dest: dest, FetchArgv: []string{"x"}, Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "base/1/1259")); string(got) != big {
		t.Fatal("base/1/1259 differs after a broken download")
	}
	if backuptest.BrokenDownloads(r.Store) == 0 {
		t.Fatal("no download was broken")
	}
}
