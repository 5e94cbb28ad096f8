package restore

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// controlOf is a pg_control of the cluster with system identifier id (the
// test backups' is 1).
func controlOf(id uint64, rest string) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], id)
	return string(b[:]) + rest
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func readAll(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// deadPid is the pid of a process that has ended.
func deadPid(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// TestDeltaRestore: a restored directory that changed since (a file
// changed, one removed, files and directories added, a stale
// postmaster.pid, a tablespace changed) is made the backup's again by a
// delta restore, which keeps the files that match, reads only the parts
// it needs, removes what the backup lacks but the logs, and leaves
// nothing of the tablespace directory outside the backup's own.
func TestDeltaRestore(t *testing.T) {
	for _, v := range pushVariants {
		t.Run(v.name, func(t *testing.T) { testDeltaRestore(t, v.push, v.ranged) })
	}
}

// pushFunc stores a test backup of src.
type pushFunc func(t testing.TB, r *repo.Repo, src, name string, mutate func(*repo.Manifest)) *repo.Manifest

// pushVariants: parts without a block index (backups taken before delta
// restore read ranges: every part with a file to write is read whole),
// and with one and range checksums (only the blocks needed are read).
// The test parts are tiny: ranged makes even them be read by ranges
// (which then costs more than reading them whole).
var pushVariants = []struct {
	name   string
	push   pushFunc
	ranged bool
}{
	{"whole parts", backuptest.Push, false},
	{"block index", func(t testing.TB, r *repo.Repo, src, name string, mutate func(*repo.Manifest)) *repo.Manifest {
		return backuptest.PushWith(t, r, src, name, backuptest.PushOptions{Indexed: true, RangeSize: 1024}, mutate)
	}, true},
}

// rangedParts makes every indexed part be read by ranges until the test
// ends.
func rangedParts(t *testing.T) {
	old := minRangedPart
	minRangedPart = 0
	t.Cleanup(func() { minRangedPart = old })
}

func testDeltaRestore(t *testing.T, pushTestBackup pushFunc, ranged bool) {
	if ranged {
		rangedParts(t)
	}
	ctx := context.Background()
	root := t.TempDir()
	src, spc := filepath.Join(root, "src"), filepath.Join(root, "spc")
	big := strings.Repeat("relation data ", 20)
	tree := map[string]string{
		"PG_VERSION": "15\n", "global/pg_control": controlOf(1, "control"), "base/1/1259": big, "base/1/1249": "x",
		"base/1/2600": strings.Repeat("k", 100), "base/1/2601": strings.Repeat("m", 100),
		"postgresql.auto.conf": "# auto\n", "pg_wal/archive_status/.keep": "", "pg_tblspc/.keep": "",
		"global/pg_filenode.map": selfCRC(1),
	}
	writeTree(t, src, tree)
	writeTree(t, spc, map[string]string{"PG_15_1/1/16390": "in a tablespace", "PG_15_1/1/16391": strings.Repeat("t", 90)})
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

	dest, moved := filepath.Join(root, "dest"), filepath.Join(root, "moved")
	opts := Options{Dest: dest, FetchArgv: []string{"/bin/walvault", "wal-fetch"}, Concurrency: 2,
		TablespaceMap: map[string]string{"16390": moved}}
	if _, err := Run(ctx, r, opts); err != nil {
		t.Fatal(err)
	}
	// What the server did since, and what a DBA left there.
	keptIno := inode(t, filepath.Join(dest, "base/1/2600"))
	writeTree(t, dest, map[string]string{
		"base/1/1259": strings.Repeat("R", len(big)), // same size, other content
		"base/1/9999": "a new relation", "base/77/1": "a new database", "log/postgresql.log": "the server's log",
		"pg_wal/000000010000000000000009": "newer WAL", "base/1/1259.walvault-restore": "left by a failed restore",
		"postmaster.pid": strconv.Itoa(deadPid(t)) + "\n/dest\n",
		// VACUUM FULL pg_class: another map, of the same CRC-32C.
		"global/pg_filenode.map": selfCRC(2),
	})
	if err := os.Remove(filepath.Join(dest, "base/1/1249")); err != nil {
		t.Fatal(err)
	}
	writeTree(t, moved, map[string]string{"PG_15_1/1/16390": "changed in the tablespace", "PG_15_1/1/77777": "new there", "not-ours": "another cluster's"})

	opts.Delta = true
	res, err := Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range tree {
		if strings.HasSuffix(p, ".keep") || p == "postgresql.auto.conf" {
			continue
		}
		if got := readAll(t, filepath.Join(dest, p)); got != want {
			t.Errorf("%s after the delta restore: %q, want %q", p, got, want)
		}
	}
	if got := readAll(t, filepath.Join(dest, "pg_tblspc/16390/PG_15_1/1/16390")); got != "in a tablespace" {
		t.Errorf("the tablespace's changed file: %q", got)
	}
	for _, gone := range []string{"base/1/9999", "base/77", "pg_wal/000000010000000000000009", "base/1/1259.walvault-restore", "postmaster.pid", deltaMarker, "pg_tblspc/16390/PG_15_1/1/77777"} {
		if _, err := os.Lstat(filepath.Join(dest, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after the delta restore (%v)", gone, err)
		}
	}
	for _, kept := range []string{filepath.Join(dest, "log/postgresql.log"), filepath.Join(moved, "not-ours"), filepath.Join(dest, "recovery.signal")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s: %v (should be there)", kept, err)
		}
	}
	if inode(t, filepath.Join(dest, "base/1/2600")) != keptIno {
		t.Error("a file that matched the backup was rewritten")
	}
	d := res.Delta
	if d == nil || d.KeptFiles == 0 || d.FetchedFiles == 0 || d.Removed < 6 {
		t.Fatalf("delta stats %+v", d)
	}
	if ranged {
		if res.PartsRead != 0 || res.StoredRead == 0 || d.PatchedFiles == 0 {
			t.Errorf("the delta restore read %d of %d parts whole and %d bytes (patched %d files): it should read them all by ranges", res.PartsRead, res.PartsTotal, res.StoredRead, d.PatchedFiles)
		}
	} else if res.PartsRead >= res.PartsTotal || res.StoredRead >= res.StoredTotal {
		t.Errorf("the delta restore read %d of %d parts (%d of %d bytes): it should read only those it needs", res.PartsRead, res.PartsTotal, res.StoredRead, res.StoredTotal)
	}
	auto := readAll(t, filepath.Join(dest, "postgresql.auto.conf"))
	if strings.Count(auto, "restore_command") != 1 {
		t.Errorf("postgresql.auto.conf after a delta restore:\n%s", auto)
	}

	// Nothing changed since: everything but what restore itself writes is
	// kept, and no part but the last's files are read.
	res, err = Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delta.Removed > 1 || res.Delta.FetchedFiles > 3 { // recovery.signal; pg_control, postgresql.auto.conf, pg_filenode.map
		t.Errorf("a delta restore over the backup's own state: %+v", res.Delta)
	}

	// --delta-by-time trusts size and mtime: a change that kept both is
	// not seen (the documented weakness); a new mtime is.
	p := filepath.Join(dest, "base/1/2601")
	fi, _ := os.Stat(p)
	if err := os.WriteFile(p, []byte(strings.Repeat("M", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	byTime := opts
	byTime.DeltaByTime = true
	if _, err := Run(ctx, r, byTime); err != nil {
		t.Fatal(err)
	}
	if readAll(t, p) != strings.Repeat("M", 100) {
		t.Error("--delta-by-time rewrote a file of the same size and mtime")
	}
	if err := os.Chtimes(p, time.Now().Add(time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, r, byTime); err != nil {
		t.Fatal(err)
	}
	if readAll(t, p) != tree["base/1/2601"] {
		t.Error("--delta-by-time kept a file whose mtime changed")
	}
	_ = m
}

// TestDeltaRefuses: a delta restore writes nothing into a directory of
// another cluster, one a server runs in, or one that is not a data
// directory at all.
func TestDeltaRefuses(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	src := filepath.Join(root, "src")
	writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "global/pg_control": controlOf(1, "control"), "base/1/1259": "data"})
	st, err := cloud.Open(ctx, "file://"+filepath.Join(root, "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := signedRepo(t, st)
	backuptest.PutWAL(t, r, "000000010000000000000002")
	pushTestBackup(t, r, src, "base_1", nil)
	for _, tc := range []struct {
		name string
		tree map[string]string
		want string
	}{
		{"another cluster", map[string]string{"global/pg_control": controlOf(7, "control"), "base/1/1259": "mine"}, "system identifier 7"},
		{"a running server", map[string]string{"global/pg_control": controlOf(1, "control"), "base/1/1259": "mine", "postmaster.pid": strconv.Itoa(os.Getpid()) + "\n"}, "is running"},
		{"no pg_control", map[string]string{"base/1/1259": "mine"}, "has no global/pg_control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "dest")
			writeTree(t, dest, tc.tree)
			if err := os.Chmod(dest, 0o700); err != nil {
				t.Fatal(err)
			}
			_, err := Run(ctx, r, Options{Dest: dest, Delta: true, FetchArgv: []string{"x"}})
			if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("delta restore into %s: %v; want exit 2 saying %q", tc.name, err, tc.want)
			}
			if got := readAll(t, filepath.Join(dest, "base/1/1259")); got != "mine" {
				t.Error("a refused delta restore changed DEST")
			}
		})
	}
}

// TestDeltaRestoreChain: a delta restore of an incremental assembles only
// the files that differ, from the chain, block by block.
func TestDeltaRestoreChain(t *testing.T) {
	r := chainStore(t)
	_, _, _, want := threeLinks(t, r, nil)
	dest, err := restoreChain(t, r, "base_i2")
	if err != nil {
		t.Fatal(err)
	}
	// The test chain's pg_control is not one; give DEST a real one of the
	// cluster, as the server's would be.
	writeTree(t, dest, map[string]string{"global/pg_control": controlOf(1, "x"), "base/1/400": string(blocks('N')), "base/1/555": "extra"})
	kept := inode(t, filepath.Join(dest, "base/1/300"))
	res, err := Run(context.Background(), r, Options{Dest: dest, Backup: "base_i2", Delta: true, FetchArgv: []string{"/bin/walvault", "wal-fetch"}, Concurrency: 2, Target: Target{Immediate: true}})
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if got := readAll(t, filepath.Join(dest, p)); got != string(w) {
			t.Errorf("%s: %d bytes, want %d", p, len(got), len(w))
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "base/1/555")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a file the backup does not have survived the delta restore")
	}
	if inode(t, filepath.Join(dest, "base/1/300")) != kept {
		t.Error("a file that matched was rewritten")
	}
	if res.PartsRead >= res.PartsTotal {
		t.Errorf("read %d of the chain's %d parts", res.PartsRead, res.PartsTotal)
	}
}

// TestDeltaRestoreAgainAfterAFailure: a delta restore that fails once it
// has removed pg_control (a damaged part) leaves the directory
// unstartable but recognisable: a delta restore of another backup of the
// same cluster finishes the job.
func TestDeltaRestoreAgainAfterAFailure(t *testing.T) {
	for _, v := range pushVariants {
		t.Run(v.name, func(t *testing.T) {
			if v.ranged {
				rangedParts(t)
			}
			testDeltaRestoreAgainAfterAFailure(t, v.push)
		})
	}
}

func testDeltaRestoreAgainAfterAFailure(t *testing.T, pushTestBackup pushFunc) {
	ctx := context.Background()
	root := t.TempDir()
	src := filepath.Join(root, "src")
	writeTree(t, src, map[string]string{"PG_VERSION": "15\n", "global/pg_control": controlOf(1, "control"),
		"base/1/1259": strings.Repeat("a", 100), "base/1/1249": strings.Repeat("b", 100)})
	st, err := cloud.Open(ctx, "file://"+filepath.Join(root, "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := signedRepo(t, st)
	backuptest.PutWAL(t, r, "000000010000000000000002")
	pushTestBackup(t, r, src, "base_good", nil)
	bad := pushTestBackup(t, r, src, "base_bad", nil)
	dest := filepath.Join(root, "dest")
	opts := Options{Dest: dest, Backup: "base_good", FetchArgv: []string{"x"}}
	if _, err := Run(ctx, r, opts); err != nil {
		t.Fatal(err)
	}
	writeTree(t, dest, map[string]string{"base/1/1259": strings.Repeat("c", 100)})
	// Damage every part of base_bad: the file that differs is in one.
	for _, p := range bad.Parts {
		key := "backups/base_bad/" + p.Name
		body, meta := backuptest.GetObject(t, st, key)
		body[len(body)/2] ^= 0xff
		backuptest.PutObject(t, st, key, body, meta)
	}
	opts.Backup, opts.Delta = "base_bad", true
	if _, err := Run(ctx, r, opts); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("delta restore of a damaged backup: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "global/pg_control")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed delta restore left a pg_control to start from")
	}
	opts.Backup = "base_good"
	if _, err := Run(ctx, r, opts); err != nil {
		t.Fatalf("delta restore after a failed one: %v", err)
	}
	if readAll(t, filepath.Join(dest, "base/1/1259")) != strings.Repeat("a", 100) || readAll(t, filepath.Join(dest, "global/pg_control")) != controlOf(1, "control") {
		t.Fatal("the second delta restore did not finish the job")
	}
	if _, err := os.Stat(filepath.Join(dest, deltaMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Error("the marker outlived a delta restore that finished")
	}
	// A pg_wal that is a link is refused, not replaced.
	if err := os.RemoveAll(filepath.Join(dest, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(root, filepath.Join(dest, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, r, opts); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("delta restore with pg_wal a link: %v", err)
	}
}

// selfCRC is a 512-byte file that ends with the CRC-32C of what it holds
// and zero padding, as pg_filenode.map does: every one has the same
// CRC-32C.
func selfCRC(fill byte) string {
	b := make([]byte, 512)
	for i := range 500 {
		b[i] = fill + byte(i)
	}
	binary.LittleEndian.PutUint32(b[500:], crc32.Checksum(b[:500], crc32.MakeTable(crc32.Castagnoli)))
	return string(b)
}
