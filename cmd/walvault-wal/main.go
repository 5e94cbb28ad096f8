// Command walvault-wal is the small client of walvault agent for
// PostgreSQL's archive_command and restore_command:
//
//	archive_command = 'walvault-wal push %p'
//	restore_command = 'walvault-wal fetch %f %p'
//
// It asks the agent on its unix socket (default pg_wal/.walvault/agent.sock,
// found from %p; --socket PATH or WALVAULT_SOCKET overrides) and exits with walvault's exit
// code for the answer. When no agent answers it runs walvault wal-push or
// wal-fetch itself (exec, same arguments), so archiving never depends on
// the agent being up: it accepts every flag of walvault wal-push and
// wal-fetch (flags_gen.go, generated from walvault's own table), and walvault
// reads the same config file, /etc/walvault/walvault.yaml unless a flag or
// WALVAULT_CONFIG names another. It imports only the standard library.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/walvault/walvault/archive/agent/proto"
)

// Exit codes, as walvault's.
const (
	exitOK      = 0
	exitUsage   = 2
	exitFailure = 9
)

func main() {
	os.Exit(run(os.Args[1:]))
}

const usage = "usage: walvault-wal push PATH | fetch NAME DEST | status [--socket PATH] [walvault wal-push / wal-fetch flags, for the fallback]"

// invocation is a parsed command line.
type invocation struct {
	verb   string
	args   []string
	socket string
	extra  []string // other flags, passed to walvault when it runs instead
}

func parse(argv []string) (invocation, error) {
	var inv invocation
	var pos []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--":
			pos = append(pos, argv[i+1:]...)
			i = len(argv)
		case a == "--socket" || a == "-socket":
			if i+1 >= len(argv) {
				return inv, errors.New("--socket needs a value")
			}
			inv.socket = argv[i+1]
			i++
		case strings.HasPrefix(a, "--socket=") || strings.HasPrefix(a, "-socket="):
			inv.socket = a[strings.IndexByte(a, '=')+1:]
		case len(a) > 1 && a[0] == '-':
			// walvault's flags, as --flag=value or --flag value: all but
			// the switches (the generated table) take a value. walvault
			// refuses a flag it does not have.
			name, _, joined := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !walvaultSwitches[name] && !joined {
				if i+1 >= len(argv) {
					return inv, fmt.Errorf("%s needs a value", a)
				}
				inv.extra = append(inv.extra, a, argv[i+1])
				i++
				continue
			}
			inv.extra = append(inv.extra, a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 {
		return inv, errors.New("no command given")
	}
	inv.verb, inv.args = pos[0], pos[1:]
	want := map[string]int{"push": 1, "fetch": 2, "status": 0}
	n, ok := want[inv.verb]
	if !ok {
		return inv, fmt.Errorf("unknown command %q", inv.verb)
	}
	if len(inv.args) != n {
		return inv, fmt.Errorf("%s takes %d argument(s), got %d", inv.verb, n, len(inv.args))
	}
	if inv.socket == "" {
		inv.socket = os.Getenv("WALVAULT_SOCKET") // as walvault agent reads it
	}
	return inv, nil
}

func run(argv []string) int {
	// PostgreSQL ends a running archive or restore command with SIGQUIT on
	// an immediate shutdown: one line, never a success.
	fetching := len(argv) > 0 && argv[0] == "fetch"
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	go func() {
		sig := <-sigs
		fmt.Fprintln(os.Stderr, "walvault-wal: stopped by a signal")
		if s, ok := sig.(syscall.Signal); ok && fetching && s != syscall.SIGQUIT {
			// As restore_command, end by the signal itself: an exit code
			// would read as "no such file" and could end recovery.
			signal.Reset(s)
			_ = syscall.Kill(os.Getpid(), s)
			time.Sleep(time.Second)
		}
		os.Exit(exitFailure)
	}()
	inv, err := parse(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "walvault-wal: %v\n%s\n", err, usage)
		return exitUsage
	}
	var req proto.Request
	switch inv.verb {
	case "push":
		p, err := filepath.Abs(inv.args[0])
		if err != nil {
			return fallback(inv)
		}
		req = proto.Request{Verb: proto.VerbPush, Args: []string{p}}
		if inv.socket == "" {
			inv.socket = proto.DefaultSocket(filepath.Dir(p))
		}
	case "fetch":
		d, err := filepath.Abs(inv.args[1])
		if err != nil {
			return fallback(inv)
		}
		req = proto.Request{Verb: proto.VerbFetch, Args: []string{inv.args[0], d}}
		if inv.socket == "" {
			inv.socket = proto.DefaultSocket(filepath.Dir(d))
		}
	case "status":
		if inv.socket == "" {
			wd, _ := os.Getwd()
			inv.socket = proto.DefaultSocket(filepath.Join(wd, "pg_wal"))
		}
		req = proto.Request{Verb: proto.VerbStatus}
	}
	resp, err := ask(inv.socket, req)
	if err != nil {
		if inv.verb == "status" {
			fmt.Fprintf(os.Stderr, "walvault-wal status: no agent answers at %s: %v\n", inv.socket, err)
			return exitFailure
		}
		if !errors.Is(err, errNoAgent) {
			fmt.Fprintf(os.Stderr, "walvault-wal %s: %v; running walvault instead\n", inv.verb, err)
		}
		return fallback(inv)
	}
	switch {
	case resp.Code == proto.CodeFallback:
		return fallback(inv)
	case inv.verb == "status" && resp.Code == exitOK:
		fmt.Println(resp.Message)
	case resp.Code != exitOK:
		fmt.Fprintf(os.Stderr, "walvault-wal %s: %s\n", inv.verb, oneLine(resp.Message))
	}
	if resp.Code > exitFailure && !(inv.verb == "fetch" && resp.Code == proto.CodeStopRecovery) {
		return exitFailure // no code walvault does not use reaches PostgreSQL
	}
	return resp.Code
}

var errNoAgent = errors.New("no agent")

// ask sends one request and reads the answer. Only a socket owned by this
// user or root is trusted: its answers say what is archived.
func ask(socket string, req proto.Request) (proto.Response, error) {
	fi, err := os.Lstat(socket)
	if err != nil {
		return proto.Response{}, errNoAgent
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeSocket == 0 || !ok || (int(st.Uid) != os.Geteuid() && st.Uid != 0) {
		return proto.Response{}, fmt.Errorf("ignoring %s: not a socket of this user", socket)
	}
	c, err := proto.Dial(socket, 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return proto.Response{}, errNoAgent // a stale socket of a stopped agent
		}
		return proto.Response{}, err
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write([]byte(req.Encode())); err != nil {
		return proto.Response{}, err
	}
	// No deadline: a push waits for its upload, as wal-push would.
	resp, err := proto.ReadResponse(bufio.NewReader(c))
	if err != nil {
		return proto.Response{}, fmt.Errorf("the agent did not answer: %w", err)
	}
	return resp, nil
}

// fallback replaces this process with walvault wal-push / wal-fetch, so
// PostgreSQL waits for it as it would for walvault itself.
func fallback(inv invocation) int {
	exe := walvaultPath()
	if exe == "" {
		fmt.Fprintln(os.Stderr, "walvault-wal: no agent answers and walvault is neither beside walvault-wal nor in PATH")
		return exitFailure
	}
	cmd := map[string]string{"push": "wal-push", "fetch": "wal-fetch"}[inv.verb]
	args := append([]string{"walvault", cmd}, inv.extra...)
	args = append(append(args, "--"), inv.args...)
	// No signal.Reset: a signal before the exec still ends this process
	// quietly; the exec itself gives walvault default handlers.
	err := syscall.Exec(exe, args, os.Environ()) // #nosec G204 -- walvault itself, our own arguments
	fmt.Fprintf(os.Stderr, "walvault-wal: cannot run %s: %v\n", exe, err)
	return exitFailure
}

func walvaultPath() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "walvault")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	p, err := exec.LookPath("walvault")
	if err != nil {
		return ""
	}
	return p
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
