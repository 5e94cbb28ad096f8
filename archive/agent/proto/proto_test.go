package proto

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	for _, req := range []Request{
		{Verb: VerbStatus},
		{Verb: VerbPush, Args: []string{"/var/lib/postgresql/15/main/pg_wal/000000010000000000000001"}},
		{Verb: VerbFetch, Args: []string{"00000002.history", "/data dir/with \"quotes\"\nand newline/pg_wal/RECOVERYHISTORY"}},
		{Verb: VerbPush, Args: []string{"ünïcödé \x00 \\ path"}},
		{Verb: VerbPush, Args: []string{""}},
	} {
		line := req.Encode()
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Fatalf("%q: not one line", line)
		}
		got, err := ReadRequest(bufio.NewReader(strings.NewReader(line)))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if !reflect.DeepEqual(got, req) {
			t.Errorf("round trip of %q: %+v, want %+v", line, got, req)
		}
	}
	for _, resp := range []Response{{0, "durable"}, {1, "not in the archive"}, {CodeFallback, "x\ny"}, {3, ""}} {
		got, err := ReadResponse(bufio.NewReader(strings.NewReader(resp.Encode())))
		if err != nil || got != resp {
			t.Errorf("round trip of %+v: %+v %v", resp, got, err)
		}
	}
}

func TestMalformed(t *testing.T) {
	for _, line := range []string{
		"walvault-agent/2 push \"x\"\n",
		"push \"x\"\n",
		Version + "\n",
		Version + " push x\n",
		Version + " push \"x\n",
		Version + " push \"x\"", // no newline: truncated
		Version + " push \"" + strings.Repeat("a", MaxLine) + "\"\n",
	} {
		if _, err := ReadRequest(bufio.NewReader(strings.NewReader(line))); err == nil {
			t.Errorf("request %.60q accepted", line)
		} else if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) {
			t.Errorf("request %.60q: %v", line, err)
		}
	}
	for _, line := range []string{"ok\n", "0 durable\n", "-1 \"x\"\n", "101 \"x\"\n", "0\n", "", "0 \"x"} {
		if r, err := ReadResponse(bufio.NewReader(strings.NewReader(line))); err == nil {
			t.Errorf("response %q accepted as %+v", line, r)
		}
	}
}

// ShortPath keeps a short path, and reaches a long one through its
// directory: relative to the working directory or via /proc/self/fd.
func TestShortPathDial(t *testing.T) {
	base := t.TempDir()
	long := filepath.Join(base, strings.Repeat("p", 70), strings.Repeat("q", 70))
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, sock := range []string{filepath.Join(base, "s.sock"), filepath.Join(long, "s.sock")} {
		addr, done, err := ShortPath(sock)
		if err != nil {
			t.Fatal(err)
		}
		if len(addr) > maxSunPath || (len(sock) <= maxSunPath && addr != sock) {
			t.Fatalf("%s: address %s", sock, addr)
		}
		ln, err := net.Listen("unix", addr)
		done()
		if err != nil {
			t.Fatalf("listen %s (%d bytes) as %s: %v", sock, len(sock), addr, err)
		}
		if _, err := os.Lstat(sock); err != nil {
			t.Fatalf("the socket is not at %s: %v", sock, err)
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = c.Write([]byte(Response{Code: 0, Message: "hi"}.Encode()))
				_ = c.Close()
			}
		}()
		c, err := Dial(sock, time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", sock, err)
		}
		r, err := ReadResponse(bufio.NewReader(c))
		_ = c.Close()
		_ = ln.Close()
		if err != nil || r.Message != "hi" {
			t.Fatalf("%s: %+v %v", sock, r, err)
		}
	}
}

func TestDefaultSocket(t *testing.T) {
	if got := DefaultSocket("/var/lib/postgresql/15/main/pg_wal"); got != "/var/lib/postgresql/15/main/pg_wal/.walvault/agent.sock" {
		t.Fatal(got)
	}
}
