package check

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
)

// checkWALLevel: minimal WAL cannot rebuild a database from a backup.
func checkWALLevel(ctx context.Context, rep *Report, srv *pg.Server) {
	walLevel, err := srv.WALLevel(ctx)
	switch {
	case err != nil:
		rep.add("wal_level", Fail, err.Error(), "")
	case walLevel == "minimal":
		rep.add("wal_level", Fail, "wal_level = minimal: WAL cannot rebuild the database from a base backup", "set wal_level = replica in postgresql.conf and restart PostgreSQL")
	default:
		rep.add("wal_level", OK, "wal_level = "+walLevel, "")
	}
}

// checkArchiveMode says whether this server archives at all.
func checkArchiveMode(rep *Report, srv *pg.Server) (archiving bool) {
	switch {
	case srv.ArchiveMode == "off":
		rep.add("archive_mode", Fail, "archive_mode = off: no WAL is archived, so no backup can be restored past its end", "set archive_mode = on in postgresql.conf and restart PostgreSQL (a reload is not enough)")
		return false
	case srv.InRecovery && srv.ArchiveMode != "always":
		rep.add("archive_mode", Warn, "archive_mode = "+srv.ArchiveMode+" on a standby: this server archives nothing until it is promoted (the primary archives)", "set archive_mode = always if this standby must archive too")
		return false
	default:
		rep.add("archive_mode", OK, "archive_mode = "+srv.ArchiveMode, "")
		return true
	}
}

// checkArchiveCommandOf reads the server's archive_command (from the
// configuration files while archive_mode hides it), resolves what it runs
// with, and reports it.
func checkArchiveCommandOf(ctx context.Context, rep *Report, srv *pg.Server, opts Options) archiveCmd {
	env, envWhy := serverEnvironment(ctx, srv)
	cmd, note := srv.ArchiveCmd, ""
	if cmd == "(disabled)" {
		var err error
		if cmd, err = srv.ConfiguredArchiveCommand(ctx); err != nil {
			cmd = ""
		}
		note = " (read from the configuration files: not in effect while archive_mode is off)"
	}
	ac := resolveArchiveCommand(cmd, env, envWhy, opts.Resolve)
	if cmd == "" && note != "" {
		rep.add("archive_command", Skip, "not in effect while archive_mode is off, and not readable from the configuration files", "")
		return ac
	}
	checkArchiveCommand(rep, ac, opts)
	rep.Results[len(rep.Results)-1].Detail += note
	return ac
}

// checkArchiver reads pg_stat_archiver.
func checkArchiver(ctx context.Context, rep *Report, srv *pg.Server, archiving bool) {
	a, err := srv.Archiver(ctx)
	if err != nil {
		rep.add("pg_stat_archiver", Fail, err.Error(), "")
		return
	}
	ago := func(t time.Time) string { return time.Since(t).Round(time.Second).String() + " ago" }
	last := "nothing archived yet"
	if a.LastArchived != "" {
		last = fmt.Sprintf("last archived %s at %s (%s)", a.LastArchived, archive.FormatTime(a.LastArchivedTime), ago(a.LastArchivedTime))
	}
	switch {
	case a.Failing():
		rep.add("pg_stat_archiver", Fail, fmt.Sprintf("archiving is failing: %d failures, the last for %s at %s (%s); %s", a.Failed, a.LastFailed, archive.FormatTime(a.LastFailedTime), ago(a.LastFailedTime), last),
			"read archive_command's error in the PostgreSQL log; until it succeeds PostgreSQL keeps the WAL (pg_wal grows) and nothing newer reaches the store")
	case a.LastArchived == "" && archiving:
		rep.add("pg_stat_archiver", Warn, last+" since the statistics were reset", "the segment switch below shows whether archiving works")
	case a.Failed > 0:
		rep.add("pg_stat_archiver", OK, fmt.Sprintf("%s; %d earlier failures, the last for %s %s, before the last success", last, a.Failed, a.LastFailed, ago(a.LastFailedTime)), "")
	default:
		rep.add("pg_stat_archiver", OK, last+", no failures", "")
	}
}

const notTheServersPid = "postmaster.pid here is not the connected server's (another machine?)"

// serverEnvironment reads the postmaster's environment from /proc when the
// server runs on this machine and we may read it: archive_command inherits
// it. why says what prevented it otherwise.
func serverEnvironment(ctx context.Context, srv *pg.Server) (env map[string]string, why string) {
	pm, err := srv.Postmaster(ctx)
	if err != nil {
		return nil, "the server's data_directory is not visible to this role"
	}
	b, err := os.ReadFile(filepath.Join(pm.DataDirectory, "postmaster.pid")) // #nosec G304 -- the server's own pid file
	if err != nil {
		return nil, "the server's postmaster.pid cannot be read here (another machine, or no permission)"
	}
	pid, why := postmasterPid(string(b), pm)
	if why != "" {
		return nil, why
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)) // #nosec G703 -- pid is a number: the path stays under /proc
	if err != nil {
		return nil, "the server's environment (/proc/PID/environ) is not readable by this user: run check as root or as the server's user"
	}
	env = map[string]string{}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env, ""
}

// postmasterPid reads the process id from postmaster.pid once its data
// directory, start time and port show it is the connected server's.
func postmasterPid(pidFile string, pm pg.Postmaster) (pid int, why string) {
	lines := strings.Split(pidFile, "\n")
	if len(lines) < 4 || strings.TrimSpace(lines[1]) != pm.DataDirectory || strings.TrimSpace(lines[3]) != pm.Port {
		return 0, notTheServersPid
	}
	if st, err := strconv.ParseInt(strings.TrimSpace(lines[2]), 10, 64); err != nil || st < pm.Started-2 || st > pm.Started+2 {
		return 0, notTheServersPid
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, "postmaster.pid has no process id"
	}
	return pid, ""
}

// checkIncremental says what an incremental backup of this server will
// read: only the changed blocks (WAL summaries, PostgreSQL 17 and later
// with summarize_wal = on) or every page, and whether it takes changed
// blocks or whole files.
func checkIncremental(ctx context.Context, rep *Report, srv *pg.Server) {
	f, err := srv.Facts(ctx)
	if err != nil {
		rep.add("incremental", Warn, "cannot tell: "+archive.OneLine(err.Error()), "")
		return
	}
	if f.WALLevel == "minimal" {
		rep.add("incremental", Warn, "wal_level = minimal: backup-push --incremental takes full backups", "set wal_level = replica in postgresql.conf and restart PostgreSQL")
		return
	}
	unit := "the changed blocks of a relation file"
	if f.DataChecksums != "on" && !f.WALLogHints {
		unit = "a relation file with a changed page whole (data_checksums and wal_log_hints are off: hint-bit writes are not WAL-logged)"
	}
	major := srv.Version / 10000
	switch {
	case major < 17:
		rep.add("incremental", OK, fmt.Sprintf("PostgreSQL %d keeps no WAL summaries: an incremental reads every page, and the WAL since its parent (from pg_wal while the server keeps it, else from the archive, which this host reads only when it is not encrypted) for the databases and relation files created since; it stores %s", major, unit), "")
	case !f.SummarizeWAL:
		rep.add("incremental", Warn, fmt.Sprintf("summarize_wal = off: an incremental reads every page, and the WAL since its parent (from pg_wal while the server keeps it, else from the archive, which this host reads only when it is not encrypted); it stores %s", unit),
			"ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf(); (then an incremental whose parent began after that reads only the blocks that changed)")
	default:
		detail := fmt.Sprintf("summarize_wal = on: an incremental reads only the blocks the WAL summaries mark as changed (and new, grown and non-relation files), and stores %s", unit)
		if st, err := srv.SummarizerState(ctx); err == nil {
			if st.PID < 0 {
				rep.add("incremental", Warn, detail+"; but the WAL summarizer is not running", "see the PostgreSQL log for why the WAL summarizer stopped")
				return
			}
			detail += fmt.Sprintf("; summaries reach %s", st.Summarized)
		}
		rep.add("incremental", OK, detail, "")
	}
}
