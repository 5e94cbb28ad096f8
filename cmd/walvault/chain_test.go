package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// chainManifest is a backup of cluster 42 from and to segment seg (1 MiB
// segments), with one part of 5 bytes.
func chainManifest(name string, seg int) *repo.Manifest {
	body := strings.NewReplacer("base_1", name, "7300000000000000001", "42", "16777216", "1048576",
		"0/2000028", fmt.Sprintf("0/%X", seg<<20+0x28), "0/2000100", fmt.Sprintf("0/%X", seg<<20+0x100),
		"000000010000000000000002", fmt.Sprintf("0000000100000000000000%02X", seg),
		"00:00:05Z", fmt.Sprintf("00:%02d:05Z", seg)).Replace(testManifest)
	m, err := repo.DecodeManifest(strings.NewReader(body), false)
	if err != nil {
		panic(err)
	}
	return m
}

// backup-list, delete, backup-mark and verify on a chain base_1 (full)
// <- base_2 <- base_3.
func TestChainCommands(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	t.Setenv("WALVAULT_STORE", "file://"+store)
	for seg := 1; seg <= 8; seg++ {
		if code, _, e := runCLI(t, "wal-push", "--compression", "none", fakeSegment(t, dir, fmt.Sprintf("0000000100000000000000%02X", seg), 42, 3)); code != 0 {
			t.Fatalf("wal-push: %s", e)
		}
	}
	ctx := context.Background()
	st, err := cloud.Open(ctx, "file://"+store, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(os.Getenv("WALVAULT_SIGNING_KEY"), false)
	if err != nil {
		t.Fatal(err)
	}
	r := &repo.Repo{Store: st, Sign: sk, AllowUnsigned: true, Cluster: "42"} // reads here need no proof
	parent := ""
	for i, seg := range []int{2, 4, 6} {
		m := chainManifest(fmt.Sprintf("base_%d", i+1), seg)
		if parent != "" {
			pm, sum, err := r.ReadManifestSum(ctx, parent, true)
			if err != nil {
				t.Fatal(err)
			}
			m.Format, m.Type, m.BlockSize, m.Parent, m.ParentManifestSHA256 = repo.ManifestFormatIncremental, repo.BackupIncremental, 8192, parent, sum
			m.Chain = append([]string{parent}, pm.Chain...)
		}
		if err := st.Put(ctx, repo.BackupKey(m.Name, "part-00000"), cloud.Bytes([]byte("hello")), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteManifest(ctx, m, true); err != nil {
			t.Fatal(err)
		}
		parent = m.Name
	}

	code, out, e := runCLI(t, "backup-list")
	lines := strings.Split(out, "\n")
	if code != 0 || !strings.Contains(lines[0], "PITR UNTIL (UTC)") || !strings.Contains(lines[0], "FLAGS") || !strings.HasSuffix(lines[0], "PARENT") ||
		!strings.HasSuffix(strings.TrimSpace(lines[1]), " -") || !strings.HasSuffix(strings.TrimSpace(lines[3]), "base_2") ||
		!strings.Contains(lines[3], "15 B") || strings.Contains(out, `""`) {
		t.Fatalf("backup-list: %d\n%s\n%s", code, out, e)
	}
	var list []struct {
		Name            string   `json:"name"`
		Type            string   `json:"type"`
		Parent          string   `json:"parent"`
		Chain           []string `json:"chain"`
		ChainStoredSize int64    `json:"chain_stored_size"`
	}
	_, out, _ = runCLI(t, "backup-list", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 3 || list[0].Type != "full" || list[0].Chain == nil || len(list[0].Chain) != 0 ||
		list[0].ChainStoredSize != 5 || list[2].Type != "incremental" || list[2].Parent != "base_2" || strings.Join(list[2].Chain, ",") != "base_2,base_1" || list[2].ChainStoredSize != 15 {
		t.Fatalf("backup-list --json: %v\n%s", err, out)
	}

	// One backup whole: the chain, the WAL, sizes; the same with --detail.
	code, out, e = runCLI(t, "backup-info", "base_3")
	for _, want := range []string{"type          incremental", "parent        base_2", "chain         base_2 (incremental, finished 2026-11-01 00:04:05 UTC, 5 B stored)",
		"base_1 (full, finished", "WAL           000000010000000000000006 - 000000010000000000000008", "PITR window   2026-11-01 00:06:05 UTC to about ",
		"restoring it reads 15 B (with its chain)", "started       2026-11-01 "} {
		if !strings.Contains(out, want) {
			t.Errorf("backup-info base_3: no %q in\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("backup-info: exit %d: %s", code, e)
	}
	if code, detail, _ := runCLI(t, "backup-list", "--detail", "base_3"); code != 0 || detail != out {
		t.Fatalf("backup-list --detail base_3: exit %d, differs from backup-info:\n%s", code, detail)
	}
	var info struct {
		Name  string `json:"name"`
		Chain []struct {
			Name string `json:"name"`
		} `json:"chain_backups"`
		PITR struct {
			Start, End time.Time
		} `json:"pitr_window"`
		ChainStoredSize int64 `json:"chain_stored_size"`
	}
	_, out, _ = runCLI(t, "backup-info", "base_3", "--json")
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Name != "base_3" || len(info.Chain) != 2 || info.ChainStoredSize != 15 || info.PITR.End.IsZero() {
		t.Fatalf("backup-info --json: %v\n%s", err, out)
	}
	if code, _, e := runCLI(t, "backup-info", "base_9"); code != exitUsage || !strings.Contains(e, "no complete backup named base_9") {
		t.Fatalf("backup-info of a backup that is not there: exit %d: %s", code, e)
	}

	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"delete", "base_2"}, exitConflict, "parent of incremental backup base_3, which is kept"},
		{[]string{"delete", "base_3"}, exitConflict, "newest backup that can be restored"},
	} {
		if code, _, e := runCLI(t, tt.args...); code != tt.code || !strings.Contains(e, tt.msg) {
			t.Errorf("%v: exit %d (want %d) %s (want %q)", tt.args, code, tt.code, e, tt.msg)
		}
	}
	code, out, e = runCLI(t, "backup-mark", "base_3", "--permanent")
	if code != 0 || !strings.Contains(out, "its ancestors base_2, base_1") {
		t.Fatalf("mark an incremental: %d %s %s", code, out, e)
	}
	code, out, e = runCLI(t, "delete", "--retain-full", "1")
	if code != 0 || !strings.Contains(out, "incr of base_1") || !strings.Contains(out, "parent of base_3 (kept)") || !strings.Contains(out, "would delete 0 backups") {
		t.Fatalf("delete dry run: %d\n%s\n%s", code, out, e)
	}
	if code, out, e := runCLI(t, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s\n%s", code, out, e)
	}
	// A part of the full gone: verify of the newest link names it.
	_ = st.Delete(ctx, repo.BackupKey("base_1", "part-00000"))
	code, out, e = runCLI(t, "verify", "--backup", "base_3", "--full=false")
	if code != exitVerify || !strings.Contains(out, "its ancestor base_1 is damaged") || !strings.Contains(out, "backups/base_1/part-00000: missing") {
		t.Fatalf("verify of a chain on a damaged full: %d\n%s\n%s", code, out, e)
	}
	// The full's manifest gone: both incrementals are damaged.
	_ = st.Delete(ctx, repo.BackupKey("base_1", repo.ManifestFile))
	code, out, e = runCLI(t, "backup-list")
	if code != exitIntegrity || !strings.Contains(e, "needs its ancestor base_1, which is not in") || !strings.Contains(out, "DAMAGED") {
		t.Fatalf("backup-list of a broken chain: %d\n%s\n%s", code, out, e)
	}
}
