package restore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
)

// Target is where recovery stops; at most one of Time, LSN, XID, Name and
// Immediate is set. Nothing set means "replay all archived WAL".
type Target struct {
	Time      *time.Time
	LSN       *archive.LSN
	XID       string
	Name      string
	Immediate bool
	// Timeline: "latest" (default), "current" or a number.
	Timeline string
	// Inclusive is recovery_target_inclusive when set.
	Inclusive *bool
	// Action: pause, promote (default) or shutdown.
	Action string
	// BeyondArchive accepts a time or LSN target past the newest archived
	// WAL (more WAL is on its way: the server still archives), which is
	// otherwise refused before anything is written.
	BeyondArchive bool
}

// Validate checks the target as a whole.
func (t *Target) Validate() error {
	n := 0
	for _, set := range []bool{t.Time != nil, t.LSN != nil, t.XID != "", t.Name != "", t.Immediate} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w: give at most one of --target-time, --target-lsn, --target-xid, --target-name and --target-immediate", archive.ErrBadInput)
	}
	if t.XID != "" {
		if _, err := strconv.ParseUint(t.XID, 10, 64); err != nil {
			return fmt.Errorf("%w: --target-xid %q: expected a transaction id (a number)", archive.ErrBadInput, t.XID)
		}
	}
	switch t.Action {
	case "":
		t.Action = "promote"
	case "pause", "promote", "shutdown":
	default:
		return fmt.Errorf("%w: --target-action %q: use pause, promote or shutdown", archive.ErrBadInput, t.Action)
	}
	switch tl := strings.ToLower(t.Timeline); tl {
	case "":
		t.Timeline = "latest"
	case "latest", "current":
		t.Timeline = tl
	default:
		if v, err := strconv.ParseUint(t.Timeline, 10, 32); err != nil || v == 0 {
			return fmt.Errorf("%w: --target-timeline %q: use latest, current or a timeline number", archive.ErrBadInput, t.Timeline)
		}
	}
	if t.Inclusive != nil && t.Time == nil && t.LSN == nil && t.XID == "" {
		return fmt.Errorf("%w: --target-inclusive applies to --target-time, --target-lsn and --target-xid only", archive.ErrBadInput)
	}
	return nil
}

func (t *Target) isSet() bool {
	return t.Time != nil || t.LSN != nil || t.XID != "" || t.Name != "" || t.Immediate
}

// ParseTargetTime reads a --target-time. A time without a zone is taken in
// the local zone of the machine running restore; the recovery setting is
// then written with an explicit offset so the server reads the same
// instant whatever its TimeZone.
func ParseTargetTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	layouts := []string{
		time.RFC3339Nano,
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999Z07",
		"2006-01-02 15:04:05.999999999 Z07:00",
		"2006-01-02 15:04:05.999999999 MST",
		"2006-01-02T15:04:05.999999999Z07",
	}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	for _, l := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(l, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: --target-time %q: expected e.g. '2026-11-23 14:05:00+00' or 2026-11-23T14:05:00Z", archive.ErrBadInput, s)
}

// recoverySettings is what restore writes for PostgreSQL.
type recoverySettings struct {
	File   string   // postgresql.auto.conf (12+) or recovery.conf (<= 11)
	Signal string   // recovery.signal / standby.signal (12+), "" before
	Lines  []string // "name = 'value'"
}

// renderRecovery builds the settings that make a plain pg_ctl start replay
// WAL through wal-fetch to the target.
func renderRecovery(pgVersion int, fetchArgv []string, t Target, standby bool) recoverySettings {
	var s recoverySettings
	set := func(name, value string) { s.Lines = append(s.Lines, name+" = "+confQuote(value)) }
	set("restore_command", restoreCommand(fetchArgv))
	switch {
	case t.Time != nil:
		set("recovery_target_time", t.Time.UTC().Format("2006-01-02 15:04:05.999999+00"))
	case t.LSN != nil:
		set("recovery_target_lsn", t.LSN.String())
	case t.XID != "":
		set("recovery_target_xid", t.XID)
	case t.Name != "":
		set("recovery_target_name", t.Name)
	case t.Immediate:
		set("recovery_target", "immediate")
	}
	if t.Inclusive != nil {
		set("recovery_target_inclusive", strconv.FormatBool(*t.Inclusive))
	}
	if t.isSet() && !standby {
		set("recovery_target_action", t.Action)
	}
	tl := t.Timeline
	if tl == "" {
		tl = "latest"
	}
	set("recovery_target_timeline", tl)
	if pgVersion >= 120000 {
		s.File, s.Signal = "postgresql.auto.conf", "recovery.signal"
		if standby {
			s.Signal = "standby.signal"
		}
		return s
	}
	s.File = "recovery.conf"
	if standby {
		set("standby_mode", "on")
	}
	return s
}

// restoreCommand renders argv plus %f %p for PostgreSQL, which runs it
// through the shell and expands % escapes first.
func restoreCommand(argv []string) string {
	parts := make([]string, 0, len(argv)+2)
	for _, a := range argv {
		parts = append(parts, strings.ReplaceAll(shellQuote(a), "%", "%%"))
	}
	return strings.Join(append(parts, "%f", "%p"), " ")
}

func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-=:,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// confQuote quotes a value for postgresql.conf syntax, where backslash
// escapes are interpreted and quotes are doubled.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}
