package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	fp "github.com/walvault/walvault/integration/faultproxy"
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// faultsInjected totals the faults that struck in this test binary, for
// the closing report.
var faultsInjected atomic.Int64

// realSegmentsT copies n full segments of real WAL (pgbench's load) of the
// given size in MiB from a throwaway cluster into a directory.
func realSegmentsT(t *testing.T, n, segMiB int) (string, []string) {
	t.Helper()
	opts := pgtest.Options{Conf: []string{"max_wal_size = '4GB'", "wal_keep_size = '4GB'"}}
	if segMiB != 16 {
		opts.InitdbArgs = []string{fmt.Sprintf("--wal-segsize=%d", segMiB)}
	}
	c := pgtest.New(t, opts)
	c.Start()
	c.Run("pgbench", "-i", "-s", fmt.Sprint(1+n*segMiB/16), "-q")
	c.SwitchWAL()
	ents, _ := os.ReadDir(filepath.Join(c.Data, "pg_wal"))
	dir := pgtest.WorkDir(t)
	var names []string
	for _, e := range ents {
		if len(e.Name()) != 24 || len(names) == n {
			continue
		}
		data, err := os.ReadFile(filepath.Join(c.Data, "pg_wal", e.Name()))
		if err != nil || len(data) != segMiB<<20 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
	}
	if len(names) < n {
		t.Fatalf("only %d full segments generated, want %d", len(names), n)
	}
	c.Stop()
	return dir, names
}

// syntheticSegment writes a segment of segMiB MiB whose long page header
// is valid for name but whose body is random: incompressible, so the
// object is larger than one S3 part and goes up as a multipart upload.
func syntheticSegment(t *testing.T, dir, name string, segMiB int) string {
	t.Helper()
	wf, err := archive.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(segMiB) << 20
	b := make([]byte, size)
	_, _ = rand.Read(b)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)                    // PostgreSQL 15's XLOG_PAGE_MAGIC
	le.PutUint16(b[2:], 0x0002)                    // XLP_LONG_HEADER
	le.PutUint32(b[4:], wf.Timeline)               // xlp_tli
	le.PutUint64(b[8:], uint64(wf.StartLSN(size))) // xlp_pageaddr
	le.PutUint64(b[24:], 7000000000000000001)      // xlp_sysid
	le.PutUint32(b[32:], uint32(size))             // xlp_seg_size
	le.PutUint32(b[36:], 8192)                     // xlp_xlog_blcksz
	if _, err := archive.ParsePageHeader(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type want int

const (
	wantSuccess want = iota + 1 // exit 0 with the whole object stored
	wantFailure                 // non-zero exit
	wantEither                  // exit 0 with the whole object, or non-zero
)

type faultCase struct {
	name     string
	file     string // what to push
	args     []string
	rule     fp.Rule
	connRule fp.ConnRule
	want     want
	exit     int // with wantFailure: the exit code, 0 for any non-zero
	// stored, with wantFailure: whether the object must be whole in the
	// store afterwards (the server had committed it before the fault).
	stored bool
	// saw, when set, is a request the push must have made (the one the
	// case's fault is about).
	saw func(fp.Request) bool
}

// runFaultCase runs one wal-push through a fresh proxy to a fresh bucket
// and checks the outcome against fc.want, then that a retry without faults
// stores the file if the first attempt failed.
func runFaultCase(t *testing.T, srv *testenv.Server, identity, recipient string, fc faultCase) {
	t.Helper()
	raw := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv, opts: raw.Options}
	p := fp.Start(t, srv.Addr)
	p.SetRule(fc.rule)
	p.SetConnRule(fc.connRule)
	viaProxy := []string{"AWS_ENDPOINT_URL_S3=" + p.URL(), "WALVAULT_RECIPIENT=" + recipient}

	start := time.Now()
	code, _, stderr := tg.walvault(t, viaProxy, append(append([]string{"wal-push"}, fc.args...), fc.file)...)
	took := time.Since(start)
	st := p.Stats()
	faultsInjected.Add(st.Faults())
	t.Logf("exit %d in %s; %d connections, %d requests, faults %v; stderr: %s", code, took.Round(time.Millisecond), st.Conns, st.Requests, st.Fired, strings.TrimSpace(stderr))
	if st.Faults() == 0 {
		t.Fatalf("no fault struck: the case tests nothing (requests: %v)", p.Requests())
	}
	if fc.saw != nil && !slices.ContainsFunc(p.Requests(), fc.saw) {
		t.Fatalf("the request this case breaks was never made: the case tests nothing (requests: %v)", p.Requests())
	}
	if fc.want == wantEither {
		t.Logf("requests: %v", p.Requests())
	}
	switch fc.want {
	case wantSuccess:
		if code != 0 {
			t.Fatalf("wal-push exited %d after a transient fault, want 0: %s", code, stderr)
		}
	case wantFailure:
		if code == 0 || (fc.exit != 0 && code != fc.exit) {
			t.Fatalf("wal-push exited %d under a persistent fault, want %d (non-zero): %s", code, fc.exit, stderr)
		}
	}
	name := filepath.Base(fc.file)
	present := checkStoredWhole(t, tg, identity, fc.file)
	switch {
	case code == 0 && !present:
		t.Fatalf("wal-push exited 0 but %s is not in the store", name)
	case fc.want == wantFailure && fc.stored && !present:
		t.Fatalf("%s should be in the store (the server committed it before the fault)", name)
	case fc.want == wantFailure && !fc.stored && present:
		t.Fatalf("%s is in the store although no upload could complete", name)
	}
	checkNoMultipartLeft(t, srv, raw.Bucket)
	if code != 0 {
		// PostgreSQL retries; once the network is well, the retry succeeds.
		code, _, stderr := tg.walvault(t, []string{"WALVAULT_RECIPIENT=" + recipient}, "wal-push", fc.file)
		if code != 0 {
			t.Fatalf("wal-push without faults after the failure: exit %d: %s", code, stderr)
		}
		if !checkStoredWhole(t, tg, identity, fc.file) {
			t.Fatalf("%s not stored by the retry", name)
		}
	}
}

// checkStoredWhole reports whether the file's object is in the store and,
// if it is, fails the test unless wal-fetch (straight to the server) gives
// back exactly the original bytes.
func checkStoredWhole(t *testing.T, tg *target, identity, file string) bool {
	t.Helper()
	name := filepath.Base(file)
	dest := filepath.Join(pgtest.WorkDir(t), name)
	code, _, stderr := tg.walvault(t, []string{"WALVAULT_IDENTITY_FILE=" + identity}, "wal-fetch", "--prefetch", "0", name, dest)
	if code == 1 {
		if _, err := os.Stat(dest); err == nil {
			t.Fatalf("wal-fetch exited 1 (not in the archive) but wrote %s", dest)
		}
		return false
	}
	if code != 0 {
		t.Fatalf("%s is in the store but not whole: wal-fetch exit %d: %s", name, code, stderr)
	}
	got, _ := os.ReadFile(dest)
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, orig) {
		t.Fatalf("%s fetched back differs from the original (%d vs %d bytes)", name, len(got), len(orig))
	}
	return true
}

// checkNoMultipartLeft fails if an aborted multipart upload left parts
// behind (invisible, but billed on a real cloud).
func checkNoMultipartLeft(t *testing.T, srv *testenv.Server, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := srv.S3Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("listing multipart uploads: %v", err)
	}
	if len(out.Uploads) > 0 {
		var keys []string
		for _, u := range out.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
		t.Errorf("%d multipart upload(s) left behind: %v", len(out.Uploads), keys)
	}
}

// TestFaultWALPush puts a fault-injecting proxy between wal-push and the S3
// server and pushes real 16 MiB segments (lz4 in memory, and uncompressed,
// streaming), a multipart-sized segment and a small history file through
// every kind of fault. Transient faults must be ridden out (exit 0, whole
// object); persistent ones must fail (non-zero) without leaving a partial
// object; exit 0 always means the object fetched back is byte-identical.
func TestFaultWALPush(t *testing.T) {
	srv := testenv.StartT(t, testenv.S3)
	dir, names := realSegmentsT(t, 1, 16)
	seg := filepath.Join(dir, names[0])
	identity, recipient := keygen(t, pgtest.WorkDir(t))
	big := syntheticSegment(t, pgtest.WorkDir(t), "000000010000000000000003", 32)
	// A history file as PostgreSQL has it: in pg_wal, beside global/ and
	// its pg_control, which says which cluster it is of.
	data := pgtest.WorkDir(t)
	for _, d := range []string{"pg_wal", "global"} {
		if err := os.Mkdir(filepath.Join(data, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "global", "pg_control"), []byte{1, 2, 3, 4, 5, 6, 7, 8}, 0o600); err != nil {
		t.Fatal(err)
	}
	hist := filepath.Join(data, "pg_wal", "00000002.history")
	if err := os.WriteFile(hist, []byte("1\t0/3000148\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	walPut := fp.Match("PUT", "/wal/")
	walHead := fp.Match("HEAD", "/wal/")
	once := fp.Once
	cases := []faultCase{
		{name: "reset-at-connect", file: seg, connRule: func(n int) fp.Fault {
			if n == 1 {
				return fp.Fault{Kind: fp.Reset}
			}
			return fp.Fault{}
		}, want: wantSuccess},
		{name: "reset-put-at-once", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Up}), want: wantSuccess},
		{name: "reset-put-mid-body", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Up, After: 256 << 10}), want: wantSuccess},
		{name: "cut-put-mid-body", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Cut, Dir: fp.Up, After: 700 << 10}), want: wantSuccess},
		{name: "reset-put-response", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Down}), want: wantSuccess},
		{name: "cut-put-response", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Cut, Dir: fp.Down, After: 12}), want: wantSuccess},
		{name: "stall-put-3s", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Stall, Dir: fp.Up, After: 100 << 10, Duration: 3 * time.Second}), want: wantSuccess},
		{name: "throttle-put", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Throttle, Dir: fp.Up, Rate: 8 << 20}), want: wantSuccess},
		{name: "stall-put-response-2s", file: seg, rule: once(walPut, fp.Fault{Kind: fp.Stall, Dir: fp.Down, Duration: 2 * time.Second}), want: wantSuccess},
		// The probe of conditional writes: cluster.json read and written
		// again (the second GET and PUT of it); broken, it is retried or
		// gives no answer, and the segment is pushed all the same.
		{name: "reset-probe-put", file: seg, rule: nth(2, fp.Match("PUT", "cluster.json"), fp.Fault{Kind: fp.Reset, Dir: fp.Up}), want: wantSuccess},
		{name: "cut-probe-put-response", file: seg, rule: nth(2, fp.Match("PUT", "cluster.json"), fp.Fault{Kind: fp.Cut, Dir: fp.Down}), want: wantSuccess},
		{name: "cut-probe-get-response", file: seg, rule: nth(2, fp.Match("GET", "cluster.json"), fp.Fault{Kind: fp.Cut, Dir: fp.Down, After: 200}), want: wantSuccess},
		// Without an answer, the segment's key is looked at first (HEAD).
		{name: "throttle-head-response", file: seg, rule: noProbe(walHead, fp.Fault{Kind: fp.Throttle, Dir: fp.Down, Rate: 2 << 10}), saw: walHead, want: wantSuccess},
		{name: "reset-head", file: seg, rule: noProbe(walHead, fp.Fault{Kind: fp.Reset, Dir: fp.Up}), saw: walHead, want: wantSuccess},
		{name: "cut-cluster-json-put", file: seg, rule: once(fp.Match("PUT", "cluster.json"), fp.Fault{Kind: fp.Cut, Dir: fp.Down}), want: wantSuccess},
		{name: "streaming-reset-put-mid-body", file: seg, args: []string{"--compression", "none"}, rule: once(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Up, After: 5 << 20}), want: wantSuccess},
		{name: "streaming-cut-put-response", file: seg, args: []string{"--compression", "none"}, rule: once(walPut, fp.Fault{Kind: fp.Cut, Dir: fp.Down}), want: wantSuccess},
		{name: "multipart-reset-part2", file: big, rule: once(fp.Match("PUT", "partNumber=2"), fp.Fault{Kind: fp.Reset, Dir: fp.Up, After: 3 << 20}), want: wantSuccess},
		{name: "multipart-cut-complete-response", file: big, rule: once(fp.Match("POST", "uploadId"), fp.Fault{Kind: fp.Cut, Dir: fp.Down}), want: wantEither},
		{name: "history-reset-put", file: hist, rule: once(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Up, After: 10}), want: wantSuccess},
		{name: "history-cut-put-response", file: hist, rule: once(walPut, fp.Fault{Kind: fp.Cut, Dir: fp.Down}), want: wantSuccess},
		{name: "persistent-reset-put", file: seg, rule: fp.Always(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Up, After: 64 << 10}), want: wantFailure, exit: 3},
		// After 40 B: past a "100 Continue" interim answer (25 B), which the
		// SDK asks for when the body is over 2 MiB, so the reset always hits
		// the final answer, after the server has stored the object. (At 0 B
		// a large body is never sent, and whether the object was stored
		// depended on how well the segment compressed.)
		{name: "persistent-reset-put-response", file: seg, rule: fp.Always(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Down, After: 40}), want: wantFailure, exit: 3, stored: true},
		{name: "persistent-reset-put-response-16MiB", file: seg, args: []string{"--compression", "none"}, rule: fp.Always(walPut, fp.Fault{Kind: fp.Reset, Dir: fp.Down, After: 40}), want: wantFailure, exit: 3, stored: true},
		{name: "persistent-multipart-reset-part", file: big, rule: fp.Always(fp.Match("PUT", "partNumber=2"), fp.Fault{Kind: fp.Reset, Dir: fp.Up, After: 1 << 20}), want: wantFailure, exit: 3},
	}
	for _, fc := range cases {
		t.Run(fc.name, func(t *testing.T) { runFaultCase(t, srv, identity, recipient, fc) })
	}
	t.Logf("faults injected so far: %d", faultsInjected.Load())
}

// nth applies f to the n-th request that matches, and to no other.
func nth(n int, match func(fp.Request) bool, f fp.Fault) fp.Rule {
	var mu sync.Mutex
	seen := 0
	return func(r fp.Request) fp.Fault {
		mu.Lock()
		defer mu.Unlock()
		if !match(r) {
			return fp.Fault{}
		}
		if seen++; seen == n {
			return f
		}
		return fp.Fault{}
	}
}

// noProbe resets every read of cluster.json after the first (the cluster
// check's), so that the probe of conditional writes has no answer and
// wal-push looks at the segment's key before its upload, and applies f to
// the first request that matches.
func noProbe(match func(fp.Request) bool, f fp.Fault) fp.Rule {
	var mu sync.Mutex
	reads := 0
	first := fp.Once(match, f)
	return func(r fp.Request) fp.Fault {
		if fp.Match("GET", "cluster.json")(r) {
			mu.Lock()
			defer mu.Unlock()
			if reads++; reads > 1 {
				return fp.Fault{Kind: fp.Reset, Dir: fp.Up}
			}
			return fp.Fault{}
		}
		return first(r)
	}
}

// TestFaultWALFetch fetches a real segment through the proxy while it
// breaks the download: wal-fetch either writes DEST byte-identical and
// exits 0, or exits non-zero without creating DEST. Transient faults must
// be ridden out.
func TestFaultWALFetch(t *testing.T) {
	srv := testenv.StartT(t, testenv.S3)
	dir, names := realSegmentsT(t, 1, 16)
	seg := filepath.Join(dir, names[0])
	identity, recipient := keygen(t, pgtest.WorkDir(t))
	raw := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv, opts: raw.Options}
	if code, _, stderr := tg.walvault(t, []string{"WALVAULT_RECIPIENT=" + recipient}, "wal-push", seg); code != 0 {
		t.Fatalf("wal-push: exit %d: %s", code, stderr)
	}
	orig, _ := os.ReadFile(seg)
	get := fp.Match("GET", "/wal/")
	cases := []struct {
		name string
		rule fp.Rule
		want want
	}{
		{"reset-get-request", fp.Once(get, fp.Fault{Kind: fp.Reset, Dir: fp.Up}), wantSuccess},
		{"reset-get-response-start", fp.Once(get, fp.Fault{Kind: fp.Reset, Dir: fp.Down}), wantSuccess},
		{"cut-get-mid-body", fp.Once(get, fp.Fault{Kind: fp.Cut, Dir: fp.Down, After: 1 << 20}), wantSuccess},
		{"reset-get-mid-body", fp.Once(get, fp.Fault{Kind: fp.Reset, Dir: fp.Down, After: 2 << 20}), wantSuccess},
		{"stall-get-mid-body", fp.Once(get, fp.Fault{Kind: fp.Stall, Dir: fp.Down, After: 1 << 20, Duration: 2 * time.Second}), wantSuccess},
		{"throttle-get", fp.Once(get, fp.Fault{Kind: fp.Throttle, Dir: fp.Down, Rate: 8 << 20}), wantSuccess},
		{"persistent-cut-get-mid-body", fp.Always(get, fp.Fault{Kind: fp.Cut, Dir: fp.Down, After: 1 << 20}), wantFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := fp.Start(t, srv.Addr)
			p.SetRule(tc.rule)
			dest := filepath.Join(pgtest.WorkDir(t), names[0])
			start := time.Now()
			code, _, stderr := tg.walvault(t, []string{"AWS_ENDPOINT_URL_S3=" + p.URL(), "WALVAULT_IDENTITY_FILE=" + identity}, "wal-fetch", "--prefetch", "0", names[0], dest)
			st := p.Stats()
			faultsInjected.Add(st.Faults())
			t.Logf("exit %d in %s; faults %v; stderr: %s", code, time.Since(start).Round(time.Millisecond), st.Fired, strings.TrimSpace(stderr))
			if st.Faults() == 0 {
				t.Fatal("no fault struck")
			}
			got, err := os.ReadFile(dest)
			switch {
			case code == 0 && !bytes.Equal(got, orig):
				t.Fatalf("wal-fetch exited 0 but DEST differs from the original (%d vs %d bytes)", len(got), len(orig))
			case code != 0 && err == nil:
				t.Fatalf("wal-fetch exited %d but left DEST (%d bytes)", code, len(got))
			case tc.want == wantSuccess && code != 0:
				t.Fatalf("wal-fetch exited %d after a transient fault, want 0: %s", code, stderr)
			case tc.want == wantFailure && code == 0:
				t.Fatal("wal-fetch exited 0 under a persistent fault")
			case code == 1:
				t.Fatalf("a network failure reported as 'not in the archive' (exit 1): PostgreSQL would take it for the end of WAL: %s", stderr)
			case code != 0 && (code != 255 || strings.Contains(stderr, "corrupt") || !strings.Contains(stderr, "interrupted")):
				// In an archive recovery a store that cannot be read stops
				// recovery (255) rather than end it; it is still the
				// network's failure, never the intact object's.
				t.Fatalf("a network failure must exit 255 naming the interrupted download, and must not call the intact object corrupt: %d: %s", code, stderr)
			}
			leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".walvault-tmp-*"))
			if len(leftovers) > 0 {
				t.Fatalf("temporary files left beside DEST: %v", leftovers)
			}
		})
	}
	// Last, a damaged object, fetched through the quiet proxy, is the
	// object's fault, not the network's: recovery stops at once (255), it
	// is not retried as an interrupted download.
	t.Run("corrupt-object-is-not-a-network-failure", func(t *testing.T) {
		flipByte(t, raw.ObjectPath(repo.WALKey(archive.WALFile{Name: names[0], Kind: archive.KindSegment})))
		p := fp.Start(t, srv.Addr)
		dest := filepath.Join(pgtest.WorkDir(t), names[0])
		code, _, stderr := tg.walvault(t, []string{"AWS_ENDPOINT_URL_S3=" + p.URL(), "WALVAULT_IDENTITY_FILE=" + identity}, "wal-fetch", "--prefetch", "0", names[0], dest)
		gets := 0 // of the segment (cluster.json is read first, to bind the cluster)
		for _, r := range p.Requests() {
			if r.Method == "GET" && strings.Contains(r.Target, names[0]) {
				gets++
			}
		}
		if code != 255 || gets != 1 || !strings.Contains(stderr, "does not decode") {
			t.Fatalf("exit %d after %d GETs, want 255 after 1: %s", code, gets, stderr)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Fatal("DEST written from a damaged object")
		}
	})
	t.Logf("faults injected so far: %d", faultsInjected.Load())
}

// TestFaultWALPushStalledServer blackholes the upload of a segment: the
// server takes some bytes and then nothing moves, ever. wal-push must give
// up with exit 3 (PostgreSQL retries it) rather than hang the archiver
// forever. --io-timeout 2s keeps the test short (the default is 60 s).
func TestFaultWALPushStalledServer(t *testing.T) {
	srv := testenv.StartT(t, testenv.S3)
	dir, names := realSegmentsT(t, 1, 16)
	raw := srv.NewTarget(t)
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv}
	p := fp.Start(t, srv.Addr)
	p.SetRule(fp.Always(fp.Match("PUT", "/wal/"), fp.Fault{Kind: fp.Stall, Dir: fp.Up, After: 100 << 10}))
	start := time.Now()
	code, _, stderr := tg.walvault(t, []string{"AWS_ENDPOINT_URL_S3=" + p.URL()}, "wal-push", "--io-timeout", "2s", filepath.Join(dir, names[0]))
	took := time.Since(start)
	faultsInjected.Add(p.Stats().Faults())
	t.Logf("exit %d after %s: %s", code, took.Round(time.Millisecond), stderr)
	if code != 3 || took > time.Minute {
		t.Fatalf("a stalled upload: exit %d after %s, want 3 within a minute: %s", code, took, stderr)
	}
	if checkStoredWhole(t, tg, "", filepath.Join(dir, names[0])) {
		t.Fatal("the stalled upload left an object")
	}
}
