package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// The bucket is untrusted: these tests restore backups whose manifests a
// bucket writer could have shaped (signed here, or read with
// AllowUnsigned as an attacker's would be) and check that restore stays
// inside what the user named.

// fixture is a source data directory with one tablespace (OID 16390), a
// signed store holding its WAL, and a signing repository.
type fixture struct {
	root, src, spc string
	st             cloud.Store
	r              *repo.Repo
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{root: root, src: filepath.Join(root, "src"), spc: filepath.Join(root, "spc")}
	writeTree(t, f.src, map[string]string{
		"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": "relation", "base/1/1249": "x",
		"postgresql.auto.conf": "# auto\nwork_mem = '4MB'\n", "pg_wal/archive_status/.keep": "", "pg_tblspc/.keep": "",
	})
	writeTree(t, f.spc, map[string]string{"PG_15_1/1/16390": "in a tablespace"})
	if err := os.Symlink(f.spc, filepath.Join(f.src, "pg_tblspc", "16390")); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.st, err = cloud.Open(context.Background(), "file://"+filepath.Join(root, "store"), cloud.Options{}); err != nil {
		t.Fatal(err)
	}
	f.r = signedRepo(t, f.st)
	backuptest.PutWAL(t, f.r, "000000010000000000000002")
	return f
}

// reader is a restore host's repository: it checks proofs with the
// fixture's key, or reads everything with allowUnsigned.
func (f *fixture) reader(allowUnsigned bool) *repo.Repo {
	if allowUnsigned {
		return &repo.Repo{Store: f.st, AllowUnsigned: true}
	}
	return &repo.Repo{Store: f.st, Verify: f.r.Verify}
}

func (f *fixture) opts(dest string) Options {
	return Options{Dest: dest, FetchArgv: []string{"/bin/walvault", "wal-fetch"}, Concurrency: 2}
}

// snapshot lists a directory tree with contents and modes, to tell that a
// refused restore wrote nothing there.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String())
		if fi.Mode().IsRegular() {
			body, _ := os.ReadFile(p)
			b.WriteString(" " + string(body))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return b.String()
}

func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists (%v): a refused restore wrote it", p, err)
	}
}

// A tablespace location from the manifest is used only when it is absent
// or empty, --force or not, and only from an authenticated manifest;
// --tablespace-map always wins.
func TestRestoreTablespaceOutsideDest(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pushTestBackup(t, f.r, f.src, "base_1", nil)

	// The location the manifest names is the source's, full: refused,
	// even with --force, and nothing is written anywhere.
	before := snapshot(t, f.spc)
	for _, force := range []bool{false, true} {
		dest := filepath.Join(f.root, "dest-force")
		o := f.opts(dest)
		o.Force = force
		_, err := Run(ctx, f.reader(false), o)
		if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), "--tablespace-map") {
			t.Fatalf("force=%v: tablespace over a non-empty directory: %v", force, err)
		}
		mustNotExist(t, dest)
		if after := snapshot(t, f.spc); after != before {
			t.Fatalf("force=%v: the tablespace directory changed:\n%s\nwas:\n%s", force, after, before)
		}
	}

	// An absent location from an authenticated manifest is restored.
	elsewhere := filepath.Join(f.root, "new", "spc")
	pushTestBackup(t, f.r, f.src, "base_2", func(m *repo.Manifest) { m.Tablespaces[0].Location = elsewhere })
	dest := filepath.Join(f.root, "dest-auth")
	o := f.opts(dest)
	o.Backup = "base_2"
	if _, err := Run(ctx, f.reader(false), o); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(elsewhere, "PG_15_1/1/16390")); string(got) != "in a tablespace" {
		t.Fatalf("tablespace not restored at its location: %q", got)
	}

	// The same manifest read without authentication: its location is not
	// used; a --tablespace-map one is.
	elsewhere3 := filepath.Join(f.root, "new3", "spc")
	pushTestBackup(t, f.r, f.src, "base_3", func(m *repo.Manifest) { m.Tablespaces[0].Location = elsewhere3 })
	dest = filepath.Join(f.root, "dest-unsigned")
	o = f.opts(dest)
	o.Backup = "base_3"
	_, err := Run(ctx, f.reader(true), o)
	if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "not authenticated") {
		t.Fatalf("tablespace location from an unauthenticated manifest: %v", err)
	}
	mustNotExist(t, dest)
	mustNotExist(t, filepath.Join(f.root, "new3"))
	mapped := filepath.Join(f.root, "mapped")
	o.TablespaceMap = map[string]string{"16390": mapped}
	if _, err := Run(ctx, f.reader(true), o); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(mapped, "PG_15_1/1/16390")); string(got) != "in a tablespace" {
		t.Fatalf("mapped tablespace: %q", got)
	}
	mustNotExist(t, filepath.Join(f.root, "new3"))

	// A directory named with --tablespace-map may be forced: the user
	// named it.
	o.Dest, o.Force = filepath.Join(f.root, "dest-unsigned-2"), true
	if _, err := Run(ctx, f.reader(true), o); err != nil {
		t.Fatalf("--force over a --tablespace-map directory: %v", err)
	}
}

// OID 0 (pg_tblspc/0 would be the data directory) and a tablespace
// listed twice are refused before anything is written.
func TestRestoreTablespaceOIDs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	zeroLoc := filepath.Join(f.root, "zero")
	pushTestBackup(t, f.r, f.src, "base_zero", func(m *repo.Manifest) {
		m.Tablespaces = append(m.Tablespaces, repo.Tablespace{OID: 0, Location: zeroLoc})
	})
	dupLoc := filepath.Join(f.root, "dup")
	pushTestBackup(t, f.r, f.src, "base_dup", func(m *repo.Manifest) {
		m.Tablespaces = append(m.Tablespaces, repo.Tablespace{OID: 16390, Location: dupLoc})
	})
	for _, name := range []string{"base_zero", "base_dup"} {
		dest := filepath.Join(f.root, "dest-"+name)
		o := f.opts(dest)
		o.Backup, o.TablespaceMap = name, map[string]string{"16390": filepath.Join(f.root, "moved-"+name)}
		_, err := Run(ctx, f.reader(false), o)
		if !errors.Is(err, archive.ErrIntegrity) {
			t.Fatalf("%s: %v", name, err)
		}
		mustNotExist(t, dest)
		mustNotExist(t, filepath.Join(f.root, "moved-"+name))
	}
	mustNotExist(t, zeroLoc)
	mustNotExist(t, dupLoc)

	// mapTablespaces checks on its own, whatever reading the manifest did.
	dest := filepath.Join(f.root, "d")
	for name, spcs := range map[string][]repo.Tablespace{
		"zero":      {{OID: 0, Location: zeroLoc}},
		"duplicate": {{OID: 7, Location: zeroLoc}, {OID: 7, Location: dupLoc}},
		"same name": {{OID: 7, Name: "t", Location: zeroLoc}, {OID: 8, Name: "t", Location: dupLoc}},
		"relative":  {{OID: 7, Location: "spc"}},
		"nested":    {{OID: 7, Location: zeroLoc}, {OID: 8, Location: filepath.Join(zeroLoc, "x")}},
		"same dir":  {{OID: 7, Location: zeroLoc}, {OID: 8, Location: zeroLoc}},
		"no such":   {{OID: 7, Location: zeroLoc}},
	} {
		m := &repo.Manifest{Name: "b", Tablespaces: spcs, Parts: []repo.Part{{Name: "part-00000"}}}
		if name == "no such" {
			m.Parts = append(m.Parts, repo.Part{Name: "part-00001", Tablespace: 9})
		}
		if _, err := mapTablespaces(m, nil, dest, false, true, false); !errors.Is(err, archive.ErrIntegrity) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Inside DEST, or DEST inside it: refused, mapped or not.
	for _, loc := range []string{filepath.Join(dest, "spc"), f.root} {
		m := &repo.Manifest{Name: "b", Tablespaces: []repo.Tablespace{{OID: 7, Location: loc}}}
		if _, err := mapTablespaces(m, nil, dest, false, true, false); !errors.Is(err, archive.ErrBadInput) {
			t.Errorf("location %s: %v", loc, err)
		}
		if _, err := mapTablespaces(m, map[string]string{"7": loc}, dest, true, true, false); !errors.Is(err, archive.ErrBadInput) {
			t.Errorf("mapped to %s: %v", loc, err)
		}
	}
}

// A directory that existed before the restore keeps its mode (and, as
// root, its owner); the ones restore creates get the manifest's mode
// without set-uid, set-gid or sticky bits, and the owner of DEST, never
// the owner the manifest records.
func TestRestoreModesAndOwners(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pushTestBackup(t, f.r, f.src, "base_1", func(m *repo.Manifest) {
		m.Owner = repo.FileOwner{User: "walvault-nobody-here", UID: 4321, GID: 4321}
		for i := range m.Files {
			switch m.Files[i].Path {
			case "base":
				m.Files[i].Mode = "0777"
			case "base/1":
				m.Files[i].Mode = "3750" // set-gid and sticky
			case "base/1/1249":
				m.Files[i].Mode = "6750" // set-uid and set-gid
			}
		}
	})
	asRoot := os.Geteuid() == 0
	dest := filepath.Join(f.root, "dest")
	writeTree(t, dest, map[string]string{"base/": "/"})
	if err := os.Chmod(dest, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dest, "base"), 0o711); err != nil {
		t.Fatal(err)
	}
	if asRoot {
		if err := os.Chown(dest, 1234, 1235); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dest, "base"), 5555, 5556); err != nil {
			t.Fatal(err)
		}
	}
	o := f.opts(dest)
	o.Force, o.TablespaceMap = true, map[string]string{"16390": filepath.Join(f.root, "moved")}
	if _, err := Run(ctx, f.reader(false), o); err != nil {
		t.Fatal(err)
	}
	mode := func(p string) fs.FileMode {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dest, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	if m := mode("."); m.Perm() != 0o750 {
		t.Errorf("DEST, there before: mode %v, want it kept (0750)", m)
	}
	if m := mode("base"); m.Perm() != 0o711 {
		t.Errorf("base, there before: mode %v, want it kept (0711)", m)
	}
	special := fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	if m := mode("base/1"); m&special != 0 || m.Perm() != 0o750 {
		t.Errorf("base/1, created: mode %v, want drwxr-x--- without special bits", m)
	}
	if m := mode("base/1/1249"); m&special != 0 || m.Perm() != 0o750 {
		t.Errorf("base/1/1249: mode %v, want -rwxr-x--- without special bits", m)
	}
	if !asRoot {
		t.Log("not root: owners not checked")
		return
	}
	owner := func(p string) (uint32, uint32) {
		fi, err := os.Lstat(filepath.Join(dest, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return st.Uid, st.Gid
	}
	for _, p := range []string{".", "base/1", "base/1/1249", "global/pg_control", "PG_VERSION", "pg_tblspc", "pg_tblspc/16390", "postgresql.auto.conf", "recovery.signal"} {
		if u, g := owner(p); u != 1234 || g != 1235 {
			t.Errorf("%s owned by %d:%d, want DEST's owner 1234:1235", p, u, g)
		}
	}
	if u, g := owner("base"); u != 5555 || g != 5556 {
		t.Errorf("base, there before, owned by %d:%d: want it kept (5555:5556)", u, g)
	}
}

// As root, --owner decides; without it and without an existing DEST the
// files stay root's (with a warning), never the manifest's owner.
func TestRestoreOwnerOption(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx := context.Background()
	f := newFixture(t)
	pushTestBackup(t, f.r, f.src, "base_1", func(m *repo.Manifest) { m.Owner = repo.FileOwner{UID: 4321, GID: 4321} })
	uidOf := func(p string) uint32 {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid
	}

	dest := filepath.Join(f.root, "dest-owner")
	o := f.opts(dest)
	o.Owner, o.TablespaceMap = "2345:2346", map[string]string{"16390": filepath.Join(f.root, "moved-owner")}
	if _, err := Run(ctx, f.reader(false), o); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dest, filepath.Join(dest, "base/1/1259"), filepath.Join(f.root, "moved-owner"), filepath.Join(f.root, "moved-owner", "PG_15_1/1/16390")} {
		if u := uidOf(p); u != 2345 {
			t.Errorf("%s owned by %d, want --owner's 2345", p, u)
		}
	}

	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)
	dest = filepath.Join(f.root, "dest-root")
	o = f.opts(dest)
	o.TablespaceMap = map[string]string{"16390": filepath.Join(f.root, "moved-root")}
	if _, err := Run(ctx, f.reader(false), o); err != nil {
		t.Fatal(err)
	}
	if u := uidOf(filepath.Join(dest, "base/1/1259")); u != 0 {
		t.Errorf("owned by %d: the manifest's owner was used", u)
	}
	if !strings.Contains(logs.String(), "--owner") {
		t.Errorf("no warning about root-owned files:\n%s", logs.String())
	}

	if _, err := Run(ctx, f.reader(false), Options{Dest: filepath.Join(f.root, "x"), Owner: "no-such-user-here"}); !errors.Is(err, archive.ErrBadInput) {
		t.Errorf("--owner of an unknown user: %v", err)
	}
}

// Symlinks of the backup never carry a write outside DEST: not through
// pg_wal, the settings files or global, not below one, and not out of
// their directory unless the manifest is authenticated.
func TestRestoreSymlinks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	outside := filepath.Join(f.root, "outside")
	writeTree(t, outside, map[string]string{"keep": "mine"})
	if err := os.RemoveAll(filepath.Join(f.src, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(f.src, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	pushTestBackup(t, f.r, f.src, "base_wal", nil)
	dest := filepath.Join(f.root, "dest")
	o := f.opts(dest)
	o.Backup, o.TablespaceMap = "base_wal", map[string]string{"16390": filepath.Join(f.root, "moved")}
	if _, err := Run(ctx, f.reader(false), o); !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "pg_wal") {
		t.Fatalf("pg_wal as a symlink: %v", err)
	}
	mustNotExist(t, dest)

	m := func(files ...repo.File) *repo.Manifest {
		return &repo.Manifest{Name: "b", Parts: []repo.Part{{Name: "part-00000"}, {Name: "part-00001", Tablespace: 7}}, Files: files}
	}
	link := func(p, to string) repo.File { return repo.File{Path: p, Type: repo.TypeSymlink, Link: to} }
	file := func(p string, part int) repo.File { return repo.File{Path: p, Part: part} }
	for name, tc := range map[string]struct {
		m             *repo.Manifest
		authenticated bool
		ok            bool
	}{
		"auto.conf link":         {m: m(link("postgresql.auto.conf", "base/1/1259")), authenticated: true},
		"signal link":            {m: m(link("recovery.signal", "x")), authenticated: true},
		"global link":            {m: m(link("global", "/tmp")), authenticated: true},
		"pg_control link":        {m: m(link("global/pg_control", "x")), authenticated: true},
		"pg_tblspc link":         {m: m(link("pg_tblspc/7", "/tmp")), authenticated: true},
		"in pg_tblspc":           {m: m(file("pg_tblspc/7/PG_15/x", 0)), authenticated: true},
		"below a link":           {m: m(link("log", "sub"), file("log/x", 0)), authenticated: true},
		"twice":                  {m: m(file("a", 0), file("a", 0)), authenticated: true},
		"outside its tablespace": {m: m(file("pg_tblspc/8/x", 1)), authenticated: true},
		"absolute, unsigned":     {m: m(link("log", "/var/log"))},
		"dotdot, unsigned":       {m: m(link("log", "sub/../../x"))},
		"absolute, signed":       {m: m(link("log", "/var/log")), authenticated: true, ok: true},
		"inside, unsigned":       {m: m(link("log", "sub/dir"), file("pg_tblspc/7/PG_15/1", 1)), ok: true},
	} {
		err := checkEntries(tc.m, tc.authenticated)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, archive.ErrIntegrity)) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Nothing in the recovery settings comes from the bucket: read back, the
// settings file is the backup's own lines (earlier recovery settings
// commented out), then walvault's comment and its settings, nothing else.
func TestRecoverySettingsCarryNoBucketText(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"postgresql.auto.conf": "# auto\nwork_mem = '4MB'\nrestore_command = 'old'\n"})
	const name = "base_recovery_end_command"
	pushTestBackup(t, f.r, f.src, name, func(m *repo.Manifest) {
		m.Annotations = map[string]string{"note": "recovery_end_command = 'touch /tmp/pwned'"}
		m.BackupLabel = "LABEL: recovery_end_command = 'x'\n"
		m.Hostname = "host recovery_end_command = 'x'"
	})
	dest := filepath.Join(f.root, "dest")
	o := f.opts(dest)
	o.TablespaceMap, o.Target = map[string]string{"16390": filepath.Join(f.root, "moved")}, Target{Name: "rp"}
	res, err := Run(ctx, f.reader(false), o)
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	if strings.Contains(text, name) || strings.Contains(text, "recovery_end_command") || strings.Contains(text, "pwned") {
		t.Fatalf("bucket text in the settings:\n%s", text)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	own := []string{"# auto", "work_mem = '4MB'", "# disabled by walvault restore: restore_command = 'old'", ""}
	if len(lines) != len(own)+1+len(res.SettingLines()) {
		t.Fatalf("settings file has %d lines:\n%s", len(lines), text)
	}
	for i, l := range own {
		if lines[i] != l {
			t.Fatalf("line %d: %q, want %q", i+1, lines[i], l)
		}
	}
	if !regexp.MustCompile(`^# Added by walvault restore at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\.$`).MatchString(lines[len(own)]) {
		t.Fatalf("comment line %q", lines[len(own)])
	}
	for i, l := range res.SettingLines() {
		if got := lines[len(own)+1+i]; got != l {
			t.Fatalf("setting %d: %q, want %q", i, got, l)
		}
	}
	// And each generated line is a setting walvault makes, with a value
	// from the command line.
	settingRe := regexp.MustCompile(`^(restore_command|recovery_target_name|recovery_target_action|recovery_target_timeline) = '[^'\n]*'$`)
	for _, l := range res.SettingLines() {
		if !settingRe.MatchString(l) {
			t.Errorf("unexpected setting %q", l)
		}
	}
}

// Restore never picks a backup whose manifest fails authentication or is
// damaged: by target it skips it with a warning naming it, by name it
// fails with an integrity error.
func TestRestoreRefusesUnauthenticatedBackup(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	good := pushTestBackup(t, f.r, f.src, "base_good", nil)
	forged := *good
	forged.Name = "base_forged"
	forged.StopTime = good.StopTime.Add(time.Hour)
	body, err := repo.EncodeManifest(&forged)
	if err != nil {
		t.Fatal(err)
	}
	// Written as a bucket writer would: the right content, no proof.
	for _, p := range good.Parts {
		rc, _, err := f.st.Get(ctx, repo.BackupKey(good.Name, p.Name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.st.Put(ctx, repo.BackupKey(forged.Name, p.Name), cloud.Once(rc), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		_ = rc.Close()
	}
	if err := f.st.Put(ctx, repo.BackupKey(forged.Name, repo.ManifestFile), cloud.Bytes(body), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// Signed, but not a manifest.
	junk := []byte("{not json")
	sum := sha256.Sum256(junk)
	meta := map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(junk))}
	if err := f.r.PutBytes(ctx, repo.BackupKey("base_damaged", repo.ManifestFile), junk, cloud.PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)
	tmap := map[string]string{"16390": filepath.Join(f.root, "moved")}
	o := f.opts(filepath.Join(f.root, "dest"))
	o.TablespaceMap = tmap
	res, err := Run(ctx, f.reader(false), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Name != "base_good" {
		t.Fatalf("restored %s", res.Manifest.Name)
	}
	for _, n := range []string{"base_forged", "base_damaged"} {
		if !strings.Contains(logs.String(), "restore skips") || !strings.Contains(logs.String(), n) {
			t.Errorf("no warning naming %s:\n%s", n, logs.String())
		}
	}
	for name, want := range map[string]error{"base_forged": crypto.ErrBadProof, "base_damaged": archive.ErrIntegrity} {
		dest := filepath.Join(f.root, "dest-"+name)
		o := f.opts(dest)
		o.Backup, o.TablespaceMap = name, tmap
		if _, err := Run(ctx, f.reader(false), o); !errors.Is(err, want) || !errors.Is(err, archive.ErrIntegrity) && !errors.Is(err, crypto.ErrBadProof) {
			t.Errorf("--backup %s: %v", name, err)
		}
		mustNotExist(t, dest)
	}
}

// An existing DEST that PostgreSQL would refuse to start on (group- or
// world-writable, or readable by others) is refused before anything is
// downloaded: restore never changes a directory that was there.
func TestRestoreRefusesDestPostgresWouldRefuse(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "dest")
	if err := os.Mkdir(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	err := checkDestMode(dest)
	if !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("DEST 0755: %v", err)
	}
	for _, ok := range []os.FileMode{0o700, 0o750} {
		if err := os.Chmod(dest, ok); err != nil {
			t.Fatal(err)
		}
		if err := checkDestMode(dest); err != nil {
			t.Fatalf("DEST %04o: %v", ok, err)
		}
	}
	if err := checkDestMode(filepath.Join(dest, "new")); err != nil {
		t.Fatalf("a DEST restore creates: %v", err)
	}
}
