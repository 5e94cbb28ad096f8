package integration

import (
	"context"
	"encoding/json"
	"path"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// objState is what a store listing says about one object.
type objState struct {
	Size int64
	Mod  time.Time
}

// storeObjects lists every object of the target's store, in-process.
func storeObjects(t *testing.T, tg *target) map[string]objState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := cloud.Open(ctx, tg.URL, tg.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close(st)
	out := map[string]objState{}
	err = st.List(ctx, "", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		out[o.Key] = objState{Size: o.Size, Mod: o.ModTime}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listedBackup is backup-list --json's view of a backup.
type listedBackup struct {
	Name      string `json:"name"`
	Timeline  uint32 `json:"timeline"`
	StartWAL  string `json:"start_wal"`
	StopWAL   string `json:"stop_wal"`
	Permanent bool   `json:"permanent"`
}

func listBackups(t *testing.T, tg *target) map[string]listedBackup {
	t.Helper()
	var list []listedBackup
	js := mustWalvault(t, tg, nil, "backup-list", "--json")
	if err := json.Unmarshal([]byte(js), &list); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	out := map[string]listedBackup{}
	for _, b := range list {
		out[b.Name] = b
	}
	return out
}

// segOf is a 1 MiB WAL file's timeline and segment number.
func segOf(t *testing.T, name string) (uint32, uint64) {
	t.Helper()
	wf, err := archive.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	return wf.Timeline, wf.SegNo(1 << 20)
}

// secretsIn fails the test if out holds a secret of the test setup: the
// S3 secret key or any age secret key.
func secretsIn(t *testing.T, outs ...string) {
	t.Helper()
	for _, o := range outs {
		if strings.Contains(o, testenv.S3SecretKey) || strings.Contains(strings.ToUpper(o), "AGE-SECRET-KEY-") {
			t.Fatalf("a secret in walvault's output:\n%s", o)
		}
	}
}

type retentionPlanJSON struct {
	DryRun bool `json:"dry_run"`
	Plan   struct {
		Backups []struct {
			Name    string   `json:"name"`
			Delete  bool     `json:"delete"`
			Reasons []string `json:"reasons"`
		} `json:"backups"`
		Delete struct {
			Backups    int `json:"backups"`
			WALObjects int `json:"wal_objects"`
		} `json:"delete"`
	} `json:"plan"`
}

// TestRetention: five backups on two timelines, the second made by a
// point-in-time restore that archives into the same store, one backup
// permanent. delete --retain-full 2 keeps exactly the two newest and the
// permanent one, and exactly the WAL they need; the dry run changes
// nothing; afterwards the oldest kept backup still restores to the latest
// WAL, and the permanent one to its consistent point.
func TestRetention(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) { testRetention(t, newTarget(t, kind)) })
	}
}

func testRetention(t *testing.T, tg *target) {
	c, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	idEnv := []string{"WALVAULT_IDENTITY_FILE=" + identity}
	backup := func(c *pgtest.Cluster, args ...string) string {
		t.Helper()
		return backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), append([]string{"backup-push", "--fast-checkpoint"}, args...)...))
	}
	c.Run("pgbench", "-i", "-s", "1", "-q")
	b1 := backup(c)
	c.Run("pgbench", "-n", "-t", "100", "-c", "2")
	b2 := backup(c, "--permanent")
	c.Run("pgbench", "-n", "-t", "100", "-c", "2")
	target := c.Psql("SELECT clock_timestamp()")
	time.Sleep(20 * time.Millisecond)
	// Timeline 1 goes on past the point the restore below branches off.
	c.Run("pgbench", "-n", "-t", "200", "-c", "2")
	b3 := backup(c)
	c.Run("pgbench", "-n", "-t", "100", "-c", "2")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	c.Stop()

	// A restore to the target promotes to timeline 2 and archives it into
	// the same store, as a real recovery would.
	r := restoreInto(t, tg, serverEnv, identity, "--target-time", target)
	if !strings.Contains(r.Stdout, "restored backup "+b2) {
		t.Fatalf("the restore to the target did not use %s:\n%s", b2, r.Stdout)
	}
	startAndRecover(t, r.Cluster)
	r.Run("pgbench", "-n", "-t", "100", "-c", "2")
	b4 := backup(r.Cluster)
	r.Run("pgbench", "-n", "-t", "100", "-c", "2")
	b5 := backup(r.Cluster)
	r.Psql("CREATE TABLE after_b5 AS SELECT generate_series(1, 500) AS i")
	want := tableChecksums(t, r.Cluster)
	r.WaitArchived(r.SwitchWAL(), 90*time.Second)
	r.Stop()

	list := listBackups(t, tg)
	if len(list) != 5 || !list[b2].Permanent || list[b1].Timeline != 1 || list[b3].Timeline != 1 || list[b4].Timeline != 2 || list[b5].Timeline != 2 {
		t.Fatalf("backups before delete: %+v", list)
	}
	before := storeObjects(t, tg)
	var outputs []string

	// The history files are encrypted: delete needs the identity to
	// follow the timelines, and says so without deleting anything.
	badBackupInputs.Add(1)
	code, stdout, stderr := tg.walvault(t, nil, "delete", "--retain-full", "2", "--confirm")
	outputs = append(outputs, stdout, stderr)
	if code == 0 || !strings.Contains(stderr, "--identity-file") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("delete without the identity: exit %d\n%s%s", code, stdout, stderr)
	}

	// Dry run: the plan, and nothing changes.
	dry := mustWalvault(t, tg, idEnv, "delete", "--retain-full", "2")
	outputs = append(outputs, dry)
	if !strings.Contains(dry, "DRY RUN") {
		t.Fatalf("dry run output:\n%s", dry)
	}
	for name, del := range map[string]bool{b1: true, b2: false, b3: true, b4: false, b5: false} {
		v := "KEEP"
		if del {
			v = "DELETE"
		}
		if !regexp.MustCompile(`(?m)^\s+` + v + `\s+` + name + `\s`).MatchString(dry) {
			t.Fatalf("the dry run does not say %s %s:\n%s", v, name, dry)
		}
	}
	if !strings.Contains(dry, "permanent") || !strings.Contains(dry, "one of the 2 newest") || !strings.Contains(dry, "would delete 2 backups") {
		t.Fatalf("the dry run does not give its reasons:\n%s", dry)
	}
	var plan retentionPlanJSON
	js := mustWalvault(t, tg, idEnv, "delete", "--retain-full=2", "--json")
	if err := json.Unmarshal([]byte(js), &plan); err != nil || !plan.DryRun || plan.Plan.Delete.Backups != 2 || plan.Plan.Delete.WALObjects == 0 {
		t.Fatalf("%v\n%s", err, js)
	}
	if after := storeObjects(t, tg); !sameObjects(before, after) {
		t.Fatal("the dry run (or the refused delete) changed the store")
	}

	out := mustWalvault(t, tg, idEnv, "delete", "--retain-full", "2", "--confirm")
	outputs = append(outputs, out)
	if !strings.Contains(out, "deleted: 2 backups") {
		t.Fatalf("delete printed:\n%s", out)
	}
	after := storeObjects(t, tg)

	// Exactly the kept backups remain, each whole.
	left := listBackups(t, tg)
	var names []string
	for n := range left {
		names = append(names, n)
	}
	sort.Strings(names)
	wantNames := []string{b2, b4, b5}
	sort.Strings(wantNames)
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Fatalf("backups after delete %v, want %v", names, wantNames)
	}
	for k := range before {
		if strings.HasPrefix(k, repo.BackupPrefix) {
			name := strings.SplitN(k[len(repo.BackupPrefix):], "/", 2)[0]
			_, kept := left[name]
			if _, there := after[k]; there != kept {
				t.Errorf("%s: present %v after delete, backup kept %v", k, there, kept)
			}
		}
	}

	checkWALKept(t, list, b2, b4, before, after)

	// A second run has nothing left to do; what is left verifies.
	js = mustWalvault(t, tg, idEnv, "delete", "--retain-full", "2", "--json", "--confirm")
	plan = retentionPlanJSON{}
	if err := json.Unmarshal([]byte(js), &plan); err != nil || plan.Plan.Delete.Backups != 0 || plan.Plan.Delete.WALObjects != 0 {
		t.Fatalf("second delete: %v\n%s", err, js)
	}
	outputs = append(outputs, mustWalvault(t, tg, idEnv, "verify"))

	// The oldest kept backup still restores to the latest WAL.
	r2 := restoreInto(t, tg, serverEnv, identity, "--backup", b4)
	r2.AppendConf("archive_mode = off")
	startAndRecover(t, r2.Cluster)
	compareChecksums(t, tableChecksums(t, r2.Cluster), want)
	if t.Failed() {
		t.Fatalf("the restore from %s did not reach the latest WAL; server log:\n%s", b4, r2.LogTail(60))
	}
	r2.Stop()
	// And the permanent one can still be made consistent.
	r3 := restoreInto(t, tg, serverEnv, identity, "--backup", b2, "--target-immediate")
	r3.AppendConf("archive_mode = off")
	startAndRecover(t, r3.Cluster)
	if n := r3.Psql("SELECT count(*) FROM pgbench_accounts"); n != "100000" {
		t.Fatalf("the permanent backup restored %s accounts", n)
	}
	secretsIn(t, outputs...)
}

func sameObjects(a, b map[string]objState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.Size != v.Size || !w.Mod.Equal(v.Mod) {
			return false
		}
	}
	return true
}

// checkWALKept: exactly the WAL the kept backups need remains: timeline 1 from b2's
// start to its stop (b2 is permanent), timeline 2 from b4's start on,
// and the history files. Everything else of before is gone.
func checkWALKept(t *testing.T, list map[string]listedBackup, b2, b4 string, before, after map[string]objState) {
	t.Helper()
	_, b2First := segOf(t, list[b2].StartWAL)
	_, b2Last := segOf(t, list[b2].StopWAL)
	_, b4First := segOf(t, list[b4].StartWAL)
	counts := map[string]int{}
	for k := range before {
		if !strings.HasPrefix(k, repo.WALPrefix) {
			continue
		}
		keep := true
		if !strings.HasPrefix(k, repo.HistoryPrefix) {
			tli, s := segOf(t, path.Base(k))
			switch {
			case tli == 1 && s < b2First:
				keep = false
				counts["timeline 1 before b2"]++
			case tli == 1 && s > b2Last:
				keep = false
				counts["timeline 1 after b2"]++
			case tli == 2 && s < b4First:
				keep = false
				counts["timeline 2 before b4"]++
			case tli == 1 || tli == 2:
			default:
				t.Fatalf("unexpected WAL %s", k)
			}
		}
		if _, there := after[k]; there != keep {
			t.Errorf("%s: present %v after delete, want %v", k, there, keep)
		}
	}
	for _, what := range []string{"timeline 1 before b2", "timeline 1 after b2", "timeline 2 before b4"} {
		if counts[what] == 0 {
			t.Errorf("the scenario has no WAL %s: it tests nothing there", what)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared during delete", k)
		}
	}
	t.Logf("deleted %d of %d objects: %v", len(before)-len(after), len(before), counts)
}
