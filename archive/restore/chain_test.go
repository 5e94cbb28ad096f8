package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

const testBS = 1024

// blocks makes a file of blocks filled with the given bytes.
func blocks(fill ...byte) []byte {
	var b []byte
	for _, c := range fill {
		b = append(b, bytes.Repeat([]byte{c}, testBS)...)
	}
	return b
}

// chainStore is a signed store with the WAL a restore of the chain needs.
func chainStore(t *testing.T) *repo.Repo {
	t.Helper()
	st, err := cloud.Open(context.Background(), "file://"+t.TempDir(), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := signedRepo(t, st)
	backuptest.PutWAL(t, r, "000000010000000000000002")
	return r
}

type inc = backuptest.IncFile

// threeLinks stores a full backup and two incrementals on it; lie, when
// set, changes the newest one's files first.
func threeLinks(t *testing.T, r *repo.Repo, lie func([]inc)) (full, i1, i2 *repo.Manifest, want map[string][]byte) {
	t.Helper()
	when := tmin(0)
	ctl := []byte("control")
	full = backuptest.PushChainLink(t, r, "base_f", "", testBS, when, []inc{
		{Path: "global/pg_control", Content: ctl},
		{Path: "PG_VERSION", Content: []byte("15\n")},
		{Path: "base/1/100", Content: blocks('a', 'b', 'c')},
		{Path: "base/1/200", Content: blocks('p', 'q')},
		{Path: "base/1/300", Content: blocks('x', 'y', 'z')},
		{Path: "base/1/gone", Content: []byte("dropped later")},
		{Path: "base/1/500", Content: blocks('e', 'f', 'g', 'h', 'i')},
	}, nil)
	// i1: block 1 of 100 changed and block 3 added; 200 rewritten whole;
	// 300 unchanged; PG_VERSION from the parent.
	i1 = backuptest.PushChainLink(t, r, "base_i1", "base_f", testBS, tmin(1), []inc{
		{Path: "global/pg_control", Content: ctl},
		{Path: "PG_VERSION", Content: []byte("15\n"), Stored: repo.StoredParent},
		{Path: "base/1/100", Content: blocks('a', 'B', 'c', 'D'), Stored: repo.StoredBlocks, Blocks: []int64{1, 3}},
		{Path: "base/1/200", Content: blocks('P', 'Q')},
		{Path: "base/1/300", Content: blocks('x', 'y', 'z'), Stored: repo.StoredParent},
		{Path: "base/1/500", Content: blocks('E', 'F', 'G', 'h', 'I'), Stored: repo.StoredBlocks, Blocks: []int64{0, 1, 2, 4}},
	}, nil)
	// i2: block 0 of 100 changed; 300 cut to one block by vacuum; 200
	// from i1 as a block file with none stored here; a new file.
	files := []inc{
		{Path: "global/pg_control", Content: ctl},
		{Path: "PG_VERSION", Content: []byte("15\n"), Stored: repo.StoredParent},
		{Path: "base/1/100", Content: blocks('A', 'B', 'c', 'D'), Stored: repo.StoredBlocks, Blocks: []int64{0}},
		{Path: "base/1/200", Content: blocks('P', 'Q'), Stored: repo.StoredParent},
		{Path: "base/1/300", Content: blocks('x'), Stored: repo.StoredParent},
		{Path: "base/1/400", Content: blocks('n')},
		{Path: "base/1/500", Content: blocks('E', 'F', 'G', 'h', 'J'), Stored: repo.StoredBlocks, Blocks: []int64{4}},
	}
	if lie != nil {
		lie(files)
	}
	i2 = backuptest.PushChainLink(t, r, "base_i2", "base_i1", testBS, tmin(2), files, nil)
	want = map[string][]byte{}
	for _, f := range files {
		want[f.Path] = f.Content
	}
	return full, i1, i2, want
}

func restoreChain(t *testing.T, r *repo.Repo, name string) (string, error) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "dest")
	_, err := Run(context.Background(), r, Options{Dest: dest, Backup: name, FetchArgv: []string{"/bin/walvault", "wal-fetch"}, Concurrency: 3, Target: Target{Immediate: true}})
	return dest, err
}

func TestRestoreChainAssemblesBlocks(t *testing.T) {
	r := chainStore(t)
	_, _, _, want := threeLinks(t, r, nil)
	dest, err := restoreChain(t, r, "base_i2")
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		got, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil || !bytes.Equal(got, w) {
			t.Errorf("%s: %d bytes (%v), want %d", p, len(got), err, len(w))
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "base/1/gone")); !os.IsNotExist(err) {
		t.Errorf("a file only an ancestor has was restored: %v", err)
	}
	// Each link restores on its own too.
	for _, name := range []string{"base_i1", "base_f"} {
		if _, err := restoreChain(t, r, name); err != nil {
			t.Errorf("restoring %s: %v", name, err)
		}
	}
}

func TestRestoreChainRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, r *repo.Repo)
		want  string
		early bool // found before anything is written
	}{
		{"a block the parent does not hold as the child assumed", func(t *testing.T, r *repo.Repo) {
			threeLinks(t, r, func(f []inc) { f[2].Content = blocks('A', 'b', 'c', 'D') })
		}, "base/1/100 as assembled from its chain fails its checksum", false},
		{"a stored block that is not what the manifest's CRC says", func(t *testing.T, r *repo.Repo) {
			threeLinks(t, r, func(f []inc) { f[2].Data = blocks('Z') })
		}, "base/1/100 as assembled from its chain fails its checksum", false},
		{"a parent whose manifest changed since", func(t *testing.T, r *repo.Repo) {
			_, i1, _, _ := threeLinks(t, r, nil)
			i1.Annotations = map[string]string{"changed": "yes"}
			if err := r.WriteManifest(context.Background(), i1, false); err != nil {
				t.Fatal(err)
			}
		}, "its ancestor base_i1 is not the backup base_i2 was taken against", true},
		{"a missing ancestor", func(t *testing.T, r *repo.Repo) {
			threeLinks(t, r, nil)
			if err := r.Store.Delete(context.Background(), repo.BackupKey("base_f", repo.ManifestFile)); err != nil {
				t.Fatal(err)
			}
		}, "needs its ancestor base_f, which is not in", true},
		{"a missing part of an ancestor", func(t *testing.T, r *repo.Repo) {
			threeLinks(t, r, nil)
			if err := r.Store.Delete(context.Background(), repo.BackupKey("base_i1", repo.PartName(0))); err != nil {
				t.Fatal(err)
			}
		}, "backup base_i1: backups/base_i1/part-00000", true},
		{"an ancestor without the file", func(t *testing.T, r *repo.Repo) {
			threeLinks(t, r, func(f []inc) { f[5].Stored = repo.StoredParent })
		}, "takes base/1/400 from base_i1, which does not have it", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := chainStore(t)
			tc.setup(t, r)
			dest, err := restoreChain(t, r, "base_i2")
			if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an integrity error with %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dest, "global/pg_control")); err == nil {
				t.Fatal("a failed restore left global/pg_control")
			}
			if _, err := os.Stat(dest); tc.early && !os.IsNotExist(err) {
				t.Fatalf("DEST was made before the failure was found: %v", err)
			}
		})
	}
}
