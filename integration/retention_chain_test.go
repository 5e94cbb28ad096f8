package integration

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chainListed is backup-list --json's view of a backup in a chain.
type chainListed struct {
	Name            string   `json:"name"`
	Type            string   `json:"type"`
	Parent          string   `json:"parent"`
	Chain           []string `json:"chain"`
	StoredSize      int64    `json:"stored_size"`
	ChainStoredSize int64    `json:"chain_stored_size"`
}

// TestRetentionChains: full, incremental, incremental, full, incremental
// of one cluster on the file store. backup-list shows the chains, verify
// checks a whole chain, delete refuses the parent of a kept incremental
// and backup-mark a parent; delete --retain-full 1 keeps the newest full
// with its incremental, which still restores to what the cluster held;
// a damaged full fails verify of its incremental.
func TestRetentionChains(t *testing.T) {
	tg := newTarget(t, "file")
	if _, out, _ := tg.walvault(t, nil, "backup-push", "--help"); !strings.Contains(out, "--incremental") {
		t.Skip("this walvault has no backup-push --incremental")
	}
	c, identity, recipient := archivingCluster(t, tg)
	serverEnv := append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	idEnv := []string{"WALVAULT_IDENTITY_FILE=" + identity}
	push := func(args ...string) string {
		t.Helper()
		return backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), append([]string{"backup-push", "--fast-checkpoint"}, args...)...))
	}
	work := func() { c.Run("pgbench", "-n", "-t", "100", "-c", "2") }
	c.Run("pgbench", "-i", "-s", "1", "-q")
	f1 := push("--full")
	work()
	i1a := push("--incremental")
	work()
	i1b := push("--incremental")
	work()
	f2 := push("--full")
	work()
	want := tableChecksums(t, c)
	i2a := push("--incremental")
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	c.Stop()

	var list []chainListed
	js := mustWalvault(t, tg, nil, "backup-list", "--json")
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list) != 5 {
		t.Fatalf("backup-list --json: %v\n%s", err, js)
	}
	by := map[string]chainListed{}
	for _, b := range list {
		by[b.Name] = b
	}
	for name, chain := range map[string][]string{f1: {}, i1a: {f1}, i1b: {i1a, f1}, f2: {}, i2a: {f2}} {
		b := by[name]
		size := b.StoredSize
		for _, a := range chain {
			size += by[a].StoredSize
		}
		typ, parent := "full", ""
		if len(chain) > 0 {
			typ, parent = "incremental", chain[0]
		}
		if b.Type != typ || b.Parent != parent || strings.Join(b.Chain, ",") != strings.Join(chain, ",") || b.Chain == nil || b.ChainStoredSize != size {
			t.Fatalf("%s listed as %+v, want type %s, chain %v, chain stored size %d", name, b, typ, chain, size)
		}
	}
	if table := mustWalvault(t, tg, nil, "backup-list"); !strings.Contains(table, "CHAIN STORED") || strings.Count(table, " incr ") != 3 {
		t.Fatalf("backup-list:\n%s", table)
	}

	out := mustWalvault(t, tg, idEnv, "verify", "--backup", i1b)
	if !strings.Contains(out, "incremental: its chain") || !strings.Contains(out, i1a+" ok, "+f1+" ok") {
		t.Fatalf("verify of a chain:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"delete", i1a}, 5, "parent of incremental backup " + i1b},
	} {
		code, stdout, stderr := tg.walvault(t, idEnv, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Fatalf("%v: exit %d, want %d with %q\n%s%s", tc.args, code, tc.code, tc.want, stdout, stderr)
		}
	}

	dry := mustWalvault(t, tg, idEnv, "delete", "--retain-full", "1")
	if !strings.Contains(dry, "parent of "+i2a+" (kept)") || !strings.Contains(dry, "would delete 3 backups") {
		t.Fatalf("dry run:\n%s", dry)
	}
	mustWalvault(t, tg, idEnv, "delete", "--retain-full", "1", "--confirm")
	list = nil
	js = mustWalvault(t, tg, nil, "backup-list", "--json")
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list) != 2 || list[0].Name != f2 || list[1].Name != i2a {
		t.Fatalf("after delete --retain-full 1: %v\n%s", err, js)
	}
	mustWalvault(t, tg, idEnv, "verify", "--full")

	// What delete left restores: the incremental, from its full.
	r := restoreInto(t, tg, serverEnv, identity, "--backup", i2a, "--target-immediate")
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
	r.Stop()

	// A damaged part of the full: verify of the incremental says so.
	parts, _ := filepath.Glob(tg.ObjectPath("backups/" + f2 + "/part-*"))
	if len(parts) == 0 {
		t.Fatal("no parts of the full backup")
	}
	flipByte(t, parts[0])
	code, stdout, stderr := tg.walvault(t, idEnv, "verify", "--backup", i2a)
	if code != 7 || !strings.Contains(stdout, "its ancestor "+f2+" is damaged") || !strings.Contains(stdout, "backups/"+f2+"/part-") {
		t.Fatalf("verify with a damaged full: exit %d\n%s%s", code, stdout, stderr)
	}
}
