package verify

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
)

type chainFile = backuptest.ChainFile

func blocks(seed uint64, n int) []byte {
	b := make([]byte, n*backuptest.BlockSize)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

// chainOfThree stores f <- i1 <- i2 with real parts: i1 keeps a changed
// block and a grown file's new block, leaves PG_VERSION to f; i2 leaves
// base/1/100 to i1 (which resolves it through f) and stores base/1/200
// whole. WAL 0x20 to 0x30 is archived.
func chainOfThree(t *testing.T) (*synth, map[string]*repo.Manifest) {
	s := newSynth(t)
	rel100, rel200 := blocks(1, 3), blocks(2, 2)
	f := backuptest.PushLink(t, s.R, "f", "", []chainFile{
		{Path: "PG_VERSION", Content: []byte("15\n")}, {Path: "base/1/100", Content: rel100}, {Path: "base/1/200", Content: rel200},
	}, nil)
	rel100b := bytes.Clone(rel100)
	copy(rel100b[backuptest.BlockSize:], blocks(3, 1))
	rel200b := append(bytes.Clone(rel200), blocks(4, 1)...)
	i1 := backuptest.PushLink(t, s.R, "i1", "f", []chainFile{
		{Path: "PG_VERSION", Content: []byte("15\n"), Stored: repo.StoredParent},
		{Path: "base/1/100", Content: rel100b, Stored: repo.StoredBlocks, Blocks: []int64{1}},
		{Path: "base/1/200", Content: rel200b, Stored: repo.StoredBlocks, Blocks: []int64{2}},
	}, nil)
	i2 := backuptest.PushLink(t, s.R, "i2", "i1", []chainFile{
		{Path: "PG_VERSION", Content: []byte("15\n"), Stored: repo.StoredParent},
		{Path: "base/1/100", Content: rel100b, Stored: repo.StoredParent},
		{Path: "base/1/200", Content: rel200b},
	}, nil)
	s.Segs(1, 0x20, 0x30, func(n uint64) time.Time { return tmin(int(n)) })
	return s, map[string]*repo.Manifest{"f": f, "i1": i1, "i2": i2}
}

func TestVerifyChain(t *testing.T) {
	s, ms := chainOfThree(t)
	rep, err := Run(s.Ctx, s.R, Options{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Backups) != 3 {
		t.Fatalf("whole chain: %s", problemsText(rep))
	}
	i1, i2 := rep.Backups[1], rep.Backups[2]
	if i1.Type != repo.BackupIncremental || i1.BlockFilesChecked != 2 || i1.FilesChecked != 0 || i2.FilesChecked != 1 {
		t.Fatalf("i1 %+v\ni2 %+v", i1, i2)
	}
	if len(i2.Ancestors) != 2 || i2.Ancestors[0].Name != "i1" || i2.Ancestors[1].Name != "f" || !i2.Ancestors[1].OK ||
		i2.ChainStoredSize != ms["f"].StoredSize+ms["i1"].StoredSize+ms["i2"].StoredSize || strings.Join(i2.Chain, ",") != "i1,f" {
		t.Fatalf("i2's chain: %+v", i2)
	}

	// verify NAME checks every link's parts.
	rep, err = Run(s.Ctx, s.R, Options{Backup: "i2", Full: true})
	if err != nil || !rep.OK || len(rep.Backups) != 1 || len(rep.Backups[0].Ancestors) != 2 || rep.Backups[0].Ancestors[1].FilesChecked != 3 {
		t.Fatalf("verify i2: %v %+v\n%s", err, rep.Backups, problemsText(rep))
	}

	t.Run("damaged full", func(t *testing.T) {
		path := filepath.Join(s.Root, filepath.FromSlash(repo.BackupKey("f", "part-00000")))
		orig, _ := os.ReadFile(path)
		defer putBack(t, path, orig, 0o600)
		flipped := bytes.Clone(orig)
		flipped[len(flipped)/2] ^= 0x10
		if err := os.WriteFile(path, flipped, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Run(s.Ctx, s.R, Options{Backup: "i2", Full: true})
		if err != nil {
			t.Fatal(err)
		}
		txt := problemsText(rep)
		if rep.OK || rep.Backups[0].Ancestors[1].OK || !strings.Contains(txt, "backups/i2/: cannot be restored: its ancestor f is damaged") ||
			!strings.Contains(txt, "backups/f/part-00000") {
			t.Fatalf("a damaged full under i2:\n%s", txt)
		}
		rep, _ = Run(s.Ctx, s.R, Options{Full: true})
		if rep.OK || rep.Backups[0].OK || rep.Backups[1].OK || rep.Backups[2].OK {
			t.Fatalf("every link of a chain on a damaged full fails:\n%s", problemsText(rep))
		}
		// i1 is whole itself: i2 names f, not i1, as damaged.
		if a := rep.Backups[2].Ancestors; !a[0].OK || a[1].OK || len(rep.Backups[2].Problems) != 1 {
			t.Fatalf("i2's links %+v, problems %v", a, rep.Backups[2].Problems)
		}
	})
	t.Run("missing parent part, sizes only", func(t *testing.T) {
		path := filepath.Join(s.Root, filepath.FromSlash(repo.BackupKey("i1", "part-00000")))
		orig, _ := os.ReadFile(path)
		defer putBack(t, path, orig, 0o600)
		_ = os.Remove(path)
		rep, err := Run(s.Ctx, s.R, Options{Backup: "i2"})
		if err != nil || rep.OK || !strings.Contains(problemsText(rep), "backups/i1/part-00000: missing") {
			t.Fatalf("%v\n%s", err, problemsText(rep))
		}
	})
}

// What an incremental leaves to its parent, or stores as blocks, must
// match the parent and its block map.
func TestVerifyIncrementalFiles(t *testing.T) {
	rel100b := append(blocks(1, 1), blocks(3, 2)...)
	tests := []struct {
		name  string
		files []chainFile
		mut   func(m *repo.Manifest)
		want  string
	}{
		{"a file its parent lacks", []chainFile{{Path: "base/1/999", Content: blocks(5, 1), Stored: repo.StoredParent}}, nil,
			"base/1/999 is left to the parent i2, which has no such file"},
		{"longer than its parent's file", []chainFile{{Path: "PG_VERSION", Content: []byte("15\nmore"), Stored: repo.StoredParent}}, nil,
			"PG_VERSION needs the first 7 bytes of its parent i2's file, which has 3"},
		{"a block past the parent's file left to it", []chainFile{{Path: "base/1/100", Content: blocks(6, 4), Stored: repo.StoredBlocks, Blocks: []int64{0}}}, nil,
			"base/1/100 needs the first 32768 bytes"},
		{"an entry that is not what the block map says", []chainFile{{Path: "base/1/100", Content: rel100b, Stored: repo.StoredBlocks, Blocks: []int64{1}}},
			func(m *repo.Manifest) {
				bm := repo.NewBlockMap(3)
				bm.Set(1)
				bm.Set(2)
				m.Files[1].Blocks = bm.String()
			}, "holds 8192 bytes of blocks, its block map says 2 blocks"},
		{"an entry for a file left to the parent", []chainFile{{Path: "base/1/100", Content: rel100b}},
			func(m *repo.Manifest) { m.Files[1].Stored = repo.StoredParent }, `holds "base/1/100", which the manifest says is its parent's`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := chainOfThree(t)
			backuptest.PushLink(t, s.R, "bad", "i2", tt.files, tt.mut)
			rep, err := Run(s.Ctx, s.R, Options{Backup: "bad", Full: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || !strings.Contains(problemsText(rep), tt.want) {
				t.Fatalf("want %q:\n%s", tt.want, problemsText(rep))
			}
		})
	}
}
