package pg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walvault/walvault/archive"
)

func TestErr(t *testing.T) {
	pe := &pgconn.PgError{Message: "must be superuser to run this function", Code: "42501"}
	err := Err("starting the backup", fmt.Errorf("query: %w", pe))
	if !errors.Is(err, archive.ErrPostgres) || err.Error() != "postgres error: starting the backup: must be superuser to run this function (SQLSTATE 42501)" {
		t.Errorf("a server error: %v", err)
	}
	if err := Err("x", context.Canceled); err != context.Canceled { // passed on as it is
		t.Errorf("a cancellation is passed on as it is: %v", err)
	}
	cause := errors.New("connection refused")
	if err := Err("connecting", cause); !errors.Is(err, archive.ErrPostgres) || !errors.Is(err, cause) {
		t.Errorf("another error: %v", err)
	}
}

func TestCheckArchiving(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    Server
		want string // a part of the error; "" for none
	}{
		{"archiving", Server{ArchiveMode: "on", ArchiveCmd: "walvault wal-push %p"}, ""},
		{"archive_mode off", Server{ArchiveMode: "off", ArchiveCmd: "walvault wal-push %p"}, "archive_mode is off"},
		{"no archive_command", Server{ArchiveMode: "on", ArchiveCmd: "  "}, "archive_command is empty"},
		// A standby's WAL is archived by the primary (or by itself, with always).
		{"standby, on", Server{ArchiveMode: "on", InRecovery: true, ArchiveCmd: "x"}, ""},
		{"standby, off, no command", Server{ArchiveMode: "off", InRecovery: true}, ""},
		{"standby, always", Server{ArchiveMode: "always", InRecovery: true, ArchiveCmd: "x"}, ""},
		{"archive library", Server{ArchiveMode: "on", ArchiveCmd: "library:basic_archive"}, ""},
	} {
		err := tt.s.CheckArchiving()
		if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, archive.ErrPostgres) || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestArchiverStatus(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		a       ArchiverStatus
		failing bool
		text    string
	}{
		{"nothing yet", ArchiverStatus{}, false, "no failures, last archived nothing yet"},
		{"archiving", ArchiverStatus{LastArchived: "000000010000000000000003", LastArchivedTime: t0}, false, "last archived 000000010000000000000003"},
		{"failed, then archived", ArchiverStatus{LastArchived: "000000010000000000000004", LastArchivedTime: t0.Add(time.Minute), Failed: 2,
			LastFailed: "000000010000000000000004", LastFailedTime: t0}, false, "2 failures, last for 000000010000000000000004"},
		{"failing", ArchiverStatus{LastArchived: "000000010000000000000003", LastArchivedTime: t0, Failed: 7,
			LastFailed: "000000010000000000000004", LastFailedTime: t0.Add(time.Minute)}, true, "7 failures, last for 000000010000000000000004 at 2026-11-29T22:01:00Z"},
	} {
		if tt.a.Failing() != tt.failing || !strings.Contains(tt.a.String(), tt.text) {
			t.Errorf("%s: failing %v, %q; want %v, %q", tt.name, tt.a.Failing(), tt.a.String(), tt.failing, tt.text)
		}
	}
}

func TestTimelineOfLabel(t *testing.T) {
	label := "START WAL LOCATION: 0/6000028 (file 000000030000000000000006)\nCHECKPOINT LOCATION: 0/6000060\nBACKUP METHOD: streamed\n"
	if tli, err := TimelineOfLabel(label); err != nil || tli != 3 {
		t.Errorf("timeline %d, %v; want 3", tli, err)
	}
	for _, bad := range []string{"", "CHECKPOINT LOCATION: 0/6000060\n", "START WAL LOCATION: 0/6000028 (file 0000000Z0000000000000006)\n",
		"START WAL LOCATION: 0/6000028 (file 00000003)\n"} {
		if _, err := TimelineOfLabel(bad); !errors.Is(err, archive.ErrPostgres) {
			t.Errorf("%q: %v, want ErrPostgres", bad, err)
		}
	}
}

func TestCheckControlFile(t *testing.T) {
	pgdata := t.TempDir()
	if err := os.Mkdir(filepath.Join(pgdata, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := CheckControlFile(pgdata, 42); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "not a readable PostgreSQL data directory") {
		t.Errorf("no pg_control: %v", err)
	}
	control := filepath.Join(pgdata, "global", "pg_control")
	if err := os.WriteFile(control, []byte{1, 2, 3}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckControlFile(pgdata, 42); !errors.Is(err, archive.ErrBadInput) {
		t.Errorf("a short pg_control: %v", err)
	}
	b := make([]byte, 8192)
	binary.LittleEndian.PutUint64(b, 7312345678901234567)
	if err := os.WriteFile(control, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckControlFile(pgdata, 7312345678901234567); err != nil {
		t.Errorf("the right cluster: %v", err)
	}
	if err := CheckControlFile(pgdata, 42); !errors.Is(err, archive.ErrBadInput) || !strings.Contains(err.Error(), "system identifier 7312345678901234567") {
		t.Errorf("another cluster: %v", err)
	}
}
