package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	fp "github.com/walvault/walvault/integration/faultproxy"
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// killsHit totals the SIGKILLs that struck a wal-push mid-upload;
// objectsLost the archived segments missing from the store afterwards.
var killsHit, objectsLost atomic.Int64

// victim is a wal-push process caught in the middle of an upload.
type victim struct {
	pid  int
	file string     // the %p it was given
	req  fp.Request // the upload in flight on one of its connections
	sent int64      // request bytes the proxy had forwarded
}

// procArgs returns a process's argv, or nil.
func procArgs(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// walPushProcesses lists the pids running bin wal-push.
func walPushProcesses(bin string) map[int][]string {
	out := map[int][]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if a := procArgs(pid); len(a) >= 3 && a[0] == bin && a[1] == "wal-push" {
			out[pid] = a
		}
	}
	return out
}

// socketInodes returns the inodes of pid's sockets.
func socketInodes(pid int) map[string]bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	out := map[string]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			out[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return out
}

// clientPorts maps socket inodes of connections to remotePort (from
// /proc/net/tcp) to their local ports.
func clientPorts(remotePort int) map[string]int {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || !strings.Contains(fs[1], ":") {
			continue
		}
		_, rp, _ := strings.Cut(fs[2], ":")
		_, lp, _ := strings.Cut(fs[1], ":")
		r, err1 := strconv.ParseInt(rp, 16, 32)
		l, err2 := strconv.ParseInt(lp, 16, 32)
		if err1 == nil && err2 == nil && int(r) == remotePort {
			out[fs[9]] = int(l)
		}
	}
	return out
}

// uploadingWalPush finds the uploads (PUT or POST) in flight through p of
// wal-push processes of bin: request bytes forwarded, no answer yet.
func uploadingWalPush(bin string, p *fp.Proxy) []victim {
	_, ps, _ := strings.Cut(p.Addr(), ":")
	proxyPort, _ := strconv.Atoi(ps)
	ports := clientPorts(proxyPort)
	var out []victim
	for pid, args := range walPushProcesses(bin) {
		for ino := range socketInodes(pid) {
			port, ok := ports[ino]
			if !ok {
				continue
			}
			st, ok := p.State(port)
			if ok && st.Connected && !st.Answered && st.Sent > 0 && (st.Request.Method == "PUT" || st.Request.Method == "POST") {
				out = append(out, victim{pid: pid, file: args[len(args)-1], req: st.Request, sent: st.Sent})
			}
		}
	}
	return out
}

// storedChecksum returns the content checksum key's metadata states, as
// "sha256:HEX" (walvault-sha256) or "crc32c:HEX" (walvault-crc32c, which WAL
// stored beside the digest of its encoded stream has), or "" if the object
// does not exist.
func storedChecksum(ctx context.Context, srv *testenv.Server, bucket, key string) (string, error) {
	out, err := srv.S3Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") || strings.Contains(err.Error(), "404") {
			return "", nil
		}
		return "", err
	}
	for k, v := range out.Metadata {
		switch {
		case strings.EqualFold(k, repo.MetaSHA256):
			return "sha256:" + v, nil
		case strings.EqualFold(k, repo.MetaCRC32C):
			return "crc32c:" + v, nil
		}
	}
	return "", fmt.Errorf("%s has no checksum metadata", key)
}

// fileChecksum returns path's checksum in the form of stored (see
// storedChecksum; SHA-256 when stored is "").
func fileChecksum(path, stored string) (string, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- the test's pg_wal
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(stored, "crc32c:") {
		return fmt.Sprintf("crc32c:%08x", crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))), nil
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:]), nil
}

// TestKillWALPush archives a pgbench run through wal-push (1 MiB
// segments, --upload-concurrency 4, so other .ready segments are pushed
// ahead) while SIGKILL strikes wal-push processes at random moments, each
// one caught with an upload in flight (the proxy, which slows uploads to
// make that likely, confirms request bytes were sent and no answer had
// come). Afterwards every segment PostgreSQL marked archived, and every
// object in the store, is whole and byte-identical to pg_wal's copy, and
// no pushed-ahead marker ever existed for an object that was not whole.
func TestKillWALPush(t *testing.T) {
	const wantHits = 25
	srv := testenv.StartT(t, testenv.S3)
	raw := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv, opts: raw.Options}
	p := fp.Start(t, srv.Addr)
	// 2 MiB/s per upload: a compressed 1 MiB segment takes ~100-200 ms.
	p.SetRule(fp.Always(fp.Match("PUT", "/wal/"), fp.Fault{Kind: fp.Throttle, Dir: fp.Up, Rate: 2 << 20}))
	c, identity, recipient := archivingCluster(t, tg, "AWS_ENDPOINT_URL_S3="+p.URL(), "WALVAULT_UPLOAD_CONCURRENCY=4")
	bin := pgtest.Walvault(t)
	pgWal := filepath.Join(c.Data, "pg_wal")
	pushedDir := filepath.Join(pgWal, ".walvault", "pushed")
	ctx := context.Background()

	// checkMarkers verifies that every pushed-ahead marker names a segment
	// whose object is in the store with the segment's checksum.
	markersChecked := 0
	checkMarkers := func() {
		ents, _ := os.ReadDir(pushedDir)
		for _, e := range ents {
			name := e.Name()
			if strings.Contains(name, ".tmp") {
				continue
			}
			wf, err := archive.ParseWALName(name)
			if err != nil {
				t.Errorf("unexpected file in %s: %s", pushedDir, name)
				continue
			}
			got, err := storedChecksum(ctx, srv, raw.Bucket, cloud.JoinKey(raw.Prefix, repo.WALKey(wf)))
			if err != nil {
				t.Errorf("checking marker %s: %v", name, err)
				continue
			}
			want, err := fileChecksum(filepath.Join(pgWal, name), got)
			if err != nil {
				continue // recycled by PostgreSQL since: the marker is stale, not false
			}
			if _, err := os.Stat(filepath.Join(pushedDir, name)); err != nil {
				continue // consumed meanwhile
			}
			markersChecked++
			if got != want {
				t.Errorf("%s is marked pushed ahead but the store holds %q, want checksum %s", name, got, want)
			}
		}
	}

	// A wrapper turns a killed wal-push into a plain failure: PostgreSQL
	// then retries within a second, where a command that dies on a signal
	// makes its archiver exit and restart only after 10 s.
	wrapper := filepath.Join(pgtest.WorkDir(t), "archive.sh")
	script := fmt.Sprintf("#!/bin/sh\n%s wal-push \"$1\"\nrc=$?\n[ $rc -gt 125 ] && exit 1\nexit $rc\n", bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil { // #nosec G306 -- a script postgres runs
		t.Fatal(err)
	}
	c.Psql(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s %%p'", wrapper))
	c.Psql("SELECT pg_reload_conf()")
	c.Run("pgbench", "-i", "-s", "1", "-q")
	// A base backup before the kills, for the PITR restore at the end.
	mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint")
	benchCtx, stopBench := context.WithCancel(ctx)
	defer stopBench()
	var benchWG sync.WaitGroup
	benchWG.Add(1)
	go func() {
		defer benchWG.Done()
		for benchCtx.Err() == nil {
			cmd := exec.CommandContext(benchCtx, filepath.Join(c.Bin, "pgbench"), "-n", "-c", "2", "-T", "5")
			cmd.Env = append(os.Environ(), c.PGEnv()...)
			_ = cmd.Run()
		}
	}()

	hits, hitCurrent := 0, 0
	hitFiles := map[string]int{}
	deadline := time.Now().Add(90 * time.Second)
	for hits < wantHits && time.Now().Before(deadline) {
		time.Sleep(time.Duration(10+rand.IntN(90)) * time.Millisecond)
		vs := uploadingWalPush(bin, p)
		if len(vs) == 0 {
			continue
		}
		// Most of the time, strike only a process caught uploading the
		// segment PostgreSQL asked for (which lets pushes ahead complete
		// and the archiver move on to fresh segments); else any upload.
		if rand.IntN(3) > 0 {
			var own []victim
			for _, v := range vs {
				if strings.Contains(v.req.Target, filepath.Base(v.file)) {
					own = append(own, v)
				}
			}
			vs = own
			if len(vs) == 0 {
				continue
			}
		}
		v := vs[rand.IntN(len(vs))]
		if err := syscall.Kill(v.pid, syscall.SIGKILL); err != nil {
			continue // it finished in the meantime: not a hit
		}
		hits++
		hitFiles[filepath.Base(v.file)]++
		if strings.Contains(v.req.Target, filepath.Base(v.file)) {
			hitCurrent++
		}
		if hits <= 5 {
			t.Logf("kill %d: pid %d (wal-push %s) during %s %s after %d request bytes", hits, v.pid, filepath.Base(v.file), v.req.Method, v.req.Target, v.sent)
		}
		// Right after a kill is when a false marker would show.
		time.Sleep(10 * time.Millisecond)
		checkMarkers()
	}
	stopBench()
	benchWG.Wait()
	t.Logf("%d kills hit wal-push mid-upload (%d during the upload of the segment PostgreSQL asked for, %d while pushing ahead; %d distinct wal-push arguments); %d marker checks", hits, hitCurrent, hits-hitCurrent, len(hitFiles), markersChecked)
	if hits < wantHits {
		t.Log(c.LogTail(80))
		t.Fatalf("only %d kills hit a wal-push mid-upload in 90 s, want %d", hits, wantHits)
	}
	killsHit.Add(int64(hits))

	p.SetRule(nil)
	last := c.SwitchWAL()
	c.WaitArchived(last, 90*time.Second)
	if f := c.Psql("SELECT failed_count FROM pg_stat_archiver"); f == "0" {
		t.Fatal("PostgreSQL saw no failed archive_command: the kills did not hit")
	}
	checkMarkers()

	done := archivedSegments(t, c)
	if len(done) < 20 {
		t.Fatalf("only %d segments archived", len(done))
	}
	checkKilledArchive(t, srv, raw, tg, c, identity, done)
	leftover, _ := filepath.Glob(filepath.Join(pgWal, ".walvault-tmp-*"))
	if len(leftover) > 0 {
		t.Errorf("wal-push left files in pg_wal: %v", leftover)
	}

	// The archive the kills left behind restores: the backup from before
	// them, replayed to the end of the archive, has every committed row.
	want := tableChecksums(t, c)
	c.WaitArchived(c.SwitchWAL(), 90*time.Second)
	r := restoreInto(t, tg, tg.Env, identity)
	r.AppendConf("archive_mode = off")
	startAndRecover(t, r.Cluster)
	compareChecksums(t, tableChecksums(t, r.Cluster), want)
}

// checkKilledArchive: every object under wal/ in raw's bucket is whole and
// equal to pg_wal's copy, and every segment PostgreSQL marked archived
// (done) has one.
func checkKilledArchive(t *testing.T, srv *testenv.Server, raw *testenv.Target, tg *target, c *pgtest.Cluster, identity string, done []string) {
	t.Helper()
	ctx := context.Background()
	var objects []string
	pager := s3.NewListObjectsV2Paginator(srv.S3Client(), &s3.ListObjectsV2Input{Bucket: aws.String(raw.Bucket), Prefix: aws.String(raw.Prefix + "/wal/")})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			objects = append(objects, filepath.Base(aws.ToString(o.Key)))
		}
	}
	have := map[string]bool{}
	for _, o := range objects {
		have[o] = true
	}
	lost := 0
	for _, n := range done {
		if !have[n] {
			lost++
			t.Errorf("%s is marked archived (.done) but not in the store", n)
		}
	}
	objectsLost.Add(int64(lost))
	var segs []string
	for _, o := range objects {
		if wf, err := archive.ParseWALName(o); err == nil && wf.Kind == archive.KindSegment {
			segs = append(segs, o)
		}
	}
	checkArchiveMatches(t, tg, c, identity, segs)
	t.Logf("%d segments archived, %d objects in the store; objects lost: %d", len(done), len(objects), lost)
}
