//go:build !walvault_front

package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/drill"
	restorepkg "github.com/walvault/walvault/archive/restore"
	"github.com/walvault/walvault/cloud"
)

// drill: restore, start, check, report.

func init() {
	register(drillCommands)
}

func drillStateFlag() cli.Flag {
	return stringFlag("drill-state-file", "where drills are remembered for status (default: $XDG_STATE_HOME/walvault/drill.json, /var/lib/walvault/drill.json for root, else ~/.local/state/walvault/drill.json; 'none': nowhere)", "")
}

func drillCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "drill",
		Usage: "prove that a backup restores: restore it into a scratch directory, start it, check it, remove it",
		Description: "Restores the backup (--backup, default the newest that fits the target) into a new or empty --dir\n" +
			"(default: a new directory in the system temp directory), checks the files with pg_verifybackup, starts\n" +
			"a throwaway PostgreSQL of the backup's version on them (as the directory's owner; as root, --owner or\n" +
			"postgres), on a private unix socket with no TCP port and archive_mode = off, lets it replay the archived\n" +
			"WAL to the target (default: the end of the archive) and promote (or pause: --target-action pause), then\n" +
			"checks that every database accepts a connection and that its catalog agrees with its files and with the\n" +
			"sizes the backup recorded; --amcheck (B-tree indexes, --amcheck=heap tables too) and --sql FILE (psql,\n" +
			"stopping at the first error, in every database but the templates or in --sql-database) add checks.\n" +
			"Then it stops the server and removes the directory, in every outcome (a SIGTERM included); --keep\n" +
			"leaves it, stopped, and prints how to start it. The store is only read.\n\n" +
			"Prints each check with its result and time, then one summary line (--json: one JSON document). The\n" +
			"outcome is remembered in --drill-state-file for status (--max-drill-age); --prometheus FILE writes the\n" +
			"walvault_drill_* gauges. Exit 0 only when every check passed; 7 when one failed; restore's own codes\n" +
			"when the backup cannot be restored (4: a part or WAL segment missing or damaged).",
		Flags: join(storeFlags(), []cli.Flag{
			stringFlag("backup", "backup name, or LATEST (default: the newest that ends before the target)", ""),
			stringFlag("target-time", "replay to this time, e.g. '2026-11-23 14:05:00+00' (default: the end of the archive)", ""),
			stringFlag("target-lsn", "replay to this WAL location, e.g. 0/5000060", ""),
			boolFlag("target-immediate", "stop as soon as the backup is consistent"),
			stringFlag("target-action", "at the target: promote, or pause (the checks then run read-only in recovery)", "promote"),
			stringFlag("dir", "new or empty directory to drill in (default: a new one in $TMPDIR or /tmp)", ""),
			boolFlag("keep", "leave the directory (the server stopped) and print how to start it"),
			stringFlag("owner", "USER[:GROUP] to run the server as when the drill runs as root (default: the owner of an existing --dir, else postgres)", ""),
			stringFlag("pg-bin-dir", "directory of the backup's major version's postgres, and of pg_verifybackup and psql (default: /usr/lib/postgresql/MAJOR/bin, /usr/pgsql-MAJOR/bin, then PATH)", ""),
			stringFlag("db-user", "role the checks connect as (default: the server's user, then postgres)", ""),
			amcheckFlag(),
			stringFlag("sql", "SQL file run with psql in each database (ON_ERROR_STOP: any error fails the drill)", ""),
			stringFlag("sql-database", "run --sql in this database only", ""),
			stringFlag("max-size", "refuse a drill that would put more than this on disk, e.g. 200GiB (the free space is always checked)", ""),
			intFlag("download-concurrency", "parts downloaded and extracted at once", 4),
			stringFlag("progress-interval", "log progress this often when not on a terminal (e.g. 30s)", "30s"),
			boolFlag("json", "print the report as JSON"),
			stringFlag("prometheus", "write the walvault_drill_* gauges to this file (node_exporter textfile collector; not status's file)", ""),
			drillStateFlag(),
		}),
		Action: drillCmd,
	}}
}

// amcheckMode is --amcheck: alone it means btree, --amcheck=heap adds
// the tables, --amcheck=false turns it off.
type amcheckMode struct{ mode string }

func (m *amcheckMode) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "btree", "on", "yes", "1":
		m.mode = drill.AmcheckBtree
	case "heap":
		m.mode = drill.AmcheckHeap
	case "false", "off", "no", "0", "":
		m.mode = drill.AmcheckOff
	default:
		return fmt.Errorf("use --amcheck (B-tree indexes) or --amcheck=heap (tables too)")
	}
	return nil
}

func (m *amcheckMode) String() string { return m.mode }

// IsBoolFlag lets --amcheck stand without a value (the flag package).
func (m *amcheckMode) IsBoolFlag() bool { return true }

// optionalValueFlag is a flag that may stand alone or take =VALUE: it
// takes no separate value word, and reads its config file key as a string
// or a boolean.
type optionalValueFlag struct{ *cli.GenericFlag }

func (f *optionalValueFlag) TakesValue() bool { return false }

func (f *optionalValueFlag) ApplyInputSourceValue(c *cli.Context, isc altsrc.InputSourceContext) error {
	if c.IsSet(f.Name) {
		return nil
	}
	for _, e := range f.EnvVars {
		if _, ok := os.LookupEnv(e); ok {
			return nil
		}
	}
	s, err := isc.String(f.Name)
	if err != nil {
		b, berr := isc.Bool(f.Name)
		if berr != nil {
			return err
		}
		s = strconv.FormatBool(b)
	}
	if s == "" {
		return nil
	}
	return c.Set(f.Name, s)
}

func amcheckFlag() cli.Flag {
	return &optionalValueFlag{&cli.GenericFlag{Name: "amcheck", Value: &amcheckMode{},
		Usage: "check every B-tree index with amcheck where the server has it (--amcheck=heap: every table too, verify_heapam)", EnvVars: envName("amcheck")}}
}

func drillCmd(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments (the options are flags: --backup NAME, --dir DIR, ...)"); err != nil {
		return err
	}
	t := restorepkg.Target{Immediate: c.Bool("target-immediate"), Action: c.String("target-action")}
	if err := targetPoint(c, &t); err != nil {
		return err
	}
	var maxSize int64
	if s := c.String("max-size"); s != "" {
		n, err := parseSize(s)
		if err != nil {
			return usageError("--max-size: %v", err)
		}
		maxSize = n
	}
	n, err := downloadConcurrency(c)
	if err != nil {
		return err
	}
	interval, err := durationValue(c, "progress-interval")
	if err != nil {
		return err
	}
	argv, err := fetchArgv(c)
	if err != nil {
		return err
	}
	r, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	asJSON := c.Bool("json")
	w := c.App.Writer
	opts := drill.Options{
		Backup: c.String("backup"), Target: t, Dir: c.String("dir"), Keep: c.Bool("keep"), Owner: c.String("owner"),
		BinDir: c.String("pg-bin-dir"), DBUser: c.String("db-user"), SQLFile: c.String("sql"), SQLDatabase: c.String("sql-database"),
		MaxSize: maxSize, Concurrency: n, FetchArgv: argv, ServerReads: serverReads(argv), Progress: progressReporter(progressBar(c), interval),
	}
	if m, ok := c.Generic("amcheck").(*amcheckMode); ok {
		opts.Amcheck = m.mode
	}
	if !asJSON {
		opts.OnCheck = func(ch drill.Check) { printCheck(w, ch) }
	}
	rep, derr := drill.Run(c.Context, r, opts)
	if rep == nil {
		return derr
	}
	st, serr := recordDrill(c, rep)
	if p := c.String("prometheus"); p != "" {
		if err := drill.WriteTextfile(p, rep.Store, st); err != nil && derr == nil {
			derr = fmt.Errorf("writing --prometheus %s: %w", p, err)
		}
	}
	if asJSON {
		if err := encodeJSON(w, rep); err != nil {
			return err
		}
	} else {
		printDrillSummary(w, rep)
	}
	if derr == nil && serr != nil {
		return serr
	}
	return derr
}

// drillStateFile is --drill-state-file: its default, or "" for 'none'.
func drillStateFile(c *cli.Context) string {
	switch path := c.String("drill-state-file"); path {
	case "":
		return drill.DefaultStateFile()
	case "none":
		return ""
	default:
		return path
	}
}

// recordDrill remembers the outcome for status. It returns what is
// remembered for the store (this drill alone when nothing is kept).
func recordDrill(c *cli.Context, rep *drill.Report) (*drill.Record, error) {
	path := drillStateFile(c)
	rec, err := rep.Remember(path)
	if err != nil {
		rec, _ = rep.Remember("")
		return rec, fmt.Errorf("remembering the drill in --drill-state-file %s: %w", path, err)
	}
	return rec, nil
}

// printCheck prints one check as it ends.
func printCheck(w io.Writer, ch drill.Check) {
	name := ch.Name
	if ch.Database != "" {
		name += " " + shown(ch.Database)
	}
	secs := fmt.Sprintf("%7.2f s", ch.Seconds)
	if ch.Result == drill.Skip {
		secs = strings.Repeat(" ", len(secs))
	}
	fmt.Fprintf(w, "%-5s %-24s %s  %s\n", ch.Result, name, secs, shown(ch.Detail))
}

// printDrillSummary prints the notes, how to start a kept directory, and
// the one summary line.
func printDrillSummary(w io.Writer, rep *drill.Report) {
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", shown(n))
	}
	if rep.Kept {
		fmt.Fprintf(w, "kept %s (data directory %s/data)\n", shown(rep.Dir), shown(rep.Dir))
		if rep.StartCommand != "" {
			fmt.Fprintf(w, "  start it: %s\n  connect:  %s\n", shown(rep.StartCommand), shown(rep.ConnectCommand))
		}
		fmt.Fprintf(w, "  remove it when done: rm -rf %s\n", shellQuote(rep.Dir))
	}
	var passed, skipped int
	for _, ch := range rep.Checks {
		switch ch.Result {
		case drill.OK:
			passed++
		case drill.Skip:
			skipped++
		}
	}
	backup := "no backup chosen"
	switch {
	case rep.Backup != "" && rep.RestoredBytes > 0:
		backup = fmt.Sprintf("backup %s (%s, %s)", shown(rep.Backup), rep.BackupType, archive.HumanBytes(rep.RestoredBytes))
	case rep.Backup != "" && rep.BackupType != "":
		backup = fmt.Sprintf("backup %s (%s)", shown(rep.Backup), rep.BackupType)
	case rep.Backup != "":
		backup = "backup " + shown(rep.Backup)
	}
	skips := ""
	if skipped > 0 {
		skips = fmt.Sprintf(", %d skipped", skipped)
	}
	if rep.Success {
		fmt.Fprintf(w, "drill ok: %s restored, replayed to %s and checked in %.1f s: %d checks passed%s\n",
			backup, rep.Target, rep.DurationSeconds, passed, skips)
		return
	}
	fmt.Fprintf(w, "drill FAILED after %.1f s: %s, to %s: %s\n", rep.DurationSeconds, backup, rep.Target, shown(rep.Reason))
}
