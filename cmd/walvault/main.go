// Command walvault archives PostgreSQL WAL and base backups to object
// storage and restores them. See README.md for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/archive/wal"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/ratelimit"
	"github.com/walvault/walvault/crypto"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage error")

func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// commandMakers is filled by the init functions of the files beside this
// one, one file per group of commands. Commands are built afresh for every
// App because urfave/cli keeps parsed values in its flag structs.
var commandMakers []func() []*cli.Command

func register(commands func() []*cli.Command) { commandMakers = append(commandMakers, commands) }

func main() {
	// WV_CPU_PROFILE=FILE writes a Go CPU profile of the run (for
	// measuring before optimising; not a setting).
	if p := os.Getenv("WV_CPU_PROFILE"); p != "" {
		if f, err := os.Create(p); err == nil { // #nosec G304 G703 -- the developer's own file
			_ = pprof.StartCPUProfile(f)
		}
	}
	code := run(os.Args, os.Stdout, os.Stderr)
	pprof.StopCPUProfile()
	if sig := dieBy.Load(); sig != nil {
		// Ended by a signal, as PostgreSQL expects of restore_command:
		// SIGTERM (its shutdown) ends the startup process quietly, any
		// other signal stops recovery. An exit code would read as "no
		// such file" and could end recovery.
		signal.Reset(sig.(syscall.Signal))
		_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		time.Sleep(time.Second)
	}
	os.Exit(code)
}

// dieBy is the signal a restore command stopped by it re-raises on its
// way out, once its work is cancelled and cleaned up.
var dieBy atomic.Value

func newApp(stdout, stderr io.Writer) *cli.App {
	var commands []*cli.Command
	for _, mk := range commandMakers {
		commands = append(commands, mk()...)
	}
	sort.SliceStable(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	addJSONFlags(commands)
	for _, c := range commands {
		if hasFlag(c.Flags, "config") {
			c.Before = chain(applyConfigFile, c.Before)
		}
		c.Before = chain(checkEnvironment, c.Before)
		if frontBuild && frontCommands[c.Name] {
			// Once the config file is read: which stores it names.
			c.Before = chain(c.Before, frontStores)
		}
		c.OnUsageError = onUsageError // else urfave/cli prints the whole help to stdout
	}
	return &cli.App{
		Name:                 "walvault",
		Usage:                "PostgreSQL continuous archiving and point-in-time recovery to object storage",
		Version:              version,
		Commands:             commands,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideVersion:          true,
		EnableBashCompletion: false,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() maps errors to codes
		OnUsageError:         onUsageError,
		// urfave/cli shows help and returns nil here; run() turns the
		// recorded name into exit 2.
		CommandNotFound: func(c *cli.Context, name string) {
			if c.App.Metadata == nil {
				c.App.Metadata = map[string]any{}
			}
			c.App.Metadata[unknownCommandKey] = name
		},
	}
}

func chain(fns ...cli.BeforeFunc) cli.BeforeFunc {
	return func(c *cli.Context) error {
		for _, f := range fns {
			if f == nil {
				continue
			}
			if err := f(c); err != nil {
				return err
			}
		}
		return nil
	}
}

func oneLine(s string) string { return archive.OneLine(s) }

func run(args []string, stdout, stderr io.Writer) (code int) {
	// What reaches stderr (errors, logs, SDK messages) loses the
	// credentials a URL carries.
	stderr = redactedStderr(stderr)
	// --json on a command that reports a result: one object on stdout at
	// the very end, whatever happened (registered first: it runs last,
	// once a panic has become exit 9).
	var rep reporter
	defer func() { rep.emit(code) }()
	defer func() {
		// A bug must not look like success, nor like "file not found" (1) or a
		// fatal signal (>125) to PostgreSQL.
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "walvault: internal error: %v\n", r)
			code = exitFailure
		}
	}()
	if len(args) == 0 {
		args = []string{"walvault"}
	}
	// The one line run prints is scrubbed also when stderr is a terminal.
	say := func(format string, a ...any) {
		line := graphicOnly(scrubURLs(fmt.Sprintf(format, a...)))
		rep.reason(line)
		fmt.Fprintln(stderr, line)
	}
	out := &outputWriter{w: stdout}
	app := newApp(out, stderr)
	if !frontRuns(app, args) {
		err := execFull(args)
		if len(args) > 1 && args[1] == "wal-fetch" {
			// As any failure of restore_command but an absent file:
			// recovery must stop, not end.
			fmt.Fprintln(stderr, graphicOnly(scrubURLs("walvault wal-fetch: "+oneLine(err.Error())+wal.StopRecoveryHint)))
			return exitStopRecovery
		}
		fmt.Fprintln(stderr, graphicOnly(scrubURLs("walvault: "+oneLine(err.Error()))))
		return exitUsage
	}
	rep.start(app, out, args)
	// SIGQUIT is how PostgreSQL ends a running archive or restore command
	// on an immediate shutdown: caught, it cancels the work like the others
	// do, instead of Go's default goroutine dump into the server log.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	var got atomic.Value
	go func() {
		select {
		case sig := <-sigs:
			got.Store(sig)
			stop()
		case <-ctx.Done():
		}
	}()
	if len(args) == 1 {
		// Help for the person at the terminal, but a script that lost its
		// command to an empty variable must not look successful.
		_ = app.RunContext(ctx, args)
		say("walvault: no command given: run 'walvault help' for the list of commands")
		return exitUsage
	}
	name := "walvault"
	if !strings.HasPrefix(args[1], "-") {
		name += " " + args[1]
	}
	// restore_command must never exit with a status PostgreSQL takes for
	// "not in the archive" unless that is what it is: every other failure
	// of wal-fetch stops recovery (see wal.StopsRecovery), a usage or
	// configuration mistake included.
	fail := func(err error, code int) int {
		if name == "walvault wal-fetch" && code != exitOK && code != exitNotFound &&
			(code == exitUsage || wal.StopsRecovery(err, wal.DataDirOf(args[len(args)-1]))) {
			say("%s: %s%s", name, oneLine(err.Error()), wal.StopRecoveryHint)
			return exitStopRecovery
		}
		say("%s: %s", name, oneLine(err.Error()))
		return code
	}
	args = helpArgs(app, args)
	if err := missingValue(app, args); err != nil {
		return fail(err, exitUsage)
	}
	ordered := reorderArgs(app, args)
	cmdlineFlags = flagWords(ordered)
	err := app.RunContext(ctx, ordered)
	if errors.Is(err, errHandOver) && got.Load() == nil {
		stop()
		signal.Stop(sigs)
		if err = execFull(args); err != nil {
			return fail(err, exitUsage)
		}
	}
	if unknown, ok := app.Metadata[unknownCommandKey].(string); ok {
		say("walvault: unknown command %q%s: run 'walvault help' for the list of commands",
			unknown, didYouMean(unknown, commandNames(app), func(n string) string { return n }))
		return exitUsage
	}
	if err == nil && out.err != nil {
		// A listing cut short (a full disk under > FILE) is no success.
		say("%s: writing the output: %s", name, oneLine(out.err.Error()))
		return exitFailure
	}
	if err == nil {
		return exitOK
	}
	if sig, ok := got.Load().(os.Signal); ok {
		// Stopped by a signal: one line, and a code that is neither success
		// nor "not in the archive" (PostgreSQL is shutting down anyway).
		// wal-fetch, PostgreSQL's restore_command, ends by the signal
		// itself (SIGQUIT, an immediate shutdown, excepted: Go would dump
		// its goroutines for it).
		say("%s: stopped by a signal", name)
		if name == "walvault wal-fetch" && sig != syscall.SIGQUIT {
			dieBy.Store(sig)
		}
		return exitFailure
	}
	var quiet quietError
	if errors.As(err, &quiet) {
		say("%s: %s", name, oneLine(err.Error()))
		return exitCode(err)
	}
	if !errors.Is(err, errUsage) && (strings.HasPrefix(err.Error(), "flag provided but not defined") || strings.Contains(err.Error(), "invalid value")) {
		err = usageError("%v", err)
	}
	return fail(err, exitCode(err))
}

// cmdlineFlags are the flags given on this process's command line (not
// those from the environment or the config file): what a child started
// with the same settings gets on its command line. Settings from the
// environment reach it by inheritance, and so never land in its argv,
// where every local user can read them.
var cmdlineFlags []string

// flagWords are the words of a reordered command line between the command
// and "--" (or the end).
func flagWords(ordered []string) []string {
	if len(ordered) < 3 {
		return nil
	}
	var out []string
	for _, w := range ordered[2:] {
		if w == "--" {
			break
		}
		out = append(out, w)
	}
	return out
}

// outputWriter is the commands' stdout: it keeps the first write error,
// which run reports, so that the commands print without checking each
// line.
type outputWriter struct {
	w   io.Writer
	err error
}

func (o *outputWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	o.err = err
	return n, err
}

// quietError is an expected outcome (a missing WAL file) reported in one
// line, not as a failure.
type quietError struct{ error }

func (q quietError) Unwrap() error { return q.error }

// reorderArgs moves a subcommand's flags in front of its positional
// arguments, so "restore /data --target-time T" works: urfave/cli stops
// reading flags at the first argument and would otherwise take
// "--target-time" for a second path.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return args
	}
	words, pos := tableOf(cmd.Flags).split(args[2:], false)
	var flags []string
	for _, w := range words {
		flags = append(flags, w...)
	}
	out := append([]string{args[0], args[1]}, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// setupLogging sends one line per event to stderr, where PostgreSQL's
// logging collector, journald or a cron job's log file picks it up. Each
// line starts with its time (UTC, to the millisecond), except under
// journald (systemd sets JOURNAL_STREAM for a service whose stderr goes
// to the journal), which stamps every line itself.
func setupLogging(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usageError("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	slog.SetDefault(slog.New(logHandler(c.App.ErrWriter, level, os.Getenv("JOURNAL_STREAM") != "")).With("cmd", c.Command.Name))
	return nil
}

// logHandler writes key=value lines to w, stamped with the time unless
// journald stamps them.
func logHandler(w io.Writer, level slog.Level, journald bool) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key != slog.TimeKey || len(groups) > 0 {
				return a
			}
			if journald || a.Value.Kind() != slog.KindTime {
				return slog.Attr{}
			}
			return slog.String(slog.TimeKey, a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z"))
		}})
}

func storeOptions(c *cli.Context) cloud.Options {
	timeout, _ := time.ParseDuration(c.String("io-timeout")) // checked by openArchive; 0 is the default
	return cloud.Options{IOTimeout: timeout, Settings: backendValues(c)}
}

// openArchive opens the archive the commands share, with the keys a
// command that does a needs. Identities are loaded only to decrypt (a
// pushing node may hold only the public key); recipients only when the
// command writes.
func openArchive(c *cli.Context, a access) (*repo.Repo, error) {
	if err := setupLogging(c); err != nil {
		return nil, err
	}
	if d, err := time.ParseDuration(c.String("io-timeout")); err != nil || d <= 0 {
		return nil, usageError("--io-timeout %q: use a positive duration such as 30s or 2m", c.String("io-timeout"))
	}
	cfg := &repo.Repo{}
	if hasFlag(c.Command.Flags, "compression") {
		comp, err := codec.ParseCompression(c.String("compression"))
		if err != nil {
			return nil, usageError("--compression: %v", err)
		}
		recips, err := crypto.ParseRecipients(c.StringSlice("recipient"))
		if err != nil {
			return nil, err
		}
		cfg.Codec = codec.Settings{Compression: comp, Level: c.Int("compression-level"), Recipients: recips}
		if n := c.Int("upload-concurrency"); n < 1 || n > 256 {
			return nil, usageError("--upload-concurrency %d: use 1 to 256", n)
		}
	}
	if a&decrypts != 0 && c.String("identity-file") != "" {
		ids, err := crypto.LoadIdentities(c.String("identity-file"), c.Bool("allow-insecure-identity"))
		if err != nil {
			return nil, err
		}
		cfg.Identities = ids
	}
	if err := loadKeys(c, cfg, a); err != nil {
		return nil, err
	}
	so := storeOptions(c)
	// Only the commands that add to the archive may start one: for the
	// others a file:// store that does not exist is a mistyped path, not
	// an empty archive (wal-fetch must not answer "not in the archive",
	// which ends recovery).
	so.MustExist = a&writes == 0 || c.Command.Name == "backup-mark"
	if a&writes != 0 {
		l, err := lockOf(c)
		if err != nil {
			return nil, err
		}
		so.Lock = l
	}
	limits, err := rateLimits(c)
	if err != nil {
		return nil, err
	}
	st, err := cloud.Open(c.Context, c.String("store"), so)
	if err != nil {
		return nil, err
	}
	if cfg.Store, err = withFallbacks(c, ratelimit.Wrap(st, limits)); err != nil {
		_ = cloud.Close(st)
		return nil, err
	}
	return cfg, nil
}

// downloadConcurrency is --download-concurrency, checked.
func downloadConcurrency(c *cli.Context) (int, error) {
	n := c.Int("download-concurrency")
	if n < 1 || n > 256 {
		return 0, usageError("--download-concurrency %d: use 1 to 256", n)
	}
	return n, nil
}

// rateLimits are the process's buckets for --max-upload-rate and
// --max-download-rate: every store this process opens with the same
// rates, and every worker of each, shares them.
func rateLimits(c *cli.Context) (ratelimit.Limits, error) {
	var rates [2]int64
	for i, name := range []string{"max-upload-rate", "max-download-rate"} {
		if !hasFlag(c.Command.Flags, name) {
			continue
		}
		v, err := parseRate(c.String(name))
		if err != nil {
			return ratelimit.Limits{}, usageError("--%s: %v", name, err)
		}
		rates[i] = v
	}
	return ratelimit.Shared(rates[0], rates[1]), nil
}

// parseRate reads a rate in bytes per second: 20MiB, 20MiB/s, 500k,
// 1048576 ("" or 0: no limit). Units are binary, as for --part-size.
func parseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "/s"), "ps")
	if t == "" || t == "0" {
		return 0, nil
	}
	n, err := parseSize(t)
	if err != nil {
		return 0, fmt.Errorf("rate %q: expected bytes per second such as 20MiB, 500KiB or 0 for no limit", s)
	}
	return n, nil
}

// wantArgs checks the number of positional arguments.
func wantArgs(c *cli.Context, n int, names string) error {
	if c.NArg() != n {
		return usageError("expected %s, got %d argument(s) %q: run 'walvault %s --help'", names, c.NArg(), c.Args().Slice(), c.Command.Name)
	}
	return nil
}

// parseSize reads 1GiB, 256MiB, 4M, 1048576 (binary units; kB/MB/GB are
// taken as KiB/MiB/GiB, as PostgreSQL does).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: expected e.g. 1GiB, 256MiB or a number of bytes", s)
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (use KiB, MiB, GiB)", s, unit)
	}
	return n * mult, nil
}
