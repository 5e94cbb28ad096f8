package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent/proto"
)

// listen binds the socket under a temporary name, sets its mode (and
// group) and renames it into place, so that it is never reachable with
// looser permissions. A stale socket of a dead agent is replaced: the
// caller holds the lock.
func listen(path string, gid int) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := checkSocketDir(dir); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, ".agent-"+strconv.Itoa(os.Getpid())+".sock")
	_ = os.Remove(tmp)
	addr, done, err := proto.ShortPath(tmp)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", addr)
	done()
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		err = os.Lchown(tmp, -1, gid)
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("setting up the socket %s: %w", path, err)
	}
	return ln, nil
}

// checkSocketDir refuses a directory where someone else could replace the
// socket: owned by another user, or writable by group or others without
// the sticky bit.
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return fmt.Errorf("%w: socket directory %s belongs to uid %d, not to this user", archive.ErrBadInput, dir, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("%w: socket directory %s is writable by group or others (mode %04o): make it 0700 or 0750", archive.ErrBadInput, dir, fi.Mode().Perm())
	}
	return nil
}

// serve answers connections until the listener closes.
func (a *Agent) serve(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			a.log.Warn("accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			a.handle(ctx, c)
		}()
	}
}

func (a *Agent) handle(ctx context.Context, c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := proto.ReadRequest(bufio.NewReaderSize(c, 4096))
	if err != nil {
		a.log.Warn("bad request on the socket", "err", err)
		_, _ = c.Write([]byte(proto.Response{Code: 2, Message: err.Error()}.Encode()))
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var resp proto.Response
	switch {
	case req.Verb == proto.VerbPush && len(req.Args) == 1:
		resp = a.handlePush(ctx, req.Args[0])
	case req.Verb == proto.VerbFetch && len(req.Args) == 2:
		resp = a.handleFetch(ctx, req.Args[0], req.Args[1])
	case req.Verb == proto.VerbStatus && len(req.Args) == 0:
		b, _ := json.Marshal(a.Stats())
		resp = proto.Response{Code: 0, Message: string(b)}
	default:
		resp = proto.Response{Code: 2, Message: fmt.Sprintf("unknown request %q with %d argument(s)", req.Verb, len(req.Args))}
	}
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write([]byte(resp.Encode()))
}

func (a *Agent) fail(err error) proto.Response {
	return proto.Response{Code: a.cfg.ExitCode(err), Message: archive.OneLine(err.Error())}
}

// inWALDir reports whether path's directory is this agent's pg_wal.
func (a *Agent) inWALDir(path string) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	d, err := filepath.EvalSymlinks(filepath.Dir(path))
	return err == nil && d == a.walReal
}

// handlePush answers 0 once the file, as the agent itself sees it now, is
// durable; else it makes it jump the queue and waits for its upload.
func (a *Agent) handlePush(ctx context.Context, path string) proto.Response {
	a.st.pushReqs.Add(1)
	if a.cfg.NoArchive {
		return proto.Response{Code: proto.CodeFallback, Message: "this agent does not archive (--no-archive)"}
	}
	name := filepath.Base(path)
	if _, err := archive.ParseWALName(name); err != nil {
		return a.fail(fmt.Errorf("%w: %s: %w", archive.ErrBadInput, path, err))
	}
	if !a.inWALDir(path) {
		return proto.Response{Code: proto.CodeFallback, Message: "not this agent's pg_wal (" + a.walDir + ")"}
	}
	p := filepath.Join(a.walDir, name)
	for {
		id, err := statID(p)
		if err != nil {
			return a.fail(fmt.Errorf("%w: cannot read %s: %w", archive.ErrBadInput, p, err))
		}
		a.mu.Lock()
		if d, ok := a.durable[name]; ok && d == id {
			a.mu.Unlock()
			return proto.Response{Code: 0, Message: "durable"}
		}
		if a.marks.valid(name, id) { // a marker a finished upload just wrote
			a.durable[name] = id
			a.mu.Unlock()
			return proto.Response{Code: 0, Message: "durable"}
		}
		j := a.jobs[name]
		switch {
		case j == nil:
			j = a.enqueueLocked(name, id, true)
		case j.id == id && !j.urgent:
			a.promoteLocked(j)
		}
		a.mu.Unlock()
		a.poke()
		select {
		case <-j.done:
		case <-ctx.Done():
			return proto.Response{Code: proto.CodeFallback, Message: "agent stopping"}
		}
		if j.err != nil && j.id == id {
			if ctx.Err() != nil {
				return proto.Response{Code: proto.CodeFallback, Message: "agent stopping"}
			}
			return a.fail(j.err)
		}
		// Done (or another version was): look again at the file as it is.
	}
}

// promoteLocked moves a queued job to the front and marks it urgent.
func (a *Agent) promoteLocked(j *job) {
	for i, q := range a.queue {
		if q == j {
			copy(a.queue[1:i+1], a.queue[:i])
			a.queue[0] = j
			j.urgent = true
			return
		}
	}
	// Already running: waiting is all there is to do.
}
