package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/backup"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

func init() {
	register(backupCommands)
}

func backupCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "backup-push",
			Usage: "take a base backup of the running server and store it",
			Description: "Connects like psql (PGHOST, PGPORT, PGUSER, PGDATABASE or --dbname), runs the non-exclusive\n" +
				"backup API, streams the data directory and its tablespaces as tar parts through compression and\n" +
				"encryption into the store, waits for the backup's WAL to be archived, and writes the manifest last.",
			Flags: join(storeFlags(), writeFlags(), []cli.Flag{
				stringFlag("dbname", "libpq connection string or URI (default: the PG* environment variables)", ""),
				altsrc.NewStringFlag(&cli.StringFlag{Name: "pgdata", Usage: "data directory (default: the server's data_directory)", EnvVars: []string{"WALVAULT_PGDATA", "PGDATA"}}),
				stringFlag("part-size", "most data bytes per stored part, e.g. 1GiB, 256MiB (a larger file gets a part of its own)", "1GiB"),
				boolFlag("fast-checkpoint", "start with an immediate checkpoint instead of a spread one"),
				boolFlag("permanent", "mark the backup permanent: retention never deletes it"),
				sliceFlag("annotation", "key=value stored in the manifest; repeatable"),
				stringFlag("wal-archive-timeout", "how long to wait for the backup's WAL to reach the store (e.g. 90s, 5m)", "5m"),
				stringFlag("progress-interval", "log progress this often when not on a terminal (e.g. 30s)", "30s"),
			}),
			Action: backupPush,
		},
		{
			Name:   "backup-list",
			Usage:  "list the complete backups and the WAL available for point-in-time recovery from each",
			Flags:  join(storeFlags(), []cli.Flag{boolFlag("json", "print JSON for scripts")}),
			Action: backupList,
		},
		{
			Name:      "restore",
			Usage:     "restore a base backup into DEST and set it up to replay WAL to a target",
			ArgsUsage: "DEST",
			Description: "Picks a backup (--backup, or the newest that ends before the target), downloads and verifies its\n" +
				"parts in parallel, and writes recovery settings so that 'pg_ctl -D DEST start' replays archived WAL\n" +
				"through 'walvault wal-fetch' to the target. DEST must be empty or absent.",
			Flags: join(storeFlags(), []cli.Flag{
				stringFlag("backup", "backup name, or LATEST (default: the newest that ends before the target)", ""),
				stringFlag("target-time", "recover to this time, e.g. '2026-11-23 14:05:00+00' (no zone: local time)", ""),
				stringFlag("target-lsn", "recover to this WAL location, e.g. 0/5000060", ""),
				stringFlag("target-xid", "recover to this transaction id", ""),
				stringFlag("target-name", "recover to this restore point (pg_create_restore_point)", ""),
				boolFlag("target-immediate", "stop as soon as the backup is consistent"),
				stringFlag("target-timeline", "latest, current or a timeline number", "latest"),
				stringFlag("target-inclusive", "true or false: stop just after (true) or just before the target", ""),
				stringFlag("target-action", "at the target: pause, promote or shutdown", "promote"),
				boolFlag("standby", "write standby.signal: a replica that keeps following the archive"),
				sliceFlag("tablespace-map", "OID=DIR or NAME=DIR: restore a tablespace elsewhere; repeatable"),
				intFlag("download-concurrency", "parts downloaded and extracted at once", 4),
				boolFlag("force", "restore into a non-empty DEST: files of the backup overwrite what is there, nothing is deleted"),
				stringFlag("progress-interval", "log progress this often when not on a terminal (e.g. 30s)", "30s"),
			}),
			Action: restore,
		},
	}
}

// progressBar returns stderr when it is a terminal, so progress is drawn in
// place there and logged as lines everywhere else.
func progressBar(c *cli.Context) io.Writer {
	f, ok := c.App.ErrWriter.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		return f
	}
	return nil
}

func durationValue(c *cli.Context, name string) (time.Duration, error) {
	d, err := time.ParseDuration(c.String(name))
	if err != nil || d < 0 {
		return 0, usageError("--%s %q: expected a duration such as 30s or 5m", name, c.String(name))
	}
	return d, nil
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

func backupPush(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	partSize, err := parseSize(c.String("part-size"))
	if err != nil {
		return usageError("--part-size: %v", err)
	}
	timeout, err := durationValue(c, "wal-archive-timeout")
	if err != nil {
		return err
	}
	interval, err := durationValue(c, "progress-interval")
	if err != nil {
		return err
	}
	ann := map[string]string{}
	for _, a := range c.StringSlice("annotation") {
		k, v, ok := strings.Cut(a, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return usageError("--annotation %q: expected key=value", a)
		}
		ann[strings.TrimSpace(k)] = v
	}
	if len(ann) == 0 {
		ann = nil
	}
	r, err := openArchive(c, false)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	res, err := backup.Push(c.Context, r, backup.Options{
		DSN: c.String("dbname"), PGData: c.String("pgdata"), PartSize: partSize,
		Concurrency: c.Int("upload-concurrency"), FastCheckpoint: c.Bool("fast-checkpoint"),
		Permanent: c.Bool("permanent"), Annotations: ann, ArchiveTimeout: timeout,
		Software: "walvault " + version, Progress: progressReporter(progressBar(c), interval),
	})
	if err != nil {
		return err
	}
	m := res.Manifest
	secs := res.Duration.Seconds()
	ratio := float64(m.DataSize) / float64(max(m.StoredSize, 1))
	fmt.Fprintf(c.App.Writer, "backup %s complete: %s read, %s stored (%.1f:1), %d files in %d parts, WAL %s to %s, %.2f s (%s/s)\n",
		m.Name, archive.HumanBytes(m.DataSize), archive.HumanBytes(m.StoredSize), ratio, m.FileCount, len(m.Parts),
		m.StartWAL, m.StopWAL, secs, archive.HumanBytes(int64(float64(m.DataSize)/max(secs, 0.001))))
	return nil
}

// listEntry is one backup in backup-list --json.
type listEntry struct {
	Name             string            `json:"name"`
	StartTime        time.Time         `json:"start_time"`
	StopTime         time.Time         `json:"stop_time"`
	Timeline         uint32            `json:"timeline"`
	StartLSN         string            `json:"start_lsn"`
	StopLSN          string            `json:"stop_lsn"`
	StartWAL         string            `json:"start_wal"`
	StopWAL          string            `json:"stop_wal"`
	PGVersion        int               `json:"pg_version"`
	SystemIdentifier string            `json:"system_identifier"`
	DataSize         int64             `json:"data_size"`
	StoredSize       int64             `json:"stored_size"`
	Compression      string            `json:"compression"`
	Encrypted        bool              `json:"encrypted"`
	Permanent        bool              `json:"permanent"`
	Annotations      map[string]string `json:"annotations,omitempty"`
	WAL              repo.WALRange     `json:"wal"`
}

func backupList(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	r, err := openArchive(c, false)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	cat, err := r.LoadCatalog(c.Context, repo.CatalogOptions{WAL: repo.WALOfBackups})
	if err != nil {
		return err
	}
	list := cat.Backups()
	entries := make([]listEntry, 0, len(list))
	for _, m := range list {
		// Segment sizes may differ from backup to backup: each range is
		// read with its own.
		entries = append(entries, listEntry{Name: m.Name, StartTime: m.StartTime, StopTime: m.StopTime, Timeline: m.Timeline,
			StartLSN: m.StartLSN.String(), StopLSN: m.StopLSN.String(), StartWAL: m.StartWAL, StopWAL: m.StopWAL, PGVersion: m.PGVersion,
			SystemIdentifier: m.SystemIdentifier, DataSize: m.DataSize, StoredSize: m.StoredSize, Compression: m.Compression,
			Encrypted: m.Encrypted, Permanent: m.Permanent, Annotations: m.Annotations, WAL: cat.WAL(m.SegmentSize).Range(m)})
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "walvault backup-list: no complete backup in %s\n", r.Store)
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFINISHED (UTC)\tTL\tSTART LSN\tSTOP LSN\tPG\tSIZE\tSTORED\tPITR WAL\t")
	for _, e := range entries {
		wal := "MISSING: " + e.StartWAL
		if e.WAL.Last != "" {
			wal = e.WAL.First + " - " + e.WAL.Last
			if !e.WAL.Restorable {
				wal += " (INCOMPLETE: needs " + e.StopWAL + ")"
			}
		}
		if e.Permanent {
			wal += "  permanent"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", e.Name, e.StopTime.UTC().Format("2006-01-02 15:04:05"), e.Timeline,
			e.StartLSN, e.StopLSN, pgVersion(e.PGVersion), archive.HumanBytes(e.DataSize), archive.HumanBytes(e.StoredSize), wal)
	}
	return tw.Flush()
}

func pgVersion(n int) string {
	if n >= 100000 {
		return fmt.Sprintf("%d.%d", n/10000, n%10000)
	}
	return fmt.Sprintf("%d.%d", n/10000, n/100%100)
}
