package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	fp "github.com/walvault/walvault/integration/faultproxy"
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// archivingCluster starts PostgreSQL 15 with 1 MiB segments (so pgbench
// fills dozens cheaply) archiving through walvault wal-push to tg,
// encrypted to a fresh key. It keeps its WAL (wal_keep_size) so tests can
// compare the archive with the originals.
func archivingCluster(t *testing.T, tg *target, extraEnv ...string) (*pgtest.Cluster, string, string) {
	t.Helper()
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	env := append(append([]string{"WALVAULT_RECIPIENT=" + recipient, "AWS_EC2_METADATA_DISABLED=true"}, tg.Env...), extraEnv...)
	c := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Env:        env,
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s wal-push %%p'", pgtest.Walvault(t)),
			"wal_keep_size = '1GB'",
			"checkpoint_timeout = '1h'",
		},
	})
	c.Start()
	return c, identity, recipient
}

// archivedSegments lists the segments PostgreSQL has marked archived.
func archivedSegments(t *testing.T, c *pgtest.Cluster) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.Data, "pg_wal", "archive_status"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".done"); ok {
			if f, err := archive.ParseWALName(n); err == nil && f.Kind == archive.KindSegment {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// checkArchiveMatches fetches every archived segment with wal-fetch and
// compares it with PostgreSQL's own copy.
func checkArchiveMatches(t *testing.T, tg *target, c *pgtest.Cluster, identity string, names []string) {
	t.Helper()
	out := pgtest.WorkDir(t)
	for _, n := range names {
		dest := filepath.Join(out, n)
		code, _, stderr := tg.walvault(t, []string{"WALVAULT_IDENTITY_FILE=" + identity}, "wal-fetch", "--prefetch", "0", n, dest)
		if code != 0 {
			t.Fatalf("wal-fetch %s: exit %d: %s", n, code, stderr)
		}
		got, _ := os.ReadFile(dest)
		want, err := os.ReadFile(filepath.Join(c.Data, "pg_wal", n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: fetched copy differs from PostgreSQL's (%d vs %d bytes)", n, len(got), len(want))
		}
		_ = os.Remove(dest)
	}
}

func TestWALArchiving(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) { testWALArchiving(t, newTarget(t, kind)) })
	}
}

func testWALArchiving(t *testing.T, tg *target) {
	c, identity, _ := archivingCluster(t, tg)
	c.Run("pgbench", "-i", "-s", "2", "-q")
	last := c.SwitchWAL()
	c.WaitArchived(last, 90*time.Second)
	count, _ := strconv.Atoi(c.Psql("SELECT archived_count FROM pg_stat_archiver"))
	if failed := c.Psql("SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("%s archive_command failures:\n%s", failed, c.LogTail(20))
	}
	names := archivedSegments(t, c)
	if count < 20 || len(names) < 20 {
		t.Fatalf("only %d segments archived (%d marked done); the test wants at least 20", count, len(names))
	}
	checkArchiveMatches(t, tg, c, identity, names)

	seg := names[len(names)/2]
	key := repo.WALKey(archive.WALFile{Name: seg, Kind: archive.KindSegment})
	orig, _ := os.ReadFile(filepath.Join(c.Data, "pg_wal", seg))
	scratch := pgtest.WorkDir(t)
	copyPath := filepath.Join(scratch, seg)
	if err := os.WriteFile(copyPath, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	recipientEnv := []string{"WALVAULT_IDENTITY_FILE=" + identity}

	t.Run("same content again succeeds", func(t *testing.T) {
		code, _, stderr := tg.walvault(t, nil, "wal-push", copyPath)
		if code != 0 || !strings.Contains(stderr, "identical content") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
	t.Run("different content fails and changes nothing", func(t *testing.T) {
		altered := append([]byte(nil), orig...)
		altered[len(altered)/2] ^= 0xff
		if err := os.WriteFile(copyPath, altered, 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := tg.walvault(t, nil, "wal-push", copyPath)
		if code != 5 || !strings.Contains(stderr, "different checksum") {
			t.Fatalf("exit %d (want 5): %s", code, stderr)
		}
		checkArchiveMatches(t, tg, c, identity, []string{seg})
	})
	t.Run("missing file exits 1", func(t *testing.T) {
		code, _, stderr := tg.walvault(t, recipientEnv, "wal-fetch", "--prefetch", "0", "00000009.history", filepath.Join(scratch, "h"))
		if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("exit %d (want 1), stderr %q (want one line)", code, stderr)
		}
	})
	t.Run("wrong identity fails, DEST absent", func(t *testing.T) {
		wrong, _ := keygen(t, pgtest.WorkDir(t))
		dest := filepath.Join(scratch, "wrong")
		code, _, stderr := tg.walvault(t, []string{"WALVAULT_IDENTITY_FILE=" + wrong}, "wal-fetch", "--prefetch", "0", seg, dest)
		// Present but undecryptable: recovery must stop, not end (255).
		if code != 255 || !strings.Contains(stderr, "identity") {
			t.Fatalf("exit %d (want 255): %s", code, stderr)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Fatal("DEST written")
		}
	})
	t.Run("flipped byte in the store fails, DEST absent", func(t *testing.T) {
		flipByte(t, tg.ObjectPath(key))
		dest := filepath.Join(scratch, "corrupt")
		code, _, stderr := tg.walvault(t, recipientEnv, "wal-fetch", "--prefetch", "0", seg, dest)
		if code != 255 || !strings.Contains(stderr, seg) {
			t.Fatalf("exit %d (want 255): %s", code, stderr)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Fatal("DEST written")
		}
	})
}

// TestWALServerOutage stops the S3 server while PostgreSQL archives:
// wal-push must fail (PostgreSQL keeps the segment and retries), and once
// the server is back every segment arrives, none lost.
func TestWALServerOutage(t *testing.T) {
	tg := newTarget(t, "s3")
	c, identity, _ := archivingCluster(t, tg)
	c.Run("pgbench", "-i", "-s", "1", "-q")
	c.WaitArchived(c.SwitchWAL(), 60*time.Second)

	if err := tg.Server.Stop(); err != nil {
		t.Fatal(err)
	}
	c.Run("pgbench", "-t", "300", "-c", "2", "-n")
	last := c.SwitchWAL()
	deadline := time.Now().Add(60 * time.Second)
	for c.Psql("SELECT failed_count FROM pg_stat_archiver") == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("archiving did not fail while the S3 server was down:\n%s", c.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	log := c.LogTail(200)
	if !strings.Contains(log, "archive command failed with exit code 3") {
		t.Fatalf("want wal-push to exit 3 (store unreachable); server log:\n%s", log)
	}
	if err := tg.Server.Restart(); err != nil {
		t.Fatal(err)
	}
	c.WaitArchived(last, 120*time.Second)
	names := archivedSegments(t, c)
	checkArchiveMatches(t, tg, c, identity, names)
}

// TestWALBadStore: a wrong secret, a missing bucket and an endpoint where
// nothing listens each fail wal-push and wal-fetch with exit 3 and one line
// naming the store, promptly, without printing the secret.
func TestWALBadStore(t *testing.T) {
	tg := newTarget(t, "s3")
	dir := pgtest.WorkDir(t)
	c := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}})
	first, err := filepath.Glob(filepath.Join(c.Data, "pg_wal", "0000000100000000000000*"))
	if err != nil || len(first) == 0 {
		t.Fatalf("no WAL segment after initdb: %v", err)
	}
	name := filepath.Base(first[0])
	seg := filepath.Join(dir, name)
	data, err := os.ReadFile(first[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	const badSecret = "not-the-secret-3c9e1f"
	closed := fmt.Sprintf("http://127.0.0.1:%d", pgtest.FreePort(t))
	cases := []struct {
		name string
		env  []string
		msg  string
	}{
		{"wrong secret", []string{"AWS_SECRET_ACCESS_KEY=" + badSecret}, "AWS_SECRET_ACCESS_KEY"},
		{"missing bucket", []string{"WALVAULT_STORE=s3://no-such-bucket-wv/x"}, "no-such-bucket-wv"},
		{"nothing listening", []string{"AWS_ENDPOINT_URL_S3=" + closed, "AWS_ENDPOINT_URL=" + closed}, "127.0.0.1"},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			for _, args := range [][]string{
				{"wal-push", seg},
				{"wal-fetch", "--prefetch", "0", name, filepath.Join(dir, "out")},
			} {
				start := time.Now()
				code, stdout, stderr := tg.walvault(t, cs.env, args...)
				took := time.Since(start)
				// wal-push: the store's code, and PostgreSQL retries; wal-fetch
				// in an archive recovery: 255, which stops recovery rather
				// than end it at a store that cannot be read.
				want := 3
				if args[0] == "wal-fetch" {
					want = 255
				}
				if code != want || !strings.Contains(stderr, cs.msg) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
					t.Fatalf("%s: exit %d (want %d), stderr %q (want one line mentioning %q)", args[0], code, want, stderr, cs.msg)
				}
				if strings.Contains(stdout+stderr, badSecret) || strings.Contains(stdout+stderr, "walvault-test-secret") {
					t.Fatalf("%s printed a secret: %q", args[0], stderr)
				}
				if took > 20*time.Second {
					t.Fatalf("%s took %s to give up; PostgreSQL would wait that long per segment", args[0], took)
				}
				if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
					t.Fatal("DEST written")
				}
			}
		})
	}
}

// TestWALPushRequests: archiving a new segment to S3 costs one request,
// the conditional PUT: the first push found that the server refuses a
// second create of a key (it asked to create cluster.json again), so no
// HEAD of the key comes first, and nothing tells a missing bucket from a
// missing object either: the PUT would report a missing bucket itself
// (TestWALBadStore).
func TestWALPushRequests(t *testing.T) {
	srv := testenv.StartT(t, testenv.S3)
	p := fp.Start(t, srv.Addr)
	raw := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv}
	env := []string{"AWS_ENDPOINT_URL_S3=" + p.URL()}
	c := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}})
	first, err := filepath.Glob(filepath.Join(c.Data, "pg_wal", "0000000100000000000000*"))
	if err != nil || len(first) == 0 {
		t.Fatalf("no WAL segment after initdb: %v", err)
	}
	data, err := os.ReadFile(first[0])
	if err != nil {
		t.Fatal(err)
	}
	// The next segment: the same pages, its first page header moved on.
	wf, err := archive.ParseWALName(filepath.Base(first[0]))
	if err != nil {
		t.Fatal(err)
	}
	const segSize = 1 << 20
	dir := pgtest.WorkDir(t)
	segA := filepath.Join(dir, filepath.Base(first[0]))
	segB := filepath.Join(dir, wf.Next(segSize))
	next := bytes.Clone(data)
	binary.LittleEndian.PutUint64(next[8:], (wf.SegNo(segSize)+1)*segSize)
	for path, b := range map[string][]byte{segA: data, segB: next} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, stderr := tg.walvault(t, env, "wal-push", segA); code != 0 {
		t.Fatalf("wal-push %s: exit %d: %s", segA, code, stderr)
	}
	before := len(p.Requests())
	if code, _, stderr := tg.walvault(t, env, "wal-push", segB); code != 0 {
		t.Fatalf("wal-push %s: exit %d: %s", segB, code, stderr)
	}
	var heads, puts, other []string
	for _, r := range p.Requests()[before:] {
		switch {
		case r.Method == "HEAD" && strings.HasSuffix(strings.SplitN(r.Target, "?", 2)[0], "/"+filepath.Base(segB)):
			heads = append(heads, r.String())
		case r.Method == "PUT" && strings.Contains(r.Target, "/"+filepath.Base(segB)):
			puts = append(puts, r.String())
		default:
			other = append(other, r.String())
		}
	}
	if len(heads) != 0 || len(puts) != 1 || len(other) != 0 {
		t.Fatalf("pushing a new segment: HEAD %v, PUT %v, other requests %v; want one PUT of the segment, nothing else", heads, puts, other)
	}
}
