package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// copySource makes a file store with four segments of cluster 42 and one
// backup whose part has a sums object, as backup-push writes it.
func copySource(t *testing.T, dir string) string {
	t.Helper()
	store := "file://" + filepath.Join(dir, "src")
	for seg := 1; seg <= 4; seg++ {
		if code, _, e := runCLI(t, "wal-push", "--store", store, "--compression", "none", fakeSegment(t, dir, fmt.Sprintf("0000000100000000000000%02X", seg), 42, byte(seg))); code != 0 {
			t.Fatalf("wal-push: %s", e)
		}
	}
	ctx := context.Background()
	st, err := cloud.Open(ctx, store, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close(st)
	sk, err := crypto.LoadSigningKey(os.Getenv("WALVAULT_SIGNING_KEY"), false)
	if err != nil {
		t.Fatal(err)
	}
	r := &repo.Repo{Store: st, Sign: sk, Cluster: "42"}
	m := chainManifest("base_1", 2)
	body := bytes.Repeat([]byte("part"), 600<<10) // 2.4 MiB: three chunks
	stored, sums, err := r.PutChunked(ctx, repo.BackupKey("base_1", "part-00000"), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	}, repo.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Parts[0].Size, m.Parts[0].StoredSize, m.Parts[0].SHA256, m.Parts[0].Sums = stored.Size, stored.StoredSize, stored.SHA256, sums
	m.Format = repo.ManifestFormat
	if err := r.WriteManifest(ctx, m, true); err != nil {
		t.Fatal(err)
	}
	return store
}

func TestCopyCommand(t *testing.T) {
	dir := t.TempDir()
	src := copySource(t, dir)
	dst := "file://" + filepath.Join(dir, "dst")
	code, out, e := runCLI(t, "copy", "--store", src, "--to", dst, "--dry-run")
	if code != 0 || !strings.Contains(out, "DRY RUN") || !strings.Contains(out, "backup base_1  3 object(s)") ||
		!strings.Contains(out, "WAL 000000010000000000000001 - 000000010000000000000004  4 object(s)") || !strings.Contains(out, "would copy 8 object(s)") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "dst", repo.ClusterKey)); err == nil {
		t.Fatal("the dry run copied cluster.json")
	}
	code, out, e = runCLI(t, "copy", "--store", src, "--to", dst)
	if code != 0 || !strings.Contains(out, "copied 8 object(s)") || !strings.Contains(out, "1 backup(s), 0 dump(s) complete") {
		t.Fatalf("copy: exit %d\n%s\n%s", code, out, e)
	}
	if code, out, e := runCLI(t, "backup-list", "--store", dst); code != 0 || !strings.Contains(out, "base_1") {
		t.Fatalf("backup-list of the copy: exit %d\n%s\n%s", code, out, e)
	}
	if code, out, e := runCLI(t, "verify", "--store", dst, "--full=false"); code != 0 {
		t.Fatalf("verify of the copy: exit %d\n%s\n%s", code, out, e)
	}
	// Again: everything is there.
	code, out, e = runCLI(t, "copy", "--store", src, "--to", dst)
	if code != 0 || !strings.Contains(out, "to copy: 0 object(s), 0 B; 8 already in the destination") {
		t.Fatalf("second copy: exit %d\n%s\n%s", code, out, e)
	}
	// A segment altered in the source is named and not copied; the rest is.
	seg := filepath.Join(dir, "src", "wal", "0000000100000000", "000000010000000000000003")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 1
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dst2 := "file://" + filepath.Join(dir, "dst2")
	code, out, e = runCLI(t, "copy", "--store", src, "--to", dst2, "--wal-only")
	if code != 4 || !strings.Contains(out, "FAILED wal/0000000100000000/000000010000000000000003") || !strings.Contains(out, "copied 4 object(s)") {
		t.Fatalf("copy of a tampered segment: exit %d\n%s\n%s", code, out, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "dst2", "wal", "0000000100000000", "000000010000000000000003")); err == nil {
		t.Error("the tampered segment was copied")
	}
	for _, bad := range [][]string{{"copy", "--store", src}, {"copy", "--store", src, "--to", dst, "--wal-only", "--backup", "base_1"}, {"copy", "--store", src, "--to", src}} {
		if code, _, e := runCLI(t, bad...); code != 2 {
			t.Errorf("%q: exit %d, want 2: %s", bad, code, e)
		}
	}
}

// TestCopyStoreEntries: a copy-store given by URL takes store's settings;
// a map entry its own, checked like every setting.
func TestCopyStoreEntries(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "walvault.yaml")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("store: s3://main/db\ns3-region: eu-west-1\nlock-days: 30\ncopy-store:\n  - s3://dr/db\n  - store: gs://dr-gcs/db\n    gcs-credentials-file: /etc/walvault/dr.json\n    lock-days: 36h\n    lock-mode: governance\n")
	var got []storeSpec
	app := newApp(io.Discard, io.Discard)
	cmd := app.Command("copy")
	cmd.Action = func(c *cli.Context) error {
		var err error
		got, err = copyStores(c)
		return err
	}
	if err := app.Run([]string{"walvault", "copy", "--config", cfg}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].URL != "s3://dr/db" || got[0].Settings["s3-region"] != "eu-west-1" || got[0].Lock.Period != 30*24*time.Hour ||
		got[1].Settings["gcs-credentials-file"] != "/etc/walvault/dr.json" || got[1].Settings["s3-region"] != "" || got[1].Lock.Period != 36*time.Hour || got[1].Lock.Mode != cloud.LockGovernance {
		t.Fatalf("entries: %+v", got)
	}
	for body, want := range map[string]string{
		"copy-store:\n  - store: s3://dr/db\n    s3-endpont: http://x\n":  `"s3-endpont" is no setting of a store (did you mean "s3-endpoint"?)`,
		"copy-store:\n  - store: gs://dr/db\n    s3-endpoint: http://x\n": "s3-endpoint does not apply to a gs:// store",
		"copy-store:\n  - s3-endpoint: http://x\n":                        `no "store" key`,
		"copy-store:\n  - ftp://x/y\n":                                    "unknown scheme",
		"copy-store:\n  - store: s3://dr/db\n    lock-days: forever\n":    "lock-days",
		"store: s3://a/b\ncopy-store:\n  - s3://dr/db\n  - s3://dr/db/\n": "named twice",
	} {
		write(body)
		code, _, e := runCLI(t, "copy", "--config", cfg, "--dry-run")
		if code != 2 || !strings.Contains(e, want) {
			t.Errorf("config %q: exit %d, want 2 with %q: %s", body, code, want, e)
		}
	}
}
