package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/integration/pgtest"
)

// badBackupInputs counts the damaged stores and refused requests the
// backup-side tests put to walvault, for the closing report.
var badBackupInputs atomic.Int64

type verifyJSON struct {
	OK      bool `json:"ok"`
	Backups []struct {
		Name         string `json:"name"`
		OK           bool   `json:"ok"`
		Consistent   bool   `json:"consistent"`
		FilesChecked int    `json:"files_checked"`
		RestorableTo *struct {
			Segment string `json:"segment"`
		} `json:"restorable_to"`
	} `json:"backups"`
	Timelines []struct {
		Timeline uint32 `json:"timeline"`
		Gaps     []struct {
			First string `json:"first"`
			Last  string `json:"last"`
			Count int    `json:"count"`
		} `json:"gaps"`
	} `json:"timelines"`
	Problems []struct {
		Object  string `json:"object"`
		Problem string `json:"problem"`
	} `json:"problems"`
}

func verifyReport(t *testing.T, tg *target, env []string, args ...string) (int, verifyJSON, string) {
	t.Helper()
	code, stdout, stderr := tg.walvault(t, env, append([]string{"verify", "--json"}, args...)...)
	var v verifyJSON
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("verify --json: %v\n%s\n%s", err, stdout, stderr)
	}
	return code, v, stderr
}

// moveAside renames an object's file away and returns a function that
// puts it back.
func moveAside(t *testing.T, path string) func() {
	t.Helper()
	if err := os.Rename(path, path+".aside"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Rename(path+".aside", path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifyAndDamage: verify passes a whole store; then, one at a time,
// a WAL gap, a flipped byte in a part and a truncated manifest: verify
// names the object and exits 7, and restore fails up front (the gap: for
// targets past it only) without reporting anything restored.
func TestVerifyAndDamage(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) { testVerifyAndDamage(t, newTarget(t, kind)) })
	}
}

func testVerifyAndDamage(t *testing.T, tg *target) {
	c, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	idEnv := []string{"WALVAULT_IDENTITY_FILE=" + identity}
	noID := []string{"WALVAULT_IDENTITY_FILE="}
	c.Run("pgbench", "-i", "-s", "1", "-q")
	b1 := backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint", "--part-size", "2MiB"))
	c.Run("pgbench", "-n", "-t", "100", "-c", "2")
	b2 := backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint"))
	// Five marks, each in a segment of its own.
	c.Psql("CREATE TABLE marks (i int)")
	var lsns, segs []string
	for i := 1; i <= 5; i++ {
		c.Psql(fmt.Sprintf("INSERT INTO marks VALUES (%d)", i))
		lsn := c.Psql("SELECT pg_current_wal_insert_lsn()")
		lsns = append(lsns, lsn)
		segs = append(segs, c.Psql(fmt.Sprintf("SELECT pg_walfile_name('%s')", lsn)))
		c.SwitchWAL()
	}
	c.WaitArchived(segs[4], 90*time.Second)
	c.Stop()
	for i := 1; i < 5; i++ {
		if segs[i] <= segs[i-1] {
			t.Fatalf("marks share segments: %v", segs)
		}
	}
	var outputs []string
	run := func(env []string, args ...string) (int, string, string) {
		t.Helper()
		code, stdout, stderr := tg.walvault(t, env, args...)
		outputs = append(outputs, stdout, stderr)
		return code, stdout, stderr
	}
	marks := func(c *pgtest.Cluster) string {
		return strings.Join(strings.Fields(c.Psql("SELECT i FROM marks ORDER BY i")), ",")
	}

	t.Run("whole", func(t *testing.T) {
		code, v, stderr := verifyReport(t, tg, nil)
		if code != 0 || !v.OK || len(v.Backups) != 2 || len(v.Problems) != 0 {
			t.Fatalf("exit %d: %+v\n%s", code, v, stderr)
		}
		for _, b := range v.Backups {
			if !b.Consistent || b.RestorableTo == nil || b.RestorableTo.Segment != segs[4] {
				t.Fatalf("%s: %+v, want restorable to %s", b.Name, b, segs[4])
			}
		}
		code, out, _ := run(idEnv, "verify", "--backup", b1)
		if code != 0 || !strings.Contains(out, "CRC-32C of") || !strings.Contains(out, "verify: OK") {
			t.Fatalf("verify --backup: exit %d\n%s", code, out)
		}
		code, out, _ = run(idEnv, "verify", "--full")
		if code != 0 {
			t.Fatalf("verify --full: exit %d\n%s", code, out)
		}
		badBackupInputs.Add(1)
		code, _, stderr = run(noID, "verify", "--full")
		if code != 2 || !strings.Contains(stderr, "--identity-file") {
			t.Fatalf("verify --full of encrypted backups without the identity: exit %d, %s", code, stderr)
		}
	})

	t.Run("gap", func(t *testing.T) {
		for _, s := range segs[2:4] {
			defer moveAside(t, tg.ObjectPath(repo.WALKey(archive.WALFile{Name: s})))()
		}
		badBackupInputs.Add(1)
		code, out, stderr := run(nil, "verify")
		if code != 7 || !strings.Contains(out, "GAP "+segs[2]+" - "+segs[3]+" (2 segments, timeline 1)") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("exit %d (want 7)\n%s\n%s", code, out, stderr)
		}
		_, v, _ := verifyReport(t, tg, nil)
		if v.OK || len(v.Timelines) != 1 || len(v.Timelines[0].Gaps) != 1 || v.Timelines[0].Gaps[0].First != segs[2] || v.Timelines[0].Gaps[0].Count != 2 {
			t.Fatalf("%+v", v)
		}
		for _, b := range v.Backups {
			if b.RestorableTo == nil || b.RestorableTo.Segment != segs[1] {
				t.Fatalf("%s restorable to %+v, want %s (before the gap)", b.Name, b.RestorableTo, segs[1])
			}
		}
		// Restores that would stop at the gap are refused before writing.
		for _, args := range [][]string{nil, {"--target-lsn", lsns[4]}, {"--target-time", time.Now().UTC().Format(time.RFC3339Nano)}} {
			badBackupInputs.Add(1)
			dest := filepath.Join(pgtest.WorkDir(t), "data")
			code, stdout, stderr := run(idEnv, append([]string{"restore", dest}, args...)...)
			if code != 4 || !strings.Contains(stderr, segs[2]) || !strings.Contains(stderr, "gap") || stdout != "" {
				t.Fatalf("restore %v past the gap: exit %d (want 4)\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
			}
			if _, err := os.Stat(dest); err == nil {
				t.Fatalf("restore %v created DEST", args)
			}
		}
		// One before the gap works, and gets exactly the marks before it.
		r := restoreInto(t, tg, serverEnv, identity, "--target-lsn", lsns[1])
		r.AppendConf("archive_mode = off")
		startAndRecover(t, r.Cluster)
		if got := marks(r.Cluster); got != "1,2" {
			t.Fatalf("marks %s after a restore to the second mark", got)
		}
		r.Stop()
	})

	t.Run("flipped byte in a part", func(t *testing.T) { testFlippedPart(t, tg, run, idEnv, b1) })

	t.Run("truncated manifest", func(t *testing.T) {
		path := tg.ObjectPath(repo.BackupKey(b2, repo.ManifestFile))
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, orig[:len(orig)/2], 0o644); err != nil { // #nosec G306 -- test data
			t.Fatal(err)
		}
		defer func() {
			if err := os.WriteFile(path, orig, 0o644); err != nil { // #nosec G306 -- test data
				t.Fatal(err)
			}
		}()
		key := repo.BackupKey(b2, repo.ManifestFile)
		for _, args := range [][]string{{"verify"}, {"verify", "--backup", b2}} {
			badBackupInputs.Add(1)
			code, out, stderr := run(idEnv, args...)
			if code != 7 || !strings.Contains(out, key) || !strings.Contains(stderr, key) {
				t.Fatalf("%v: exit %d (want 7), want %s named\n%s\n%s", args, code, key, out, stderr)
			}
		}
		badBackupInputs.Add(1)
		dest := filepath.Join(pgtest.WorkDir(t), "data")
		code, stdout, stderr := run(idEnv, "restore", dest, "--backup", b2)
		if code == 0 || !strings.Contains(stderr, key) || stdout != "" {
			t.Fatalf("restore from a truncated manifest: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Fatal("restore created DEST")
		}
	})

	// Every damage undone: whole again.
	if code, out, stderr := run(idEnv, "verify", "--full"); code != 0 {
		t.Fatalf("after repair: exit %d\n%s\n%s", code, out, stderr)
	}
	secretsIn(t, outputs...)
	t.Logf("bad backup-side inputs so far: %d", badBackupInputs.Load())
}

// testFlippedPart: a flipped byte in one of b1's parts is named by a full
// verify of b1 or of everything, passed by the size check, and refused by
// a restore of b1 before it leaves a startable directory. run runs walvault.
func testFlippedPart(t *testing.T, tg *target, run func(env []string, args ...string) (int, string, string), idEnv []string, b1 string) {
	parts, _ := filepath.Glob(tg.ObjectPath(repo.BackupPrefix + b1 + "/part-*"))
	var big string
	var size int64
	for _, p := range parts {
		if st, err := os.Stat(p); err == nil && st.Size() > size {
			big, size = p, st.Size()
		}
	}
	if len(parts) < 2 {
		t.Fatalf("backup %s has %d parts; want several", b1, len(parts))
	}
	flipByte(t, big)
	defer flipByte(t, big)
	key := repo.BackupKey(b1, filepath.Base(big))
	for _, args := range [][]string{{"verify", "--backup", b1}, {"verify", "--full"}} {
		badBackupInputs.Add(1)
		code, out, stderr := run(idEnv, args...)
		if code != 7 || !strings.Contains(out, key) || !strings.Contains(stderr, key) {
			t.Fatalf("%v: exit %d (want 7), want %s named\n%s\n%s", args, code, key, out, stderr)
		}
	}
	// The size check cannot see a flipped byte, and says what it checked.
	if code, out, _ := run(nil, "verify"); code != 0 || !strings.Contains(out, "present with their recorded sizes") {
		t.Fatalf("size check: exit %d\n%s", code, out)
	}
	badBackupInputs.Add(1)
	dest := filepath.Join(pgtest.WorkDir(t), "data")
	code, stdout, stderr := run(idEnv, "restore", dest, "--backup", b1)
	if code != 4 || !strings.Contains(stderr, filepath.Base(big)) || strings.Contains(stdout, "restored backup") {
		t.Fatalf("restore of the damaged backup: exit %d (want 4)\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dest, "global", "pg_control")); err == nil {
		t.Fatal("the failed restore left a startable directory")
	}
}
