package backup

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/walvault/walvault/archive/repo"
)

func TestSkipEntry(t *testing.T) {
	tests := []struct {
		rel, name string
		dir       bool
		skip      bool
	}{
		{"", "postmaster.pid", false, true},
		{"", "postmaster.opts", false, true},
		{"", "backup_label", false, true},
		{"", "tablespace_map", false, true},
		{"", "backup_manifest", false, true},
		{"", "recovery.signal", false, true},
		{"", "standby.signal", false, true},
		{"", "postgresql.auto.conf.tmp", false, true},
		{"", "postgresql.auto.conf", false, false},
		{"", "postgresql.conf", false, false},
		{"", "PG_VERSION", false, false},
		{"", "pg_wal", true, false},
		{"pg_wal", "000000010000000000000001", false, true},
		{"pg_wal", "archive_status", true, false},
		{"pg_wal", ".walvault", true, true},
		{"pg_wal/archive_status", "000000010000000000000001.done", false, true},
		{"", "pg_replslot", true, false},
		{"pg_replslot", "slot1", true, true},
		{"pg_stat_tmp", "global.stat", false, true},
		{"pg_subtrans", "0000", false, true},
		{"pg_dynshmem", "mmap.1", false, true},
		{"pg_notify", "0000", false, true},
		{"pg_serial", "0000", false, true},
		{"pg_snapshots", "x", false, true},
		{"pg_xact", "0000", false, false},
		{"base/1", "pg_internal.init", false, true},
		{"global", "pg_internal.init.123", false, true},
		{"base", "pgsql_tmp", true, true},
		{"base/pgsql_tmp", "pgsql_tmp123.0", false, true},
		{"base/1", "1259", false, false},
		{"global", "pg_control", false, false},
		// Only the top-level names are special.
		{"base", "postmaster.pid", false, false},
		{"base/1", "pg_wal", true, false},
	}
	for _, tt := range tests {
		if got := skipEntry(tt.rel, tt.name, tt.dir); got != tt.skip {
			t.Errorf("skipEntry(%q, %q, dir=%v) = %v, want %v", tt.rel, tt.name, tt.dir, got, tt.skip)
		}
	}
}

func TestDBDirSkips(t *testing.T) {
	names := []string{
		"1259", "1259_fsm", "1259_vm", "1259.1", // logged
		"16384", "16384_init", "16384_fsm", "16384.1", "16384_vm", // unlogged: only the init fork stays
		"t3_16390", "t3_16390_fsm", "t12_5.2", // temporary relations
		"PG_VERSION", "pg_filenode.map", "tx_1", // not relations
	}
	got := dbDirSkips(names)
	var skipped []string
	for n := range got {
		skipped = append(skipped, n)
	}
	sort.Strings(skipped)
	want := []string{"16384", "16384.1", "16384_fsm", "16384_vm", "t12_5.2", "t3_16390", "t3_16390_fsm"}
	if len(skipped) != len(want) {
		t.Fatalf("skipped %v, want %v", skipped, want)
	}
	for i := range want {
		if skipped[i] != want[i] {
			t.Fatalf("skipped %v, want %v", skipped, want)
		}
	}
	for _, rel := range []string{"base/1", "base/16384", "pg_tblspc/16385/PG_15_202209061/16384"} {
		if !isDBDir(rel) {
			t.Errorf("%s is a database directory", rel)
		}
	}
	for _, rel := range []string{"base", "global", "base/1/x", "pg_tblspc/16385", "pg_tblspc/16385/PG_15_202209061"} {
		if isDBDir(rel) {
			t.Errorf("%s is not a database directory", rel)
		}
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if body == "/" {
			if err := os.MkdirAll(full, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWalkDataDirAndPlan(t *testing.T) {
	root := t.TempDir()
	pgdata, spc := filepath.Join(root, "data"), filepath.Join(root, "spc")
	writeTree(t, pgdata, map[string]string{
		"PG_VERSION":                      "15\n",
		"postmaster.pid":                  "123",
		"global/pg_control":               "ctl",
		"base/1/1259":                     "0123456789",
		"base/1/16384":                    "unlogged main fork",
		"base/1/16384_init":               "",
		"base/1/t3_99":                    "temp",
		"pg_wal/000000010000000000000001": "wal",
		"pg_wal/archive_status/000000010000000000000001.ready": "",
		"pg_replslot/s/state": "x",
		"pg_tblspc/.keep":     "",
	})
	writeTree(t, spc, map[string]string{
		"PG_15_202209061/16384/16390": "tablespace data",
		"PG_14_202107181/16384/1":     "another version's data",
	})
	if err := os.Symlink(spc, filepath.Join(pgdata, "pg_tblspc", "16400")); err != nil {
		t.Fatal(err)
	}
	w, err := walkDataDir(pgdata, "PG_15_202209061", map[uint32]string{16400: "fast"})
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for _, e := range w.Base {
		paths[e.Path] = e.Type
	}
	for _, want := range []string{"PG_VERSION", "global/pg_control", "base/1/1259", "base/1/16384_init", "pg_wal", "pg_wal/archive_status", "pg_replslot", "pg_tblspc/.keep"} {
		if _, ok := paths[want]; !ok {
			t.Errorf("%s missing from the backup", want)
		}
	}
	for _, skip := range []string{"postmaster.pid", "base/1/16384", "base/1/t3_99", "pg_wal/000000010000000000000001", "pg_wal/archive_status/000000010000000000000001.ready", "pg_replslot/s", "pg_tblspc/16400"} {
		if _, ok := paths[skip]; ok {
			t.Errorf("%s must not be backed up", skip)
		}
	}
	if len(w.Tablespaces) != 1 || w.Tablespaces[0].OID != 16400 || w.Tablespaces[0].Name != "fast" || w.Tablespaces[0].Location != spc {
		t.Fatalf("tablespaces: %+v", w.Tablespaces)
	}
	var spcPaths []string
	for _, e := range w.Spc[16400] {
		spcPaths = append(spcPaths, e.Path)
	}
	want := []string{"pg_tblspc/16400/PG_15_202209061", "pg_tblspc/16400/PG_15_202209061/16384", "pg_tblspc/16400/PG_15_202209061/16384/16390"}
	if len(spcPaths) != len(want) || spcPaths[2] != want[2] {
		t.Fatalf("tablespace entries %v, want %v", spcPaths, want)
	}

	plans := planParts(w, 8)
	if len(plans) < 3 || plans[len(plans)-1].Tablespace != 16400 {
		t.Fatalf("want several base parts and a tablespace part, got %d parts", len(plans))
	}
	for _, p := range plans {
		files := 0
		for _, e := range p.Entries {
			if e.Type == repo.TypeFile {
				files++
			}
		}
		if p.Size > 8 && files > 1 {
			t.Errorf("a part of %d bytes holds %d files: only a single large file may exceed the part size", p.Size, files)
		}
	}

	if _, err := walkDataDir(filepath.Join(root, "nope"), "x", nil); err == nil {
		t.Fatal("a missing data directory was accepted")
	}
	if _, err := walkDataDir(spc, "x", nil); err == nil {
		t.Fatal("a directory without PG_VERSION was accepted")
	}
}

func TestPartTarget(t *testing.T) {
	tests := []struct {
		total, max int64
		workers    int
		want       int64
	}{
		{total: 10 << 30, max: 1 << 30, workers: 4, want: 1 << 30},
		{total: 1 << 30, max: 1 << 30, workers: 4, want: 128 << 20},
		{total: 1 << 20, max: 1 << 30, workers: 4, want: 16 << 20},
		{total: 1 << 30, max: 4 << 20, workers: 4, want: 4 << 20},
		{total: 1 << 30, max: 1 << 30, workers: 0, want: 512 << 20},
	}
	for _, tt := range tests {
		if got := partTarget(tt.total, tt.max, tt.workers); got != tt.want {
			t.Errorf("partTarget(%d, %d, %d) = %d, want %d", tt.total, tt.max, tt.workers, got, tt.want)
		}
	}
}
