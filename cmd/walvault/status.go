//go:build !walvault_front

package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent"
	"github.com/walvault/walvault/archive/status"
	"github.com/walvault/walvault/cloud"
)

// status: the figures a monitor alerts on.

func init() {
	register(statusCommands)
}

func statusCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "status",
		Usage: "show the newest backup, the last archived WAL, the archive lag, the PITR window, WAL gaps and the archive's size; exit 7 past a threshold",
		Description: "Reads the store (manifests authenticated as every reader does) and, when it can reach it, the server\n" +
			"(connecting like backup-push: PGHOST, PGPORT, PGUSER, PGDATABASE or --dbname) for pg_stat_archiver and\n" +
			"the .ready files under --pgdata or the server's data_directory. A server that cannot be reached is\n" +
			"reported and its figures left empty: status works from a host with only the store.\n\n" +
			"WAL gaps are looked for only in what was archived since the last run (the first run: from the newest\n" +
			"backup's start); how far it got, and the gaps found, are kept in --state-file. verify checks everything.\n\n" +
			"The last restore drill run on this host (walvault drill) is read from --drill-state-file.\n\n" +
			"--max-backup-age, --max-dump-age, --max-archive-lag and --max-drill-age make it a check: exit 7, with the reasons on stderr, when one is\n" +
			"exceeded. --prometheus FILE writes the same figures for node_exporter's textfile collector.",
		Flags: join(storeFlags(), copyStoreFlags(), []cli.Flag{
			durationFlag("max-copy-lag", "exit 7 when a copy-store has lacked a WAL file of the store for longer than this (e.g. 15m)", "0"),
			boolFlag("json", "print the figures as JSON"),
			stringFlag("dbname", "libpq connection string or URI (default: the PG* environment variables)", ""),
			altsrc.NewStringFlag(&cli.StringFlag{Name: "pgdata", Usage: "data directory, to count .ready files (default: the server's data_directory)", EnvVars: []string{"WALVAULT_PGDATA", "PGDATA"}}),
			boolFlag("no-server", "do not connect to PostgreSQL (a host with only the store)"),
			durationFlag("connect-timeout", "give up connecting to PostgreSQL after this long", "5s"),
			stringFlag("state-file", "where status remembers how far it checked the WAL for gaps (default: $XDG_STATE_HOME/walvault/status.json, /var/lib/walvault/status.json for root, else ~/.local/state/walvault/status.json; 'none': keep no state)", ""),
			durationFlag("max-backup-age", "exit 7 when the newest backup finished longer ago than this (e.g. 26h)", "0"),
			durationFlag("max-dump-age", "exit 7 when the newest database dump (dump-push) finished longer ago than this, or there is none (e.g. 26h)", "0"),
			durationFlag("max-archive-lag", "exit 7 when WAL has waited longer than this for archiving, or the lag cannot be read (e.g. 15m)", "0"),
			durationFlag("max-drill-age", "exit 7 when the last restore drill that passed (walvault drill, on this host) finished longer ago than this, or there is none (e.g. 192h for 8 days)", "0"),
			drillStateFlag(),
			stringFlag("prometheus", "also write the figures to this file in Prometheus text format (node_exporter textfile collector: a *.prom file in its directory)", ""),
		}),
		Action: statusCmd,
	}}
}

func statusCmd(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	var th status.Thresholds
	var err error
	if th.MaxBackupAge, err = durationValue(c, "max-backup-age"); err != nil {
		return err
	}
	if th.MaxDumpAge, err = durationValue(c, "max-dump-age"); err != nil {
		return err
	}
	if th.MaxArchiveLag, err = durationValue(c, "max-archive-lag"); err != nil {
		return err
	}
	if th.MaxDrillAge, err = durationValue(c, "max-drill-age"); err != nil {
		return err
	}
	maxCopyLag, err := durationValue(c, "max-copy-lag")
	if err != nil {
		return err
	}
	timeout, err := durationValue(c, "connect-timeout")
	if err != nil {
		return err
	}
	stateFile := c.String("state-file")
	switch stateFile {
	case "":
		stateFile = status.DefaultStateFile()
	case "none":
		stateFile = ""
	}
	r, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	opts := status.Options{StateFile: stateFile, DrillStateFile: drillStateFile(c)}
	if !c.Bool("no-server") {
		opts.Server = status.PGProbe(c.String("dbname"), c.String("pgdata"), timeout)
	}
	seconds, closeAll, err := openCopyStores(c, r)
	if err != nil {
		return err
	}
	defer closeAll()
	rep, err := status.Collect(c.Context, r, opts)
	if err != nil {
		return err
	}
	var stores []cloud.Store
	for _, s := range seconds {
		stores = append(stores, s.r.Store)
	}
	if rep.CopyStores, err = status.CollectCopyStores(c.Context, r, stores, time.Now()); err != nil {
		return err
	}
	if p := c.String("prometheus"); p != "" {
		if err := rep.WriteTextfile(p); err != nil {
			return fmt.Errorf("writing --prometheus %s: %w", p, err)
		}
	}
	ag := agentState(c.String("pgdata"), rep)
	if c.Bool("json") {
		out := struct {
			*status.Report
			Agent *agent.Stats `json:"agent,omitempty"`
		}{rep, ag}
		if err := encodeJSON(c.App.Writer, out); err != nil {
			return err
		}
	} else {
		printStatus(c.App.Writer, rep)
		printAgent(c.App.Writer, ag)
		printCopyStores(c.App.Writer, rep.CopyStores, ag)
	}
	// What is wrong with the archive fails the check whatever the
	// thresholds; then the thresholds.
	reasons := append(rep.Problems(), rep.Exceeded(th)...)
	if reasons = append(reasons, status.CopyProblems(rep.CopyStores, maxCopyLag)...); len(reasons) > 0 {
		return fmt.Errorf("%w: %s", archive.ErrVerifyFailed, shown(strings.Join(reasons, "; ")))
	}
	return nil
}

// agentState reads the state file walvault agent keeps in the data
// directory's spool (pg_wal/.walvault), if there is one.
func agentState(pgdata string, rep *status.Report) *agent.Stats {
	if pgdata == "" && rep.Server != nil {
		pgdata = rep.Server.DataDirectory
	}
	if pgdata == "" {
		return nil
	}
	st, err := agent.ReadState(filepath.Join(pgdata, "pg_wal", ".walvault"))
	if err != nil {
		return nil
	}
	return &st
}

// agentStale is how old the agent's state file may be while it runs (it
// rewrites it every 2 s).
const agentStale = 15 * time.Second

func printAgent(w io.Writer, s *agent.Stats) {
	if s == nil {
		return
	}
	age := time.Since(s.Updated)
	if age > agentStale {
		fmt.Fprintf(w, "agent             NOT RUNNING: last seen %s (pid %d)\n", ago(age.Seconds()), s.PID)
		return
	}
	oldest := ""
	if s.ReadyCount > 0 {
		oldest = ", oldest waiting " + time.Duration(s.OldestReadyAgeSec*float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(w, "agent             running (pid %d, since %s): %d file(s) archived (%s), %d waiting (%s%s), %d uploading, %d upload error(s)\n",
		s.PID, stamp(s.Started), s.SegmentsArchived, archive.HumanBytes(s.BytesArchived), s.ReadyCount, archive.HumanBytes(s.ReadyBytes), oldest, s.Uploading, s.UploadErrors)
	if s.LastError != "" {
		fmt.Fprintf(w, "                  last error %s: %s\n", stamp(s.LastErrorTime), shown(s.LastError))
	}
}

func ago(sec float64) string {
	return time.Duration(sec*float64(time.Second)).Round(time.Second).String() + " ago"
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func printStatus(w io.Writer, r *status.Report) {
	fmt.Fprintf(w, "store             %s\n", r.Store)
	switch b := r.NewestBackup; {
	case b == nil:
		fmt.Fprintf(w, "newest backup     none\n")
	default:
		kind := ""
		if b.Parent != "" {
			kind = ", incremental of " + shown(b.Parent)
		}
		fmt.Fprintf(w, "newest backup     %s%s, finished %s (%s), %d complete backup(s)\n", shown(b.Name), kind, stamp(b.FinishTime), ago(b.AgeSeconds), r.Backups)
	}
	for _, b := range r.BadBackups {
		fmt.Fprintf(w, "                  %s backup %s not counted: %s\n", b.Mark, shown(b.Name), shown(b.Error))
	}
	for _, p := range r.MissingParts {
		fmt.Fprintf(w, "                  MISSING %s\n", shown(p))
	}
	if r.Incomplete > 0 {
		fmt.Fprintf(w, "                  %d backup folder(s) without a manifest (interrupted or running)\n", r.Incomplete)
	}
	if d := r.NewestDump; d != nil {
		fmt.Fprintf(w, "newest dump       %s of database %s, finished %s (%s), %d dump(s)\n", shown(d.Name), shown(d.Database), stamp(d.FinishTime), ago(d.AgeSeconds), r.Dumps)
	} else if r.Dumps > 0 {
		fmt.Fprintf(w, "newest dump       none of a database (%d globals dump(s))\n", r.Dumps)
	}
	if s := r.LastSegment; s != nil {
		fmt.Fprintf(w, "last archived     %s, stored %s (%s)\n", shown(s.Name), stamp(s.Time), ago(s.AgeSeconds))
	} else {
		fmt.Fprintf(w, "last archived     none\n")
	}
	for _, b := range r.UnauthenticatedWAL {
		fmt.Fprintf(w, "                  UNAUTHENTICATED %s not counted: %s\n", shown(b.Key), shown(b.Err))
	}
	switch s := r.Server; {
	case s == nil && r.ServerError != "":
		fmt.Fprintf(w, "server            not reached: %s\n", shown(r.ServerError))
	case s == nil:
		fmt.Fprintf(w, "server            not asked\n")
	default:
		lag, ready := "unknown", "unknown"
		if s.ArchiveLagSeconds != nil {
			lag = (time.Duration(*s.ArchiveLagSeconds * float64(time.Second))).Round(time.Second).String()
		}
		if s.ReadyFiles != nil {
			ready = fmt.Sprint(*s.ReadyFiles)
		} else if s.ReadyError != "" {
			ready += " (" + s.ReadyError + ")"
		}
		failing := ""
		if s.Failing {
			failing = fmt.Sprintf(", FAILING (last failure: %s)", s.LastFailed)
		}
		fmt.Fprintf(w, "archiver          last archived %s, lag %s, %s .ready file(s), %d failure(s)%s\n", archive.OrNone(s.LastArchived), lag, ready, s.FailedCount, failing)
	}
	if p := r.PITR; p != nil {
		fmt.Fprintf(w, "PITR window       %s (end of backup %s) to about %s (end of %s, LSN %s, timeline %d)\n",
			stamp(p.Start), shown(p.StartBackup), stamp(p.End), shown(p.EndSegment), p.EndLSN, p.EndTimeline)
	} else {
		fmt.Fprintf(w, "PITR window       none: no backup can be made consistent\n")
	}
	for _, g := range r.PITRGaps {
		fmt.Fprintf(w, "                  GAP %s cuts the backups before it off from the window\n", shown(g.String()))
	}
	var spans []string
	for _, s := range r.WAL.Checked {
		spans = append(spans, shown(s.First)+" - "+shown(s.Last))
	}
	switch {
	case r.WAL.Note != "":
		fmt.Fprintf(w, "WAL gaps          %s\n", r.WAL.Note)
	case len(r.WAL.Gaps) == 0:
		fmt.Fprintf(w, "WAL gaps          none (checked %s)\n", archive.OrNone(strings.Join(spans, ", ")))
	default:
		fmt.Fprintf(w, "WAL gaps          %d gap(s), %d missing segment(s) (checked %s):\n", len(r.WAL.Gaps), r.WAL.Segments, strings.Join(spans, ", "))
		for _, g := range r.WAL.Gaps {
			fmt.Fprintf(w, "                  GAP %s\n", shown(g.String()))
		}
	}
	dumps := ""
	if r.Size.DumpBytes > 0 {
		dumps = ", dumps " + archive.HumanBytes(r.Size.DumpBytes)
	}
	fmt.Fprintf(w, "archive size      %s in %d objects (backups %s, WAL %s%s)\n", archive.HumanBytes(r.Size.Bytes), r.Size.Objects,
		archive.HumanBytes(r.Size.BackupBytes), archive.HumanBytes(r.Size.WALBytes), dumps)
	printDrill(w, r.Drill)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note              %s\n", shown(n))
	}
}

// printCopyStores shows each second store: what it lacks of the store,
// from the listings, and what the agent that keeps it in step says.
func printCopyStores(w io.Writer, stores []status.CopyStore, ag *agent.Stats) {
	for _, c := range stores {
		switch {
		case c.Error != "":
			fmt.Fprintf(w, "copy-store        %s: CANNOT BE READ: %s\n", c.Store, shown(c.Error))
		case c.InStep():
			fmt.Fprintf(w, "copy-store        %s: in step (newest WAL %s)\n", c.Store, archive.OrNone(c.NewestWAL))
		default:
			lag := ""
			if c.MissingWAL > 0 {
				lag = fmt.Sprintf(", the oldest %s archived %s", shown(c.OldestMissing), ago(c.LagSeconds))
			}
			fmt.Fprintf(w, "copy-store        %s: behind: lacks %d WAL file(s)%s, %d backup(s), %d dump(s) (walvault copy --to %s catches it up)\n",
				c.Store, c.MissingWAL, lag, c.MissingBackups, c.MissingDumps, c.Store)
		}
		if ag == nil || time.Since(ag.Updated) > agentStale {
			continue
		}
		for _, s := range ag.CopyStores {
			if s.Store != c.Store {
				continue
			}
			fmt.Fprintf(w, "                  agent: %d file(s) waiting (%s, lag %s), %d copied, %d error(s)\n", s.Backlog, archive.HumanBytes(s.BacklogBytes),
				time.Duration(s.LagSeconds*float64(time.Second)).Round(time.Second), s.Copied, s.Errors)
			if s.LastError != "" {
				fmt.Fprintf(w, "                  last error %s: %s\n", stamp(s.LastErrorTime), shown(s.LastError))
			}
		}
	}
}

// printDrill shows the last restore drill this host ran of the store.
func printDrill(w io.Writer, d *status.Drill) {
	switch {
	case d == nil:
		return
	case d.Error != "":
		fmt.Fprintf(w, "last drill        unknown: %s\n", shown(d.Error))
		return
	case d.Last == nil:
		fmt.Fprintf(w, "last drill        none recorded in %s (walvault drill)\n", shown(d.StateFile))
		return
	}
	l := d.Last
	if l.Success {
		fmt.Fprintf(w, "last drill        ok: backup %s restored, replayed to %s and checked, finished %s (%s), took %.1f s\n",
			shown(l.Backup), shown(l.Target), stamp(l.Finished), ago(l.AgeSeconds), l.DurationSeconds)
		return
	}
	backup := ""
	if l.Backup != "" {
		backup = " of backup " + shown(l.Backup)
	}
	fmt.Fprintf(w, "last drill        FAILED%s, finished %s (%s): %s\n", backup, stamp(l.Finished), ago(l.AgeSeconds), shown(l.Reason))
	if s := d.LastSuccess; s != nil {
		fmt.Fprintf(w, "                  last success: backup %s, finished %s (%s)\n", shown(s.Backup), stamp(s.Finished), ago(s.AgeSeconds))
	} else {
		fmt.Fprintf(w, "                  no drill has passed yet\n")
	}
}
