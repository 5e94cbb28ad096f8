package integration

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	fp "github.com/walvault/walvault/integration/faultproxy"
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// runLoad runs pgbench in the background until the returned stop is called.
func runLoad(t *testing.T, c *pgtest.Cluster) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "pgbench"), "-n", "-c", "2", "-T", "5")
			cmd.Env = append(os.Environ(), c.PGEnv()...)
			_ = cmd.Run()
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// s3Objects lists the WAL segment objects under the target's prefix.
func s3Segments(t *testing.T, srv *testenv.Server, raw *testenv.Target) map[string]bool {
	t.Helper()
	have := map[string]bool{}
	pager := s3.NewListObjectsV2Paginator(srv.S3Client(), &s3.ListObjectsV2Input{Bucket: aws.String(raw.Bucket), Prefix: aws.String(raw.Prefix + "/wal/")})
	for pager.HasMorePages() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			have[filepath.Base(aws.ToString(o.Key))] = true
		}
	}
	return have
}

// checkStoreHasArchived checks that every segment PostgreSQL marked
// archived is in the store and byte-identical to pg_wal's copy.
func checkStoreHasArchived(t *testing.T, tg *target, srv *testenv.Server, raw *testenv.Target, c *pgtest.Cluster, identity string) []string {
	t.Helper()
	done := archivedSegments(t, c)
	have := s3Segments(t, srv, raw)
	for _, n := range done {
		if !have[n] {
			t.Errorf("%s is marked archived (.done) but not in the store", n)
		}
	}
	var segs []string
	for o := range have {
		if wf, err := archive.ParseWALName(o); err == nil && wf.Kind == archive.KindSegment {
			segs = append(segs, o)
		}
	}
	checkArchiveMatches(t, tg, c, identity, segs)
	return done
}

// TestAgentKill archives a pgbench run through walvault-wal and the agent
// on the S3 server (uploads slowed by the proxy) while SIGKILL strikes the
// agent at random moments, each one with uploads in flight (its own
// counter says so), and a new agent takes over. After every kill, every
// durable marker the agent left names an object the store holds with the
// file's checksum. Afterwards every archived segment is in the store,
// byte-identical, and a PITR restore from a backup taken before the kills
// reaches the last commit.
func TestAgentKill(t *testing.T) {
	const wantHits = 20
	srv := testenv.StartT(t, testenv.S3)
	raw := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv, opts: raw.Options}
	p := fp.Start(t, srv.Addr)
	p.SetRule(fp.Always(fp.Match("PUT", "/wal/"), fp.Fault{Kind: fp.Throttle, Dir: fp.Up, Rate: 2 << 20}))
	c, identity, recipient := agentCluster(t, tg, "AWS_ENDPOINT_URL_S3="+p.URL(), "WALVAULT_UPLOAD_CONCURRENCY=4")
	pgWal := filepath.Join(c.Data, "pg_wal")
	sock := proto.DefaultSocket(pgWal)
	durable := filepath.Join(pgWal, ".walvault", "agent", "durable")
	ctx := context.Background()

	markersChecked := 0
	checkMarkers := func() {
		ents, _ := os.ReadDir(durable)
		for _, e := range ents {
			wf, err := archive.ParseWALName(e.Name())
			if err != nil {
				continue // a marker being written
			}
			got, err := storedChecksum(ctx, srv, raw.Bucket, cloud.JoinKey(raw.Prefix, repo.WALKey(wf)))
			if err != nil {
				t.Errorf("checking marker %s: %v", e.Name(), err)
				continue
			}
			want, err := fileChecksum(filepath.Join(pgWal, e.Name()), got)
			if err != nil {
				continue // recycled since
			}
			markersChecked++
			if got != want {
				t.Errorf("%s is marked durable but the store holds %q, want checksum %s", e.Name(), got, want)
			}
		}
	}

	c.Run("pgbench", "-i", "-s", "1", "-q")
	mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint")
	a := startAgent(t, c, nil)
	stopLoad := runLoad(t, c)
	defer stopLoad()

	hits, maxInFlight := 0, int64(0)
	deadline := time.Now().Add(120 * time.Second)
	for hits < wantHits && time.Now().Before(deadline) {
		time.Sleep(time.Duration(10+rand.IntN(90)) * time.Millisecond)
		st, err := agentStatus(t, sock)
		if err != nil || st.Uploading == 0 {
			continue
		}
		if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			continue
		}
		<-a.done
		hits++
		maxInFlight = max(maxInFlight, st.Uploading)
		checkMarkers()
		a = startAgent(t, c, nil)
	}
	stopLoad()
	t.Logf("%d kills with uploads in flight (up to %d at once); %d marker checks", hits, maxInFlight, markersChecked)
	if hits < wantHits {
		t.Fatalf("only %d kills hit the agent mid-upload in 120 s, want %d\n%s", hits, wantHits, c.LogTail(40))
	}
	p.SetRule(nil)
	want := tableChecksums(t, c)
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	checkMarkers()
	done := checkStoreHasArchived(t, tg, srv, raw, c, identity)
	if len(done) < 20 {
		t.Fatalf("only %d segments archived", len(done))
	}
	if st, err := agentStatus(t, sock); err != nil || st.ReadyCount != 0 {
		t.Errorf("backlog after the kills: %+v, %v", st, err)
	}
	a.stop(t)

	r := restoreInto(t, tg, tg.Env, identity)
	r.AppendConf("archive_mode = off")
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
}

// TestAgentStoreOutage cuts the agent off the S3 server under load: pushes
// fail (PostgreSQL keeps its files and retries), a client killed while it
// waits never counts as a success, and once the store is back the agent
// catches up with nothing lost.
func TestAgentStoreOutage(t *testing.T) {
	srv := testenv.StartT(t, testenv.S3)
	raw := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv, opts: raw.Options}
	p := fp.Start(t, srv.Addr)
	c, identity, _ := agentCluster(t, tg, "AWS_ENDPOINT_URL_S3="+p.URL(), "WALVAULT_IO_TIMEOUT=3s")
	maddr := "127.0.0.1:" + strconv.Itoa(pgtest.FreePort(t))
	a := startAgent(t, c, nil, "--metrics-listen="+maddr)
	c.Run("pgbench", "-i", "-s", "1", "-q")
	stopLoad := runLoad(t, c)
	defer stopLoad()
	time.Sleep(2 * time.Second)

	p.SetRule(fp.Always(func(fp.Request) bool { return true }, fp.Fault{Kind: fp.Reset}))
	p.SetConnRule(func(int) fp.Fault { return fp.Fault{Kind: fp.Reset} })
	time.Sleep(2 * time.Second)
	// A client waiting for a push the store cannot take, killed: a signal
	// death, never exit 0.
	seg := c.SwitchWAL()
	cl := c.Owner.Cmd(context.Background(), pgtest.WalvaultWal(t), "push", filepath.Join(c.Data, "pg_wal", seg))
	cl.Env = append(os.Environ(), c.Env...)
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = cl.Process.Signal(syscall.SIGKILL)
	if err := cl.Wait(); err == nil || cl.ProcessState.Success() {
		t.Fatalf("a client killed while the store was down exited %v", cl.ProcessState)
	}
	time.Sleep(6 * time.Second)
	p.SetConnRule(nil)
	p.SetRule(nil)
	stopLoad()

	last := c.SwitchWAL()
	c.WaitArchived(last, 120*time.Second)
	m := scrape(t, maddr)
	t.Logf("after the outage: %v upload errors, %v retries, %v segments archived, PostgreSQL saw %d failures", m["walvault_agent_upload_errors_total"], m["walvault_agent_upload_retries_total"], m["walvault_agent_segments_archived_total"], archiverFailures(t, c))
	if m["walvault_agent_upload_errors_total"] < 1 {
		t.Fatalf("no upload error counted during the outage: %v", m)
	}
	checkStoreHasArchived(t, tg, srv, raw, c, identity)
	if code := a.stop(t); code != 0 {
		t.Fatalf("agent exit %d", code)
	}
}
