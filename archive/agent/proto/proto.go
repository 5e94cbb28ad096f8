// Package proto is the wire format between walvault-wal (the client that
// archive_command and restore_command run) and walvault agent. It imports
// only the standard library, so the client stays small and starts fast.
//
// One request per connection. The client writes one line and the agent
// answers with one line:
//
//	request:  walvault-agent/1 VERB ARG...\n   (each ARG a Go-quoted string)
//	response: CODE MESSAGE\n                   (CODE decimal, MESSAGE Go-quoted)
//
// CODE is the exit code walvault itself would have used (0 ok, 1 not in the
// archive, 2 usage/input, 3 store, 4 integrity, 5 conflict, 9 other), or
// CodeFallback: the agent will not serve this request (another data
// directory, shutting down) and the client runs walvault itself.
package proto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Version starts every request; an agent refuses other versions.
const Version = "walvault-agent/1"

// Verbs.
const (
	VerbPush   = "push"   // ARG: absolute path of the WAL file (%p)
	VerbFetch  = "fetch"  // ARGs: file name (%f), absolute destination (%p)
	VerbStatus = "status" // no ARG; MESSAGE is the agent's state as JSON
)

// CodeFallback asks the client to do the work itself with walvault.
const CodeFallback = 100

// CodeStopRecovery answers a fetch whose file is present but cannot be
// used (or, outside a standby, cannot be reached): the client exits with
// it, and PostgreSQL, reading an exit status above 125, stops recovery
// instead of taking the file for absent (wal.ExitStopRecovery).
const CodeStopRecovery = 255

// MaxLine bounds a request or response line.
const MaxLine = 64 << 10

// maxSunPath is what fits in sockaddr_un.sun_path with its NUL.
const maxSunPath = 107

// SocketName is the socket's file name in the spool directory.
const SocketName = "agent.sock"

// DefaultSocket is where the agent listens unless told otherwise:
// .walvault/agent.sock in pg_wal, the directory of every %p PostgreSQL
// hands to archive_command and restore_command, so the client finds it
// from its own arguments.
func DefaultSocket(walDir string) string {
	return filepath.Join(walDir, ".walvault", SocketName)
}

// Request is one client request.
type Request struct {
	Verb string
	Args []string
}

// Response is the agent's answer.
type Response struct {
	Code    int
	Message string
}

// ErrProtocol marks a malformed line.
var ErrProtocol = errors.New("agent protocol error")

// Encode renders the request as its line.
func (r Request) Encode() string {
	var b strings.Builder
	b.WriteString(Version)
	b.WriteByte(' ')
	b.WriteString(r.Verb)
	for _, a := range r.Args {
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(a))
	}
	b.WriteByte('\n')
	return b.String()
}

// Encode renders the response as its line.
func (r Response) Encode() string {
	return strconv.Itoa(r.Code) + " " + strconv.Quote(r.Message) + "\n"
}

// ReadRequest reads one request line.
func ReadRequest(br *bufio.Reader) (Request, error) {
	line, err := readLine(br)
	if err != nil {
		return Request{}, err
	}
	ver, rest, _ := strings.Cut(line, " ")
	if ver != Version {
		return Request{}, fmt.Errorf("%w: version %q, want %s", ErrProtocol, ver, Version)
	}
	verb, rest, _ := strings.Cut(rest, " ")
	if verb == "" {
		return Request{}, fmt.Errorf("%w: no verb", ErrProtocol)
	}
	req := Request{Verb: verb}
	for rest != "" {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return Request{}, fmt.Errorf("%w: bad argument", ErrProtocol)
		}
		a, _ := strconv.Unquote(q)
		req.Args = append(req.Args, a)
		rest = strings.TrimPrefix(rest[len(q):], " ")
	}
	return req, nil
}

// ReadResponse reads the answer line.
func ReadResponse(br *bufio.Reader) (Response, error) {
	line, err := readLine(br)
	if err != nil {
		return Response{}, err
	}
	code, msg, ok := strings.Cut(line, " ")
	n, err := strconv.Atoi(code)
	if !ok || err != nil || n < 0 || n > CodeFallback && n != CodeStopRecovery {
		return Response{}, fmt.Errorf("%w: bad response", ErrProtocol)
	}
	m, err := strconv.Unquote(msg)
	if err != nil {
		return Response{}, fmt.Errorf("%w: bad response message", ErrProtocol)
	}
	return Response{Code: n, Message: m}, nil
}

// readLine reads up to and without the newline, which must be there: a
// line cut short is an error, never a shorter request.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > MaxLine+1 {
			return "", fmt.Errorf("%w: line too long", ErrProtocol)
		}
		switch {
		case err == nil:
			return string(b[:len(b)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(b) > 0:
			return "", fmt.Errorf("%w: truncated line", ErrProtocol)
		default:
			return "", err
		}
	}
}

// Dial connects to the agent's socket at path. A path too long for a
// unix socket address is reached through its directory: relative to the
// working directory when that is shorter, else via /proc/self/fd. It uses
// a plain blocking socket, not package net: the client starts no poller
// and no extra threads for its one request. timeout bounds each read and
// write only when positive.
func Dial(path string, timeout time.Duration) (*os.File, error) {
	addr, done, err := ShortPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if timeout > 0 {
		tv := syscall.NsecToTimeval(timeout.Nanoseconds())
		_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	}
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: addr})
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		_ = syscall.Close(fd)
		return nil, &os.PathError{Op: "connect", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil // #nosec G115 -- a file descriptor
}

// ShortPath returns an address for path that fits in sun_path, and a
// function to call once it has been used (bound or connected).
func ShortPath(path string) (string, func(), error) {
	nop := func() {}
	if len(path) <= maxSunPath {
		return path, nop, nil
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, path); err == nil && len(rel) <= maxSunPath {
			return rel, nop, nil
		}
	}
	d, err := os.Open(filepath.Dir(path)) // #nosec G304 -- the socket's directory
	if err != nil {
		return "", nop, err
	}
	short := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(path))
	if len(short) > maxSunPath {
		_ = d.Close()
		return "", nop, fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return short, func() { _ = d.Close() }, nil
}
