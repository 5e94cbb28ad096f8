// Package drill is walvault drill: it proves that a backup restores. It
// restores the backup into a fresh directory with package restore, checks
// the files with pg_verifybackup, starts a throwaway PostgreSQL on them
// (walvault's own child, as the directory's owner, on a private unix socket
// and no TCP port, with archiving off), lets it replay the archived WAL to
// the target, checks what comes up (every database accepts a connection,
// its catalog agrees with its files and with what the backup recorded,
// optionally amcheck and the user's SQL), and removes everything again, in
// every outcome. The store is only read: by restore, and by the server's
// restore_command.
package drill

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/drillrecord"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/archive/restore"
	"github.com/walvault/walvault/cloud"
)

// Check is one check of a drill, with its result and time.
type Check = drillrecord.Check

// Options say what to drill and how.
type Options struct {
	// Backup is a backup name, or "" / "LATEST" to pick by the target.
	Backup string
	// Target is where recovery stops; none set: the end of the archive.
	// Action is promote (default) or pause.
	Target restore.Target
	// Dir is the drill's directory: new or empty ("": a new one in the
	// system temp directory). Everything the drill writes goes below it.
	Dir string
	// Keep leaves the directory (the server stopped) for inspection.
	Keep bool
	// Owner is USER[:GROUP] to run the server as when the drill runs as
	// root ("": the owner of an existing Dir, else postgres).
	Owner string
	// BinDir holds the server binaries of the backup's major version (""
	// to look in the usual places).
	BinDir string
	// DBUser is the role the checks connect as ("": the server's user,
	// then postgres).
	DBUser string
	// Amcheck is AmcheckOff, AmcheckBtree or AmcheckHeap.
	Amcheck string
	// SQLFile is run with psql in every database that accepts connections
	// and is not a template, or in SQLDatabase only; any error fails.
	SQLFile, SQLDatabase string
	// MaxSize refuses a drill that would put more on disk (0: no limit).
	MaxSize     int64
	Concurrency int
	// FetchArgv is restore_command without %f %p (as for restore), and
	// ServerReads the files it names, which the server's user must be
	// able to read (restore refuses up front otherwise).
	FetchArgv   []string
	ServerReads []restore.ServerFile
	// Env is the server's environment, which restore_command inherits
	// (nil: the drill's own).
	Env []string
	// Progress reports the restore's bytes (nil: no report).
	Progress archive.NewProgress
	// OnCheck is told of each check as it ends (nil: nobody).
	OnCheck func(Check)
}

// Database is what the drill found in one database.
type Database struct {
	Name       string `json:"name"`
	OID        uint32 `json:"oid"`
	Tables     int64  `json:"tables"`
	UserTables int64  `json:"user_tables"`
	// RelationBytes is the size of its relations' files after recovery,
	// RecordedBytes what the backup recorded for them (-1: the database
	// was created after the backup).
	RelationBytes int64 `json:"relation_bytes"`
	RecordedBytes int64 `json:"recorded_bytes"`
}

// Report is what a drill did and found.
type Report struct {
	drillrecord.Outcome
	Store     string `json:"store"`
	PGVersion string `json:"pg_version"`
	Dir       string `json:"dir"`
	Kept      bool   `json:"kept"`
	// EstimatedBytes is what the drill expected to put on disk.
	EstimatedBytes int64 `json:"estimated_bytes"`
	// ConsistentLSN is where the restored server became consistent,
	// ReplayLSN where replay ended (or paused), Timeline the server's
	// timeline then (after a promotion, the new one); ReplayedBytes is
	// the WAL from the backup's start to ReplayLSN.
	ConsistentLSN string     `json:"consistent_lsn,omitempty"`
	ReplayLSN     string     `json:"replay_lsn,omitempty"`
	Timeline      uint32     `json:"timeline,omitempty"`
	ReplayedBytes int64      `json:"replayed_bytes"`
	Databases     []Database `json:"databases"`
	// CleanupSeconds is how long stopping the server and removing the
	// directory took (part of DurationSeconds).
	CleanupSeconds float64 `json:"cleanup_seconds"`
	// StartCommand and ConnectCommand say how to start and reach a kept
	// directory.
	StartCommand   string   `json:"start_command,omitempty"`
	ConnectCommand string   `json:"connect_command,omitempty"`
	Notes          []string `json:"notes,omitempty"`
}

// Failed lists the checks that failed.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Result == drillrecord.Fail {
			out = append(out, c)
		}
	}
	return out
}

type drill struct {
	r    *repo.Repo
	opts Options
	rep  *Report
	acct *account

	dir      string // the drill's directory (symbolic links resolved)
	created  bool   // made by the drill (removed whole), else emptied
	run      string // dir/run: socket, log, authentication files
	data     string // dir/data
	sock     string
	sockTemp bool // the socket has a short directory of its own in /tmp

	m            *repo.Manifest
	version      int
	postgres     string
	verifyBackup string
	psql         string
	expectEnd    archive.LSN // replay must reach this: the start of the last archived segment (0: no check)
	expectSeg    string
	conf         serverConf
	srv          *server
	role         string
	maintDB      string
	paused       bool
	amcheck      string
}

// Run drills. It returns the report (nil only when the options are
// refused before anything was done) and, when the drill failed, an error
// naming the first reason: restore's own error (its exit code), or
// archive.ErrVerifyFailed when a check failed. Whatever happened, the
// server is stopped and, unless Keep, the directory removed, also when ctx
// is cancelled (SIGTERM).
func Run(ctx context.Context, r *repo.Repo, opts Options) (*Report, error) {
	d := &drill{r: r, opts: opts, amcheck: opts.Amcheck}
	if err := d.validate(); err != nil {
		return nil, err
	}
	d.rep = &Report{Store: cloud.Redact(r.Store.String()), Databases: []Database{}}
	d.rep.Started = time.Now().UTC()
	d.rep.Target = describeTarget(opts.Target)
	if !strings.EqualFold(opts.Backup, "LATEST") {
		d.rep.Backup = opts.Backup // until restore says which it chose
	}
	d.rep.Checks = []Check{}
	err := d.drill(ctx)
	cleaning := time.Now()
	if cerr := d.cleanup(); cerr != nil && err == nil {
		err = cerr
	}
	d.rep.CleanupSeconds = time.Since(cleaning).Seconds()
	rep := d.rep
	rep.Finished = time.Now().UTC()
	rep.DurationSeconds = rep.Finished.Sub(rep.Started).Seconds()
	if err == nil {
		if failed := rep.Failed(); len(failed) > 0 {
			err = fmt.Errorf("%w: %s", archive.ErrVerifyFailed, reason(failed[0]))
		}
	}
	rep.Success = err == nil
	if err != nil {
		rep.Reason = archive.OneLine(err.Error())
		if archive.IsContextErr(err) {
			rep.Reason = "stopped before the end (a signal, or a time limit)"
		}
	}
	return rep, err
}

// reason is a failed check in words.
func reason(c Check) string {
	where := c.Name
	if c.Database != "" {
		where += " in database " + c.Database
	}
	return where + ": " + c.Detail
}

// versionString writes a server_version_num as PostgreSQL does: 15.4, 9.6.24.
func versionString(n int) string {
	if n >= 100000 {
		return fmt.Sprintf("%d.%d", n/10000, n%10000)
	}
	return fmt.Sprintf("%d.%d.%d", n/10000, n/100%100, n%100)
}

func describeTarget(t restore.Target) string {
	var s string
	switch {
	case t.Time != nil:
		s = "target time " + archive.FormatTime(*t.Time)
	case t.LSN != nil:
		s = "target LSN " + t.LSN.String()
	case t.Immediate:
		s = "the backup's consistency point"
	default:
		s = "the end of the archive"
	}
	if t.Action == "pause" {
		s += ", paused there"
	}
	return s
}

func (d *drill) validate() error {
	o := &d.opts
	switch o.Target.Action {
	case "", "promote", "pause":
	default:
		return fmt.Errorf("%w: --target-action %q: a drill promotes (default) or pauses at the target", archive.ErrBadInput, o.Target.Action)
	}
	if o.Target.XID != "" || o.Target.Name != "" {
		return fmt.Errorf("%w: a drill takes --target-time, --target-lsn or --target-immediate", archive.ErrBadInput)
	}
	if err := o.Target.Validate(); err != nil {
		return err
	}
	switch o.Amcheck {
	case AmcheckOff, AmcheckBtree, AmcheckHeap:
	default:
		return fmt.Errorf("%w: --amcheck=%q: use --amcheck (B-tree indexes) or --amcheck=heap (tables too)", archive.ErrBadInput, o.Amcheck)
	}
	if o.SQLDatabase != "" && o.SQLFile == "" {
		return fmt.Errorf("%w: --sql-database names where --sql runs: give --sql FILE too", archive.ErrBadInput)
	}
	if o.SQLFile != "" {
		f, err := os.Open(o.SQLFile)
		if err != nil {
			return fmt.Errorf("%w: --sql %s: %w", archive.ErrBadInput, o.SQLFile, errors.Unwrap(err))
		}
		_ = f.Close()
	}
	if len(o.FetchArgv) == 0 {
		return fmt.Errorf("%w: no restore_command for the drill's server", archive.ErrBadInput)
	}
	return nil
}

// add records a check and tells OnCheck.
func (d *drill) add(c Check) {
	d.rep.Checks = append(d.rep.Checks, c)
	if d.opts.OnCheck != nil {
		d.opts.OnCheck(c)
	}
}

func (d *drill) note(format string, a ...any) {
	d.rep.Notes = append(d.rep.Notes, fmt.Sprintf(format, a...))
}

// childAttr runs a helper program (pg_verifybackup, psql, the probe of
// restore_command) as the server's user.
func (d *drill) childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: d.acct.credential()}
}

// drill does the work; cleanup follows whatever it returns.
func (d *drill) drill(ctx context.Context) error {
	acct, err := chooseAccount(d.opts.Owner, d.opts.Dir)
	if err != nil {
		return err
	}
	d.acct = acct
	if err := d.makeDir(); err != nil {
		return err
	}
	if err := d.restore(ctx); err != nil {
		return err
	}
	d.add(timed(func() Check { return d.verifyFiles(ctx) }))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := d.prepare(ctx); err != nil {
		d.add(fail(Check{Name: "recovery"}, err.Error()))
		return err
	}
	if err := d.recover(ctx); err != nil {
		return err
	}
	if err := d.databaseChecks(ctx); err != nil {
		return err
	}
	d.srv.stop(d.opts.Keep)
	return nil
}

// makeDir makes (or takes, when empty) the drill's directory, owned by the
// server's user, with run/ for the socket, the log and the authentication
// files.
func (d *drill) makeDir() error {
	dir := d.opts.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp(os.TempDir(), "walvault-drill-"); err != nil {
			return fmt.Errorf("%w: making the drill's directory in %s (set TMPDIR or give --dir): %w", archive.ErrBadInput, os.TempDir(), err)
		}
		d.created = true
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("%w: --dir %s: %w", archive.ErrBadInput, dir, err)
		}
		dir = abs
		ents, err := os.ReadDir(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(dir, 0o700); err != nil {
				return fmt.Errorf("%w: --dir %s cannot be made (its parent must exist): %w", archive.ErrBadInput, dir, errors.Unwrap(err))
			}
			d.created = true
		case err != nil:
			return fmt.Errorf("%w: --dir %s: %w", archive.ErrBadInput, dir, errors.Unwrap(err))
		case len(ents) > 0:
			return fmt.Errorf("%w: --dir %s is not empty (%s, ...): give a new or empty directory; the drill removes everything it puts there", archive.ErrBadInput, dir, ents[0].Name())
		}
	}
	if p, err := filepath.EvalSymlinks(dir); err == nil {
		dir = p
	}
	d.dir = dir
	if d.created {
		if err := os.Chmod(dir, 0o700); err != nil { // #nosec G302 -- a directory: its owner must enter it
			return err
		}
		if err := d.acct.chown(dir); err != nil {
			return err
		}
	}
	if err := reachable(dir, d.acct); err != nil {
		return err
	}
	d.run, d.data = filepath.Join(dir, "run"), filepath.Join(dir, "data")
	if err := d.mkdir(d.run); err != nil {
		return err
	}
	d.sock = d.run
	// A unix socket's path has room for 107 bytes, and the setting is a
	// list: a long or odd directory gets a short one of its own.
	if len(d.sock)+len("/.s.PGSQL.5432") > 100 || strings.ContainsAny(d.sock, ` ,"'\`) {
		s, err := os.MkdirTemp("/tmp", "wvd-")
		if err != nil {
			return err
		}
		d.sock, d.sockTemp = s, true
		if err := os.Chmod(s, 0o700); err != nil { // #nosec G302 -- a directory: its owner must enter it
			return err
		}
		if err := d.acct.chown(s); err != nil {
			return err
		}
	}
	d.rep.Dir = dir
	return nil
}

// mkdir makes a directory of the drill's, owned by the server's user.
func (d *drill) mkdir(p string) error {
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	return d.acct.chown(p)
}

// reachable refuses a directory the server's user cannot get to: each
// directory from / down must let it through.
func reachable(dir string, a *account) error {
	if !a.Switch {
		return nil
	}
	p := "/"
	for _, part := range append([]string{""}, strings.Split(strings.Trim(dir, "/"), "/")...) {
		p = filepath.Join(p, part)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", archive.ErrBadInput, p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := fi.Mode().Perm()
		var can bool
		switch {
		case int(st.Uid) == a.UID:
			can = perm&0o100 != 0
		case int(st.Gid) == a.GID || slices.Contains(a.Groups, st.Gid):
			can = perm&0o010 != 0
		default:
			can = perm&0o001 != 0
		}
		if !can {
			return fmt.Errorf("%w: the drill's server runs as %s, who cannot get through %s (mode %04o): give --dir (or TMPDIR) in a directory that user can reach", archive.ErrBadInput, a.Name, p, perm)
		}
	}
	return nil
}

// restore restores the backup into dir/data, every tablespace below
// dir/tablespaces, after the checks chosen makes.
func (d *drill) restore(ctx context.Context) error {
	began := time.Now()
	owner := ""
	if d.acct.Switch {
		owner = d.acct.spec()
	}
	res, err := restore.Run(ctx, d.r, restore.Options{
		Dest: d.data, Backup: d.opts.Backup, Target: d.opts.Target, Concurrency: d.opts.Concurrency,
		Owner: owner, FetchArgv: d.opts.FetchArgv, ServerReads: d.opts.ServerReads, Progress: d.opts.Progress, Chosen: d.chosen(ctx),
	})
	c := Check{Name: "restore", Seconds: time.Since(began).Seconds()}
	if err != nil {
		if !archive.IsContextErr(err) {
			d.add(fail(c, archive.OneLine(err.Error())))
		}
		return err
	}
	m := res.Manifest
	d.rep.RestoredBytes = res.Bytes
	kind := "full"
	if m.Incremental() {
		kind = fmt.Sprintf("incremental on %s, a chain of %d", m.Parent, len(m.Chain)+1)
	}
	c.Result = drillrecord.OK
	c.Detail = fmt.Sprintf("backup %s (%s, PostgreSQL %s, finished %s) restored: %s in %d files",
		m.Name, kind, versionString(m.PGVersion), m.StopTime.UTC().Format("2006-01-02 15:04:05 UTC"), archive.HumanBytes(m.DataSize), m.FileCount)
	d.add(c)
	return nil
}

// chosen is restore's hook: once the backup is known, and before anything
// is written, find the server binaries of its version, refuse a drill that
// would not fit, try restore_command as the server will run it, and keep
// every tablespace inside the drill's directory.
func (d *drill) chosen(ctx context.Context) func(*repo.Manifest, *repo.Catalog) (map[string]string, error) {
	return func(m *repo.Manifest, cat *repo.Catalog) (map[string]string, error) {
		d.m, d.version = m, m.PGVersion
		d.rep.Backup, d.rep.BackupType, d.rep.PGVersion = m.Name, repo.BackupFull, versionString(m.PGVersion)
		if m.Incremental() {
			d.rep.BackupType = repo.BackupIncremental
		}
		if m.PGVersion < 100000 {
			return nil, fmt.Errorf("%w: backup %s is PostgreSQL %s: the drill needs 10 or later", archive.ErrBadInput, m.Name, m.PGVersionString)
		}
		pgbin, err := findServer(ctx, d.opts.BinDir, majorOf(m.PGVersion))
		if err != nil {
			return nil, err
		}
		d.postgres = pgbin
		d.verifyBackup = findClient(d.opts.BinDir, filepath.Dir(pgbin), "pg_verifybackup")
		if d.opts.SQLFile != "" {
			if d.psql = findClient(d.opts.BinDir, filepath.Dir(pgbin), "psql"); d.psql == "" {
				return nil, fmt.Errorf("%w: --sql needs psql, which is neither in --pg-bin-dir, beside postgres, on PATH nor in %s: install the PostgreSQL client", archive.ErrBadInput, ClientFallbackDir)
			}
		}
		est := estimate(m, d.walPlan(cat, m))
		d.rep.EstimatedBytes = est.Total()
		if err := checkSize(est, d.opts.MaxSize, d.dir); err != nil {
			return nil, err
		}
		if err := d.probe(ctx, m); err != nil {
			return nil, err
		}
		if len(m.Tablespaces) == 0 {
			return nil, nil
		}
		spc := filepath.Join(d.dir, "tablespaces")
		if err := d.mkdir(spc); err != nil {
			return nil, err
		}
		tmap := map[string]string{}
		for _, ts := range m.Tablespaces {
			oid := strconv.FormatUint(uint64(ts.OID), 10)
			tmap[oid] = filepath.Join(spc, oid)
		}
		return tmap, nil
	}
}

// walPlan is the WAL recovery from m reads, from its start to the end of
// the archive on the latest timeline (a target can only stop it earlier).
// For a drill to the end of the archive it also sets what replay must
// reach: the start of the last segment the archive holds without a gap.
func (d *drill) walPlan(cat *repo.Catalog, m *repo.Manifest) int64 {
	inv := cat.WAL(m.SegmentSize)
	path, ok := inv.PathTo(m, max(m.Timeline, cat.LatestTimeline()), m.StopLSN)
	if !ok {
		return 0
	}
	w := inv.Walk(path)
	if w.Last == nil {
		return 0
	}
	seg := uint64(m.SegmentSize) // #nosec G115 -- a segment size
	t := d.opts.Target
	if t.Time == nil && t.LSN == nil && !t.Immediate {
		d.expectEnd, d.expectSeg = archive.LSN(w.LastSegN*seg), w.Last.File.Name
	}
	end := archive.LSN((w.LastSegN + 1) * seg)
	if t.LSN != nil && *t.LSN < end {
		end = *t.LSN
	}
	if end <= m.StartLSN {
		return 0
	}
	return int64(end - m.StartLSN) // #nosec G115 -- WAL positions
}

// probe runs restore_command once as the server will, for the backup's
// first segment, before anything is restored: a binary, config file,
// identity or credential the server's user cannot use shows now, with
// wal-fetch's own message, instead of as a recovery that never starts.
// The probe directory has a standby.signal, so that wal-fetch keeps exit
// 3 for a store it cannot reach rather than the 255 that stops an archive
// recovery. Anything else is taken for this host's set-up (exit 2): restore
// has by then authenticated the WAL to the target and read the backup with
// the same keys, so what fails is what the server's user can use.
func (d *drill) probe(ctx context.Context, m *repo.Manifest) error {
	dir := filepath.Join(d.run, "probe")
	for _, p := range []string{dir, filepath.Join(dir, "pg_wal")} {
		if err := d.mkdir(p); err != nil {
			return err
		}
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600); err != nil {
		return err
	}
	argv := append(slices.Clone(d.opts.FetchArgv), "--prefetch=0", "--", m.StartWAL, filepath.Join(dir, "pg_wal", m.StartWAL))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...) // #nosec G204 -- restore_command: this binary with the drill's own settings
	cmd.Dir = dir
	cmd.Env = d.env()
	cmd.SysProcAttr = d.childAttr()
	var out strings.Builder
	cmd.Stdout = &capped{w: &out, n: 16 << 10}
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg := archive.OneLine(strings.TrimSpace(out.String()))
	if i := strings.LastIndex(msg, "walvault wal-fetch: "); i >= 0 {
		msg = msg[i:]
	}
	// wal-fetch's advice for a recovery in progress does not apply here.
	msg, _, _ = strings.Cut(msg, "; exiting 255")
	kind := archive.ErrBadInput
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
		kind = archive.ErrStore
	}
	return fmt.Errorf("%w: restore_command fails when run as %s, as the drill's server would run it (%v): %s", kind, d.acct.Name, err, msg)
}

func (d *drill) env() []string {
	if d.opts.Env != nil {
		return d.opts.Env
	}
	return os.Environ()
}

// verifyFiles runs pg_verifybackup on the restored directory before the
// server touches it: every file against the backup_manifest inside the
// backup (WAL is not parsed: replay reads it).
func (d *drill) verifyFiles(ctx context.Context) Check {
	c := Check{Name: "pg_verifybackup"}
	if d.verifyBackup == "" {
		c.Result = drillrecord.Skip
		c.Detail = fmt.Sprintf("pg_verifybackup is neither in --pg-bin-dir, beside postgres, on PATH nor in %s: install the PostgreSQL 15 client (postgresql-client-15)", ClientFallbackDir)
		return c
	}
	cmd := exec.CommandContext(ctx, d.verifyBackup, "--no-parse-wal", d.data) // #nosec G204 -- pg_verifybackup on the drill's own directory
	cmd.SysProcAttr = d.childAttr()
	var out strings.Builder
	cmd.Stdout = &capped{w: &out, n: maxSQLOutput}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fail(c, "stopped")
		}
		return fail(c, fmt.Sprintf("%s (%v): %s", filepath.Base(d.verifyBackup), err, errorLines(out.String())))
	}
	c.Result, c.Detail = drillrecord.OK, strings.TrimSpace(archive.OneLine(out.String()))
	return c
}

// prepare writes what the server needs besides the backup: its
// authentication files (trust, on the private socket only), an empty
// postgresql.conf when the backup has none (Debian keeps it in /etc), and
// the drill's settings at the end of postgresql.auto.conf.
func (d *drill) prepare(ctx context.Context) error {
	d.conf = serverConf{version: d.version, data: d.data, sock: d.sock,
		hba: filepath.Join(d.run, "pg_hba.conf"), ident: filepath.Join(d.run, "pg_ident.conf"),
		hotStandby: d.opts.Target.Action == "pause"}
	files := map[string]string{
		d.conf.hba:   "# walvault drill: the socket directory is private to the server's user\nlocal all all trust\n",
		d.conf.ident: "",
	}
	for p, text := range files {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			return err
		}
		if err := d.acct.chown(p); err != nil {
			return err
		}
	}
	pgconf := filepath.Join(d.data, "postgresql.conf")
	if _, err := os.Lstat(pgconf); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(pgconf, nil, 0o600); err != nil {
			return err
		}
		if err := d.acct.chown(pgconf); err != nil {
			return err
		}
		d.note("the backup has no postgresql.conf (Debian keeps it in /etc/postgresql): the server ran with PostgreSQL's defaults and the drill's settings")
	}
	if err := d.checkPreload(ctx); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(d.data, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(autoConfBlock(d.conf)); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return d.acct.chown(filepath.Join(d.data, "postgresql.auto.conf"))
}

// checkPreload asks the server which shared_preload_libraries the backup
// configures (postgres -C reads the configuration without starting) and
// keeps only those named without a path.
func (d *drill) checkPreload(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, d.postgres, append(serverArgs(d.conf), "-C", "shared_preload_libraries")...) // #nosec G204 -- the server binary, reading its configuration
	cmd.Dir = d.data
	cmd.Env = d.env()
	cmd.SysProcAttr = d.childAttr()
	var out strings.Builder
	cmd.Stdout = &capped{w: &out, n: 64 << 10}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: PostgreSQL cannot read the restored configuration (postgres -C): %s", archive.ErrVerifyFailed, archive.OneLine(out.String()))
	}
	keep, dropped := safePreload(strings.TrimSpace(out.String()))
	if len(dropped) > 0 {
		d.conf.preload = &keep
		d.note("shared_preload_libraries: left out %s (a path, not a library of the installation)", strings.Join(dropped, ", "))
	}
	return nil
}

// recover starts the server and waits until it has replayed the WAL to the
// target and promoted, or paused there. A server that stops, pauses short
// of the target, or ends replay before the end of what the archive holds
// fails the check; the checks after it are not run then.
func (d *drill) recover(ctx context.Context) error {
	began := time.Now()
	c := Check{Name: "recovery"}
	done := func(res, detail string) error {
		c.Result, c.Detail, c.Seconds = res, detail, time.Since(began).Seconds()
		d.add(c)
		if res == drillrecord.Fail {
			return fmt.Errorf("%w: %s", archive.ErrVerifyFailed, reason(c))
		}
		return nil
	}
	srv, err := startServer(d.postgres, serverArgs(d.conf), d.env(), d.acct, filepath.Join(d.run, "server.log"), d.data)
	if err != nil {
		return done(drillrecord.Fail, err.Error())
	}
	d.srv = srv
	logPath := filepath.Join(d.run, "server.log")
	if _, err := srv.waitUp(ctx, d.conf.hotStandby); err != nil {
		if errors.Is(err, errStopped) {
			return done(drillrecord.Fail, "PostgreSQL stopped during recovery: "+tailOf(logPath, 3))
		}
		return err
	}
	if err := d.findRole(ctx, d.opts.DBUser); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return done(drillrecord.Fail, err.Error())
	}
	st, err := d.replayState(ctx)
	for d.conf.hotStandby && err == nil && st.InRecovery && !st.Paused {
		// In recovery with hot standby: wait for the pause at the target.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-srv.done:
			return done(drillrecord.Fail, "PostgreSQL stopped during recovery: "+tailOf(logPath, 3))
		case <-time.After(200 * time.Millisecond):
		}
		st, err = d.replayState(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return done(drillrecord.Fail, "reading where replay got: "+pg.Message(err))
	}
	srv.log.poll()
	lsn, tli, paused := st.LSN, st.Timeline, st.Paused
	d.paused = paused
	d.rep.ReplayLSN, d.rep.Timeline, d.rep.ConsistentLSN = lsn.String(), tli, srv.log.consistentLSN
	if lsn > d.m.StartLSN {
		d.rep.ReplayedBytes = int64(lsn - d.m.StartLSN) // #nosec G115 -- WAL positions
	}
	var words []string
	if l := srv.log; !l.consistentAt.IsZero() {
		words = append(words, fmt.Sprintf("consistent at %s after %.1f s", l.consistentLSN, l.consistentAt.Sub(began).Seconds()))
	}
	replayed := fmt.Sprintf("replayed %s of WAL to %s", archive.HumanBytes(d.rep.ReplayedBytes), lsn)
	if d.expectSeg != "" {
		replayed += " (the archive ends in " + d.expectSeg + ")"
	}
	words = append(words, replayed)
	switch {
	case paused && srv.log.stopping == "":
		return done(drillrecord.Fail, "recovery paused before reaching the target: "+tailOf(logPath, 3))
	case paused:
		words = append(words, "paused at the target on timeline "+strconv.FormatUint(uint64(tli), 10))
	default:
		words = append(words, "promoted onto timeline "+strconv.FormatUint(uint64(tli), 10))
	}
	if d.expectEnd > 0 && lsn < d.expectEnd {
		return done(drillrecord.Fail, fmt.Sprintf("replay ended at %s, before %s, which the archive holds: a segment could not be fetched or replayed, and PostgreSQL promoted early (%s)",
			lsn, d.expectSeg, tailOf(logPath, 3)))
	}
	return done(drillrecord.OK, strings.Join(words, "; "))
}

// databaseChecks: every database accepts a connection; in each, the
// catalog agrees with the files and with what the backup recorded;
// amcheck and the user's SQL when asked for.
func (d *drill) databaseChecks(ctx context.Context) error {
	began := time.Now()
	dbs, err := d.databases(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.add(fail(Check{Name: "connect", Seconds: time.Since(began).Seconds()}, "listing the databases: "+pg.Message(err)))
		return nil
	}
	var ok, skipped, failed []string
	var firstErr string
	var usable []pg.Database
	for _, db := range dbs {
		if !db.AllowConn || db.Invalid {
			skipped = append(skipped, db.Name)
			continue
		}
		s, err := d.connect(ctx, db.Name)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failed = append(failed, db.Name)
			if firstErr == "" {
				firstErr = db.Name + ": " + pg.Message(err)
			}
			continue
		}
		s.Close()
		ok = append(ok, db.Name)
		usable = append(usable, db)
	}
	c := Check{Name: "connect", Seconds: time.Since(began).Seconds(), Result: drillrecord.OK,
		Detail: fmt.Sprintf("%d database(s) accept connections (%s)", len(ok), strings.Join(ok, ", "))}
	if len(skipped) > 0 {
		c.Detail += "; not accepting connections, as set: " + strings.Join(skipped, ", ")
	}
	if len(failed) > 0 {
		c = fail(c, fmt.Sprintf("%d of %d database(s) refuse connections: %s", len(failed), len(failed)+len(ok), firstErr))
	}
	d.add(c)
	recorded := recordedByDatabase(d.m)
	for _, db := range usable {
		if err := d.checkDatabase(ctx, db, recorded); err != nil {
			return err
		}
	}
	if d.opts.SQLFile != "" {
		return d.sqlChecks(ctx, usable)
	}
	return nil
}

// checkDatabase runs the catalog check and amcheck in one database.
func (d *drill) checkDatabase(ctx context.Context, db pg.Database, recorded map[uint32]int64) error {
	began := time.Now()
	srv, err := d.connect(ctx, db.Name)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.add(fail(Check{Name: "catalog", Database: db.Name}, "connecting: "+pg.Message(err)))
		return nil
	}
	defer srv.Close()
	c := Check{Name: "catalog", Database: db.Name}
	f, err := srv.Catalog(ctx)
	c.Seconds = time.Since(began).Seconds()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		c = fail(c, "the sanity query failed: "+pg.Message(err))
	case f.Missing > 0:
		c = fail(c, fmt.Sprintf("%d relation(s) in the catalog have no file on disk (%s first)", f.Missing, f.FirstMissing))
	default:
		dbRep := Database{Name: db.Name, OID: db.OID, Tables: f.Tables, UserTables: f.UserTables, RelationBytes: f.RelationBytes, RecordedBytes: -1}
		head := fmt.Sprintf("%d tables (%d user tables), ", f.Tables, f.UserTables)
		if rec, had := recorded[db.OID]; had {
			dbRep.RecordedBytes = rec
			sizeOK, words := compareSize(f.RelationBytes, rec, d.rep.ReplayedBytes)
			c.Result, c.Detail = drillrecord.OK, head+words
			if !sizeOK {
				c = fail(c, head+words)
			}
		} else {
			c.Result, c.Detail = drillrecord.OK, head+archive.HumanBytes(f.RelationBytes)+" in relations; created after the backup"
		}
		d.rep.Databases = append(d.rep.Databases, dbRep)
	}
	d.add(c)
	if d.amcheck != AmcheckOff {
		a := timed(func() Check { return d.amcheckIn(ctx, srv) })
		a.Database = db.Name
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.add(a)
	}
	return nil
}

// sqlChecks runs --sql in every database that is not a template, or in
// the one named.
func (d *drill) sqlChecks(ctx context.Context, usable []pg.Database) error {
	var targets []string
	for _, db := range usable {
		if d.opts.SQLDatabase != "" && db.Name == d.opts.SQLDatabase || d.opts.SQLDatabase == "" && !db.Template {
			targets = append(targets, db.Name)
		}
	}
	if len(targets) == 0 {
		what := "no database but templates accepts connections"
		if d.opts.SQLDatabase != "" {
			what = "the restored cluster has no database " + d.opts.SQLDatabase + " that accepts connections"
		}
		d.add(fail(Check{Name: "sql", Database: d.opts.SQLDatabase}, what))
		return nil
	}
	for _, db := range targets {
		c := timed(func() Check { return d.runSQL(ctx, db) })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.add(c)
	}
	return nil
}

// cleanup stops the server, ends what it left running, and removes the
// directory (unless Keep), whatever happened before.
func (d *drill) cleanup() error {
	if d.srv != nil {
		d.srv.stop(d.opts.Keep)
	}
	if d.dir == "" {
		return nil
	}
	exes := []string{d.postgres, d.opts.FetchArgv[0]}
	if n := endLeftovers(d.acct.UID, exes, d.dir); n > 0 {
		slog.Info("stopped processes the drill's server left running", "count", n)
	}
	if d.opts.Keep {
		d.rep.Kept = true
		d.startCommand()
		return nil
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = d.removeAll()
		// A WAL prefetcher that was starting while the server stopped
		// may make its directory again: end it and remove again.
		if endLeftovers(d.acct.UID, exes, d.dir) == 0 && err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("removing the drill's directory %s: %w", d.dir, err)
	}
	return nil
}

func (d *drill) removeAll() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if d.sockTemp {
		keep(os.RemoveAll(d.sock))
	}
	if d.created {
		keep(os.RemoveAll(d.dir))
		return first
	}
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		keep(os.RemoveAll(filepath.Join(d.dir, e.Name())))
	}
	return first
}

// startCommand says how to start a kept directory: pg_ctl with the
// settings that cannot go into postgresql.auto.conf (the rest is there),
// as the server's user.
func (d *drill) startCommand() {
	if d.postgres == "" || d.conf.data == "" {
		return
	}
	opts := fmt.Sprintf(`-c "data_directory=%s" -c "config_file=%s"`, d.data, filepath.Join(d.data, "postgresql.conf"))
	words := []string{shellQuote(filepath.Join(filepath.Dir(d.postgres), "pg_ctl")), "-D", shellQuote(d.data), "-l", shellQuote(filepath.Join(d.run, "server.log")), "-o", shellQuote(opts), "start"}
	if d.acct.Switch {
		words = append([]string{"runuser", "-u", shellQuote(d.acct.Name), "--"}, words...)
	}
	d.rep.StartCommand = strings.Join(words, " ")
	db := d.maintDB
	if db == "" {
		db = "postgres"
	}
	role := d.role
	if role == "" {
		role = d.acct.Name
	}
	d.rep.ConnectCommand = fmt.Sprintf("psql -h %s -p %d -U %s -d %s", shellQuote(d.sock), serverPort, shellQuote(role), shellQuote(db))
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-=:,+@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Results of a check.
const (
	OK   = drillrecord.OK
	Fail = drillrecord.Fail
	Skip = drillrecord.Skip
)

// Record is what is remembered of a store's drills: the last one and the
// last successful one.
type Record = drillrecord.Store

// DefaultStateFile is where drills are remembered unless told.
func DefaultStateFile() string { return drillrecord.DefaultFile() }

// Remember records the drill in path (per store) and returns the store's
// record; with path "" nothing is written and the record is this drill's
// alone.
func (r *Report) Remember(path string) (*Record, error) {
	if path == "" {
		rec := &Record{Last: &r.Outcome}
		if r.Success {
			rec.LastSuccess = &r.Outcome
		}
		return rec, nil
	}
	return drillrecord.Save(path, r.Store, r.Outcome)
}

// WriteTextfile writes the walvault_drill_* gauges of rec to path for
// node_exporter's textfile collector.
func WriteTextfile(path, store string, rec *Record) error {
	return drillrecord.WriteTextfile(path, store, rec)
}
