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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	dir := t.TempDir()
	cmd := exec.Command(bin, "wal-fetch", "--store", "s3://stalled/prefix", "--s3-endpoint", "http://"+l.Addr().String(),
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
