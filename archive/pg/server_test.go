package pg

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/integration/pgtest"
)

// TestServer runs every query of the package against a real PostgreSQL
// 15 (integration/pgtest's throwaway cluster): what Connect reads, the
// settings, the backup API, pg_stat_archiver, the switch.
func TestServer(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{Conf: []string{"archive_mode = on", "archive_command = 'true'"}})
	c.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Connect(ctx, c.ConnString(""), "walvault-pg-test", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if s.Version < 150000 || !strings.HasPrefix(s.VersionString, "15") || s.SegSize != 16<<20 || s.InRecovery ||
		s.ArchiveMode != "on" || s.ArchiveCmd != "true" || s.CatVersion == 0 {
		t.Fatalf("server %+v", s)
	}
	if err := CheckControlFile(c.Data, s.SystemID); err != nil {
		t.Fatalf("the system identifier read is not the data directory's: %v", err)
	}
	if err := s.CheckArchiving(); err != nil {
		t.Fatal(err)
	}
	if got := c.Psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walvault-pg-test'"); got != "1" {
		t.Errorf("%s sessions named walvault-pg-test", got)
	}
	// A backup may last hours: no server-side timeout may end the session.
	var timeout string
	if err := s.conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil || timeout != "0" {
		t.Errorf("statement_timeout %q, %v", timeout, err)
	}

	dir, err := s.DataDirectory(ctx)
	if real, _ := filepath.EvalSymlinks(c.Data); err != nil || (dir != c.Data && dir != real) {
		t.Errorf("data directory %q, %v; want %s", dir, err, c.Data)
	}
	if lvl, err := s.WALLevel(ctx); err != nil || lvl != "replica" {
		t.Errorf("wal_level %q, %v", lvl, err)
	}
	f, err := s.Facts(ctx)
	if err != nil || f.WALLevel != "replica" || !f.FullPageWrites || f.BlockSize != 8192 || f.Started.IsZero() {
		t.Errorf("facts %+v, %v", f, err)
	}
	if tli, err := s.CurrentTimeline(ctx); err != nil || tli != 1 {
		t.Errorf("timeline %d, %v", tli, err)
	}
	ts, err := s.Tablespaces(ctx)
	if err != nil || len(ts) != 2 || !mapHas(ts, "pg_default") || !mapHas(ts, "pg_global") {
		t.Errorf("tablespaces %v, %v", ts, err)
	}
	if cmd, err := s.ConfiguredArchiveCommand(ctx); err != nil || cmd != "true" {
		t.Errorf("configured archive_command %q, %v", cmd, err)
	}
	pm, err := s.Postmaster(ctx)
	if err != nil || pm.Port != fmt.Sprint(c.Port) || pm.Started <= 0 || pm.DataDirectory != dir {
		t.Errorf("postmaster %+v, %v", pm, err)
	}

	start, err := s.StartBackup(ctx, "walvault pg test", true)
	if err != nil || start == 0 {
		t.Fatalf("start LSN %s, %v", start, err)
	}
	if _, err := s.StartBackup(ctx, "again", true); !errors.Is(err, archive.ErrPostgres) {
		t.Errorf("a second backup on the session: %v", err)
	}
	stop, err := s.StopBackup(ctx)
	if err != nil || stop.LSN < start || stop.NextXID == 0 || !strings.Contains(stop.Label, "LABEL: walvault pg test") {
		t.Fatalf("stop %+v, %v", stop, err)
	}
	if tli, err := TimelineOfLabel(stop.Label); err != nil || tli != 1 {
		t.Errorf("the label's timeline %d, %v", tli, err)
	}

	seg, err := s.SwitchSegment(ctx)
	if _, perr := archive.ParseWALName(seg); err != nil || perr != nil {
		t.Fatalf("switched segment %q, %v", seg, err)
	}
	c.WaitArchived(seg, 60*time.Second)
	a, err := s.Archiver(ctx)
	if err != nil || a.LastArchived < seg || a.Failing() || a.LastArchivedTime.IsZero() {
		t.Errorf("archiver %+v, %v; want %s archived", a, err, seg)
	}
}

func mapHas(m map[uint32]string, name string) bool {
	for _, v := range m {
		if v == name {
			return true
		}
	}
	return false
}

// TestConnectFails: connection settings that do not parse are bad input;
// a server that is not there is PostgreSQL's failure, within the timeout.
func TestConnectFails(t *testing.T) {
	ctx := context.Background()
	if _, err := Connect(ctx, "host=127.0.0.1 port=notaport", "x", time.Second); !errors.Is(err, archive.ErrBadInput) {
		t.Errorf("a bad port: %v", err)
	}
	port := pgtest.FreePort(t)
	start := time.Now()
	_, err := Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres sslmode=disable", port), "x", 5*time.Second)
	if !errors.Is(err, archive.ErrPostgres) || !strings.Contains(err.Error(), fmt.Sprintf("connecting to 127.0.0.1:%d as postgres", port)) || time.Since(start) > 10*time.Second {
		t.Errorf("no server: %v after %s", err, time.Since(start))
	}
}
