package retention

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// signedRepos returns a signing writer and a verifying reader on st.
func signedRepos(t *testing.T, st cloud.Store) (w, r *repo.Repo) {
	t.Helper()
	dir := t.TempDir()
	vk, err := crypto.GenerateSigningKey(filepath.Join(dir, "sign.key"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(filepath.Join(dir, "sign.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	return &repo.Repo{Store: st, Sign: sk, Cluster: "1"}, &repo.Repo{Store: st, Verify: []crypto.VerifyKey{vk}}
}

// putDump stores a signed dump of db ("" for globals) that finished at
// stop, as dump.Push does.
func putDump(t *testing.T, w *repo.Repo, name, db string, stop time.Time) {
	t.Helper()
	ctx := context.Background()
	content := []byte("PGDMP " + name)
	src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
	st, err := w.Put(ctx, repo.DumpKey(name, repo.DumpFile), src, repo.PutOptions{PutOptions: cloud.PutOptions{IfAbsent: true}})
	if err != nil {
		t.Fatal(err)
	}
	m := &repo.DumpManifest{Format: 1, Kind: repo.DumpKindDatabase, Name: name, Database: db, PGVersion: 150014, PGDumpVersion: "pg_dump (PostgreSQL) 15.14",
		DumpFormat: "custom", StartTime: stop.Add(-time.Minute), StopTime: stop, Size: st.Size, StoredSize: st.StoredSize, SHA256: st.SHA256,
		Compression: "none"}
	if db == "" {
		m.Kind, m.DumpFormat = repo.DumpKindGlobals, "plain"
	}
	if err := w.WriteDumpManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
}

func storeKeys(t *testing.T, st cloud.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := st.List(context.Background(), prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		out = append(out, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func dumpVerdicts(p *Plan) (del, keep []string) {
	for _, d := range p.Dumps {
		if d.Delete {
			del = append(del, d.Name)
		} else {
			keep = append(keep, d.Name)
		}
	}
	return
}

// fillDumps stores three dumps of shop, two of crm, three of the globals,
// an interrupted dump (no manifest) and returns the names deleted by
// --retain-dumps 2 at tmin(100) with --orphan-age 1h.
func fillDumps(t *testing.T, root string, w *repo.Repo) []string {
	putDump(t, w, "dump_a_shop", "shop", tmin(10))
	putDump(t, w, "dump_b_shop", "shop", tmin(20))
	putDump(t, w, "dump_c_shop", "shop", tmin(30))
	putDump(t, w, "dump_a_crm", "crm", tmin(5))
	putDump(t, w, "dump_b_crm", "crm", tmin(6))
	putDump(t, w, "dumpall_a_globals", "", tmin(1))
	putDump(t, w, "dumpall_b_globals", "", tmin(2))
	putDump(t, w, "dumpall_c_globals", "", tmin(3))
	// A dump named like a database called "globals" counts with that
	// database, not with the globals.
	putDump(t, w, "dump_z_globals", "globals", tmin(0))
	// An interrupted dump, old enough to go.
	if err := w.Store.Put(context.Background(), repo.DumpKey("dump_x_shop", repo.DumpFile), cloud.Bytes([]byte("partial")), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	old := tmin(0)
	if err := os.Chtimes(filepath.Join(root, "dumps", "dump_x_shop", repo.DumpFile), old, old); err != nil {
		t.Fatal(err)
	}
	return []string{"dump_a_shop", "dump_x_shop", "dumpall_a_globals"}
}

func TestRetainDumpsPerDatabase(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := cloud.Open(ctx, "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, r := signedRepos(t, st)
	wantDel := fillDumps(t, root, w)
	before := storeKeys(t, st, "")

	plan, err := Decide(ctx, r, Policy{RetainDumps: 2, OrphanAge: time.Hour, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	del, keep := dumpVerdicts(plan)
	if strings.Join(del, ",") != strings.Join(wantDel, ",") || len(keep) != 7 {
		t.Fatalf("delete %v keep %v; want delete %v", del, keep, wantDel)
	}
	for _, d := range plan.Dumps {
		if d.Name == "dump_a_shop" && d.Reason != "older than the 2 newest dumps of database shop (--retain-dumps 2)" {
			t.Fatalf("reason %q", d.Reason)
		}
		if d.Name == "dumpall_c_globals" && (d.Kind != repo.DumpKindGlobals || !strings.Contains(d.Reason, "the globals")) {
			t.Fatalf("globals decision %+v", d)
		}
	}
	if plan.Delete.Dumps != 3 || plan.Keep.Dumps != 7 || plan.Delete.Backups != 0 || plan.Delete.WALObjects != 0 {
		t.Fatalf("totals delete %+v keep %+v", plan.Delete, plan.Keep)
	}
	js, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"dumps":[{"name":`, `"database":"shop"`, `"kind":"database"`, `"stop_time":`, `"stored_size":`, `"delete":true`, `"reason":`} {
		if !strings.Contains(string(js), f) {
			t.Fatalf("plan JSON lacks %s: %s", f, js)
		}
	}
	// The dry run deleted nothing.
	if got := storeKeys(t, st, ""); strings.Join(got, "\n") != strings.Join(before, "\n") {
		t.Fatal("planning changed the store")
	}

	res, err := Apply(ctx, r, plan)
	if err != nil {
		t.Fatal(err)
	}
	if res.Dumps != 3 || res.Objects != 3+3+1 || // manifest, object, tombstone; and the orphan
		res.Backups != 0 || res.WALObjects != 0 {
		t.Fatalf("result %+v", res)
	}
	var want []string
	for _, k := range before {
		gone := false
		for _, n := range wantDel {
			gone = gone || strings.HasPrefix(k, repo.DumpPrefix+n+"/")
		}
		if !gone {
			want = append(want, k)
		}
	}
	if got := storeKeys(t, st, ""); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after delete the store holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	again, err := Decide(ctx, r, Policy{RetainDumps: 2, OrphanAge: time.Hour, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Delete != (Totals{}) {
		t.Fatalf("second run would delete %+v", again.Delete)
	}
}

// An interrupted delete (tombstone written, manifest gone, object left)
// is finished by the next run, at once; a kept dump's stale tombstone is
// removed.
func TestRetainDumpsFinishesInterruptedDelete(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := cloud.Open(ctx, "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, r := signedRepos(t, st)
	putDump(t, w, "dump_a_shop", "shop", tmin(10))
	putDump(t, w, "dump_b_shop", "shop", tmin(20))
	for _, n := range []string{"dump_a_shop", "dump_b_shop"} {
		if err := st.Put(ctx, repo.DumpKey(n, repo.TombstoneFile), cloud.Bytes([]byte("{}")), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete(ctx, repo.DumpKey("dump_a_shop", repo.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	plan, err := Decide(ctx, r, Policy{RetainDumps: 5, OrphanAge: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if del, _ := dumpVerdicts(plan); strings.Join(del, ",") != "dump_a_shop" {
		t.Fatalf("delete %v", del)
	}
	if _, err := Apply(ctx, r, plan); err != nil {
		t.Fatal(err)
	}
	got := storeKeys(t, st, repo.DumpPrefix)
	want := []string{repo.DumpKey("dump_b_shop", repo.DumpFile), repo.DumpKey("dump_b_shop", repo.ManifestFile)}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("store holds %v, want %v", got, want)
	}
}

// A dump whose manifest fails authentication is never deleted, and the
// plan says so.
func TestRetainDumpsKeepsUnauthenticated(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := cloud.Open(ctx, "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, r := signedRepos(t, st)
	other, _ := signedRepos(t, st) // a key the reader does not trust
	putDump(t, other, "dump_a_shop", "shop", tmin(10))
	putDump(t, w, "dump_b_shop", "shop", tmin(20))
	putDump(t, w, "dump_c_shop", "shop", tmin(30))
	plan, err := Decide(ctx, r, Policy{RetainDumps: 1, OrphanAge: time.Hour, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	del, keep := dumpVerdicts(plan)
	if strings.Join(del, ",") != "dump_b_shop" || strings.Join(keep, ",") != "dump_a_shop,dump_c_shop" {
		t.Fatalf("delete %v keep %v", del, keep)
	}
	said := false
	for _, n := range plan.Notes {
		said = said || strings.Contains(n, "dump dump_a_shop") && strings.Contains(n, "delete keeps it")
	}
	if !said || !strings.Contains(plan.Dumps[0].Reason, "cannot be trusted") {
		t.Fatalf("the untrusted dump is not reported: %q %v", plan.Dumps[0].Reason, plan.Notes)
	}
	if _, err := Apply(ctx, r, plan); err != nil {
		t.Fatal(err)
	}
	if got := storeKeys(t, st, repo.DumpPrefix); len(got) != 4 || !strings.HasPrefix(got[0], repo.DumpPrefix+"dump_a_shop/") {
		t.Fatalf("store holds %v", got)
	}
}

// --retain-dumps alone touches no backup or WAL; and a backup rule alone
// keeps every dump.
func TestRetainDumpsAloneLeavesBackups(t *testing.T) {
	s := twoTimelines(t)
	w, _ := signedRepos(t, s.R.Store)
	wantDel := fillDumps(t, s.Root, w)
	before := s.Keys()

	plan, err := Decide(s.Ctx, s.R, Policy{RetainDumps: 2, OrphanAge: time.Hour, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Backups) != 0 || len(plan.WAL) != 0 || plan.Delete.Backups+plan.Delete.WALObjects+plan.Delete.Folders != 0 {
		t.Fatalf("a dumps-only plan decides on backups or WAL: %+v", plan.Delete)
	}
	if _, err := Apply(s.Ctx, s.R, plan); err != nil {
		t.Fatal(err)
	}
	after := s.Keys()
	for k := range before {
		dumpGone := false
		for _, n := range wantDel {
			dumpGone = dumpGone || strings.HasPrefix(k, repo.DumpPrefix+n+"/")
		}
		if after[k] == dumpGone {
			t.Fatalf("%s: present %v after a dumps-only delete", k, after[k])
		}
	}

	// A backup rule alone: every dump stays, whatever the backups do.
	plan, err = Decide(s.Ctx, s.R, Policy{RetainFull: 1, OrphanAge: time.Hour, Now: tmin(100)})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Dumps) != 0 || plan.Delete.Dumps != 0 || plan.Delete.Backups == 0 {
		t.Fatalf("a backups-only plan: dumps %v, delete %+v", plan.Dumps, plan.Delete)
	}
	noted := false
	for _, n := range plan.Notes {
		noted = noted || strings.Contains(n, "dumps are kept")
	}
	if !noted {
		t.Fatalf("no note that dumps are kept: %v", plan.Notes)
	}
	dumpsBefore := storeKeys(t, s.R.Store, repo.DumpPrefix)
	if _, err := Apply(s.Ctx, s.R, plan); err != nil {
		t.Fatal(err)
	}
	if got := storeKeys(t, s.R.Store, repo.DumpPrefix); strings.Join(got, ",") != strings.Join(dumpsBefore, ",") {
		t.Fatalf("a backups-only delete touched dumps: %v -> %v", dumpsBefore, got)
	}
}
