//go:build !walvault_front

package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/dump"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

func init() {
	register(dumpCommands)
}

func pgBinDirFlag() cli.Flag {
	return stringFlag("pg-bin-dir", "directory of pg_dump and pg_restore (default: PATH, then "+dump.FallbackBinDir+")", "")
}

func dumpCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "dump-push",
			Usage:     "run pg_dump on one database (or every one, and the globals) and stream its output into the store",
			ArgsUsage: "DBNAME | --all",
			Description: "Runs pg_dump -Fc -Z0 (custom format, pg_dump's own compression off) on database DBNAME, reached with\n" +
				"the libpq environment or --dbname, streams its output through walvault's compression and encryption\n" +
				"into the store (no temp file), logs pg_dump's messages, and writes the dump's signed manifest last.\n" +
				"A failed pg_dump leaves nothing behind. With --all instead of DBNAME: first the cluster's roles and\n" +
				"tablespaces (pg_dumpall --globals-only, plain SQL, a dump of its own named dumpall_<time>_globals),\n" +
				"then every database that accepts connections and is not a template, one after the other, each its\n" +
				"own dump. A failed one does not stop the others; the failures are listed at the end (exit 6).",
			Flags: join(storeFlags(), writeFlags(), copyStoreFlags(), []cli.Flag{
				stringFlag("dbname", "libpq connection string or URI (default: the PG* environment variables)", ""),
				// Command-line only: not a setting (a config file's "all"
				// would turn every dump-push DBNAME into a usage error).
				&cli.BoolFlag{Name: "all", Usage: "dump the globals and every database, each its own dump (instead of DBNAME)"},
				pgBinDirFlag(),
				boolFlag("json", "end with one JSON object on stdout (the dumps, or why it failed) instead of the summary lines"),
			}),
			Action: dumpPush,
		},
		{
			Name:   "dump-list",
			Usage:  "list the complete logical dumps",
			Flags:  join(storeFlags(), []cli.Flag{boolFlag("json", "print JSON for scripts")}),
			Action: dumpList,
		},
		{
			Name:      "dump-restore",
			Usage:     "restore a logical dump into a database with pg_restore (a globals dump: with psql)",
			ArgsUsage: "NAME|LATEST",
			Description: "Streams the dump, decrypted and decompressed, into pg_restore --dbname CONNSTR. Each MiB of the stored\n" +
				"object is authenticated (against the sums object the signed manifest proves) before a byte of it reaches\n" +
				"pg_restore; a dump taken before walvault recorded sums is downloaded into --temp-dir and checked whole\n" +
				"first. With --jobs > 1 the dump is downloaded and checked into a temp file in --temp-dir (removed\n" +
				"afterwards), then restored with pg_restore -j N. A globals dump (dump-push --all) is downloaded and\n" +
				"checked whole, then run with psql -X -v ON_ERROR_STOP=0 in --dbname: statements that fail (roles that exist already)\n" +
				"are warnings, not a failure. LATEST is the newest dump of the database --dbname restores into (of\n" +
				"--database NAME when given; of any database with --create), never a globals dump. A dump is restored\n" +
				"into a database of another name only when --database names the dump's own database.",
			Flags: join(storeFlags(), []cli.Flag{
				stringFlag("dbname", "libpq connection string or URI of the database to restore into (with --create: the one to connect to first)", ""),
				intFlag("jobs", "pg_restore parallel jobs (> 1 needs a temp file the size of the dump)", 1),
				boolFlag("clean", "drop the dump's objects before recreating them (pg_restore --clean --if-exists)"),
				boolFlag("create", "create the dump's database and restore into it (pg_restore --create)"),
				stringFlag("temp-dir", "where --jobs > 1 keeps the downloaded dump (default: the system temp directory)", ""),
				// Command-line only: which dump is meant is not a setting.
				&cli.StringFlag{Name: "database", Usage: "the database whose dump to restore: LATEST is its newest; needed to restore a dump into a database of another name"},
				pgBinDirFlag(),
				boolFlag("json", "end with one JSON object on stdout (what was restored, or why it failed) instead of the summary line"),
			}),
			Action: dumpRestore,
		},
		{
			Name:      "dump-fetch",
			Usage:     "write a logical dump as a plain pg_dump custom-format file (a globals dump: an SQL file)",
			ArgsUsage: "NAME|LATEST FILE",
			Description: "Downloads, decrypts, decompresses and verifies the dump into a temp file beside FILE, then links it\n" +
				"into place: FILE is never partial, unverified or overwritten. Restore it with pg_restore yourself.\n" +
				"LATEST is the newest database dump, as for dump-restore.",
			Flags: join(storeFlags(), []cli.Flag{
				&cli.StringFlag{Name: "database", Usage: "the database whose dump to fetch: LATEST is its newest"},
				boolFlag("json", "end with one JSON object on stdout (what was written, or why it failed) instead of the summary line"),
			}),
			Action: dumpFetch,
		},
	}
}

func dumpPush(c *cli.Context) error {
	all := c.Bool("all")
	switch {
	case all && c.NArg() > 0:
		return usageError("give DBNAME or --all, not both: run 'walvault dump-push --help'")
	case !all && c.NArg() != 1:
		return wantArgs(c, 1, "one argument, DBNAME (or --all for every database and the globals)")
	}
	r, err := openArchive(c, writes)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	seconds, closeAll, err := openCopyStores(c, r)
	if err != nil {
		return err
	}
	defer closeAll()
	var copyErr error
	copied := func(m *repo.DumpManifest) {
		err := copyToSeconds(c, r, seconds, "dump "+m.Name, func(dst *repo.Repo, opts repo.CopyOptions) error {
			return r.CopyDumpNamed(c.Context, dst, m.Name, opts)
		})
		if copyErr == nil {
			copyErr = err
		}
	}
	o := dump.PushOptions{DSN: c.String("dbname"), BinDir: c.String("pg-bin-dir"), Software: "walvault " + version}
	out := resultOf(c)
	dumps := []map[string]any{}
	out.set("dumps", dumps)
	pushed := func(m *repo.DumpManifest) {
		if out == nil {
			printPushed(c, m)
			return
		}
		dumps = append(dumps, dumpResult(m))
		out.set("dumps", dumps)
	}
	if !all {
		o.Database = c.Args().First()
		m, err := dump.Push(c.Context, r, o)
		if err != nil {
			return err
		}
		pushed(m)
		for k, v := range dumpResult(m) {
			out.set(k, v)
		}
		copied(m)
		return copyErr
	}
	out.set("failures", []map[string]string{}) // with --all, always there
	res, err := dump.PushAll(c.Context, r, o, func(m *repo.DumpManifest) { pushed(m); copied(m) })
	if err != nil {
		return err
	}
	if len(res.Failures) == 0 {
		return copyErr
	}
	failed := []map[string]string{}
	for _, f := range res.Failures {
		fmt.Fprintf(c.App.ErrWriter, "walvault dump-push: %s failed: %s\n", dumpWhat(f.Database), shown(oneLine(f.Err.Error())))
		failed = append(failed, map[string]string{"database": f.Database, "error": scrubURLs(oneLine(f.Err.Error()))})
	}
	out.set("failures", failed)
	// Exit 6 whatever the kind of each failure: they are listed above,
	// and the dumps that were written stay.
	return fmt.Errorf("%w: %d of %d dump(s) failed (%d written); the first, %s: %v", archive.ErrPostgres, len(res.Failures),
		len(res.Failures)+len(res.Dumps), len(res.Dumps), dumpWhat(res.Failures[0].Database), res.Failures[0].Err)
}

// dumpWhat names what a dump is of: a database, or the globals.
func dumpWhat(db string) string {
	if db == "" {
		return "the globals"
	}
	return "database " + shown(db)
}

// dumpResult is one dump in dump-push --json.
func dumpResult(m *repo.DumpManifest) map[string]any {
	return map[string]any{"name": m.Name, "kind": m.Kind, "database": m.Database, "start_time": m.StartTime, "stop_time": m.StopTime,
		"duration_seconds": m.StopTime.Sub(m.StartTime).Seconds(), "size": m.Size, "stored_size": m.StoredSize,
		"compression": m.Compression, "encrypted": m.Encrypted}
}

func printPushed(c *cli.Context, m *repo.DumpManifest) {
	secs := m.StopTime.Sub(m.StartTime).Seconds()
	what := "database " + shown(m.Database)
	if m.Kind == repo.DumpKindGlobals {
		what = "globals (roles, tablespaces)"
	}
	fmt.Fprintf(c.App.Writer, "dump %s complete: %s, %s dumped, %s stored (%.1f:1), %.2f s (%s/s)\n",
		m.Name, what, archive.HumanBytes(m.Size), archive.HumanBytes(m.StoredSize),
		float64(m.Size)/float64(max(m.StoredSize, 1)), secs, archive.HumanBytes(int64(float64(m.Size)/max(secs, 0.001))))
}

// dumpEntry is one dump in dump-list --json.
type dumpEntry struct {
	Name          string    `json:"name"`
	Kind          string    `json:"kind"`     // "database" or "globals"
	Database      string    `json:"database"` // "" for globals
	StartTime     time.Time `json:"start_time"`
	StopTime      time.Time `json:"stop_time"`
	PGVersion     int       `json:"pg_version"`
	PGDumpVersion string    `json:"pg_dump_version"`
	Size          int64     `json:"size"`
	StoredSize    int64     `json:"stored_size"`
	Compression   string    `json:"compression"`
	Encrypted     bool      `json:"encrypted"`
}

func dumpList(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	r, err := openArchive(c, reads)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	folders, err := r.ListDumps(c.Context)
	if err != nil {
		return err
	}
	var entries []dumpEntry
	for _, m := range repo.CompleteDumps(folders) {
		entries = append(entries, dumpEntry{Name: m.Name, Kind: m.Kind, Database: m.Database, StartTime: m.StartTime, StopTime: m.StopTime,
			PGVersion: m.PGVersion, PGDumpVersion: m.PGDumpVersion, Size: m.Size, StoredSize: m.StoredSize,
			Compression: m.Compression, Encrypted: m.Encrypted})
	}
	bad := repo.DamagedDumps(folders)
	for _, b := range bad {
		fmt.Fprintf(c.App.ErrWriter, "walvault dump-list: warning: dump %s is %s and cannot be restored: %s\n", shown(b.Name), b.Mark, shown(oneLine(b.Err.Error())))
	}
	badErr := func() error { return damagedErr("dump", bad, r.Store) }
	if c.Bool("json") {
		if entries == nil {
			entries = []dumpEntry{}
		}
		if err := encodeJSON(c.App.Writer, entries); err != nil {
			return err
		}
		return badErr()
	}
	if len(entries) == 0 && len(bad) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "walvault dump-list: no complete dump in %s\n", r.Store)
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFINISHED (UTC)\tKIND\tDATABASE\tPG\tSIZE\tSTORED\t")
	for _, e := range entries {
		db := shown(e.Database)
		if e.Kind == repo.DumpKindGlobals {
			db = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", shown(e.Name), e.StopTime.UTC().Format("2006-01-02 15:04:05"), e.Kind, db,
			pgVersion(e.PGVersion), archive.HumanBytes(e.Size), archive.HumanBytes(e.StoredSize))
	}
	for _, b := range bad {
		fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t%s\t%s (see the warning)\t\n", shown(b.Name), archive.HumanBytes(b.Size), b.Mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return badErr()
}

func dumpRestore(c *cli.Context) error {
	if err := wantArgs(c, 1, "one argument, the dump's NAME or LATEST"); err != nil {
		return err
	}
	if c.String("dbname") == "" {
		return usageError("dump-restore needs --dbname CONNSTR: the database to restore into (with --create, the one to connect to first)")
	}
	if n := c.Int("jobs"); n < 1 || n > 256 {
		return usageError("--jobs %d: use 1 to 256", n)
	}
	r, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	// LATEST is the newest dump of the database named with --database,
	// else of the one --dbname restores into (with --create, of any).
	source := c.String("database")
	if source == "" && !c.Bool("create") {
		if source, err = dump.DatabaseOf(c.String("dbname")); err != nil {
			return err
		}
	}
	m, err := dump.Resolve(c.Context, r, c.Args().First(), source)
	if err != nil {
		return err
	}
	start := time.Now()
	out := resultOf(c)
	for k, v := range map[string]any{"name": m.Name, "kind": m.Kind, "database": m.Database, "size": m.Size, "stored_size": m.StoredSize} {
		out.set(k, v)
	}
	err = dump.Restore(c.Context, r, m, dump.RestoreOptions{DSN: c.String("dbname"), Jobs: c.Int("jobs"), Clean: c.Bool("clean"),
		Create: c.Bool("create"), TempDir: c.String("temp-dir"), BinDir: c.String("pg-bin-dir"), Database: c.String("database")})
	var ge *dump.GlobalsErrors
	if errors.As(err, &ge) {
		// ON_ERROR_STOP=0: the rest ran; a role that exists already is
		// not a failure.
		fmt.Fprintf(c.App.ErrWriter, "walvault dump-restore: warning: %s\n", ge.Error())
		out.set("warnings", ge.Error())
	} else if err != nil {
		return err
	}
	out.set("duration_seconds", time.Since(start).Seconds())
	if out != nil {
		return nil
	}
	what := "database " + shown(m.Database)
	if m.Kind == repo.DumpKindGlobals {
		what = "globals"
	}
	fmt.Fprintf(c.App.Writer, "dump %s restored: %s, %s, %.2f s\n", m.Name, what, archive.HumanBytes(m.Size), time.Since(start).Seconds())
	return nil
}

func dumpFetch(c *cli.Context) error {
	if err := wantArgs(c, 2, "two arguments, the dump's NAME (or LATEST) and FILE"); err != nil {
		return err
	}
	r, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	m, err := dump.Resolve(c.Context, r, c.Args().First(), c.String("database"))
	if err != nil {
		return err
	}
	out := resultOf(c)
	for k, v := range map[string]any{"name": m.Name, "kind": m.Kind, "database": m.Database, "file": c.Args().Get(1), "size": m.Size, "stored_size": m.StoredSize} {
		out.set(k, v)
	}
	start := time.Now()
	if err := dump.Fetch(c.Context, r, m, c.Args().Get(1)); err != nil {
		return err
	}
	out.set("duration_seconds", time.Since(start).Seconds())
	if out != nil {
		return nil
	}
	fmt.Fprintf(c.App.Writer, "dump %s written to %s (%s)\n", m.Name, c.Args().Get(1), archive.HumanBytes(m.Size))
	return nil
}
