package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Verify before use: a part's bytes reach a file only once they are
// authenticated, and what makes DEST startable comes only after every
// part was.

// partOf is the index of the part holding path in m.
func partOf(t *testing.T, m *repo.Manifest, path string) int {
	t.Helper()
	for _, f := range m.Files {
		if f.Path == path {
			return f.Part
		}
	}
	t.Fatalf("%s is not in the backup", path)
	return -1
}

// otherPart is a part of the data directory with a regular file, holding
// none of paths.
func otherPart(t *testing.T, m *repo.Manifest, paths ...string) int {
	t.Helper()
	avoid := map[int]bool{}
	for _, p := range paths {
		avoid[partOf(t, m, p)] = true
	}
	for _, f := range m.Files {
		if f.Type == repo.TypeFile && !avoid[f.Part] && m.Parts[f.Part].Tablespace == 0 {
			return f.Part
		}
	}
	t.Fatalf("no part without %v", paths)
	return -1
}

// replacePart puts other bytes of the same size where part idx of m is.
func replacePart(t *testing.T, st cloud.Store, m *repo.Manifest, idx int) {
	t.Helper()
	key := repo.BackupKey(m.Name, m.Parts[idx].Name)
	junk := bytes.Repeat([]byte{'J'}, int(m.Parts[idx].StoredSize))
	if err := st.Put(context.Background(), key, cloud.Bytes(junk), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startable lists what would let a server start on DEST, or tell it how.
func mustNotBeStartable(t *testing.T, dest string) {
	t.Helper()
	for _, p := range []string{"global/pg_control", "backup_label", "postgresql.auto.conf", "recovery.signal", "standby.signal"} {
		mustNotExist(t, filepath.Join(dest, p))
	}
}

// noTemp fails when a temporary name restore writes to is left in dir.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (strings.Contains(d.Name(), ".walvault-restore") || strings.HasPrefix(d.Name(), ".walvault-stage")) {
			t.Errorf("%s is left behind", p)
		}
		return nil
	})
}

func TestRestoreDamagedPartWritesNothingOfIt(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "chunked"
		if legacy {
			name = "legacy, staged"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			writeTree(t, f.src, map[string]string{"base/1/2608": strings.Repeat("a relation of its own part ", 10)})
			m := pushTestBackup(t, f.r, f.src, "base_1", func(m *repo.Manifest) {
				if legacy { // a backup taken before walvault recorded sums
					m.Format = repo.ManifestFormatIncremental
					for i := range m.Parts {
						m.Parts[i].Sums = ""
					}
				}
			})
			idx := otherPart(t, m, "global/pg_control", "postgresql.auto.conf")
			replacePart(t, f.st, m, idx)
			dest := filepath.Join(f.root, "dest")
			opts := f.opts(dest)
			opts.Concurrency = 1
			opts.TablespaceMap = map[string]string{"16390": filepath.Join(f.root, "moved")}
			_, err := Run(context.Background(), f.reader(false), opts)
			if !errors.Is(err, archive.ErrIntegrity) {
				t.Fatalf("restore of a backup with a replaced part: %v", err)
			}
			for _, file := range m.Files {
				if file.Part == idx && file.Type == repo.TypeFile {
					mustNotExist(t, filepath.Join(dest, file.Path))
					mustNotExist(t, filepath.Join(dest, file.Path+tempSuffix))
				}
			}
			mustNotBeStartable(t, dest)
			_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
				if err == nil && strings.HasPrefix(d.Name(), ".walvault-stage") {
					t.Errorf("staged part %s left behind", p)
				}
				return nil
			})
		})
	}
}

// A legacy backup (no sums) restores, its parts staged and checked whole
// first; a chunked one restores with nothing left under a temporary name.
func TestRestoreLeavesNoTemporaryNames(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		f := newFixture(t)
		pushTestBackup(t, f.r, f.src, "base_1", func(m *repo.Manifest) {
			if legacy {
				m.Format = repo.ManifestFormatIncremental
				for i := range m.Parts {
					m.Parts[i].Sums = ""
				}
			}
		})
		dest := filepath.Join(f.root, "dest")
		opts := f.opts(dest)
		opts.TablespaceMap = map[string]string{"16390": filepath.Join(f.root, "moved")}
		if _, err := Run(context.Background(), f.reader(false), opts); err != nil {
			t.Fatalf("legacy=%v: %v", legacy, err)
		}
		for p, want := range map[string]string{"global/pg_control": "control", "base/1/1259": "relation", "pg_tblspc/16390/PG_15_1/1/16390": "in a tablespace"} {
			if got, err := os.ReadFile(filepath.Join(dest, p)); err != nil || string(got) != want {
				t.Errorf("legacy=%v: %s: %q, %v", legacy, p, got, err)
			}
		}
		if auto, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf")); !strings.HasPrefix(string(auto), "# auto\nwork_mem = '4MB'\n") || !strings.Contains(string(auto), "restore_command") {
			t.Errorf("legacy=%v: postgresql.auto.conf:\n%s", legacy, auto)
		}
		noTemp(t, dest)
		noTemp(t, filepath.Join(f.root, "moved"))
	}
}

// --force over a stopped data directory: its pg_control goes before
// anything is written, so a restore that fails leaves nothing to start,
// old or new.
func TestRestoreForceRemovesOldControlFirst(t *testing.T) {
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"base/1/2608": strings.Repeat("a relation of its own part ", 10)})
	m := pushTestBackup(t, f.r, f.src, "base_1", nil)
	dest := filepath.Join(f.root, "dest")
	writeTree(t, dest, map[string]string{"global/pg_control": "old control", "PG_VERSION": "15\n", "backup_label": "old label"})
	if err := os.Chmod(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	replacePart(t, f.st, m, otherPart(t, m, "global/pg_control"))
	opts := f.opts(dest)
	opts.Force, opts.Concurrency = true, 1
	opts.TablespaceMap = map[string]string{"16390": filepath.Join(f.root, "moved")}
	if _, err := Run(context.Background(), f.reader(false), opts); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("restore --force of a damaged backup: %v", err)
	}
	mustNotExist(t, filepath.Join(dest, "global/pg_control"))
	mustNotExist(t, filepath.Join(dest, "recovery.signal"))
}

// Nothing but zero padding may follow a part's tar stream; a part may
// decode to no more than the tar size its manifest records.
func TestRestorePartTrailer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		extra []byte
		size  int64 // added to the recorded tar size
		want  string
	}{
		{"junk after the tar", []byte("postgresql.auto.conf: archive_command = 'evil'"), 0, "not padding"},
		{"more than its recorded size", make([]byte, 4096), -1, "decodes to more than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var tb bytes.Buffer
			tw := tar.NewWriter(&tb)
			_ = tw.WriteHeader(&tar.Header{Name: "PG_VERSION", Typeflag: tar.TypeReg, Size: 3, Mode: 0o600})
			_, _ = tw.Write([]byte("15\n"))
			_ = tw.Close()
			body := append(tb.Bytes(), tt.extra...)
			part := backuptest.PutPart(t, f.r, "base_x", 0, body)
			part.Files, part.Size = 1, int64(len(body))+tt.size*int64(len(tt.extra))
			m := backuptest.SampleManifest()
			m.Name, m.SystemIdentifier, m.Parts, m.Tablespaces = "base_x", "1", []repo.Part{part}, nil
			var crc repo.CRC32C
			_, _ = crc.Write([]byte("15\n"))
			m.Files = []repo.File{{Path: "PG_VERSION", Size: 3, Mode: "0600", MTime: m.StopTime, CRC32C: crc.Hex()}}
			m.FileCount = 1
			if err := f.r.WriteManifest(context.Background(), m, true); err != nil {
				t.Fatal(err)
			}
			backuptest.PutWAL(t, f.r, m.StartWAL)
			dest := filepath.Join(f.root, "dest")
			opts := f.opts(dest)
			opts.Backup = "base_x"
			_, err := Run(context.Background(), f.reader(false), opts)
			if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an integrity error with %q", err, tt.want)
			}
			mustNotBeStartable(t, dest)
		})
	}
}

// A forged part: a plain tar holding the part's files, each of its recorded
// size and with its recorded CRC-32C (anyone can forge a CRC), but other
// content, postgresql.auto.conf with an archive_command among them. The
// part fails its first chunk: no file of it is written, not even for a
// moment.
func TestRestoreForgedPartWithValidCRCs(t *testing.T) {
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"postgresql.auto.conf": "# auto\n" + strings.Repeat("#", 120) + "\n"})
	m := pushTestBackup(t, f.r, f.src, "base_1", nil)
	idx := partOf(t, m, "postgresql.auto.conf")
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, file := range m.Files {
		if file.Part != idx || file.Type != repo.TypeFile {
			continue
		}
		body := bytes.Repeat([]byte("\n"), int(file.Size))
		copy(body, "archive_command = 'touch /tmp/walvault-forged'\n")
		backuptest.ForgeCRC32C(body, file.CRC32C)
		_ = tw.WriteHeader(&tar.Header{Name: file.Path, Typeflag: tar.TypeReg, Size: file.Size, Mode: 0o600})
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	key := repo.BackupKey(m.Name, m.Parts[idx].Name)
	if err := f.st.Put(context.Background(), key, cloud.Bytes(tb.Bytes()), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(f.root, "dest")
	opts := f.opts(dest)
	opts.TablespaceMap = map[string]string{"16390": filepath.Join(f.root, "moved")}
	_, err := Run(context.Background(), f.reader(false), opts)
	if !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("restore of a forged part: %v", err)
	}
	for _, file := range m.Files {
		if file.Part == idx && file.Type == repo.TypeFile {
			mustNotExist(t, filepath.Join(dest, file.Path))
			mustNotExist(t, filepath.Join(dest, tempName(file.Path)))
		}
	}
	mustNotBeStartable(t, dest)
}

// A WAL segment the listing shows but whose proof fails (planted without
// one, or signed for another cluster) is a gap: restore refuses before
// writing anything, naming it.
func TestRestoreRefusesUnauthenticatedWAL(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, f *fixture)
	}{
		{"planted without a proof", func(t *testing.T, f *fixture) {
			key := repo.WALKey(archive.WALFile{Name: "000000010000000000000002"})
			if err := f.st.Put(context.Background(), key, cloud.Bytes([]byte("planted")), cloud.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"signed for another cluster", func(t *testing.T, f *fixture) {
			other := *f.r
			other.Cluster = "2"
			backuptest.PutWAL(t, &other, "000000010000000000000002")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			pushTestBackup(t, f.r, f.src, "base_1", nil)
			tt.plant(t, f)
			reader := f.reader(false)
			reader.Cluster = "1"
			dest := filepath.Join(f.root, "dest")
			_, err := Run(context.Background(), reader, f.opts(dest))
			if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "fail authentication") || !strings.Contains(err.Error(), "000000010000000000000002") {
				t.Fatalf("got %v", err)
			}
			mustNotExist(t, dest)
		})
	}
}
