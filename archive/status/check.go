package status

import (
	"fmt"
	"time"
)

// Thresholds turn the figures into a check; zero turns one off.
type Thresholds struct {
	// MaxBackupAge: the newest backup finished longer ago than this (or
	// there is none).
	MaxBackupAge time.Duration
	// MaxDumpAge: the newest database dump finished longer ago than this
	// (or there is none).
	MaxDumpAge time.Duration
	// MaxArchiveLag: WAL has waited longer than this for archiving (or
	// the lag cannot be read: the server is unreachable).
	MaxArchiveLag time.Duration
	// MaxDrillAge: the last restore drill that passed finished longer ago
	// than this (or there is none).
	MaxDrillAge time.Duration
}

// Problems lists, in words, what is wrong with the archive whatever the
// thresholds: backups that cannot be trusted or restored, WAL objects that
// fail authentication, gaps in the PITR window or in the WAL checked.
func (r *Report) Problems() []string {
	var out []string
	for _, b := range r.BadBackups {
		out = append(out, fmt.Sprintf("backup %s is %s: %s", b.Name, b.Mark, b.Error))
	}
	for _, p := range r.MissingParts {
		out = append(out, "a complete backup lost a part: "+p)
	}
	for _, b := range r.UnauthenticatedWAL {
		out = append(out, fmt.Sprintf("%s fails authentication and is not counted as archived: %s", b.Key, b.Err))
	}
	for _, g := range r.PITRGaps {
		out = append(out, fmt.Sprintf("WAL gap %s: recovery from the backups before it stops there, outside the PITR window", g))
	}
	for _, g := range r.WAL.Gaps {
		out = append(out, fmt.Sprintf("WAL gap %s", g))
	}
	return out
}

// Exceeded lists, in words, the thresholds the report exceeds.
func (r *Report) Exceeded(th Thresholds) []string {
	var out []string
	if th.MaxBackupAge > 0 {
		switch b := r.NewestBackup; {
		case b == nil:
			out = append(out, fmt.Sprintf("no complete backup in the store (--max-backup-age %s)", th.MaxBackupAge))
		case b.AgeSeconds > th.MaxBackupAge.Seconds():
			out = append(out, fmt.Sprintf("the newest backup %s finished %s ago, more than --max-backup-age %s", b.Name, roundAge(b.AgeSeconds), th.MaxBackupAge))
		}
	}
	if th.MaxDumpAge > 0 {
		switch d := r.NewestDump; {
		case d == nil:
			out = append(out, fmt.Sprintf("no database dump in the store (--max-dump-age %s)", th.MaxDumpAge))
		case d.AgeSeconds > th.MaxDumpAge.Seconds():
			out = append(out, fmt.Sprintf("the newest dump %s finished %s ago, more than --max-dump-age %s", d.Name, roundAge(d.AgeSeconds), th.MaxDumpAge))
		}
	}
	if th.MaxArchiveLag > 0 {
		switch lag := r.ArchiveLag(); {
		case r.Server == nil:
			why := r.ServerError
			if why == "" {
				why = "not asked"
			}
			out = append(out, fmt.Sprintf("the archive lag cannot be read (--max-archive-lag %s): the server: %s", th.MaxArchiveLag, why))
		case lag == nil:
			out = append(out, fmt.Sprintf("the archive lag cannot be read (--max-archive-lag %s): pg_stat_archiver shows nothing archived yet", th.MaxArchiveLag))
		case *lag > th.MaxArchiveLag.Seconds():
			out = append(out, fmt.Sprintf("WAL has waited %s for archiving (last archived %s), more than --max-archive-lag %s", roundAge(*lag), orNone(r.Server.LastArchived), th.MaxArchiveLag))
		}
	}
	if th.MaxDrillAge > 0 {
		out = append(out, r.drillExceeded(th.MaxDrillAge)...)
	}
	return out
}

func roundAge(sec float64) time.Duration {
	return time.Duration(sec * float64(time.Second)).Round(time.Second)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
