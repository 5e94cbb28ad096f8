package status

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
)

// Server is the server's archiving, as pg_stat_archiver and pg_wal tell.
type Server struct {
	Version    string `json:"version"`
	InRecovery bool   `json:"in_recovery"`
	SegSize    int64  `json:"segment_size"`
	// LastArchived and LastArchivedTime are pg_stat_archiver's.
	LastArchived     string     `json:"last_archived_wal"`
	LastArchivedTime *time.Time `json:"last_archived_time"`
	// LastArchivedAgeSeconds is the time since pg_stat_archiver's last
	// success (it grows on an idle server, when nothing waits).
	LastArchivedAgeSeconds *float64 `json:"last_archived_age_seconds"`
	FailedCount            int64    `json:"failed_count"`
	LastFailed             string   `json:"last_failed_wal,omitempty"`
	// Failing: the archiver's latest attempt failed.
	Failing bool `json:"failing"`
	// ArchiveLagSeconds is how long WAL has been waiting: 0 when nothing
	// waits (no .ready file and the archiver not failing), else the time
	// since the archiver's last success. Without the .ready count (the
	// data directory cannot be read) it is the time since the last
	// success. Null when nothing was ever archived.
	ArchiveLagSeconds *float64 `json:"archive_lag_seconds"`
	// ReadyFiles counts pg_wal/archive_status/*.ready: segments waiting for
	// archive_command. Null when the data directory cannot be read.
	ReadyFiles    *int   `json:"ready_wal_files"`
	DataDirectory string `json:"data_directory,omitempty"`
	ReadyError    string `json:"ready_error,omitempty"`
}

// PGProbe reads the server over a connection like backup-push's: dsn, or
// the libpq environment when dsn is empty; the .ready files under pgdata,
// or the server's data_directory when pgdata is empty.
func PGProbe(dsn, pgdata string, timeout time.Duration) ServerProbe {
	return func(ctx context.Context, now time.Time) (*Server, error) {
		s, err := pg.Connect(ctx, dsn, "walvault status", timeout)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		a, err := s.Archiver(ctx)
		if err != nil {
			return nil, err
		}
		out := &Server{Version: s.VersionString, InRecovery: s.InRecovery, SegSize: s.SegSize,
			LastArchived: a.LastArchived, FailedCount: a.Failed, LastFailed: a.LastFailed, Failing: a.Failing()}
		if !a.LastArchivedTime.IsZero() {
			t := a.LastArchivedTime.UTC()
			out.LastArchivedTime = &t
		}
		dir := pgdata
		if dir == "" {
			if dir, err = s.DataDirectory(ctx); err != nil {
				out.ReadyError = archive.OneLine(err.Error())
			}
		}
		if dir != "" {
			out.DataDirectory = dir
			n, err := CountReady(dir)
			if err != nil {
				out.ReadyError = archive.OneLine(err.Error())
			} else {
				out.ReadyFiles = &n
			}
		}
		out.lag(now)
		return out, nil
	}
}

// lag fills the ages from the archiver's figures.
func (s *Server) lag(now time.Time) {
	if s.LastArchivedTime != nil {
		a := age(now, *s.LastArchivedTime)
		s.LastArchivedAgeSeconds = &a
	}
	waiting := s.Failing || s.ReadyFiles == nil || *s.ReadyFiles > 0
	switch {
	case !waiting:
		zero := 0.0
		s.ArchiveLagSeconds = &zero
	case s.LastArchivedAgeSeconds != nil:
		a := *s.LastArchivedAgeSeconds
		s.ArchiveLagSeconds = &a
	}
}

// CountReady counts the .ready files in dir's pg_wal/archive_status.
func CountReady(dir string) (int, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "pg_wal", "archive_status"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ready") {
			n++
		}
	}
	return n, nil
}
