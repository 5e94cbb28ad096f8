package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// tableLike is n bytes that compress as a table does, about 5:1: rows of
// text with random numbers in them.
func tableLike(n int, seed byte) []byte {
	rnd := rand.New(rand.NewChaCha8([32]byte{seed}))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "|%08d|%012d|%s|", rnd.IntN(1e8), rnd.Int64N(1e12), strings.Repeat(" ", 40))
	}
	return b.Bytes()[:n]
}

// TestDeltaRestoreRanges: a delta restore of a full backup with block
// indexes and range checksums fetches only the blocks of the ranges that
// differ (a small fraction of the stored bytes), patches the relation
// file in place, writes the other files that differ whole, and leaves
// DEST equal to a clean restore; encrypted or not (S3: the integration
// test TestDeltaRestore).
// A block changed in the store stops it before a byte of it is written.
func TestDeltaRestoreRanges(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) cloud.Store
	}{
		{"file", func(t *testing.T) cloud.Store {
			st, err := cloud.Open(context.Background(), "file://"+filepath.Join(t.TempDir(), "store"), cloud.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	}
	for _, sv := range stores {
		for _, encrypted := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/encrypted=%v", sv.name, encrypted), func(t *testing.T) {
				testDeltaRanges(t, sv.open(t), encrypted)
			})
		}
	}
}

func testDeltaRanges(t *testing.T, st cloud.Store, encrypted bool) {
	ctx := context.Background()
	root := t.TempDir()
	src := filepath.Join(root, "src")
	table := tableLike(16<<20+5000, 1)
	index := tableLike(6<<20, 2)
	tree := map[string]string{
		"PG_VERSION": "15\n", "global/pg_control": controlOf(1, "control"), "postgresql.auto.conf": "# auto\n",
		"base/1/16384":      string(table), // pgbench_accounts
		"base/1/16390":      string(index), // its index
		"base/1/16384_fsm":  strings.Repeat("f", 24576),
		"base/1/PG_VERSION": "15\n",
		"base/5/1259":       strings.Repeat("c", 9000), // a database whose directory goes
	}
	writeTree(t, src, tree)
	r := signedRepo(t, st)
	if encrypted {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		r.Codec.Recipients, r.Identities = []age.Recipient{id.Recipient()}, []age.Identity{id}
	}
	backuptest.PutWAL(t, r, "000000010000000000000002")
	m := backuptest.PushWith(t, r, src, "base_1", backuptest.PushOptions{Indexed: true, RangeSize: 1 << 20}, nil)

	dest := filepath.Join(root, "dest")
	opts := Options{Dest: dest, FetchArgv: []string{"/bin/walvault", "wal-fetch"}, Concurrency: 2}
	if _, err := Run(ctx, r, opts); err != nil {
		t.Fatal(err)
	}
	// What the server did since: rows updated at the start of the table
	// and new versions appended to it, the index changed in the middle
	// and cut short, the free space map rewritten, a database dropped.
	tablePath := filepath.Join(dest, "base/1/16384")
	changed := append([]byte{}, table...)
	for i := 0; i < 200000; i += 97 {
		changed[i] ^= 0x20
	}
	changed = append(changed, tableLike(300000, 3)...)
	idx := append([]byte{}, index[:5<<20+7]...)
	idx[3<<20+5] ^= 1
	writeTree(t, dest, map[string]string{
		"base/1/16384":     string(changed),
		"base/1/16390":     string(idx) + "X",
		"base/1/16384_fsm": strings.Repeat("g", 24576),
	})
	if err := os.RemoveAll(filepath.Join(dest, "base/5")); err != nil {
		t.Fatal(err)
	}
	ino := inode(t, tablePath)

	opts.Delta = true
	res, err := Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range tree {
		if p == "postgresql.auto.conf" {
			continue
		}
		if got := readAll(t, filepath.Join(dest, p)); got != want {
			t.Errorf("%s after the delta restore: %d bytes, not the backup's %d", p, len(got), len(want))
		}
	}
	if inode(t, tablePath) != ino {
		t.Error("the table was rewritten, not patched in place")
	}
	fi, err := os.Stat(tablePath)
	if err != nil {
		t.Fatal(err)
	}
	var tf *repo.File
	for i := range m.Files {
		if m.Files[i].Path == "base/1/16384" {
			tf = &m.Files[i]
		}
	}
	if !fi.ModTime().Equal(tf.MTime) || fi.Mode().Perm() != os.FileMode(tf.Perm()) {
		t.Errorf("the patched table has mtime %v mode %v, the backup's %v %s", fi.ModTime(), fi.Mode().Perm(), tf.MTime, tf.Mode)
	}
	d := res.Delta
	// The table: 1 range at its start; the index: 1 range and its end
	// (the small files' parts are read whole).
	if d.PatchedFiles != 2 || d.FetchedBytes > 3<<20+64<<10 {
		t.Errorf("delta stats %+v: want 2 files patched, 3 MiB and the small files written", d)
	}
	if res.PartsRead >= res.PartsTotal || res.StoredRead == 0 || res.StoredRead > res.StoredTotal/4 {
		t.Errorf("read %d of %d parts whole and %d of %d stored bytes: want a small fraction, by ranges", res.PartsRead, res.PartsTotal, res.StoredRead, res.StoredTotal)
	}
	t.Logf("read %d of %d stored bytes (%.1f%%), wrote %d bytes", res.StoredRead, res.StoredTotal, 100*float64(res.StoredRead)/float64(res.StoredTotal), d.FetchedBytes)
	if _, err := os.Stat(filepath.Join(dest, deltaMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Error("the marker outlived the delta restore")
	}

	// The same again, with the store's copy of the table's part changed
	// where the table's first MiB is: nothing of it is written, and the
	// directory cannot start.
	writeTree(t, dest, map[string]string{"base/1/16384": string(changed)})
	var tablePart repo.Part
	for _, p := range m.Parts {
		if p.Index != "" && p.Size > 16<<20 {
			tablePart = p
		}
	}
	key := repo.BackupKey(m.Name, tablePart.Name)
	body, meta := backuptest.GetObject(t, st, key)
	body[len(body)/20] ^= 0x01 // early in the part: the table's first MiB
	backuptest.PutObject(t, st, key, body, meta)
	before := readAll(t, tablePath)
	if _, err := Run(ctx, r, opts); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("delta restore from a changed part: %v", err)
	}
	if readAll(t, tablePath) != before {
		t.Error("bytes of a changed part were written")
	}
	if _, err := os.Stat(filepath.Join(dest, "global/pg_control")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed delta restore left a pg_control")
	}
}
