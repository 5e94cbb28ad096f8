//go:build !walvault_front

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/backup"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
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
			Flags: join(storeFlags(), writeFlags(), copyStoreFlags(), []cli.Flag{
				stringFlag("dbname", "libpq connection string or URI (default: the PG* environment variables)", ""),
				altsrc.NewStringFlag(&cli.StringFlag{Name: "pgdata", Usage: "data directory (default: the server's data_directory)", EnvVars: []string{"WALVAULT_PGDATA", "PGDATA"}}),
				stringFlag("part-size", "most data bytes per stored part, e.g. 1GiB, 256MiB (a larger file gets a part of its own)", "1GiB"),
				boolFlag("fast-checkpoint", "start with an immediate checkpoint instead of a spread one"),
				boolFlag("permanent", "mark the backup permanent: retention never deletes it"),
				sliceFlag("annotation", "key=value stored in the manifest; repeatable"),
				stringFlag("wal-archive-timeout", "how long to wait for the backup's WAL to reach the store (e.g. 90s, 5m)", "5m"),
				stringFlag("progress-interval", "log progress this often when not on a terminal (e.g. 30s)", "30s"),
				boolFlag("incremental", "store only what changed since the newest restorable backup of this cluster and timeline (a full backup, saying why, when none can be used)"),
				boolFlag("full", "take a full backup (the default; not together with --incremental or --parent)"),
				stringFlag("parent", "build the incremental on this backup (an error when it cannot be used)", ""),
				intFlag("incremental-max-chain", "most incrementals after a full backup; the next backup is full", backup.DefaultMaxChain),
				boolFlag("json", "end with one JSON object on stdout (the backup, or why it failed) instead of the summary line"),
			}),
			Action: backupPush,
		},
		{
			Name:  "backup-list",
			Usage: "list the complete backups and how far point-in-time recovery from each reaches",
			Flags: join(storeFlags(), []cli.Flag{boolFlag("json", "print JSON for scripts"),
				&cli.StringFlag{Name: "detail", Usage: "show one backup whole, as backup-info NAME does"}}),
			Action: backupList,
		},
		{
			Name:      "backup-info",
			Usage:     "show one backup whole: databases and sizes, tablespaces, chain, WAL range, PITR window, durations, annotations",
			ArgsUsage: "NAME",
			Flags:     join(storeFlags(), []cli.Flag{boolFlag("json", "print JSON for scripts")}),
			Action:    backupInfo,
		},
		{
			Name:      "restore",
			Usage:     "restore a base backup into DEST and set it up to replay WAL to a target",
			ArgsUsage: "DEST",
			Description: "Picks a backup (--backup, or the newest that ends before the target), downloads and verifies its\n" +
				"parts in parallel, and writes recovery settings so that 'pg_ctl -D DEST start' replays archived WAL\n" +
				"through 'walvault wal-fetch' to the target. DEST must be empty or absent (or --force).\n\n" +
				"A backup whose manifest is damaged or fails authentication is never restored: picked by target it is\n" +
				"skipped with a warning, named with --backup it fails (exit 4).\n\n" +
				"Tablespaces: a directory named with --tablespace-map is used as given; it must be empty or absent unless\n" +
				"--force. A tablespace not mapped goes to the location recorded in the backup only when that directory is\n" +
				"absent or empty (--force never applies to it) and the manifest is authenticated (not with\n" +
				"--allow-unsigned); it may not be inside DEST. The same holds for the backup's symlinks that point out of\n" +
				"their directory; a symlink at pg_wal, global, pg_tblspc or a recovery settings file is refused.\n\n" +
				"Ownership, when restore runs as root: the restored files go to --owner, else to the owner of DEST when\n" +
				"DEST exists; otherwise they stay root's (PostgreSQL will not start until they are chowned). The owner\n" +
				"recorded in the backup is never used. Directories that existed before keep their mode and owner; new\n" +
				"ones are 0700 or the backup's mode, which never carries set-uid, set-gid or sticky bits.",
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
				boolFlag("allow-target-beyond-archive", "accept a --target-time or --target-lsn past the newest archived WAL (refused otherwise: recovery would end before reaching it), when that WAL is still on its way to the store"),
				boolFlag("standby", "write standby.signal: a replica that keeps following the archive"),
				boolFlag("agent", "restore_command = 'walvault-wal fetch %f %p': replay through walvault agent (without one running, walvault-wal runs wal-fetch itself)"),
				sliceFlag("tablespace-map", "OID=DIR or NAME=DIR: restore a tablespace elsewhere; repeatable"),
				intFlag("download-concurrency", "parts downloaded and extracted at once", 4),
				boolFlag("force", "restore into a non-empty DEST (and non-empty --tablespace-map directories): files of the backup overwrite what is there, nothing is deleted"),
				boolFlag("delta", "rebuild an existing, stopped data directory of the same cluster: files whose size and CRC-32C match the backup are kept, the others written, what the backup does not have removed (but log/)"),
				boolFlag("delta-by-time", "--delta, trusting size and modification time instead of reading every file (weaker: a change that kept both is not seen)"),
				boolFlag("json", "end with one JSON object on stdout (what was restored, or why it failed) instead of the summary"),
				stringFlag("owner", "USER[:GROUP] to own the restored files when restore runs as root (default: the owner of an existing DEST)", ""),
				stringFlag("progress-interval", "log progress this often when not on a terminal (e.g. 30s)", "30s"),
				fallbackStoreFlag(),
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
	incremental, parent := c.Bool("incremental"), c.String("parent")
	if c.Bool("full") && (incremental || parent != "") {
		return usageError("--full and --incremental (or --parent) contradict each other")
	}
	if parent != "" && !repo.ValidBackupName(parent) {
		return usageError("--parent %q is not a backup name", parent)
	}
	maxChain := c.Int("incremental-max-chain")
	if maxChain < 1 || maxChain > repo.MaxChain {
		return usageError("--incremental-max-chain %d: use 1 to %d", maxChain, repo.MaxChain)
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
	res, err := backup.Push(c.Context, r, backup.Options{
		DSN: c.String("dbname"), PGData: c.String("pgdata"), PartSize: partSize,
		Concurrency: c.Int("upload-concurrency"), FastCheckpoint: c.Bool("fast-checkpoint"),
		Permanent: c.Bool("permanent"), Annotations: ann, ArchiveTimeout: timeout,
		Software: "walvault " + version, Progress: progressReporter(progressBar(c), interval),
		Incremental: incremental, Parent: parent, MaxChain: maxChain,
	})
	if err != nil {
		return err
	}
	m := res.Manifest
	if out := resultOf(c); out != nil {
		backupResult(out, res)
		return nil
	}
	secs := res.Duration.Seconds()
	ratio := float64(m.DataSize) / float64(max(m.StoredSize, 1))
	kind := ""
	if m.Incremental() {
		kind = fmt.Sprintf(", incremental on %s (chain of %d)", m.Parent, len(m.Chain)+1)
	}
	fmt.Fprintf(c.App.Writer, "backup %s complete: %s read, %s stored (%.1f:1), %d files in %d parts, WAL %s to %s, %.2f s (%s)%s\n",
		m.Name, archive.HumanBytes(m.DataSize), archive.HumanBytes(m.StoredSize), ratio, m.FileCount, len(m.Parts),
		m.StartWAL, m.StopWAL, secs, timeSplit(res, m.DataSize), kind)
	return copyToSeconds(c, r, seconds, "backup "+m.Name, func(dst *repo.Repo, opts repo.CopyOptions) error {
		return r.CopyBackupChain(c.Context, dst, m.Name, opts)
	})
}

// backupResult is backup-push --json's object.
func backupResult(out result, res *backup.Result) {
	m := res.Manifest
	typ := repo.BackupFull
	if m.Incremental() {
		typ = repo.BackupIncremental
	}
	for k, v := range map[string]any{
		"name": m.Name, "type": typ, "parent": m.Parent, "chain": append([]string{}, m.Chain...),
		"timeline": m.Timeline, "start_lsn": m.StartLSN.String(), "stop_lsn": m.StopLSN.String(),
		"start_wal": m.StartWAL, "stop_wal": m.StopWAL, "start_time": m.StartTime, "stop_time": m.StopTime,
		"data_size": m.DataSize, "stored_size": m.StoredSize, "file_count": m.FileCount, "part_count": len(m.Parts),
		"duration_seconds": res.Duration.Seconds(), "checkpoint_seconds": res.Checkpoint.Seconds(),
		"copy_seconds": res.Copy.Seconds(), "wal_wait_seconds": res.WALWait.Seconds(),
		"system_identifier": m.SystemIdentifier, "pg_version": m.PGVersion, "hostname": m.Hostname, "pgdata": m.PGData,
		"compression": m.Compression, "encrypted": m.Encrypted, "from_standby": m.FromStandby,
	} {
		out.set(k, v)
	}
}

// timeSplit is where a backup's time went: the rate is the copy's alone, so
// minutes of waiting for a spread checkpoint do not pass for a slow copy.
func timeSplit(res *backup.Result, data int64) string {
	copySecs := res.Copy.Seconds()
	return fmt.Sprintf("checkpoint %.2f s, copy %.2f s at %s/s, WAL archiving %.2f s",
		res.Checkpoint.Seconds(), copySecs, archive.HumanBytes(int64(float64(data)/max(copySecs, 0.001))), res.WALWait.Seconds())
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
	// FromStandby: taken on a standby; Hostname and PGData say where.
	FromStandby bool   `json:"from_standby"`
	Hostname    string `json:"hostname,omitempty"`
	PGData      string `json:"pgdata"`
	// Type is "full" or "incremental"; Chain names an incremental's
	// ancestors from its parent back to the full ([] for a full);
	// ChainStoredSize is what restoring it reads (its own stored size
	// plus every ancestor's).
	Type            string   `json:"type"`
	Parent          string   `json:"parent"`
	Chain           []string `json:"chain"`
	ChainStoredSize int64    `json:"chain_stored_size"`
}

func backupList(c *cli.Context) error {
	if name := c.String("detail"); name != "" {
		if err := wantArgs(c, 0, "no arguments besides --detail NAME"); err != nil {
			return err
		}
		return showBackup(c, name)
	}
	if err := wantArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	r, err := openArchive(c, reads)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	cat, err := r.LoadCatalog(c.Context, repo.CatalogOptions{WAL: repo.WALOfBackups})
	if err != nil {
		return err
	}
	// The PITR ranges count only WAL whose proof holds: a planted name
	// must not fill a gap.
	badWAL, err := cat.AuthenticateWAL(c.Context, nil)
	if err != nil {
		return err
	}
	for _, b := range badWAL {
		fmt.Fprintf(c.App.ErrWriter, "walvault backup-list: warning: %s fails authentication and is not counted as archived: %s\n", shown(b.Key), shown(b.Err))
	}
	list := cat.Backups()
	entries := make([]listEntry, 0, len(list))
	for _, m := range list {
		// Segment sizes may differ from backup to backup: each range is
		// read with its own.
		entries = append(entries, listEntry{Name: m.Name, StartTime: m.StartTime, StopTime: m.StopTime, Timeline: m.Timeline,
			StartLSN: m.StartLSN.String(), StopLSN: m.StopLSN.String(), StartWAL: m.StartWAL, StopWAL: m.StopWAL, PGVersion: m.PGVersion,
			SystemIdentifier: m.SystemIdentifier, DataSize: m.DataSize, StoredSize: m.StoredSize, Compression: m.Compression,
			Encrypted: m.Encrypted, Permanent: m.Permanent, Annotations: m.Annotations, WAL: cat.WAL(m.SegmentSize).Range(m),
			FromStandby: m.FromStandby, Hostname: m.Hostname, PGData: m.PGData,
			Type: repo.BackupFull, Parent: m.Parent, Chain: append([]string{}, m.Chain...), ChainStoredSize: cat.ChainStoredSize(m)})
		if m.Incremental() {
			entries[len(entries)-1].Type = repo.BackupIncremental
		}
	}
	bad := cat.Damaged()
	for _, b := range bad {
		fmt.Fprintf(c.App.ErrWriter, "walvault backup-list: warning: backup %s is %s and cannot be restored: %s\n", shown(b.Name), b.Mark, shown(oneLine(b.Err.Error())))
	}
	if c.Bool("json") {
		// Scripts pick a backup from this array: only backups that can be
		// restored are in it.
		if err := encodeJSON(c.App.Writer, entries); err != nil {
			return err
		}
		return listErr(bad, badWAL, r.Store)
	}
	if len(entries) == 0 && len(bad) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "walvault backup-list: no complete backup in %s\n", r.Store)
		return nil
	}
	// 120 columns: the name, the PITR window as times (the backup's end
	// to the last segment reachable from it), what restoring it reads
	// (its chain's stored size), flags, and the parent by the start time
	// in its name ("-": a full backup). backup-info and --json have the
	// rest.
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFINISHED (UTC)\tPITR UNTIL (UTC)\tSTORED\tFLAGS\tPARENT")
	for _, e := range entries {
		until := "MISSING WAL"
		switch {
		case e.WAL.Last != "" && !e.WAL.Restorable:
			until = "INCOMPLETE WAL"
		case e.WAL.Last != "":
			until = e.WAL.LastTime.UTC().Format(listTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shown(e.Name), e.StopTime.UTC().Format(listTime), until,
			archive.HumanBytes(e.ChainStoredSize), listFlags(e), shortParent(e.Parent))
	}
	// Marked, not hidden: the operator sees that something is there and
	// must not be trusted.
	for _, b := range bad {
		parent := ""
		if b.Broken != nil {
			parent = b.Broken.Parent
		}
		fmt.Fprintf(tw, "%s\t-\t%s\t%s\t-\t%s\n", shown(b.Name), b.Mark, archive.HumanBytes(b.Size), shortParent(parent))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return listErr(bad, badWAL, r.Store)
}

// listErr is backup-list's verdict: exit 4 when a backup or a WAL object
// in the bucket is not what walvault wrote.
func listErr(bad []repo.Damaged, badWAL []repo.BadObject, store fmt.Stringer) error {
	if err := damagedErr("backup", bad, store); err != nil || len(badWAL) == 0 {
		return err
	}
	return fmt.Errorf("%w: %d WAL object(s) in %s fail authentication (the first: %s): they are not counted in the PITR ranges", crypto.ErrBadProof, len(badWAL), store, shown(badWAL[0].Key))
}

// listTime is how backup-list shows a moment: to the minute (backup-info
// has the seconds).
const listTime = "2006-01-02 15:04"

// listFlags is backup-list's FLAGS column: perm for a permanent backup,
// "-" for none.
func listFlags(e listEntry) string {
	var f []string
	if e.Permanent {
		f = append(f, "perm")
	}
	if e.FromStandby {
		f = append(f, "stby")
	}
	if len(f) == 0 {
		return "-"
	}
	return strings.Join(f, ",")
}

// shortParent names a parent in backup-list by the start time in its name
// (base_20261129T220224Z_...: 20261129T220224Z), "-" for none; a name
// walvault did not make is shown whole.
func shortParent(p string) string {
	if p == "" {
		return "-"
	}
	if rest, ok := strings.CutPrefix(p, "base_"); ok {
		if t, _, ok := strings.Cut(rest, "_"); ok && len(t) == len("20060102T150405Z") {
			return t
		}
	}
	return shown(p)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// damagedErr makes a listing exit 4 when a backup or dump (what) is
// damaged or fails authentication (after listing everything).
func damagedErr(what string, bad []repo.Damaged, store fmt.Stringer) error {
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d %s(s) in %s are damaged or fail authentication (the first: %s); they cannot be restored", repo.DamagedKind(bad), len(bad), what, store, shown(bad[0].Name))
}

func pgVersion(n int) string {
	if n >= 100000 {
		return fmt.Sprintf("%d.%d", n/10000, n%10000)
	}
	return fmt.Sprintf("%d.%d", n/10000, n/100%100)
}
