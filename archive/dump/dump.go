// Package dump is walvault's logical dumps: pg_dump's custom-format
// output streamed into the store (compressed, encrypted, its manifest
// signed and written last), and streamed back into pg_restore.
package dump

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// FallbackBinDir is where the PostgreSQL 15 client tools are on Debian and
// Ubuntu (PGDG packages) when they are not on PATH.
const FallbackBinDir = "/usr/lib/postgresql/15/bin"

// FindTool finds a PostgreSQL client program: in binDir when it is set,
// else on PATH, else in FallbackBinDir.
func FindTool(binDir, name string) (string, error) {
	if binDir != "" {
		p := filepath.Join(binDir, name)
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("%w: %s not found in --pg-bin-dir %s", archive.ErrBadInput, name, binDir)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join(FallbackBinDir, name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: %s is neither on PATH nor in %s: install the PostgreSQL client or give --pg-bin-dir", archive.ErrBadInput, name, FallbackBinDir)
}

// WithDatabase returns the connection string dsn set to database db (dsn
// itself when db is empty): a URI gets db as its path, a keyword/value
// string a dbname keyword at its end (libpq takes the last one), an empty
// dsn only the dbname keyword (the rest comes from the PG* environment).
func WithDatabase(dsn, db string) string {
	if db == "" {
		return dsn
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path = "/" + db
			u.RawPath = ""
			return u.String()
		}
	}
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db) + "'"
	if strings.TrimSpace(dsn) == "" {
		return "dbname=" + quoted
	}
	return dsn + " dbname=" + quoted
}

// DatabaseOf is the database dsn connects to (with the libpq environment
// and defaults), as pgx reads it.
func DatabaseOf(dsn string) (string, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("%w: connection settings: %w", archive.ErrBadInput, err)
	}
	if cc.Database == "" {
		return cc.User, nil
	}
	return cc.Database, nil
}

// Name is the name of a dump of db started at t.
func Name(t time.Time, db string) string {
	return repo.DumpName(t, repo.DumpKindDatabase, db)
}

// toolLog copies a tool's stderr into the log, one slog line per line,
// and keeps for the error message the tool's first error line with the
// detail and hint lines after it (pg_restore follows its error with the
// statement it ran, "Command was: ...", which says less), else the last
// line.
type toolLog struct {
	tool   string
	mu     sync.Mutex
	last   string
	errMsg []string // the first error line, then its detail and hint lines
	inErr  bool     // still reading the lines that belong to errMsg
	errs   int      // lines with "ERROR:" (psql's failed statements)
	done   chan struct{}
}

// isErrorLine: the tool's own error ("pg_restore: error: ...") or the
// server's ("ERROR:  ...", "FATAL:  ...", as psql prints them).
func isErrorLine(tool, line string) bool {
	return strings.HasPrefix(line, tool+": error:") || strings.Contains(line, "ERROR:") || strings.Contains(line, "FATAL:")
}

// isDetailLine: a line that explains the error before it.
func isDetailLine(tool, line string) bool {
	for _, p := range []string{tool + ": detail:", tool + ": hint:", "DETAIL:", "HINT:"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

func (l *toolLog) note(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = line
	if strings.Contains(line, "ERROR:") {
		l.errs++
	}
	switch {
	case l.errMsg == nil && isErrorLine(l.tool, line):
		l.errMsg, l.inErr = []string{line}, true
	case l.inErr && isDetailLine(l.tool, line) && len(l.errMsg) < 4:
		l.errMsg = append(l.errMsg, line)
	default:
		l.inErr = false
	}
}

func logLines(tool string, r io.Reader) *toolLog {
	l := &toolLog{tool: tool, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			slog.Warn(tool, "line", line)
			l.note(line)
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return l
}

// lastLine waits for the stream's end and returns what the error message
// quotes: the first error with its detail, else the last line.
func (l *toolLog) lastLine() string {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.errMsg != nil {
		return strings.Join(l.errMsg, " ")
	}
	return l.last
}

// errorCount waits for the stream's end and returns how many lines said
// ERROR:.
func (l *toolLog) errorCount() int {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}

// toolErr is a failed pg_dump or pg_restore: exit 6, with its last
// message.
func toolErr(tool string, err error, last string) error {
	var ee *exec.ExitError
	what := err.Error()
	if errors.As(err, &ee) {
		what = ee.ProcessState.String()
	}
	if last != "" {
		return fmt.Errorf("%w: %s failed (%s): %s%s", archive.ErrPostgres, tool, what, last, toolHint(tool, last))
	}
	return fmt.Errorf("%w: %s failed (%s)", archive.ErrPostgres, tool, what)
}

// toolRun is one run of a PostgreSQL client program (pg_dump, pg_dumpall,
// pg_restore, psql): the one way this package runs them. No shell; the
// connection's settings as --dbname and its password (if any) in the
// tool's environment, never on its command line (pg.ToolConn); PGAPPNAME
// naming the walvault command; every line the tool writes on stderr
// logged; its failure exit 6 with its last message.
type toolRun struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser // with toolIO.pipeIn
	stdout io.ReadCloser  // with toolIO.pipeOut
	logs   *toolLog
}

// toolIO is what a tool reads and writes besides stderr.
type toolIO struct {
	in      io.Reader // the tool's input; nil: none (or pipeIn)
	pipeIn  bool      // a pipe to write the input into: toolRun.stdin
	pipeOut bool      // a pipe to read the output from: toolRun.stdout
}

// startTool starts the tool name at path with args and the connection
// dsn, under ctx, as the walvault command app.
func startTool(ctx context.Context, name, path, dsn, app string, args []string, tio toolIO) (*toolRun, error) {
	conn, env, err := pg.ToolConn(dsn)
	if err != nil {
		return nil, err
	}
	if conn != "" {
		args = append([]string{"--dbname=" + conn}, args...)
	}
	cmd := exec.CommandContext(ctx, path, args...) // #nosec G204 -- PostgreSQL's own client, the user's settings, no shell
	cmd.Env = append(append(os.Environ(), "PGAPPNAME="+app), env...)
	cmd.Stdin = tio.in
	t := &toolRun{name: name, cmd: cmd}
	if tio.pipeIn {
		if t.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	if tio.pipeOut {
		if t.stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting %s: %v", archive.ErrPostgres, path, err)
	}
	t.logs = logLines(name, stderr)
	return t, nil
}

// wait waits for the tool to end, after its last message: nil when it
// succeeded; ctx's error when ctx ended; else its failure (toolErr).
func (t *toolRun) wait(ctx context.Context) error {
	last := t.logs.lastLine()
	err := t.cmd.Wait()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return toolErr(t.name, err, last)
}

// toolHint is walvault's advice for a tool's error, where it has one.
func toolHint(tool, msg string) string {
	switch {
	case tool == "pg_restore" && strings.Contains(msg, "already exists"):
		return " (the database already holds the dump's objects: restore with --clean to drop them first, or into an empty database)"
	case tool == "pg_restore" && strings.Contains(msg, "database") && strings.Contains(msg, "does not exist"):
		return " (create the database first, or restore with --create and --dbname naming an existing one, such as postgres)"
	case tool == "pg_dump" && strings.Contains(msg, "server version mismatch"):
		return " (pg_dump must be at least as new as the server: point --pg-bin-dir at a newer PostgreSQL's client tools)"
	case strings.Contains(msg, "role") && strings.Contains(msg, "does not exist"):
		return " (restore the globals dump first: walvault dump-restore dumpall_..._globals)"
	}
	return ""
}

// toolVersion runs `tool --version` and returns its line.
func toolVersion(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, path, "--version").Output() // #nosec G204 -- the PostgreSQL client the user chose
	if err != nil {
		return "", fmt.Errorf("%w: %s --version: %v", archive.ErrPostgres, path, err)
	}
	return strings.TrimSpace(archive.OneLine(string(out))), nil
}

// PushOptions shape one dump-push.
type PushOptions struct {
	DSN      string // libpq connection string or URI ("" : the PG* environment)
	Database string // overrides the DSN's database when set
	BinDir   string // where pg_dump and pg_dumpall are ("" : PATH, then FallbackBinDir)
	Software string
	// Globals dumps the cluster's roles and tablespaces (pg_dumpall
	// --globals-only) instead of one database.
	Globals bool
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// GlobalsName is the name of a globals dump started at t. Its prefix is
// not "dump_", so no database (not even one called "globals") can have
// the same name.
func GlobalsName(t time.Time) string {
	return repo.DumpName(t, repo.DumpKindGlobals, "")
}

// Push runs pg_dump -Fc -Z0 (or, with o.Globals, pg_dumpall
// --globals-only) and streams its output into the store, then writes the
// dump's manifest, last. When the tool fails nothing is left: the object
// is removed and no manifest written.
func Push(ctx context.Context, r *repo.Repo, o PushOptions) (*repo.DumpManifest, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	tool := "pg_dump"
	if o.Globals {
		tool = "pg_dumpall"
	}
	toolPath, err := FindTool(o.BinDir, tool)
	if err != nil {
		return nil, err
	}
	ver, err := toolVersion(ctx, toolPath)
	if err != nil {
		return nil, err
	}
	dsn := WithDatabase(o.DSN, o.Database)
	db := ""
	if !o.Globals {
		if db, err = DatabaseOf(dsn); err != nil {
			return nil, err
		}
	}
	// One connection first: the server's version for the manifest, and a
	// clear error (exit 6) before anything is stored when the database or
	// the server is not there.
	srv, err := pg.Connect(ctx, dsn, "walvault dump-push", 30*time.Second)
	if err != nil {
		return nil, err
	}
	srvVer, srvText, sysid := srv.Version, srv.VersionString, srv.SystemID
	srv.Close()
	// A prefix holds one cluster's archive, dumps included: the dump is
	// bound to it (and claims a prefix nothing was archived to yet).
	if err := r.EnsureCluster(ctx, sysid, 0, ""); err != nil {
		return nil, err
	}

	start := now().UTC()
	m := &repo.DumpManifest{Format: repo.DumpManifestFormat, Kind: repo.DumpKindDatabase, Name: Name(start, db), Software: o.Software,
		Database: db, PGVersion: srvVer, PGVersionText: srvText, PGDumpVersion: ver, DumpFormat: "custom", StartTime: start,
		Compression: string(r.Codec.Compression), Encrypted: len(r.Codec.Recipients) > 0, SystemIdentifier: strconv.FormatUint(sysid, 10)}
	args := []string{"-Fc", "-Z0", "--no-password"}
	if o.Globals {
		m.Kind, m.Name, m.DumpFormat = repo.DumpKindGlobals, GlobalsName(start), "plain"
		args = []string{"--globals-only", "--no-password"}
	}
	if m.Compression == "" {
		m.Compression = "lz4"
	}
	m.Hostname, _ = os.Hostname()
	if err := stream(ctx, r, m, tool, toolPath, dsn, args); err != nil {
		return nil, err
	}
	m.StopTime = now().UTC()
	if m.StopTime.Before(m.StartTime) {
		m.StopTime = m.StartTime
	}
	if err := r.WriteDumpManifest(ctx, m); err != nil {
		removeDumpObjects(ctx, r, m.Name)
		return nil, err
	}
	return m, nil
}

// stream runs the dump tool and stores its output as m's dump object,
// recording the sizes and digest in m. On failure the object is removed.
func stream(ctx context.Context, r *repo.Repo, m *repo.DumpManifest, tool, toolPath, dsn string, args []string) error {
	key := repo.DumpKey(m.Name, repo.DumpFile)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slog.Info("dump starting", "dump", m.Name, "kind", m.Kind, "database", m.Database, tool, m.PGDumpVersion)
	run, err := startTool(cctx, tool, toolPath, dsn, "walvault dump-push", args, toolIO{pipeOut: true})
	if err != nil {
		return err
	}
	stdout := run.stdout
	opened := false
	src := func() (io.ReadCloser, error) {
		if opened {
			// A retry would start over, but the tool's output cannot be
			// read twice.
			return nil, fmt.Errorf("%w: the upload of %s broke off and %s's output cannot be sent again: run dump-push again", archive.ErrStore, key, tool)
		}
		opened = true
		return io.NopCloser(stdout), nil
	}
	st, sums, putErr := r.PutChunked(cctx, key, src, repo.PutOptions{PutOptions: cloud.PutOptions{IfAbsent: true}})
	if putErr != nil {
		cancel() // the tool must not block on a pipe nobody reads
	}
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := run.wait(ctx)
	if errors.Is(putErr, cloud.ErrExists) {
		// Another dump-push of the same database in the same second: its
		// object is not ours to remove.
		return fmt.Errorf("%w: %s already holds dump %s (another dump-push of the same database started in the same second): run it again", archive.ErrConflict, r.Store, m.Name)
	}
	if putErr != nil || waitErr != nil {
		// Nothing of a failed dump is kept.
		removeDumpObjects(ctx, r, m.Name)
		if putErr != nil {
			return putErr
		}
		return waitErr
	}
	m.Size, m.StoredSize, m.SHA256, m.Sums = st.Size, st.StoredSize, st.SHA256, sums
	return nil
}

// removeDumpObjects removes the dump object and its sums of a dump that
// failed: nothing of it is kept.
func removeDumpObjects(ctx context.Context, r *repo.Repo, name string) {
	key := repo.DumpKey(name, repo.DumpFile)
	for _, k := range []string{key, repo.SumsKey(key)} {
		if err := r.Store.Delete(context.WithoutCancel(ctx), k); err != nil {
			slog.Warn("could not remove an object of a failed dump", "key", k, "err", err)
		}
	}
}

// ListDatabases names the databases dump-push --all dumps: those that
// accept connections and are not templates, by name.
func ListDatabases(ctx context.Context, dsn string) ([]string, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: connection settings: %w", archive.ErrBadInput, err)
	}
	cc.ConnectTimeout = 30 * time.Second
	cc.RuntimeParams["application_name"] = "walvault dump-push"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, pg.Err("connecting to list the databases", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname`)
	if err != nil {
		return nil, pg.Err("listing the databases", err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pg.Err("listing the databases", err)
	}
	return dbs, nil
}

// PushAllResult is what PushAll did: the dumps written, and the failures
// (a database name, or "" for the globals, with its error).
type PushAllResult struct {
	Dumps    []*repo.DumpManifest
	Failures []PushFailure
}

// PushFailure is one dump of dump-push --all that failed.
type PushFailure struct {
	Database string // "" : the globals
	Err      error
}

// PushAll dumps the globals, then every database ListDatabases names, one
// after the other, each its own dump. A failure does not stop the others;
// what succeeded stays. The error is only for what stops everything (the
// database list cannot be read, the context ends).
func PushAll(ctx context.Context, r *repo.Repo, o PushOptions, done func(*repo.DumpManifest)) (*PushAllResult, error) {
	res := &PushAllResult{}
	one := func(db string, globals bool) {
		oo := o
		oo.Database, oo.Globals = db, globals
		m, err := Push(ctx, r, oo)
		if err != nil {
			slog.Error("dump failed", "database", db, "globals", globals, "err", archive.OneLine(err.Error()))
			res.Failures = append(res.Failures, PushFailure{Database: db, Err: err})
			return
		}
		res.Dumps = append(res.Dumps, m)
		if done != nil {
			done(m)
		}
	}
	dbs, err := ListDatabases(ctx, o.DSN)
	if err != nil {
		return res, err
	}
	one("", true)
	for _, db := range dbs {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		one(db, false)
	}
	return res, nil
}

// Resolve finds the dump NAME names. LATEST is the newest complete
// database dump of database (of any database when it is ""): a globals
// dump (dump-push --all) is never picked by it, only by its name.
func Resolve(ctx context.Context, r *repo.Repo, name, database string) (*repo.DumpManifest, error) {
	if name != "LATEST" {
		return r.ReadDumpManifest(ctx, name)
	}
	folders, err := r.ListDumps(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range folders {
		if f.Err != nil {
			slog.Warn("skipping a dump that cannot be trusted", "dump", f.Name, "err", archive.OneLine(f.Err.Error()))
		}
	}
	list := repo.CompleteDumps(folders)
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Kind == repo.DumpKindDatabase && (database == "" || list[i].Database == database) {
			return list[i], nil
		}
	}
	switch {
	case database != "":
		return nil, fmt.Errorf("no complete dump of database %s in %s (dump-list shows the dumps, --database names whose dump LATEST is): %w", database, r.Store, archive.ErrNotInArchive)
	case len(list) > 0:
		return nil, fmt.Errorf("no complete database dump in %s (LATEST never picks a globals dump: name it, dump-list shows them): %w", r.Store, archive.ErrNotInArchive)
	}
	return nil, fmt.Errorf("no complete dump in %s: %w", r.Store, archive.ErrNotInArchive)
}

// CheckTarget refuses to restore dump m into a database of another name
// unless the user said whose dump it is (source, --database): a dump
// restored under another database's name is either a mistake, or LATEST
// picking another database's dump because this one's newer dumps are
// gone. With --create pg_restore makes the dump's own database.
func CheckTarget(m *repo.DumpManifest, dsn string, create bool, source string) error {
	if m.Kind != repo.DumpKindDatabase {
		return nil
	}
	if source != "" && source != m.Database {
		return fmt.Errorf("%w: dump %s is of database %s, not %s (--database)", archive.ErrBadInput, m.Name, m.Database, source)
	}
	if create || source != "" {
		return nil
	}
	target, err := DatabaseOf(dsn)
	if err != nil {
		return err
	}
	if target != m.Database {
		return fmt.Errorf("%w: dump %s is of database %s, and --dbname connects to %s: to restore it there, say so with --database %s (or use --create to restore it as %s)",
			archive.ErrBadInput, m.Name, m.Database, target, m.Database, m.Database)
	}
	return nil
}

// load streams dump m's authenticated, decoded content to fn. The stored
// object is released to the decoder chunk by chunk, each chunk only once
// it matched the sums object the (signed) manifest proves: fn never reads
// a byte that is not the dump's. A dump from before sums (format 1) is
// downloaded into stageDir ("": the system's temp directory) and checked
// whole first. Its decoded size must be the manifest's.
func load(ctx context.Context, r *repo.Repo, m *repo.DumpManifest, stageDir string, fn func(io.Reader) error) error {
	want := repo.Want{Encrypted: m.Encrypted, MaxSize: max(m.Size, 1)}
	key := repo.DumpKey(m.Name, repo.DumpFile)
	read := func(rd io.Reader, _ cloud.ObjectInfo) error {
		cr := &countReader{r: rd}
		if err := fn(cr); err != nil {
			return err
		}
		// Read to the end: the last chunk, and the size, are checked there.
		if _, err := io.Copy(io.Discard, cr); err != nil {
			return err
		}
		if cr.n != m.Size {
			return fmt.Errorf("%w: %s in %s decodes to %d bytes, its manifest says %d", archive.ErrIntegrity, key, r.Store, cr.n, m.Size)
		}
		return nil
	}
	if m.Sums == "" {
		return r.LoadStaged(ctx, key, m.SHA256, m.StoredSize, stageDir, want, read)
	}
	sums, err := r.LoadSums(ctx, key, m.Sums, m.StoredSize)
	if err != nil {
		return err
	}
	want.Sums = sums
	return r.Load(ctx, key, want, read)
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
