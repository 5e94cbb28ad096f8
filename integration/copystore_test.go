package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/integration/faultproxy"
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// Servers shared by the tests of second stores, copies and locks: each
// kind started once per test binary, on first use, and stopped when the
// tests end (stopShared, from TestMain).
var (
	sharedMu      sync.Mutex
	sharedServers = map[string]*testenv.Server{}
)

// sharedServer is the shared server of kind; "s3-dr" is a second
// versitygw with credentials of its own (another account).
func sharedServer(t testing.TB, kind string) *testenv.Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s := sharedServers[kind]; s != nil {
		return s
	}
	dir, err := os.MkdirTemp("", "walvault-shared-"+kind+"-")
	if err != nil {
		t.Fatal(err)
	}
	var s *testenv.Server
	if kind == "s3-dr" {
		s, err = testenv.StartS3WithKeys(dir, "walvault-dr", "walvault-dr-secret-51c2e9")
	} else {
		s, err = testenv.Start(testenv.Kind(kind), dir)
	}
	if err != nil {
		t.Fatalf("cannot start the shared %s server: %v", kind, err)
	}
	sharedServers[kind] = s
	return s
}

// stopShared stops the shared servers (TestMain, after the tests).
func stopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for kind, s := range sharedServers {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the shared %s server: %v\n", kind, err)
		}
		_ = os.RemoveAll(filepath.Dir(s.DataDir))
	}
	for _, d := range fixtureDirs {
		_ = os.RemoveAll(d)
	}
}

// drStore is a bucket on the shared "other account" versitygw, reached
// only with the credentials file written for it: its config file entry
// (a map) and, for a restore host that has nothing else, a config file of
// its own with it as store.
type drStore struct {
	srv   *testenv.Server
	url   string
	creds string
	entry string // the copy-store entry, YAML
}

func newDRStore(t *testing.T, work string) *drStore {
	t.Helper()
	srv := sharedServer(t, "s3-dr")
	bucket := testenv.BucketName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	creds, err := srv.CredentialsFile(work)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := pgtest.ServerOwner()
	_ = o.Chown(creds)
	d := &drStore{srv: srv, url: "s3://" + bucket + "/prod", creds: creds}
	d.entry = fmt.Sprintf("  - store: %s\n    s3-endpoint: %s\n    s3-path-style: true\n    s3-region: us-east-1\n    s3-credentials-file: %s\n", d.url, srv.Endpoint, creds)
	return d
}

// settings is the store as top-level settings (a restore host's config).
func (d *drStore) settings() string {
	return fmt.Sprintf("store: %s\ns3-endpoint: %s\ns3-path-style: true\ns3-region: us-east-1\ns3-credentials-file: %s\n", d.url, d.srv.Endpoint, d.creds)
}

// writeConfig writes a config file the server's user can read.
func writeConfig(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o640); err != nil { // #nosec G306 -- a test config, read by postgres
		t.Fatal(err)
	}
	o, _ := pgtest.ServerOwner()
	_ = o.Chown(p)
	return p
}

// copyStats is the agent's view of its one second store.
func copyStats(t *testing.T, sock string) (backlog int64, lastErr string, copied int64) {
	t.Helper()
	st, err := agentStatus(t, sock)
	if err != nil || len(st.CopyStores) != 1 {
		t.Fatalf("agent status: %+v, %v", st, err)
	}
	cs := st.CopyStores[0]
	return cs.Backlog, cs.LastError, cs.Copied
}

// TestCopyStoreAgent: a second store in another account (its own
// credentials), kept in step by the agent. With the second store down,
// PostgreSQL archives as fast as ever and never sees a failure; the
// agent's backlog, lag and last error say the second store is behind.
// Back up, it catches up: copy finds nothing it lacks. backup-push copies
// its backup there. Then the first store is deleted and the server
// restored from the second alone, to the same data.
func TestCopyStoreAgent(t *testing.T) {
	tg := newTarget(t, "file")
	work := pgtest.WorkDir(t)
	dr := newDRStore(t, work)
	cfg := writeConfig(t, work, "walvault.yaml", "copy-store:\n"+dr.entry)
	env := []string{"WALVAULT_CONFIG=" + cfg}
	c, identity, recipient := agentCluster(t, tg, env...)
	c.Run("pgbench", "-i", "-s", "1", "-q")
	out := mustWalvault(t, tg, append(backupEnv(c, recipient), env...), "backup-push", "--fast-checkpoint")
	if !strings.Contains(out, "copied backup base_") || !strings.Contains(out, dr.url) {
		t.Fatalf("backup-push did not copy to the second store:\n%s", out)
	}
	c.WaitArchived(c.SwitchWAL(), 60*time.Second) // through wal-push: no agent yet

	maddr := fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
	a := startAgent(t, c, env, "--metrics-listen="+maddr)
	sock := proto.DefaultSocket(filepath.Join(c.Data, "pg_wal"))
	waitCaughtUp(t, sock, a)

	// The second store goes down; archiving goes on at the primary's pace.
	if err := dr.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = dr.srv.Restart()
		}
	}()
	for i := 0; i < 4; i++ {
		c.Run("pgbench", "-n", "-t", "300")
		begin := time.Now()
		c.WaitArchived(c.SwitchWAL(), 20*time.Second)
		if d := time.Since(begin); d > 10*time.Second {
			t.Fatalf("archiving took %s with the second store down", d)
		}
	}
	if n := archiverFailures(t, c); n != 0 {
		t.Fatalf("PostgreSQL saw %d failed archive_command(s) with the second store down\n%s", n, c.LogTail(20))
	}
	// The copier's first attempt at the down store may still be in its
	// retries (each fails within seconds): its error comes then.
	backlog, lastErr, _ := copyStats(t, sock)
	for deadline := time.Now().Add(60 * time.Second); lastErr == "" && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		backlog, lastErr, _ = copyStats(t, sock)
	}
	if backlog < 4 || lastErr == "" {
		t.Fatalf("second store down: backlog %d, last error %q", backlog, lastErr)
	}
	m := scrape(t, maddr)
	if m["walvault_agent_copy_backlog_files"] < 4 || m["walvault_agent_copy_lag_seconds"] <= 0 || m["walvault_agent_copy_errors_total"] < 1 {
		t.Fatalf("metrics with the second store down: %v", m)
	}
	time.Sleep(2500 * time.Millisecond) // the state file
	code, sout, serr := tg.walvault(t, env, "status", "--no-server", "--state-file", "none", "--pgdata", c.Data)
	if code != 7 || !strings.Contains(sout, "copy-store        "+dr.url+": CANNOT BE READ") || !strings.Contains(sout, "file(s) waiting") ||
		!strings.Contains(sout, "last error") {
		t.Fatalf("status with the second store down: exit %d\n%s%s", code, sout, serr)
	}

	// Back up: it catches up, nothing lost.
	if err := dr.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitCaughtUp(t, sock, a)
	sout = mustWalvault(t, tg, env, "status", "--no-server", "--state-file", "none", "--pgdata", c.Data, "--max-copy-lag", "1m")
	if !strings.Contains(sout, dr.url+": in step") {
		t.Fatalf("status once caught up:\n%s", sout)
	}
	want := tableChecksums(t, c)
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	waitCaughtUp(t, sock, a)
	plan := mustWalvault(t, tg, append(env, "WALVAULT_IDENTITY_FILE="+identity), "copy", "--dry-run")
	if !strings.Contains(plan, "would copy 0 object(s)") {
		t.Fatalf("the second store lacks objects of the first after catching up:\n%s", plan)
	}
	if code := a.stop(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
	c.Stop()

	// The first store is gone: restore from the second alone.
	if err := os.RemoveAll(strings.TrimPrefix(tg.URL, "file://")); err != nil {
		t.Fatal(err)
	}
	drCfg := writeConfig(t, work, "dr.yaml", dr.settings())
	drTarget := &target{Kind: "s3", URL: dr.url, Env: []string{"WALVAULT_CONFIG=" + drCfg}}
	list := mustWalvault(t, drTarget, nil, "backup-list")
	if !strings.Contains(list, "base_") {
		t.Fatalf("backup-list of the second store:\n%s", list)
	}
	mustWalvault(t, drTarget, []string{"WALVAULT_IDENTITY_FILE=" + identity}, "verify", "--full")
	r := restoreInto(t, drTarget, nil, identity)
	r.AppendConf("archive_mode = off")
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
}

// waitCaughtUp waits until the agent's second store has no backlog.
func waitCaughtUp(t *testing.T, sock string, a *agentProc) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		backlog, lastErr, _ := copyStats(t, sock)
		if backlog == 0 {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(a.log)
			t.Fatalf("the second store did not catch up in 90 s: backlog %d, last error %q\n%s", backlog, lastErr, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// copyFixture is an archive to copy, made once per test binary by a real
// server into a file store: a full backup in 1 MiB parts, an incremental
// on it marked permanent, a dump, and WAL to the end, encrypted and
// signed. The store directory is read-only for the tests: one that alters
// objects copies it first (cloneStore).
type copyFixture struct {
	dir, url           string
	identity, recipent string
	full, incr, dump   string
	want               map[string]string // table checksums at the end of the WAL
}

var (
	fixtureOnce sync.Once
	fixture     *copyFixture
)

// sharedFixture makes the fixture in the first test that asks for it (a
// failure fails that test; the others then say it is missing).
func sharedFixture(t *testing.T) *copyFixture {
	t.Helper()
	fixtureOnce.Do(func() { fixture = makeFixture(t) })
	if fixture == nil {
		t.Fatal("the copy fixture could not be made (see the first test that asked for it)")
	}
	return fixture
}

func makeFixture(t *testing.T) *copyFixture {
	t.Helper()
	// It outlives the test that makes it: not under t.TempDir.
	base, err := os.MkdirTemp("", "walvault-copyfixture-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(base, 0o755) // #nosec G302 -- postgres writes the store below it
	o, _ := pgtest.ServerOwner()
	dir := filepath.Join(base, "store")
	if err := os.Mkdir(dir, 0o755); err != nil { // #nosec G301 -- test store
		t.Fatal(err)
	}
	_ = o.Chown(dir)
	sharedMu.Lock()
	fixtureDirs = append(fixtureDirs, base)
	sharedMu.Unlock()
	tg := &target{Kind: "file", URL: "file://" + dir, Env: []string{"WALVAULT_STORE=file://" + dir}}
	f := &copyFixture{dir: dir, url: tg.URL}
	c, identity, recipient := archivingCluster(t, tg)
	f.identity, f.recipent = identity, recipient
	keep := filepath.Join(base, "walvault.key")
	if b, err := os.ReadFile(identity); err == nil && os.WriteFile(keep, b, 0o600) == nil {
		_ = o.Chown(keep)
		f.identity = keep
	}
	c.Run("pgbench", "-i", "-s", "3", "-q")
	f.full = backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint", "--part-size", "1MiB"))
	c.Run("pgbench", "-n", "-t", "300")
	f.incr = backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint", "--part-size", "1MiB", "--incremental"))
	mustWalvault(t, tg, backupEnv(c, recipient), "backup-mark", f.incr, "--permanent")
	out := mustWalvault(t, tg, backupEnv(c, recipient), "dump-push", "postgres")
	f.dump = strings.Fields(out)[1]
	c.Run("pgbench", "-n", "-t", "300")
	f.want = tableChecksums(t, c)
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	c.Stop()
	return f
}

// fixtureDirs are removed when the tests end.
var fixtureDirs []string

// cloneStore copies the fixture's store into a new directory the test
// owns and returns its URL.
func (f *copyFixture) cloneStore(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(pgtest.WorkDir(t), "store")
	if out, err := exec.Command("cp", "-a", f.dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dir, "file://" + dir
}

// TestCopyKilled: walvault copy of an archive (backups with an
// incremental chain and a mark, WAL, a dump) into S3, killed with SIGKILL
// at random points and run again until it finishes. The result is the
// source byte for byte, metadata included, verifies in full with the same
// keys, and a further copy has nothing to do.
func TestCopyKilled(t *testing.T) {
	f := sharedFixture(t)
	srv := sharedServer(t, "s3")
	dst := srv.NewTarget(t)
	// Uploads slowed to about 3 MiB/s (two at a time), so that a copy of
	// the 20 MiB archive takes seconds and every kill lands in one.
	px := faultproxy.Start(t, srv.Addr)
	px.SetRule(faultproxy.Always(faultproxy.Match("PUT", ""), faultproxy.Fault{Kind: faultproxy.Throttle, Dir: faultproxy.Up, Rate: 1536 << 10}))
	env := append(srv.Env(), "AWS_ENDPOINT_URL_S3="+px.URL(), "WALVAULT_STORE="+f.url, "WALVAULT_IDENTITY_FILE="+f.identity)
	tg := &target{Kind: "file", URL: f.url}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1)) // #nosec G404 -- test timing
	t.Logf("kill points from seed %d", seed)
	killed := 0
	for i := 0; i < 5; i++ {
		cmd := exec.Command(pgtest.Walvault(t), "copy", "--to", dst.URL, "--upload-concurrency", "2")
		cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true"), env...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Logf("run %d finished before its kill: %v\n%s", i, err, out.String())
		case <-time.After(time.Duration(200+rng.IntN(1500)) * time.Millisecond):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			if err := <-done; err == nil {
				t.Logf("run %d ended successfully as it was killed", i)
				continue
			}
			killed++
		}
	}
	if killed < 3 {
		t.Fatalf("only %d copies were killed: the kill points are too late for this archive", killed)
	}
	out := mustWalvault(t, tg, env, "copy", "--to", dst.URL)
	if !strings.Contains(out, "3 backup(s)") && !strings.Contains(out, "complete in the destination") {
		t.Fatalf("the last copy:\n%s", out)
	}
	compareStores(t, f.url, cloud.Options{}, dst.URL, srv.Options())
	dstEnv := append(srv.Env(), "WALVAULT_STORE="+dst.URL, "WALVAULT_IDENTITY_FILE="+f.identity)
	mustWalvault(t, &target{Kind: "s3", URL: dst.URL}, dstEnv, "verify", "--full")
	again := mustWalvault(t, tg, env, "copy", "--to", dst.URL, "--json")
	var res struct {
		OK           bool `json:"ok"`
		Destinations []struct {
			To           string   `json:"to"`
			Planned      int      `json:"planned_objects"`
			Copied       int      `json:"copied_objects"`
			AlreadyThere int      `json:"already_there"`
			Failed       []string `json:"failed"`
		} `json:"destinations"`
	}
	if err := json.Unmarshal([]byte(again), &res); err != nil {
		t.Fatalf("copy --json printed more than its object: %v\n%s", err, again)
	}
	if d := res.Destinations; !res.OK || len(d) != 1 || d[0].To != dst.URL || d[0].Planned != 0 || d[0].Copied != 0 || d[0].AlreadyThere < 20 || d[0].Failed == nil || len(d[0].Failed) != 0 {
		t.Fatalf("a copy after the complete one found something to do: %+v\n%s", res, again)
	}
}

// compareStores checks that every object of a is in b with the same bytes
// and the same walvault metadata.
func compareStores(t *testing.T, aURL string, aOpts cloud.Options, bURL string, bOpts cloud.Options) {
	t.Helper()
	ctx := context.Background()
	a, err := cloud.Open(ctx, aURL, aOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close(a)
	b, err := cloud.Open(ctx, bURL, bOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close(b)
	keys, err := repo.ListAll(ctx, a, "")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for key := range keys {
		ab, am := getObject(t, a, key)
		bb, bm := getObject(t, b, key)
		if !bytes.Equal(ab, bb) {
			t.Errorf("%s: %d bytes in the copy, %d in the source, or other bytes", key, len(bb), len(ab))
		}
		for k, v := range am {
			if strings.HasPrefix(k, "walvault-") && bm[k] != v {
				t.Errorf("%s: metadata %s differs in the copy", key, k)
			}
		}
		n++
	}
	if n < 20 {
		t.Fatalf("only %d objects compared", n)
	}
	t.Logf("%d objects identical in %s and %s", n, aURL, bURL)
}

func getObject(t *testing.T, st cloud.Store, key string) ([]byte, map[string]string) {
	t.Helper()
	rc, info, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b, info.Metadata
}

// TestFallbackRestore: the archive copied to GCS, then the first store
// loses a part of the backup and a WAL segment, and holds another part
// damaged. restore alone refuses; with --fallback-store it reads those
// three objects from the copy, authenticated as any other, says so, and
// PostgreSQL's recovery fetches the missing segment from it too.
func TestFallbackRestore(t *testing.T) {
	f := sharedFixture(t)
	dir, url := f.cloneStore(t)
	srv := sharedServer(t, "gcs")
	fb := srv.NewTarget(t)
	tg := &target{Kind: "file", URL: url, Env: []string{"WALVAULT_STORE=" + url}}
	gcsEnv := append(srv.Env(), "WALVAULT_IDENTITY_FILE="+f.identity)
	out := mustWalvault(t, tg, gcsEnv, "copy", "--to", fb.URL)
	if !strings.Contains(out, "3 backup(s)") && !strings.Contains(out, "2 backup(s), 1 dump(s) complete") {
		t.Fatalf("copy to GCS:\n%s", out)
	}

	ctx := context.Background()
	st, err := cloud.Open(ctx, url, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close(st)
	r := &repo.Repo{Store: st, AllowUnsigned: true}
	m, err := r.ReadManifest(ctx, f.full, false)
	if err != nil || len(m.Parts) < 3 {
		t.Fatalf("the full backup: %v (%d parts)", err, len(m.Parts))
	}
	gone := repo.BackupKey(f.full, m.Parts[1].Name)
	damaged := repo.BackupKey(f.full, m.Parts[2].Name)
	// A segment recovery replays after the backup's end.
	wf, err := archive.ParseWALName(m.StopWAL)
	if err != nil {
		t.Fatal(err)
	}
	seg := archive.SegmentName(wf.Timeline, wf.SegNo(m.SegmentSize)+2, m.SegmentSize)
	segKey := repo.WALKey(archive.WALFile{Name: seg, Kind: archive.KindSegment})
	for _, k := range []string{gone, segKey} {
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(k))); err != nil {
			t.Fatal(err)
		}
	}
	flipByte(t, filepath.Join(dir, filepath.FromSlash(damaged)))

	c := pgtest.New(t, pgtest.Options{NoInit: true})
	code, _, e := tg.walvault(t, gcsEnv, "restore", c.Data, "--backup", f.full)
	if code != 4 || !strings.Contains(e, "missing") {
		t.Fatalf("restore without the fallback: exit %d, want 4: %s", code, e)
	}
	// The server reaches the fallback (GCS) for restore_command as restore
	// did: its emulator's settings in its environment.
	c2 := pgtest.New(t, pgtest.Options{NoInit: true, Env: srv.Env()})
	out = mustWalvault(t, tg, gcsEnv, "restore", c2.Data, "--identity-file", f.identity, "--backup", f.full, "--fallback-store", fb.URL)
	verifyBackup(t, c2, true)
	r2 := &restored{Cluster: c2, Stdout: out}
	for _, want := range []string{"from the fallback store: " + gone + " from " + fb.URL + " (missing in " + url,
		"from the fallback store: " + damaged + " from " + fb.URL + " (damaged in " + url,
		"--fallback-store=" + fb.URL} {
		if !strings.Contains(r2.Stdout, want) {
			t.Errorf("restore --fallback-store did not print %q:\n%s", want, r2.Stdout)
		}
	}
	r2.AppendConf("archive_mode = off")
	startAndRecover(t, r2.Cluster)
	compareChecksums(t, tableChecksums(t, r2.Cluster), f.want)
	if log := r2.LogTail(400); !strings.Contains(log, "read from the fallback store") || !strings.Contains(log, seg) {
		t.Errorf("recovery did not say it fetched %s from the fallback store:\n%s", seg, log)
	}
}

// TestCheckLockCopyStores: check with lock-days against versitygw's
// POSIX backend, which implements S3 Object Lock: the store's bucket has
// it (ok), the copy-store's bucket has not (FAIL, with the fix), and both
// are probed. No PostgreSQL here: its checks fail or skip as documented.
func TestCheckLockCopyStores(t *testing.T) {
	srv := sharedServer(t, "s3")
	locked := srv.NewLockedTarget(t)
	plain := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: locked.URL}
	code, out, errOut := tg.walvault(t, srv.Env(), "check", "--store", locked.URL, "--lock-days", "2", "--lock-mode", "governance",
		"--copy-store", plain.URL, "--dbname", "host=/nonexistent-walvault-check connect_timeout=2")
	if code != 7 {
		t.Fatalf("check: exit %d, want 7 (no PostgreSQL)\n%s%s", code, out, errOut)
	}
	// Each line: status, check, detail (the store's URL first).
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 && (f[0] == "ok" || f[0] == "FAIL") {
			name := f[1]
			if f[2] == "lock" {
				name += " lock"
			}
			lines[name] = l
		}
	}
	for name, want := range map[string]string{
		"store":           "ok    store ",
		"store lock":      "S3 Object Lock is on; every object walvault writes is locked (governance for 2d)",
		"copy-store":      "ok    copy-store ",
		"copy-store lock": "lock-days 2d asks for S3 Object Lock, which it lacks",
	} {
		if !strings.Contains(lines[name], want) {
			t.Errorf("check's %s line lacks %q:\n%s", name, want, out)
		}
	}
	if !strings.Contains(lines["store"], locked.URL) || !strings.Contains(lines["copy-store"], plain.URL) || !strings.HasPrefix(lines["copy-store lock"], "FAIL") ||
		!strings.Contains(lines["copy-store lock"], plain.URL) || !strings.HasPrefix(lines["store lock"], "ok") {
		t.Errorf("check's lines name the wrong store or status:\n%s", out)
	}
	if !strings.Contains(out, "fix: enable it on the bucket or container (README: Immutable objects), or set lock-days 0") {
		t.Errorf("no fix for the copy-store's lock:\n%s", out)
	}
}

// TestDeleteLocked: an archive in a versitygw bucket with S3 Object Lock
// (its POSIX backend enforces it). The WAL is locked for an hour; of three
// full backups, the first and the last for 20 s, the middle one for an
// hour. Once the short locks have passed, delete --retain-full 1 plans
// around the locks: the first backup goes, the middle one is kept saying
// until when (with the WAL it needs), the locked WAL older than it is kept
// saying so, and nothing locked is asked of the server, which would refuse
// it (it does: a direct delete fails). delete NAME of the locked backup
// is refused with its date.
func TestDeleteLocked(t *testing.T) {
	srv := sharedServer(t, "s3")
	raw := srv.NewLockedTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv, opts: raw.Options}
	c, _, recipient := archivingCluster(t, tg, "WALVAULT_LOCK_DAYS=1h")
	c.Run("pgbench", "-i", "-s", "1", "-q")
	push := func(lock string) string {
		return backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint", "--lock-days", lock))
	}
	b1 := push("20s")
	c.Run("pgbench", "-n", "-t", "200")
	b2 := push("1h")
	c.Run("pgbench", "-n", "-t", "200")
	b3 := push("20s")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)
	time.Sleep(22 * time.Second) // b1's and b3's locks pass

	st := raw.Open(t)
	info, err := st.Stat(t.Context(), repo.BackupKey(b2, repo.ManifestFile))
	if err != nil || time.Until(info.RetainUntil) < 50*time.Minute {
		t.Fatalf("%s's manifest: retain until %v (%v), want about an hour from now", b2, info.RetainUntil, err)
	}
	if err := st.Delete(t.Context(), repo.BackupKey(b2, repo.ManifestFile)); !errors.Is(err, cloud.ErrLocked) {
		t.Fatalf("a direct delete of a locked manifest: %v, want the server's refusal (ErrLocked)", err)
	}

	code, _, e := tg.walvault(t, nil, "delete", b2, "--confirm")
	if code != 5 || !strings.Contains(e, "delete "+b2+" refused: it is locked until ") || !strings.Contains(e, "S3 Object Lock") {
		t.Fatalf("delete of the locked backup: exit %d, want 5 with its date:\n%s", code, e)
	}
	plan := mustWalvault(t, tg, nil, "delete", "--retain-full", "1", "--json")
	var out struct {
		Plan struct {
			Backups []struct {
				Name    string   `json:"name"`
				Delete  bool     `json:"delete"`
				Reasons []string `json:"reasons"`
			} `json:"backups"`
			WAL []struct {
				Delete  bool   `json:"delete"`
				Reason  string `json:"reason"`
				Objects int    `json:"objects"`
			} `json:"wal"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(plan), &out); err != nil {
		t.Fatalf("%v\n%s", err, plan)
	}
	p := out.Plan
	got := map[string]string{}
	for _, b := range p.Backups {
		got[b.Name] = fmt.Sprintf("%v %s", b.Delete, strings.Join(b.Reasons, "; "))
	}
	if !strings.HasPrefix(got[b1], "true") || !strings.HasPrefix(got[b2], "false") || !strings.Contains(got[b2], "locked until") || !strings.HasPrefix(got[b3], "false") {
		t.Fatalf("the plan's backups: %q\n%s", got, plan)
	}
	lockedWAL, deletedWAL := 0, 0
	for _, r := range p.WAL {
		switch {
		case r.Delete:
			deletedWAL += r.Objects
		case strings.HasPrefix(r.Reason, "locked (S3 Object Lock)") && strings.Contains(r.Reason, "the latest until "):
			lockedWAL += r.Objects
		}
	}
	if lockedWAL == 0 || deletedWAL != 0 {
		t.Fatalf("the plan's WAL: %d locked object(s) kept, %d to delete; want the WAL before %s kept as locked, none deleted\n%s", lockedWAL, deletedWAL, b2, plan)
	}
	done := mustWalvault(t, tg, nil, "delete", "--retain-full", "1", "--confirm")
	t.Logf("delete:\n%s", done)
	list := mustWalvault(t, tg, nil, "backup-list")
	if strings.Contains(list, b1) || !strings.Contains(list, b2) || !strings.Contains(list, b3) {
		t.Fatalf("after delete, want %s gone and %s, %s kept:\n%s", b1, b2, b3, list)
	}
}
