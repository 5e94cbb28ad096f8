package verify

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

// dumpStore is a file:// store with a signing, verifying repo.
func dumpStore(t *testing.T) (root string, r *repo.Repo) {
	t.Helper()
	root = t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r = backuptest.SignedRepo(t, st)
	r.Codec = codec.Settings{Compression: codec.None} // no frame checksum: the stored SHA-256 must find a flipped byte
	return root, r
}

// putSignedDump stores content as a database dump, as dump.Push does.
func putSignedDump(t *testing.T, r *repo.Repo, name, db string, content []byte, at time.Time) *repo.DumpManifest {
	t.Helper()
	ctx := context.Background()
	src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
	st, err := r.Put(ctx, repo.DumpKey(name, repo.DumpFile), src, repo.PutOptions{PutOptions: cloud.PutOptions{IfAbsent: true}})
	if err != nil {
		t.Fatal(err)
	}
	m := &repo.DumpManifest{Format: 1, Kind: repo.DumpKindDatabase, Name: name, Database: db, PGVersion: 150014, PGDumpVersion: "pg_dump (PostgreSQL) 15.14",
		DumpFormat: "custom", StartTime: at, StopTime: at, Size: st.Size, StoredSize: st.StoredSize, SHA256: st.SHA256, Compression: "none"}
	if err := r.WriteDumpManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// dumpProblems are the report's problems about dumps/.
func dumpProblems(rep *Report) []Problem {
	var out []Problem
	for _, p := range rep.Problems {
		if strings.HasPrefix(p.Object, repo.DumpPrefix) {
			out = append(out, p)
		}
	}
	return out
}

func TestVerifyDumps(t *testing.T) {
	ctx := context.Background()
	// Incompressible, so a flipped byte still decodes and the SHA-256 finds it.
	content := make([]byte, 64<<10)
	for i, x := 0, uint32(1); i < len(content); i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		content[i] = byte(x)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	objPath := func(root, name string) string {
		return filepath.Join(root, filepath.FromSlash(repo.DumpKey(name, repo.DumpFile)))
	}
	for _, c := range []struct {
		name   string
		full   bool
		damage func(root string, m *repo.DumpManifest)
		want   string // "" for a whole dump
	}{
		{name: "ok"},
		{name: "ok full", full: true},
		{name: "missing", damage: func(root string, m *repo.DumpManifest) {
			if err := os.Remove(objPath(root, m.Name)); err != nil {
				t.Fatal(err)
			}
		}, want: "missing"},
		{name: "truncated", damage: func(root string, m *repo.DumpManifest) {
			if err := os.Truncate(objPath(root, m.Name), m.StoredSize-3); err != nil {
				t.Fatal(err)
			}
		}, want: "truncated or altered"},
		{name: "flipped byte full", full: true, damage: func(root string, m *repo.DumpManifest) {
			p := objPath(root, m.Name)
			b, err := os.ReadFile(p) // #nosec G304 -- test file
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: "sha"},
		{name: "bad manifest", damage: func(root string, m *repo.DumpManifest) {
			p := filepath.Join(root, filepath.FromSlash(repo.DumpKey(m.Name, repo.ManifestFile)))
			b, err := os.ReadFile(p) // #nosec G304 -- test file
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.Replace(b, []byte(`"shop"`), []byte(`"shoq"`), 1)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: "manifest.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, r := dumpStore(t)
			m := putSignedDump(t, r, "dump_20261130T120000Z_shop", "shop", content, at)
			// An interrupted dump: noted, not a problem.
			if err := r.Store.Put(ctx, repo.DumpKey("dump_20261130T130000Z_shop", repo.DumpFile), cloud.Bytes([]byte("x")), cloud.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if c.damage != nil {
				c.damage(root, m)
			}
			rep, err := Run(ctx, r, Options{Full: c.full, Concurrency: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Dumps) != 1 || rep.Dumps[0].Name != m.Name {
				t.Fatalf("dumps %+v", rep.Dumps)
			}
			if len(rep.IncompleteDumps) != 1 {
				t.Errorf("incomplete dumps %v", rep.IncompleteDumps)
			}
			d, probs := rep.Dumps[0], dumpProblems(rep)
			if c.want == "" {
				if !d.OK || len(probs) != 0 || d.Kind != repo.DumpKindDatabase || d.Database != "shop" || d.StoredSize != m.StoredSize {
					t.Fatalf("a whole dump: %+v, problems %v", d, probs)
				}
				if c.full != (d.Checked == "full") {
					t.Errorf("checked %s", d.Checked)
				}
				return
			}
			if d.OK || rep.OK || len(probs) != 1 || len(d.Problems) != 1 {
				t.Fatalf("damage not found: %+v, problems %v", d, rep.Problems)
			}
			if !strings.Contains(strings.ToLower(probs[0].String()), strings.ToLower(c.want)) {
				t.Errorf("problem %q, want it to mention %q", probs[0], c.want)
			}
		})
	}
}
