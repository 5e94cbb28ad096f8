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

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// delete --retain-dumps alone: the dry run lists the dumps, --json has
// them, --confirm deletes the planned ones.
func TestDeleteRetainDumps(t *testing.T) {
	ctx := context.Background()
	store := filepath.Join(t.TempDir(), "store")
	t.Setenv("WALVAULT_STORE", "file://"+store)
	st, err := cloud.Open(ctx, "file://"+store, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(os.Getenv("WALVAULT_SIGNING_KEY"), false)
	if err != nil {
		t.Fatal(err)
	}
	w := &repo.Repo{Store: st, Sign: sk, Cluster: "1"}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i, n := range []string{"dump_a_shop", "dump_b_shop", "dumpall_a_globals"} {
		src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte("PGDMP"))), nil }
		s, err := w.Put(ctx, repo.DumpKey(n, repo.DumpFile), src, repo.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := &repo.DumpManifest{Format: 1, Kind: repo.DumpKindDatabase, Name: n, Database: "shop", PGVersion: 150014, PGDumpVersion: "pg_dump 15",
			DumpFormat: "custom", StartTime: t0, StopTime: t0.Add(time.Duration(i) * time.Hour), Size: s.Size, StoredSize: s.StoredSize, SHA256: s.SHA256, Compression: "none"}
		if strings.HasPrefix(n, "dumpall") {
			m.Kind, m.Database, m.DumpFormat = repo.DumpKindGlobals, "", "plain"
		}
		if err := w.WriteDumpManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	code, out, e := runCLI(t, "delete", "--retain-dumps", "1")
	if code != exitOK || !strings.Contains(out, "\ndumps:\n") || !strings.Contains(out, "DELETE  dump_a_shop") ||
		!strings.Contains(out, "would delete 0 backups, 0 incomplete folders, 0 WAL objects, 1 dumps") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI(t, "delete", "--retain-dumps", "1", "--json")
	var res struct {
		Plan struct {
			Dumps []struct {
				Name   string `json:"name"`
				Kind   string `json:"kind"`
				Delete bool   `json:"delete"`
			} `json:"dumps"`
			Delete struct {
				Dumps int `json:"dumps"`
			} `json:"delete"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != exitOK || err != nil || len(res.Plan.Dumps) != 3 || res.Plan.Delete.Dumps != 1 {
		t.Fatalf("--json: exit %d %v\n%s\n%s", code, err, out, e)
	}
	if _, err := st.Stat(ctx, repo.DumpKey("dump_a_shop", repo.ManifestFile)); err != nil {
		t.Fatalf("the dry run deleted: %v", err)
	}
	code, out, e = runCLI(t, "delete", "--retain-dumps", "1", "--confirm")
	if code != exitOK || !strings.Contains(out, "1 dumps") {
		t.Fatalf("--confirm: exit %d\n%s\n%s", code, out, e)
	}
	var left []string
	_ = st.List(ctx, "", cloud.ListOptions{}, func(o cloud.ObjectInfo) error { left = append(left, o.Key); return nil })
	if strings.Join(left, ",") != "dumps/dump_b_shop/dump,dumps/dump_b_shop/manifest.json,dumps/dumpall_a_globals/dump,dumps/dumpall_a_globals/manifest.json" {
		t.Fatalf("left %v", left)
	}
}
