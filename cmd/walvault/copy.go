//go:build !walvault_front

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive"
	archivecopy "github.com/walvault/walvault/archive/copy"
	"github.com/walvault/walvault/archive/repo"
	restorepkg "github.com/walvault/walvault/archive/restore"
	"github.com/walvault/walvault/cloud"
)

func init() { register(copyCommands) }

func copyCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "copy",
		Usage: "copy backups (whole chains), WAL and dumps that another store lacks into it, each object authenticated on its way",
		Description: "Copies from --store into --to (default: every copy-store) what the destination lacks: cluster.json first,\n" +
			"then history files and WAL, then each backup (parents first: parts and sums, mark records, the manifest\n" +
			"last), then dumps. Objects go as stored (the same bytes and metadata), so the copy verifies with the same\n" +
			"verify key; each is checked on its way (parts and dumps chunk by chunk against their sums, WAL by its proof\n" +
			"and content: an encrypted archive needs --identity-file) and written create-if-absent. Run it again after\n" +
			"an interruption: what the destination holds is not copied twice. --dry-run prints the plan.",
		Flags: join(storeFlags(), copyStoreFlags(), lockFlags(), []cli.Flag{
			&cli.StringSliceFlag{Name: "to", Usage: "the destination store URL (repeatable; its settings: its copy-store entry in the config file, else those of --store); default: every copy-store"},
			&cli.StringFlag{Name: "backup", Usage: "copy only this backup (with its chain) and the WAL from its start to its stop"},
			&cli.StringFlag{Name: "since", Usage: "copy only the backups and dumps finished at or after this time (with their chains and the WAL from their start) and the WAL stored since"},
			&cli.BoolFlag{Name: "wal-only", Usage: "copy only WAL and history files"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be copied, copy nothing"},
			intFlag("upload-concurrency", "objects copied at once", 4),
			durationFlag("progress-interval", "log progress this often when stderr is not a terminal", "30s"),
		}),
		Action: copyCmd,
	}}
}

func copyCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("copy takes no arguments, got %q: name the destination with --to", c.Args().Slice())
	}
	opts := archivecopy.Options{Backup: c.String("backup"), WALOnly: c.Bool("wal-only"), DryRun: c.Bool("dry-run"), Concurrency: c.Int("upload-concurrency")}
	if opts.Backup != "" && !repo.ValidBackupName(opts.Backup) {
		return usageError("--backup %s is not a backup name: walvault backup-list shows them", shown(opts.Backup))
	}
	if s := c.String("since"); s != "" {
		t, err := restorepkg.ParseTargetTime(s)
		if err != nil {
			return usageError("--since %q: expected a time such as '2026-11-01 00:00:00+00' or 2026-11-01", s)
		}
		opts.Since = t
	}
	if n := 0; opts.Backup != "" || opts.WALOnly || !opts.Since.IsZero() {
		for _, on := range []bool{opts.Backup != "", opts.WALOnly, !opts.Since.IsZero()} {
			if on {
				n++
			}
		}
		if n > 1 {
			return usageError("--backup, --since and --wal-only each choose what to copy: give one of them")
		}
	}
	if opts.Concurrency < 1 || opts.Concurrency > 256 {
		return usageError("--upload-concurrency %d: use 1 to 256", opts.Concurrency)
	}
	interval, err := durationValue(c, "progress-interval")
	if err != nil {
		return err
	}
	dests, err := copyDestinations(c)
	if err != nil {
		return err
	}
	src, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(src.Store)
	opts.Progress = progressReporter(progressBar(c), interval)
	var errs []error
	for _, d := range dests {
		if err := copyTo(c, src, d, opts); err != nil {
			if len(dests) == 1 {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "walvault copy: to %s: %s\n", cloud.Redact(d.URL), oneLine(err.Error()))
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (%d of %d destinations failed)", errs[0], len(errs), len(dests))
	}
	return nil
}

// copyDestinations are --to's stores, else every copy-store.
func copyDestinations(c *cli.Context) ([]storeSpec, error) {
	var out []storeSpec
	for _, u := range c.StringSlice("to") {
		s, err := specFor(c, u)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) > 0 {
		return out, nil
	}
	out, err := copyStores(c)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, usageError("no destination: give --to STORE (or set copy-store in the config file)")
	}
	return out, nil
}

// copyTo runs one copy and prints what it did.
func copyTo(c *cli.Context, src *repo.Repo, d storeSpec, opts archivecopy.Options) error {
	st, err := d.open(c, false)
	if err != nil {
		return err
	}
	defer cloud.Close(st)
	dst := &repo.Repo{Store: st, Verify: src.Verify, AllowUnsigned: src.AllowUnsigned}
	if src.Sign != nil {
		dst.Verify = append(dst.Verify, src.Sign.Verify())
	}
	s := *src
	res, err := archivecopy.Run(c.Context, &s, dst, opts)
	if res == nil {
		return err
	}
	out := resultOf(c)
	if out == nil {
		printCopy(c.App.Writer, res, opts.DryRun)
		return err
	}
	// --json: the report on stderr, the figures in the result.
	printCopy(c.App.ErrWriter, res, opts.DryRun)
	list, _ := out["destinations"].([]map[string]any)
	p := res.Plan
	e := map[string]any{"to": cloud.Redact(d.URL), "dry_run": opts.DryRun, "planned_objects": p.Objects, "planned_bytes": p.Bytes,
		"already_there": p.Present, "copied_objects": res.Objects, "copied_bytes": res.Bytes, "seconds": res.Elapsed.Seconds(),
		"backups_complete": nonNil(res.BackupsComplete), "dumps_complete": nonNil(res.DumpsComplete), "failed": nonNil(res.Failed),
		"skipped": nonNil(p.Skipped)}
	out.set("destinations", append(list, e))
	return err
}

// nonNil is s, or an empty list: JSON says [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func printCopy(w io.Writer, res *archivecopy.Result, dry bool) {
	p := res.Plan
	if dry {
		fmt.Fprintln(w, "DRY RUN: nothing is copied")
	}
	fmt.Fprintf(w, "copy %s -> %s\n", cloud.Redact(p.Source), cloud.Redact(p.Dest))
	if p.Cluster {
		fmt.Fprintf(w, "  %s\n", repo.ClusterKey)
	}
	for _, b := range p.Backups {
		fmt.Fprintf(w, "  backup %s  %d object(s), %s\n", b.Manifest.Name, b.Objects, archive.HumanBytes(b.Bytes))
	}
	if n := len(p.WAL); n > 0 {
		var bytes int64
		for _, o := range p.WAL {
			bytes += o.Size
		}
		fmt.Fprintf(w, "  WAL %s - %s  %d object(s), %s\n", shown(baseName(p.WAL[0].Key)), shown(baseName(p.WAL[n-1].Key)), n, archive.HumanBytes(bytes))
	}
	for _, d := range p.Dumps {
		fmt.Fprintf(w, "  dump %s  %d object(s), %s\n", d.Manifest.Name, d.Objects, archive.HumanBytes(d.Bytes))
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(w, "  SKIP %s\n", shown(s))
	}
	verb := "would copy"
	if !dry {
		verb = "to copy:"
	}
	fmt.Fprintf(w, "%s %d object(s), %s; %d already in the destination\n", verb, p.Objects, archive.HumanBytes(p.Bytes), p.Present)
	if dry {
		return
	}
	secs := max(res.Elapsed.Seconds(), 0.001)
	fmt.Fprintf(w, "copied %d object(s), %s in %s (%s/s, %.1f objects/s): %d backup(s), %d dump(s) complete in the destination\n",
		res.Objects, archive.HumanBytes(res.Bytes), res.Elapsed.Round(time.Millisecond), archive.HumanBytes(int64(float64(res.Bytes)/secs)),
		float64(res.Objects)/secs, len(res.BackupsComplete), len(res.DumpsComplete))
	for _, f := range res.Failed {
		fmt.Fprintf(w, "  FAILED %s\n", shown(f))
	}
}

func baseName(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[i+1:]
		}
	}
	return key
}
