package dump

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

func TestNames(t *testing.T) {
	at := time.Date(2026, 11, 29, 21, 15, 0, 0, time.FixedZone("x", 3600))
	for db, want := range map[string]string{
		"shop":                  "dump_20261129T201500Z_shop",
		"my db/\x1b[31m":        "dump_20261129T201500Z_my_db___31m",
		"":                      "dump_20261129T201500Z_db",
		strings.Repeat("a", 99): "dump_20261129T201500Z_" + strings.Repeat("a", 64),
	} {
		got := Name(at, db)
		if got != want || !repo.ValidBackupName(got) {
			t.Errorf("Name(%q) = %q, want %q (valid)", db, got, want)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, c := range []struct{ dsn, db, want string }{
		{"host=h port=5 dbname=a", "", "host=h port=5 dbname=a"},
		{"host=h dbname=a", "b", "host=h dbname=a dbname='b'"},
		{"", "it's", `dbname='it\'s'`},
		{"postgres://u@h:5/a?sslmode=disable", "b c", "postgres://u@h:5/b%20c?sslmode=disable"},
	} {
		if got := WithDatabase(c.dsn, c.db); got != c.want {
			t.Errorf("WithDatabase(%q, %q) = %q, want %q", c.dsn, c.db, got, c.want)
		}
	}
	for dsn, want := range map[string]string{"host=h user=u dbname='it\\'s'": "it's", "postgres://u@h/x": "x", "host=h user=u": "u"} {
		t.Setenv("PGDATABASE", "")
		if got, err := DatabaseOf(dsn); err != nil || got != want {
			t.Errorf("DatabaseOf(%q) = %q, %v; want %q", dsn, got, err, want)
		}
	}
}

func TestFindTool(t *testing.T) {
	dir := t.TempDir()
	if _, err := FindTool(dir, "pg_dump"); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("missing tool: %v", err)
	}
	p := filepath.Join(dir, "pg_dump")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o700); err != nil { // #nosec G306 -- test script
		t.Fatal(err)
	}
	if got, err := FindTool(dir, "pg_dump"); err != nil || got != p {
		t.Fatalf("FindTool = %q, %v", got, err)
	}
}

// repos returns a writer (signing, encrypting) and a reader (verifying,
// decrypting) on one file:// store.
func repos(t *testing.T) (w, r *repo.Repo) {
	t.Helper()
	dir := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+filepath.Join(dir, "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	vk, err := crypto.GenerateSigningKey(filepath.Join(dir, "sign.key"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(filepath.Join(dir, "sign.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	recipient, err := crypto.Generate(filepath.Join(dir, "age.key"))
	if err != nil {
		t.Fatal(err)
	}
	recips, err := crypto.ParseRecipients([]string{recipient})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := crypto.LoadIdentities(filepath.Join(dir, "age.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	w = &repo.Repo{Store: st, Codec: codec.Settings{Compression: codec.LZ4, Recipients: recips}, Sign: sk, Cluster: "7300000000000000001"}
	r = &repo.Repo{Store: st, Verify: []crypto.VerifyKey{vk}, Identities: ids}
	return w, r
}

// putDump stores content as dump name with its manifest, as Push does.
func putDump(t *testing.T, w *repo.Repo, name string, content []byte) *repo.DumpManifest {
	return putDumpFormat(t, w, name, content, repo.DumpManifestFormat)
}

// putDumpFormat is putDump in manifest format 1 (a dump from before sums,
// checked whole) or 2 (authenticated chunk by chunk).
func putDumpFormat(t *testing.T, w *repo.Repo, name string, content []byte, format int) *repo.DumpManifest {
	t.Helper()
	ctx := context.Background()
	src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
	key := repo.DumpKey(name, repo.DumpFile)
	opts := repo.PutOptions{PutOptions: cloud.PutOptions{IfAbsent: true}}
	var st repo.Stored
	var sums string
	var err error
	if format >= 2 {
		st, sums, err = w.PutChunked(ctx, key, src, opts)
	} else {
		st, err = w.Put(ctx, key, src, opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	m := &repo.DumpManifest{Format: format, Kind: repo.DumpKindDatabase, Name: name, Database: "shop", PGVersion: 150014, PGDumpVersion: "pg_dump (PostgreSQL) 15.14",
		DumpFormat: "custom", StartTime: now, StopTime: now, Size: st.Size, StoredSize: st.StoredSize, SHA256: st.SHA256,
		Compression: "lz4", Encrypted: true, Sums: sums}
	if format >= 2 {
		m.SystemIdentifier = "7300000000000000001"
	}
	if err := w.WriteDumpManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A dump's bytes reach the consumer only once authenticated: a replaced
// object (same size, another content) hands nothing on, whether the dump
// is checked chunk by chunk or, from before sums, staged and checked
// whole.
func TestLoadHandsOnNothingUnproven(t *testing.T) {
	for _, format := range []int{1, 2} {
		ctx := context.Background()
		w, r := repos(t)
		content := make([]byte, 3<<20)
		_, _ = crand.Read(content)
		m := putDumpFormat(t, w, "dump_20261129T201500Z_shop", content, format)
		// Read back whole first.
		var got bytes.Buffer
		if err := load(ctx, r, m, t.TempDir(), func(rd io.Reader) error { _, err := io.Copy(&got, rd); return err }); err != nil || !bytes.Equal(got.Bytes(), content) {
			t.Fatalf("format %d: read %d of %d bytes back: %v", format, got.Len(), len(content), err)
		}
		// Then the object replaced by another dump of the same size.
		other, _, err := w.Store.Get(ctx, repo.DumpKey(m.Name, repo.DumpFile))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(other)
		_ = other.Close()
		body[len(body)-100] ^= 0xff // the last chunk
		if err := w.Store.Put(ctx, repo.DumpKey(m.Name, repo.DumpFile), cloud.Bytes(body), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		handed := 0
		err = load(ctx, r, m, t.TempDir(), func(rd io.Reader) error {
			n, err := io.Copy(io.Discard, rd)
			handed = int(n)
			return err
		})
		if !errors.Is(err, archive.ErrIntegrity) {
			t.Fatalf("format %d: a damaged dump: %v", format, err)
		}
		// Chunked: the proven chunks before the damaged one may go on;
		// staged: nothing.
		if limit := len(content) - (1 << 20); format == 1 && handed != 0 || format == 2 && handed > limit {
			t.Fatalf("format %d: %d bytes handed on before the damage was found", format, handed)
		}
	}
}

func TestFetchVerifies(t *testing.T) {
	ctx := context.Background()
	w, r := repos(t)
	content := bytes.Repeat([]byte("PGDMP some dump bytes "), 50000)
	putDump(t, w, "dump_20261129T201500Z_shop", content)
	// A newer globals dump: LATEST still picks the database dump.
	g := putDump(t, w, GlobalsName(time.Now().Add(time.Hour)), []byte("CREATE ROLE x;\n"))
	_ = w.Store.Delete(ctx, repo.DumpKey(g.Name, repo.ManifestFile))
	g.Kind, g.Database, g.DumpFormat = repo.DumpKindGlobals, "", "plain"
	g.StartTime, g.StopTime = g.StartTime.Add(time.Hour), g.StopTime.Add(time.Hour)
	if err := w.WriteDumpManifest(ctx, g); err != nil {
		t.Fatal(err)
	}
	m, err := Resolve(ctx, r, "LATEST", "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "dump_20261129T201500Z_shop" {
		t.Fatalf("LATEST picked %s, not the database dump", m.Name)
	}
	if err := w.Store.Delete(ctx, repo.DumpKey(g.Name, repo.DumpFile)); err != nil {
		t.Fatal(err)
	}
	if err := w.Store.Delete(ctx, repo.DumpKey(g.Name, repo.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	if err := w.Store.Delete(ctx, repo.SumsKey(repo.DumpKey(g.Name, repo.DumpFile))); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "shop.dump")
	if err := Fetch(ctx, r, m, dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, content) {
		t.Fatal("fetched content differs")
	}
	if err := Fetch(ctx, r, m, dest); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("fetch over an existing file: %v", err)
	}

	// A manifest that lies about the stored digest (as if the signed one
	// had been replaced): its proof fails.
	forged := *m
	forged.Sums = strings.Repeat("0", 64)
	forger := *w
	forger.Sign = nil
	_ = w.Store.Delete(ctx, repo.DumpKey(m.Name, repo.ManifestFile))
	if err := forger.WriteDumpManifest(ctx, &forged); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadDumpManifest(ctx, m.Name); !errors.Is(err, crypto.ErrBadProof) {
		t.Fatalf("unsigned manifest: %v", err)
	}
	folders, err := r.ListDumps(ctx)
	if err != nil || len(folders) != 1 || folders[0].Err == nil || len(repo.CompleteDumps(folders)) != 0 {
		t.Fatalf("ListDumps with an unsigned manifest: %v %+v", err, folders)
	}
	// The right manifest, the wrong sums digest: the read fails, no file.
	other := filepath.Join(t.TempDir(), "x.dump")
	if err := Fetch(ctx, r, &forged, other); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("fetch with a wrong digest: %v", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Fatal("a failed fetch left the file")
	}
	// A size that does not match: refused too.
	short := *m
	short.Size--
	if err := Fetch(ctx, r, &short, other); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("fetch with a wrong size: %v", err)
	}
}

func TestManifestValidation(t *testing.T) {
	now := time.Now().UTC()
	good := repo.DumpManifest{Format: 1, Kind: repo.DumpKindDatabase, Name: "dump_20261129T201500Z_shop", Database: "shop", PGDumpVersion: "pg_dump (PostgreSQL) 15.14",
		DumpFormat: "custom", StartTime: now, StopTime: now, Size: 10, StoredSize: 20, SHA256: strings.Repeat("ab", 32), Compression: "zstd"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for what, change := range map[string]func(*repo.DumpManifest){
		"future format":      func(m *repo.DumpManifest) { m.Format = 3 },
		"format 2, no sums":  func(m *repo.DumpManifest) { m.Format, m.SystemIdentifier = 2, "7" },
		"format 2, no sysid": func(m *repo.DumpManifest) { m.Format, m.Sums = 2, strings.Repeat("ab", 32) },
		"format 1 with sums": func(m *repo.DumpManifest) { m.Sums = strings.Repeat("ab", 32) },
		"path in name":       func(m *repo.DumpManifest) { m.Name = "../x" },
		"escape in db":       func(m *repo.DumpManifest) { m.Database = "shop\x1b[2J" },
		"bidi in version":    func(m *repo.DumpManifest) { m.PGDumpVersion = "15\u202e" },
		"long database":      func(m *repo.DumpManifest) { m.Database = strings.Repeat("d", 200) },
		"no digest":          func(m *repo.DumpManifest) { m.SHA256 = "" },
		"other format":       func(m *repo.DumpManifest) { m.DumpFormat = "plain" },
		"bad compression":    func(m *repo.DumpManifest) { m.Compression = "gzip" },
		"negative size":      func(m *repo.DumpManifest) { m.Size = -1 },
		"time runs back":     func(m *repo.DumpManifest) { m.StopTime = now.Add(-time.Hour) },
		"empty database":     func(m *repo.DumpManifest) { m.Database = "" },
		"no stored object":   func(m *repo.DumpManifest) { m.StoredSize = 0 },
		"no kind":            func(m *repo.DumpManifest) { m.Kind = "" },
		"unknown kind":       func(m *repo.DumpManifest) { m.Kind = "cluster" },
		"globals, custom":    func(m *repo.DumpManifest) { m.Kind = repo.DumpKindGlobals; m.Database = "" },
		"globals with db":    func(m *repo.DumpManifest) { m.Kind = repo.DumpKindGlobals; m.DumpFormat = "plain" },
	} {
		m := good
		change(&m)
		if err := m.Validate(); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	globals := good
	globals.Kind, globals.Name, globals.Database, globals.DumpFormat = repo.DumpKindGlobals, GlobalsName(now), "", "plain"
	if err := globals.Validate(); err != nil {
		t.Fatalf("a globals manifest: %v", err)
	}
	if GlobalsName(now) == Name(now, "globals") {
		t.Fatal("a database called globals has the globals dump's name")
	}
	if _, err := repo.DecodeDumpManifest(strings.NewReader(strings.Repeat(" ", repo.MaxDumpManifestBytes+1))); err == nil {
		t.Error("an oversized manifest was accepted")
	}
}

// A dump goes into a database of another name only when the user said
// whose dump it is.
func TestCheckTarget(t *testing.T) {
	m := &repo.DumpManifest{Kind: repo.DumpKindDatabase, Name: "dump_20261129T201500Z_crm", Database: "crm"}
	for _, tt := range []struct {
		dsn, source string
		create, ok  bool
	}{
		{"dbname=crm", "", false, true},
		{"dbname=shop", "", false, false},
		{"dbname=shop", "crm", false, true},
		{"dbname=shop", "shop", false, false},
		{"dbname=postgres", "", true, true},
		{"dbname=postgres", "shop", true, false},
		{"postgresql://h/crm_staging", "crm", false, true},
	} {
		err := CheckTarget(m, tt.dsn, tt.create, tt.source)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, archive.ErrBadInput) {
			t.Errorf("%+v: %v", tt, err)
		}
	}
}
