package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/agent/proto"
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
	backlog, lastErr, _ := copyStats(t, sock)
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
