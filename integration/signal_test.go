package integration

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// TestSIGQUITIsQuiet: on an immediate shutdown PostgreSQL sends SIGQUIT to
// a running restore_command or archive_command. walvault must end at once
// with one line and a code below 126, not Go's goroutine dump (which fills
// the server log). The command is kept busy by a store that accepts
// connections and never answers.
func TestSIGQUITIsQuiet(t *testing.T) {
	bin := pgtest.Walvault(t)
	addr := silentServer(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "wal-fetch", "--store", "s3://stalled/prefix", "--s3-endpoint", "http://"+addr,
		"--s3-path-style", "--allow-unsigned", "--prefetch", "0", "000000010000000000000001", filepath.Join(dir, "dest"))
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_EC2_METADATA_DISABLED=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // well inside the request, which never ends
	if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		_ = err // the exit code is what counts, below
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("wal-fetch did not end within 10 s of SIGQUIT; stderr:\n%s", stderr.String())
	}
	code := cmd.ProcessState.ExitCode()
	if code <= 1 || code >= 126 || strings.Contains(stderr.String(), "goroutine ") || strings.Count(strings.TrimSpace(stderr.String()), "\n") > 2 {
		t.Fatalf("after SIGQUIT: exit %d, stderr:\n%s", code, stderr.String())
	}
}

// TestSignalsEndEveryCommand: whatever a command waits on (here a store
// that accepts connections and never answers), SIGTERM or SIGINT ends it
// within seconds. wal-fetch, PostgreSQL's restore_command, ends by the
// signal itself, as PostgreSQL expects (an exit code would read as "no such
// file"); the others exit 9 with one line.
func TestSignalsEndEveryCommand(t *testing.T) {
	bin := pgtest.Walvault(t)
	addr := silentServer(t)
	dir := t.TempDir()
	store := []string{"--store", "s3://stalled/prefix", "--s3-endpoint", "http://" + addr, "--s3-path-style", "--allow-unsigned"}
	for _, tc := range []struct {
		sig  syscall.Signal
		args []string
	}{
		{syscall.SIGTERM, []string{"wal-fetch", "--prefetch", "0", "000000010000000000000001", filepath.Join(dir, "a")}},
		{syscall.SIGINT, []string{"wal-fetch", "--prefetch", "0", "000000010000000000000001", filepath.Join(dir, "b")}},
		{syscall.SIGTERM, []string{"backup-list"}},
		{syscall.SIGTERM, []string{"restore", filepath.Join(dir, "restored")}},
		{syscall.SIGTERM, []string{"dump-restore", "LATEST", "--dbname", "dbname=x"}},
		{syscall.SIGINT, []string{"verify", "--full"}},
		{syscall.SIGTERM, []string{"status", "--no-server", "--state-file", "none"}},
	} {
		t.Run(tc.args[0]+" "+tc.sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, append(tc.args, store...)...) // #nosec G204 -- the binary under test
			cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_EC2_METADATA_DISABLED=true")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // inside the first request, which never ends
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				_ = err // how it ended is checked below
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("%v did not end within 10 s of %v; stderr:\n%s", tc.args, tc.sig, stderr.String())
			}
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if tc.args[0] == "wal-fetch" {
				if !ws.Signaled() || ws.Signal() != tc.sig {
					t.Fatalf("wal-fetch after %v: %v, want to end by the signal; stderr:\n%s", tc.sig, cmd.ProcessState, stderr.String())
				}
				return
			}
			if code := cmd.ProcessState.ExitCode(); code != 9 || strings.Count(strings.TrimSpace(stderr.String()), "\n") > 0 {
				t.Fatalf("%v after %v: exit %d, want 9 with one line; stderr:\n%s", tc.args, tc.sig, code, stderr.String())
			}
		})
	}
}

// silentServer is the address of a server on 127.0.0.1 that accepts
// connections and never answers, so that a command waits on its store
// until a signal ends it. Stopped when the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // hold it open, say nothing
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}
