package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// TestVerifyAndStatusDumps: verify checks the dumps (exit 7 when one is
// damaged), status shows the newest one and --max-dump-age trips.
func TestVerifyAndStatusDumps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	t.Setenv("WALVAULT_STORE", "file://"+store)
	seg := fakeSegment(t, dir, "000000010000000000000002", 42, 3)
	if code, _, e := runCLI(t, "wal-push", "--compression", "none", seg); code != 0 {
		t.Fatalf("wal-push: %s", e)
	}
	st, err := cloud.Open(ctx, "file://"+store, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(os.Getenv("WALVAULT_SIGNING_KEY"), false)
	if err != nil {
		t.Fatal(err)
	}
	w := &repo.Repo{Store: st, Sign: sk, Codec: codec.Settings{Compression: codec.None}, Cluster: "42"}
	// A backup whose part matches its recorded size (its SHA-256 is fake:
	// only the dump's findings are looked at with --full).
	m, err := repo.DecodeManifest(strings.NewReader(strings.Replace(testManifest, "7300000000000000001", "42", 1)), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteManifest(ctx, m, false); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "backups/base_1/part-00000", cloud.Bytes([]byte("hello")), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// A signed database dump, finished two hours ago.
	content := make([]byte, 4096)
	for i := range content {
		content[i] = byte(i*7 + i/251)
	}
	name := "dump_20261130T120000Z_shop"
	src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
	ps, err := w.Put(ctx, repo.DumpKey(name, repo.DumpFile), src, repo.PutOptions{PutOptions: cloud.PutOptions{IfAbsent: true}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Add(-2 * time.Hour)
	dm := &repo.DumpManifest{Format: 1, Kind: repo.DumpKindDatabase, Name: name, Database: "shop", PGVersion: 150014, PGDumpVersion: "pg_dump (PostgreSQL) 15.14",
		DumpFormat: "custom", StartTime: at, StopTime: at, Size: ps.Size, StoredSize: ps.StoredSize, SHA256: ps.SHA256, Compression: "none"}
	if err := w.WriteDumpManifest(ctx, dm); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(store, filepath.FromSlash(repo.DumpKey(name, repo.DumpFile)))
	good, err := os.ReadFile(obj) // #nosec G304 -- test file
	if err != nil {
		t.Fatal(err)
	}
	type dumpsReport struct {
		OK    bool `json:"ok"`
		Dumps []struct {
			Name     string `json:"name"`
			Database string `json:"database"`
			Kind     string `json:"kind"`
			OK       bool   `json:"ok"`
			Problems []struct {
				Problem string `json:"problem"`
			} `json:"problems"`
		} `json:"dumps"`
	}
	verifyJSON := func(args ...string) (int, dumpsReport) {
		t.Helper()
		code, out, e := runCLI(t, append([]string{"verify", "--json"}, args...)...)
		var rep dumpsReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Dumps) != 1 || rep.Dumps[0].Name != name {
			t.Fatalf("verify %v: exit %d %v\n%s\n%s", args, code, err, out, e)
		}
		return code, rep
	}

	code, out, e := runCLI(t, "verify")
	if code != exitOK || !strings.Contains(out, "ok    dump "+name+" (database shop") || !strings.Contains(out, "1 dumps checked") {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, e)
	}
	if code, rep := verifyJSON("--full"); rep.Dumps[0].Kind != "database" || !rep.Dumps[0].OK || code != exitVerify {
		t.Fatalf("verify --full of a whole dump: exit %d %+v", code, rep) // exit 7: the backup's fake SHA-256
	}
	// --backup NAME skips the dumps.
	if code, out, _ := runCLI(t, "verify", "--backup", "base_1", "--full=false"); code != exitOK || strings.Contains(out, "dump ") {
		t.Fatalf("verify --backup: exit %d\n%s", code, out)
	}
	// A flipped byte: the size is right, --full finds it.
	bad := bytes.Clone(good)
	bad[len(bad)-100] ^= 1
	if err := os.WriteFile(obj, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, rep := verifyJSON(); code != exitOK || !rep.Dumps[0].OK {
		t.Fatalf("verify sizes of a flipped byte: exit %d %+v", code, rep)
	}
	if code, rep := verifyJSON("--full"); code != exitVerify || rep.Dumps[0].OK || len(rep.Dumps[0].Problems) != 1 {
		t.Fatalf("verify --full of a flipped byte: exit %d %+v", code, rep)
	}
	// Truncated, then missing: problems without --full.
	if err := os.WriteFile(obj, good[:len(good)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, e = runCLI(t, "verify")
	if code != exitVerify || !strings.Contains(out, "FAIL  dump "+name) || !strings.Contains(out, "truncated or altered") || !strings.Contains(e, "problem") {
		t.Fatalf("verify of a truncated dump: exit %d\n%s\n%s", code, out, e)
	}
	if err := os.Remove(obj); err != nil {
		t.Fatal(err)
	}
	if code, rep := verifyJSON(); code != exitVerify || rep.OK || rep.Dumps[0].OK || rep.Dumps[0].Problems[0].Problem != "missing" {
		t.Fatalf("verify of a missing dump: exit %d %+v", code, rep)
	}

	// status: the newest dump, and --max-dump-age.
	status := []string{"status", "--no-server", "--state-file", "none"}
	code, out, e = runCLI(t, append(status, "--json", "--max-dump-age", "3h")...)
	var srep struct {
		NewestDump *struct {
			Name       string  `json:"name"`
			Database   string  `json:"database"`
			AgeSeconds float64 `json:"age_seconds"`
		} `json:"newest_dump"`
	}
	if err := json.Unmarshal([]byte(out), &srep); err != nil || code != exitOK || srep.NewestDump == nil || srep.NewestDump.Name != name ||
		srep.NewestDump.Database != "shop" || srep.NewestDump.AgeSeconds < 7200 {
		t.Fatalf("status --json: exit %d %v\n%s\n%s", code, err, out, e)
	}
	code, out, e = runCLI(t, append(status, "--max-dump-age", "1h")...)
	if code != exitVerify || !strings.Contains(out, "newest dump       "+name+" of database shop") || !strings.Contains(e, "more than --max-dump-age 1h") {
		t.Fatalf("status --max-dump-age 1h: exit %d\n%s\n%s", code, out, e)
	}
}
