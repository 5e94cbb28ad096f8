package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fp "github.com/walvault/walvault/integration/faultproxy"
	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// racesRun counts concurrent same-name pushes.
var racesRun atomic.Int64

type pushRun struct {
	code         int
	stderr       string
	start, ended time.Time
}

// pushTogether starts wal-push of a and of b (same file name, in two
// directories) at the same moment and waits for both.
func pushTogether(t *testing.T, tg *target, env []string, a, b string) (pushRun, pushRun) {
	t.Helper()
	runs := make([]pushRun, 2)
	cmds := make([]*exec.Cmd, 2)
	errs := make([]bytes.Buffer, 2)
	for i, f := range []string{a, b} {
		cmd := exec.Command(pgtest.Walvault(t), "wal-push", f)
		cmd.Env = append(append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true"), tg.Env...), env...)
		cmd.Stderr = &errs[i]
		cmds[i] = cmd
	}
	for i, cmd := range cmds {
		runs[i].start = time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			runs[i].ended = time.Now()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				runs[i].code = ee.ExitCode()
			} else if err != nil {
				runs[i].code = -1
			}
		}()
	}
	wg.Wait()
	for i := range runs {
		runs[i].stderr = strings.TrimSpace(errs[i].String())
	}
	return runs[0], runs[1]
}

// fetchBytes fetches name from tg (straight, no proxy) and returns it.
func fetchBytes(t *testing.T, tg *target, identity, name string) []byte {
	t.Helper()
	dest := filepath.Join(pgtest.WorkDir(t), name)
	code, _, stderr := tg.walvault(t, []string{"WALVAULT_IDENTITY_FILE=" + identity}, "wal-fetch", "--prefetch", "0", name, dest)
	if code != 0 {
		t.Fatalf("wal-fetch %s: exit %d: %s", name, code, stderr)
	}
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConcurrentWALPush pushes the same segment name from two processes at
// once, against S3 and file://. With different content exactly one wins:
// the store holds the winner's bytes, the loser exits 5 and overwrote
// nothing. With identical content both exit 0.
//
// On S3 the proxy holds each upload until both have arrived, so every race
// is decided by the store's conditional write (If-None-Match), not by the
// existence check before it; on file:// the two processes are started
// together and decided by link(2).
func TestConcurrentWALPush(t *testing.T) {
	dir, names := realSegmentsT(t, 1, 16)
	name := names[0]
	orig, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	altered := append([]byte(nil), orig...)
	altered[len(altered)/2] ^= 0x5a
	work := pgtest.WorkDir(t)
	write := func(sub string, b []byte) string {
		d := filepath.Join(work, sub)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fileA, fileA2, fileB := write("a", orig), write("a2", orig), write("b", altered)
	identity, recipient := keygen(t, work)
	env := []string{"WALVAULT_RECIPIENT=" + recipient}
	const rounds = 10

	check := func(t *testing.T, tg *target, round int, extraEnv []string) (overlapped bool) {
		same := round%2 == 0
		second := fileB
		if same {
			second = fileA2
		}
		r1, r2 := pushTogether(t, tg, append(env, extraEnv...), fileA, second)
		racesRun.Add(1)
		overlapped = r2.start.Before(r1.ended) && r1.start.Before(r2.ended)
		stored := fetchBytes(t, tg, identity, name)
		if same {
			if r1.code != 0 || r2.code != 0 {
				t.Fatalf("round %d, identical content: exits %d and %d, want 0 and 0:\n%s\n%s", round, r1.code, r2.code, r1.stderr, r2.stderr)
			}
			if !bytes.Equal(stored, orig) {
				t.Fatalf("round %d: stored object differs from the content both pushed", round)
			}
			return overlapped
		}
		var winner []byte
		switch {
		case r1.code == 0 && r2.code == 5:
			winner = orig
		case r2.code == 0 && r1.code == 5:
			winner = altered
		default:
			t.Fatalf("round %d, different content: exits %d and %d, want one 0 and one 5:\n%s\n%s", round, r1.code, r2.code, r1.stderr, r2.stderr)
		}
		loser := r1.stderr + r2.stderr
		if !strings.Contains(loser, "different checksum") {
			t.Fatalf("round %d: the loser does not say why: %s", round, loser)
		}
		if !bytes.Equal(stored, winner) {
			t.Fatalf("round %d: the store holds neither the winner's content (it holds %d bytes): the loser overwrote it", round, len(stored))
		}
		return overlapped
	}

	t.Run("s3", func(t *testing.T) {
		srv := testenv.StartT(t, testenv.S3)
		p := fp.Start(t, srv.Addr)
		// A barrier: each upload of the segment waits (up to 5 s) until the
		// other one has arrived too, then both go on together.
		var mu sync.Mutex
		var arrived int
		release := make(chan struct{})
		p.SetRule(func(r fp.Request) fp.Fault {
			if r.Method != "PUT" || !strings.Contains(r.Target, "/wal/") {
				return fp.Fault{}
			}
			return fp.Fault{Before: func(fp.Request) {
				mu.Lock()
				arrived++
				ch := release
				if arrived%2 == 0 {
					close(release)
					release = make(chan struct{})
				}
				mu.Unlock()
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
				}
			}}
		})
		for round := range rounds {
			raw := srv.NewTarget(t) // a fresh bucket: the cluster.json claim races too
			tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv}
			before := len(p.Requests())
			check(t, tg, round, []string{"AWS_ENDPOINT_URL_S3=" + p.URL()})
			puts := 0
			for _, r := range p.Requests()[before:] {
				if r.Method == "PUT" && strings.Contains(r.Target, "/wal/") {
					puts++
				}
			}
			if puts < 2 {
				t.Fatalf("round %d: only %d upload(s) of the segment reached the store: the race was decided before the conditional write", round, puts)
			}
		}
	})
	t.Run("file", func(t *testing.T) {
		overlaps := 0
		for round := range rounds * 2 {
			tg := newTarget(t, "file")
			if check(t, tg, round, nil) {
				overlaps++
			}
		}
		t.Logf("%d of %d pairs ran overlapping", overlaps, rounds*2)
		if overlaps < rounds {
			t.Fatalf("only %d of %d pairs of processes overlapped: the test raced nothing", overlaps, rounds*2)
		}
	})
	t.Logf("concurrent races run: %d", racesRun.Load())
}
