package status

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// putDump stores a signed dump of kind (a database's, or globals when db
// is ""), finished at.
func putDump(t *testing.T, r *repo.Repo, name, db string, at time.Time) *repo.DumpManifest {
	t.Helper()
	ctx := context.Background()
	src := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("dump of " + name)), nil }
	st, err := r.Put(ctx, repo.DumpKey(name, repo.DumpFile), src, repo.PutOptions{PutOptions: cloud.PutOptions{IfAbsent: true}})
	if err != nil {
		t.Fatal(err)
	}
	m := &repo.DumpManifest{Format: 1, Kind: repo.DumpKindDatabase, Name: name, Database: db, PGVersion: 150014, PGDumpVersion: "pg_dump (PostgreSQL) 15.14",
		DumpFormat: "custom", StartTime: at.Add(-time.Minute), StopTime: at, Size: st.Size, StoredSize: st.StoredSize, SHA256: st.SHA256, Compression: "none"}
	if db == "" {
		m.Kind, m.DumpFormat, m.PGDumpVersion = repo.DumpKindGlobals, "plain", "pg_dumpall (PostgreSQL) 15.14"
	}
	if err := r.WriteDumpManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewestDump(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := cloud.Open(ctx, "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := backuptest.SignedRepo(t, st)
	r.Codec = codec.Settings{Compression: codec.None}
	now := tmin(48 * 60)

	rep, err := Collect(ctx, r, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if rep.NewestDump != nil || rep.Dumps != 0 {
		t.Fatalf("empty store: newest dump %+v, %d dumps", rep.NewestDump, rep.Dumps)
	}
	if got := rep.Exceeded(Thresholds{MaxDumpAge: time.Hour}); len(got) != 1 || !strings.Contains(got[0], "no database dump") {
		t.Fatalf("reasons %q", got)
	}

	putDump(t, r, "dump_20261101T000000Z_shop", "shop", tmin(0))
	want := putDump(t, r, "dump_20261102T000000Z_crm", "crm", tmin(24*60))
	putDump(t, r, "globals_20261102T010000Z", "", tmin(25*60)) // newer, but globals: not the newest database dump
	bad := putDump(t, r, "dump_20261102T020000Z_shop", "shop", tmin(26*60))
	p := filepath.Join(root, filepath.FromSlash(repo.DumpKey(bad.Name, repo.ManifestFile)))
	b, err := os.ReadFile(p) // #nosec G304 -- test file
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Replace(b, []byte(`"shop"`), []byte(`"shoq"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}

	rep, err = Collect(ctx, r, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	d := rep.NewestDump
	if d == nil || d.Name != want.Name || d.Database != "crm" || !d.FinishTime.Equal(tmin(24*60)) || d.AgeSeconds != 24*3600 || d.StoredSize != want.StoredSize {
		t.Fatalf("newest dump %+v", d)
	}
	if rep.Dumps != 3 || rep.Size.DumpBytes == 0 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], bad.Name) {
		t.Fatalf("dumps %d, bytes %d, notes %q", rep.Dumps, rep.Size.DumpBytes, rep.Notes)
	}
	if got := rep.Exceeded(Thresholds{MaxDumpAge: 25 * time.Hour}); len(got) != 0 {
		t.Fatalf("a 24h old dump trips 25h: %q", got)
	}
	if got := rep.Exceeded(Thresholds{MaxDumpAge: 23 * time.Hour}); len(got) != 1 || !strings.Contains(got[0], "the newest dump "+want.Name+" finished 24h0m0s ago") {
		t.Fatalf("reasons %q", got)
	}
	mfs, err := rep.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "walvault_last_dump_age_seconds" {
			found = mf.GetMetric()[0].GetGauge().GetValue() == 24*3600
		}
	}
	if !found {
		t.Fatal("no walvault_last_dump_age_seconds of 24h")
	}
}
