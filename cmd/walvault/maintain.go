//go:build !walvault_front

package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	restorepkg "github.com/walvault/walvault/archive/restore" // func restore is the restore command
	"github.com/walvault/walvault/archive/retention"
	"github.com/walvault/walvault/archive/verify"
	"github.com/walvault/walvault/cloud"
)

// Maintenance commands: retention (delete, backup-mark), verify.

func init() {
	register(maintainCommands)
}

func maintainCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "delete",
			Usage:     "apply a retention policy, or delete the backups named: old backups go, and the WAL no kept backup needs (dry run unless --confirm)",
			ArgsUsage: "[NAME...]",
			Description: "Every rule given keeps some backups; a backup is deleted only when no rule keeps it. The newest backup,\n" +
				"permanent backups (and the WAL that makes them consistent) and the newest backup that can restore to the\n" +
				"latest archived WAL are always kept. Backups are ordered by the time they finished, never by timeline.\n" +
				"A kept incremental backup keeps its whole chain (its parent, the parent's parent, ... the full, and the WAL\n" +
				"from the full's start); --retain-full N counts full backups: the Nth newest and everything after it stay.\n" +
				"WAL goes when no kept backup needs it and it is older than the kept backups; history files stay.\n" +
				"With NAMEs, exactly those backups go (and the WAL no other backup needs), whatever rules are set; a\n" +
				"permanent backup, the parent of a backup that is not named, and the newest restorable backup are\n" +
				"refused (exit 5).\n" +
				"Without --confirm nothing is deleted: the plan is printed, with the reason for every decision.",
			Flags: join(storeFlags(), []cli.Flag{
				intFlag("retain-full", "keep the N newest full backups, each with its incremental backups", 0),
				stringFlag("before", "keep the backups that finished at or after this time (e.g. '2026-11-01 00:00:00+00'); older ones may go", ""),
				stringFlag("retain-window", "keep every backup needed to restore to any moment of this last period (e.g. 7d, 2w, 36h)", ""),
				intFlag("min-keep", "never keep fewer than the N newest backups", 0),
				intFlag("retain-dumps", "keep the N newest logical dumps of each database (globals dumps: a group of their own); without it dumps are kept", 0),
				durationFlag("orphan-age", "delete a backup or dump folder without manifest (interrupted backup or dump) only once it is this old", "24h"),
				boolFlag("confirm", "delete (without it: a dry run that only prints the plan)"),
				boolFlag("json", "print the plan (and the result) as JSON"),
			}),
			Action: deleteCmd,
		},
		{
			Name:      "backup-mark",
			Usage:     "mark a backup permanent (never deleted by retention, nor its ancestors if it is incremental) or not; a backup an incremental builds on cannot be changed",
			ArgsUsage: "NAME",
			Flags: join(storeFlags(), []cli.Flag{
				boolFlag("permanent", "mark the backup permanent"),
				boolFlag("no-permanent", "clear the mark: retention rules apply to the backup again"),
				signingKeyFlag(),
			}, lockFlags()),
			Action: backupMark,
		},
		{
			Name:  "verify",
			Usage: "check that backups, the WAL they need and the logical dumps are whole; exit 0 only if everything checked is",
			Description: "For every backup (or --backup NAME): each part is in the store with its recorded size; with --full\n" +
				"(the default for a single backup) each part is downloaded, decrypted and decompressed, and its SHA-256\n" +
				"and every file's CRC-32C are checked against the manifest. An incremental backup's chain is checked too:\n" +
				"every ancestor's parts, the size of each file stored as changed blocks, and that what it leaves to its\n" +
				"parent is there; a damaged ancestor fails it. Then WAL continuity: from each backup's start\n" +
				"to the newest archived segment on every timeline it can follow (through the history files), with every\n" +
				"gap as a range, and for each backup the latest point it can be restored to. Every logical dump too\n" +
				"(skipped with --backup): its manifest authenticates, its object has its recorded size, and with --full\n" +
				"its SHA-256 and size are checked. Exit 7 when anything is missing or damaged.",
			Flags: join(storeFlags(), []cli.Flag{
				stringFlag("backup", "check only this backup (and then fully, unless --full=false)", ""),
				boolFlag("full", "download and check every part's and every file's checksum (needs --identity-file for encrypted backups)"),
				intFlag("download-concurrency", "parts read at once with --full", 4),
				boolFlag("json", "print the report as JSON"),
			}),
			Action: verifyCmd,
		},
	}
}

func printJSON(w io.Writer, v any) error { return encodeJSON(w, v) }

func deleteCmd(c *cli.Context) error {
	pol := retention.Policy{RetainFull: c.Int("retain-full"), MinKeep: c.Int("min-keep"), RetainDumps: c.Int("retain-dumps"), Names: c.Args().Slice()}
	for _, n := range pol.Names {
		if !repo.ValidBackupName(n) {
			return usageError("%s is not a backup name: walvault backup-list shows them", shown(n))
		}
	}
	if len(pol.Names) > 0 {
		// Only the named backups go: rules, wherever they were set (a
		// config file may hold them), do not apply.
		pol = retention.Policy{Names: pol.Names}
	}
	if pol.RetainFull < 0 || pol.MinKeep < 0 || pol.RetainDumps < 0 {
		return usageError("--retain-full, --min-keep and --retain-dumps take a positive number")
	}
	if s := c.String("before"); s != "" && len(pol.Names) == 0 {
		t, err := restorepkg.ParseTargetTime(s)
		if err != nil {
			return usageError("--before %q: expected a time such as '2026-11-01 00:00:00+00' or 2026-11-01", s)
		}
		pol.Before = &t
	}
	if s := c.String("retain-window"); s != "" && len(pol.Names) == 0 {
		d, err := retention.ParseWindow(s)
		if err != nil {
			return usageError("--retain-window %q: expected a duration such as 7d, 2w, 36h or 1d12h", s)
		}
		pol.RetainWindow = d
	}
	if pol.RetainFull == 0 && pol.Before == nil && pol.RetainWindow == 0 && pol.RetainDumps == 0 && len(pol.Names) == 0 {
		return usageError("give a retention rule: --retain-full N, --before TIME, --retain-window DURATION or --retain-dumps N (e.g. delete --retain-full 7), or the NAMEs of backups to delete")
	}
	age, err := durationValue(c, "orphan-age")
	if err != nil {
		return err
	}
	pol.OrphanAge = age
	cfg, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(cfg.Store)
	plan, err := retention.Decide(c.Context, cfg, pol)
	if err != nil {
		return err
	}
	confirm := c.Bool("confirm")
	out := resultOf(c)
	out.set("dry_run", !confirm)
	out.set("plan", plan)
	if !confirm {
		if out == nil {
			printPlan(c.App.Writer, plan, true)
		}
		return nil
	}
	if out == nil {
		printPlan(c.App.Writer, plan, false)
	}
	res, err := retention.Apply(c.Context, cfg, plan)
	if out != nil {
		out.set("result", res)
		if err != nil {
			return fmt.Errorf("%w (run walvault delete again to finish: what is done stays done)", err)
		}
		return nil
	}
	if res != nil {
		fmt.Fprintf(c.App.Writer, "deleted: %d backups, %d incomplete backup folders, %d WAL objects, %d dumps (%d objects in all)\n",
			res.Backups, res.Folders, res.WALObjects, res.Dumps, res.Objects)
		for _, s := range res.Skipped {
			fmt.Fprintf(c.App.Writer, "skipped %s: it changed since the plan was made (run delete again)\n", shown(s))
		}
	}
	if err != nil {
		return fmt.Errorf("%w (run walvault delete again to finish: what is done stays done)", err)
	}
	return nil
}

func verb(del bool) string {
	if del {
		return "DELETE"
	}
	return "KEEP"
}

func printPlan(w io.Writer, p *retention.Plan, dry bool) {
	if dry {
		fmt.Fprintln(w, "DRY RUN: nothing is deleted; run again with --confirm to delete what is marked DELETE")
	}
	fmt.Fprintf(w, "store %s\n\nbackups, oldest first:\n", p.Store)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, b := range p.Backups {
		perm := ""
		if b.Permanent {
			perm = " permanent"
		}
		kind := "full"
		if b.Parent != "" {
			kind = "incr of " + shown(b.Parent)
		}
		fmt.Fprintf(tw, "  %s\t%s\tfinished %s\tTL %d%s\t%s\t%s\t%s\n", verb(b.Delete), shown(b.Name), b.StopTime.UTC().Format("2006-01-02 15:04:05"),
			b.Timeline, perm, kind, archive.HumanBytes(b.StoredSize), strings.Join(shownAll(b.Reasons), "; "))
	}
	_ = tw.Flush()
	if len(p.Incomplete) > 0 {
		fmt.Fprintln(w, "\nbackup folders without a manifest (not backups):")
		for _, f := range p.Incomplete {
			fmt.Fprintf(tw, "  %s\t%s\t%d objects, %s\t%s\n", verb(f.Delete), shown(repo.BackupPrefix+f.Name+"/"), f.Objects, archive.HumanBytes(f.Size), shown(f.Reason))
		}
		_ = tw.Flush()
	}
	fmt.Fprintln(w, "\nWAL:")
	for _, r := range p.WAL {
		span := shown(r.First)
		if r.Last != r.First {
			span += " - " + shown(r.Last)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d objects, %s\t%s\n", verb(r.Delete), span, r.Objects, archive.HumanBytes(r.Bytes), shown(r.Reason))
	}
	if p.History > 0 {
		fmt.Fprintf(tw, "  KEEP\t%d history files\t\talways kept\n", p.History)
	}
	_ = tw.Flush()
	if len(p.Dumps) > 0 {
		fmt.Fprintln(w, "\ndumps:")
		for _, d := range p.Dumps {
			what := "no manifest"
			switch {
			case d.Kind == repo.DumpKindGlobals:
				what = "globals, finished " + d.StopTime.UTC().Format("2006-01-02 15:04:05")
			case d.Kind != "":
				what = "database " + shown(d.Database) + ", finished " + d.StopTime.UTC().Format("2006-01-02 15:04:05")
			case !d.Incomplete:
				what = "unreadable manifest"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", verb(d.Delete), shown(d.Name), what, archive.HumanBytes(d.StoredSize), shown(d.Reason))
		}
		_ = tw.Flush()
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", shown(n))
	}
	d, k := p.Delete, p.Keep
	would := "deletes"
	if dry {
		would = "would delete"
	}
	fmt.Fprintf(w, "\n%s %d backups, %d incomplete folders, %d WAL objects, %d dumps (%s); keeps %d backups, %d WAL objects, %d dumps (%s)\n",
		would, d.Backups, d.Folders, d.WALObjects, d.Dumps, archive.HumanBytes(d.Bytes), k.Backups, k.WALObjects, k.Dumps, archive.HumanBytes(k.Bytes))
}

func backupMark(c *cli.Context) error {
	if err := wantArgs(c, 1, "the backup's NAME"); err != nil {
		return err
	}
	on, off := c.Bool("permanent"), c.Bool("no-permanent")
	if on == off {
		return usageError("give exactly one of --permanent and --no-permanent")
	}
	cfg, err := openArchive(c, reads|writes|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(cfg.Store)
	name := c.Args().First()
	m, changed, err := retention.MarkPermanent(c.Context, cfg, name, on)
	if err != nil {
		return err
	}
	switch {
	case !changed && on:
		fmt.Fprintf(c.App.Writer, "backup %s is already permanent; nothing changed\n", name)
	case !changed:
		fmt.Fprintf(c.App.Writer, "backup %s is not permanent; nothing changed\n", name)
	case on && m.Incremental():
		fmt.Fprintf(c.App.Writer, "backup %s is now permanent: delete keeps it, its ancestors %s (an incremental backup cannot be restored without them), and the WAL that makes each consistent\n",
			name, strings.Join(shownAll(m.Chain), ", "))
	case on:
		fmt.Fprintf(c.App.Writer, "backup %s is now permanent: delete keeps it, and the WAL that makes it consistent (%s to %s)\n", name, m.StartWAL, m.StopWAL)
	default:
		fmt.Fprintf(c.App.Writer, "backup %s is no longer permanent: the retention rules apply to it again\n", name)
	}
	return nil
}

func verifyCmd(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments (use --backup NAME for one backup)"); err != nil {
		return err
	}
	n, err := downloadConcurrency(c)
	if err != nil {
		return err
	}
	opts := verify.Options{Backup: c.String("backup"), Full: c.Bool("full"), Concurrency: n}
	if opts.Backup != "" && !c.IsSet("full") {
		opts.Full = true
	}
	cfg, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(cfg.Store)
	rep, err := verify.Run(c.Context, cfg, opts)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, rep); err != nil {
			return err
		}
	} else {
		printVerify(c.App.Writer, rep)
	}
	if !rep.OK {
		return fmt.Errorf("%w: %d problem(s) in %s; the first: %s", archive.ErrVerifyFailed, len(rep.Problems), cfg.Store, shown(rep.Problems[0].String()))
	}
	return nil
}

func printVerify(w io.Writer, r *verify.Report) {
	fmt.Fprintf(w, "store %s\n", r.Store)
	for _, b := range r.Backups {
		status := "ok"
		if !b.OK {
			status = "FAIL"
		}
		perm := ""
		if b.Permanent {
			perm = ", permanent"
		}
		fmt.Fprintf(w, "%-4s  backup %s (timeline %d, finished %s%s)\n", status, shown(b.Name), b.Timeline, b.StopTime.UTC().Format("2006-01-02 15:04:05"), perm)
		what := fmt.Sprintf("%d parts present with their recorded sizes (%s)", b.Parts, archive.HumanBytes(b.StoredSize))
		if b.Checked == "full" {
			what = fmt.Sprintf("%d parts read back (%s): SHA-256 of every part and CRC-32C of %d files checked", b.Parts, archive.HumanBytes(b.StoredSize), b.FilesChecked)
		}
		if b.BlockFilesChecked > 0 {
			what += fmt.Sprintf("; %d files stored as changed blocks have their block map's size (their CRC-32C is checked when restore assembles them)", b.BlockFilesChecked)
		}
		fmt.Fprintf(w, "      %s\n", what)
		if len(b.Ancestors) > 0 {
			var links []string
			for _, a := range b.Ancestors {
				st := "ok"
				if !a.OK {
					st = "DAMAGED"
				}
				links = append(links, shown(a.Name)+" "+st)
			}
			fmt.Fprintf(w, "      incremental: its chain, parent first, each link's parts checked as above: %s (%s to read for a restore)\n", strings.Join(links, ", "), archive.HumanBytes(b.ChainStoredSize))
		}
		if b.Consistent {
			fmt.Fprintf(w, "      WAL %s to %s archived: the backup can be made consistent\n", shown(b.StartWAL), shown(b.StopWAL))
		}
		for _, t := range b.Timelines {
			to := "nothing"
			if t.RestorableTo != nil {
				to = fmt.Sprintf("%s (end of %s)", t.RestorableTo.LSN, shown(t.RestorableTo.Segment))
			}
			line := fmt.Sprintf("restorable to %s on timeline %d", to, t.Timeline)
			if t.Gap != nil {
				line += fmt.Sprintf(", stopped by the gap %s; the timeline goes on to %s", shown(t.Gap.String()), shown(t.Newest))
				if b.Permanent {
					line += " (a permanent backup keeps only its own WAL: not a problem)"
				}
			}
			fmt.Fprintf(w, "      %s\n", line)
		}
		for _, p := range b.Problems {
			fmt.Fprintf(w, "      FAIL %s\n", shown(p.String()))
		}
	}
	for _, t := range r.Timelines {
		var spans []string
		for _, x := range t.Ranges {
			if x.First == x.Last {
				spans = append(spans, shown(x.First))
			} else {
				spans = append(spans, shown(x.First)+" - "+shown(x.Last))
			}
		}
		if len(t.Gaps) == 0 {
			fmt.Fprintf(w, "ok    WAL timeline %d: %s whole (%d segments)\n", t.Timeline, strings.Join(spans, ", "), t.Segments)
			continue
		}
		fmt.Fprintf(w, "FAIL  WAL timeline %d: %s has %d gap(s):\n", t.Timeline, strings.Join(spans, ", "), len(t.Gaps))
		for _, g := range t.Gaps {
			fmt.Fprintf(w, "      GAP %s\n", shown(g.String()))
		}
	}
	for _, d := range r.Dumps {
		status := "ok"
		if !d.OK {
			status = "FAIL"
		}
		what := "globals"
		if d.Kind == repo.DumpKindDatabase {
			what = "database " + shown(d.Database)
		}
		switch {
		case d.Kind == "":
			fmt.Fprintf(w, "%-4s  dump %s\n", status, shown(d.Name))
		case d.Checked == "full":
			fmt.Fprintf(w, "%-4s  dump %s (%s, finished %s): read back (%s), SHA-256 and size checked\n", status, shown(d.Name), what, d.StopTime.UTC().Format("2006-01-02 15:04:05"), archive.HumanBytes(d.StoredSize))
		default:
			fmt.Fprintf(w, "%-4s  dump %s (%s, finished %s): present with its recorded size (%s)\n", status, shown(d.Name), what, d.StopTime.UTC().Format("2006-01-02 15:04:05"), archive.HumanBytes(d.StoredSize))
		}
		for _, p := range d.Problems {
			fmt.Fprintf(w, "      FAIL %s\n", shown(p.String()))
		}
	}
	if len(r.IncompleteDumps) > 0 {
		fmt.Fprintf(w, "note  dump folders without a manifest (interrupted or running dumps; not dumps, not checked): %s\n", strings.Join(shownAll(r.IncompleteDumps), ", "))
	}
	if len(r.Incomplete) > 0 {
		fmt.Fprintf(w, "note  backup folders without a manifest (interrupted or running backups; not backups, not checked): %s\n", strings.Join(shownAll(r.Incomplete), ", "))
	}
	for _, p := range r.General() {
		fmt.Fprintf(w, "FAIL  %s\n", shown(p.String()))
	}
	if r.OK {
		fmt.Fprintf(w, "verify: OK: %d backups, the WAL of %d timelines and %d dumps checked; nothing missing or damaged\n", len(r.Backups), len(r.Timelines), len(r.Dumps))
	} else {
		fmt.Fprintf(w, "verify: FAILED: %d problem(s)\n", len(r.Problems))
	}
}
