package dump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// RestoreOptions shape one dump-restore.
type RestoreOptions struct {
	DSN     string // where pg_restore connects (--dbname), required
	Jobs    int    // pg_restore -j; > 1 restores from a verified temp file
	Clean   bool   // pg_restore --clean --if-exists
	Create  bool   // pg_restore --create
	TempDir string // for Jobs > 1 ("" : os.TempDir())
	// Database is whose dump the user means to restore (--database):
	// needed to restore it into a database of another name.
	Database string
	BinDir   string // where pg_restore is
}

// ErrPartial marks a streaming restore whose dump failed its check after
// pg_restore had read (some of) it: the database may hold a partial
// restore.
var ErrPartial = errors.New("the database may hold a partial restore")

// Restore loads dump m into the database o.DSN names with pg_restore.
// With one job the verified, decoded stream goes into pg_restore's stdin;
// the stored object's digest is known to match only at the stream's end,
// so a mismatch there kills pg_restore and fails with ErrPartial. With
// more jobs (pg_restore needs a seekable file) the dump is first written
// to a temp file and verified whole, then restored from it; the file is
// removed afterwards.
func Restore(ctx context.Context, r *repo.Repo, m *repo.DumpManifest, o RestoreOptions) error {
	if o.DSN == "" {
		return fmt.Errorf("%w: dump-restore needs --dbname: the database to restore into (with --create, the one to connect to first)", archive.ErrBadInput)
	}
	if m.Kind == repo.DumpKindGlobals {
		return restoreGlobals(ctx, r, m, o)
	}
	if err := CheckTarget(m, o.DSN, o.Create, o.Database); err != nil {
		return err
	}
	pgRestore, err := FindTool(o.BinDir, "pg_restore")
	if err != nil {
		return err
	}
	args := []string{"--no-password", "--exit-on-error"}
	if o.Clean {
		args = append(args, "--clean", "--if-exists")
	}
	if o.Create {
		args = append(args, "--create")
	}
	slog.Info("restoring dump", "dump", m.Name, "database", m.Database, "jobs", max(o.Jobs, 1))
	if o.Jobs > 1 {
		return restoreFromFile(ctx, r, m, o, pgRestore, args)
	}
	if m.Sums == "" {
		// A dump from before sums can only be checked whole: it is
		// downloaded and checked first, as for a parallel restore.
		return restoreFromFile(ctx, r, m, o, pgRestore, args)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run, err := startTool(cctx, "pg_restore", pgRestore, o.DSN, "walvault dump-restore", args, toolIO{pipeIn: true})
	if err != nil {
		return err
	}
	stdin := run.stdin
	var toolGone bool
	w := &writeErr{w: stdin}
	loadErr := load(ctx, r, m, o.TempDir, func(rd io.Reader) error {
		if w.n > 0 {
			// The store's connection broke and Load starts over: what
			// pg_restore already read cannot be taken back.
			return fmt.Errorf("%w: the download of dump %s broke off after %d bytes had gone to pg_restore", archive.ErrStore, m.Name, w.n)
		}
		_, err := io.Copy(w, rd)
		if err != nil && w.err != nil {
			// pg_restore closed its input (it stopped on an error): its
			// own message says why.
			toolGone = true
			return nil
		}
		return err
	})
	if loadErr != nil && !toolGone {
		// The dump failed its check (or could not be read): pg_restore
		// must not finish on what it has.
		cancel()
	}
	_ = stdin.Close()
	waitErr := run.wait(ctx)
	if loadErr == nil {
		return waitErr
	}
	if archive.IsContextErr(loadErr) || w.n == 0 {
		return loadErr
	}
	// Only authenticated chunks reached pg_restore, but the dump ended
	// early (a later chunk failed, or the download broke off).
	return fmt.Errorf("%w; %w: pg_restore was stopped after it had restored part of the dump (only data the dump's manifest proves reached it): clean the database (or restore again with --clean)", loadErr, ErrPartial)
}

// MaxGlobalsBytes bounds a globals dump dump-restore runs: it is read
// whole, and verified, before psql sees any of it.
const MaxGlobalsBytes = 256 << 20

// GlobalsErrors is the number of statements psql reported failing in a
// globals restore that otherwise succeeded (Restore's caller shows it).
type GlobalsErrors struct{ N int }

func (g *GlobalsErrors) Error() string {
	return fmt.Sprintf("%d statement(s) of the globals dump failed (such as CREATE ROLE of a role that exists already): see the warnings", g.N)
}

// restoreGlobals runs a globals dump (plain SQL from pg_dumpall
// --globals-only) with psql -X -v ON_ERROR_STOP=0 into o.DSN. The dump is
// downloaded and verified whole first: psql runs nothing unverified. A
// statement that fails (a role that exists already: CREATE ROLE postgres
// always does) does not stop the others; psql's messages go to the log
// and the count comes back as a *GlobalsErrors, which the caller reports
// as a warning, not a failure.
func restoreGlobals(ctx context.Context, r *repo.Repo, m *repo.DumpManifest, o RestoreOptions) error {
	if o.Jobs > 1 || o.Clean || o.Create {
		return fmt.Errorf("%w: %s is a globals dump (plain SQL run with psql): --jobs, --clean and --create do not apply", archive.ErrBadInput, m.Name)
	}
	if m.Size > MaxGlobalsBytes {
		return fmt.Errorf("%w: globals dump %s is %d bytes, more than the %d dump-restore runs: dump-fetch it and run it with psql yourself", archive.ErrBadInput, m.Name, m.Size, MaxGlobalsBytes)
	}
	psql, err := FindTool(o.BinDir, "psql")
	if err != nil {
		return err
	}
	var sql bytes.Buffer
	if err := load(ctx, r, m, o.TempDir, func(rd io.Reader) error { sql.Reset(); _, err := io.Copy(&sql, rd); return err }); err != nil {
		return err
	}
	slog.Info("restoring globals dump", "dump", m.Name)
	run, err := startTool(ctx, "psql", psql, o.DSN, "walvault dump-restore", []string{"-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=0", "-f", "-"}, toolIO{in: &sql})
	if err != nil {
		return err
	}
	if err := run.wait(ctx); err != nil {
		return err
	}
	if n := run.logs.errorCount(); n > 0 {
		return &GlobalsErrors{N: n}
	}
	return nil
}

// restoreFromFile downloads and verifies the dump into a temp file, then
// runs pg_restore -j on it.
func restoreFromFile(ctx context.Context, r *repo.Repo, m *repo.DumpManifest, o RestoreOptions, pgRestore string, args []string) error {
	dir := o.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, ".walvault-"+m.Name+"-*.dump")
	if err != nil {
		return fmt.Errorf("%w: temp file for a parallel restore: %v (set --temp-dir)", archive.ErrBadInput, err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	err = load(ctx, r, m, dir, func(rd io.Reader) error { _, err := io.Copy(f, rd); return err })
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	args = append(args, fmt.Sprintf("--jobs=%d", max(o.Jobs, 1)), f.Name())
	run, err := startTool(ctx, "pg_restore", pgRestore, o.DSN, "walvault dump-restore", args, toolIO{})
	if err != nil {
		return err
	}
	return run.wait(ctx)
}

// Fetch writes dump m's plain pg_dump file to dest: verified whole in a
// temp file beside it, synced, then linked into place; an existing dest
// is never overwritten.
func Fetch(ctx context.Context, r *repo.Repo, m *repo.DumpManifest, dest string) error {
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("%w: %s already exists: dump-fetch never overwrites a file", archive.ErrBadInput, dest)
	}
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".walvault-*")
	if err != nil {
		return fmt.Errorf("%w: %v", archive.ErrBadInput, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	err = load(ctx, r, m, filepath.Dir(dest), func(rd io.Reader) error { _, err := io.Copy(f, rd); return err })
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Link, not rename: it fails when dest appeared meanwhile.
	if err := os.Link(tmp, dest); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s already exists: dump-fetch never overwrites a file", archive.ErrBadInput, dest)
		}
		return fmt.Errorf("%w: %v", archive.ErrBadInput, err)
	}
	if d, err := os.Open(filepath.Dir(dest)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// writeErr tells a failed write (pg_restore gone) from a failed read.
type writeErr struct {
	w   io.Writer
	n   int64
	err error
}

func (w *writeErr) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}
