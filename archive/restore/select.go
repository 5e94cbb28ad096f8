package restore

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/crypto"
)

// Selection says which backup a restore wants.
type Selection struct {
	Backup string // a name, or "" / "LATEST" for the newest that fits
	Time   *time.Time
	LSN    *archive.LSN
	XID    uint64
	// TargetTLI, when not 0, keeps only backups on that timeline's history
	// (History is its history file).
	TargetTLI uint32
	History   []archive.HistoryEntry
}

// chooseBackup picks the backup for opts from the catalog's complete
// backups, on the history of the target timeline.
func chooseBackup(cat *repo.Catalog, opts Options) (*repo.Manifest, error) {
	t := opts.Target
	sel := Selection{Backup: opts.Backup, Time: t.Time, LSN: t.LSN}
	if t.XID != "" {
		sel.XID, _ = strconv.ParseUint(t.XID, 10, 64)
	}
	switch t.Timeline {
	case "current":
	case "latest", "":
		sel.TargetTLI = cat.LatestTimeline()
	default:
		v, _ := strconv.ParseUint(t.Timeline, 10, 32)
		sel.TargetTLI = uint32(v)
	}
	if sel.TargetTLI > 1 {
		var err error
		if sel.History, err = cat.History(sel.TargetTLI); err != nil {
			return nil, err
		}
	} else if t.Timeline == "latest" {
		sel.TargetTLI = 0 // one timeline only: any backup is on it
	}
	if err := refuseDamaged(cat, opts.Backup); err != nil {
		return nil, err
	}
	m, err := selectBackup(cat.Backups(), sel)
	if err != nil {
		if why := skippedBackups(cat); why != nil {
			// Not "no backup": there are backups, and the reason none can be
			// used is most likely a wrong verify key.
			if len(cat.Backups()) == 0 {
				return nil, why
			}
			return nil, tagged{msg: fmt.Sprintf("%v; of the others, none fits: %v", why, untag(err)), err: why}
		}
		return nil, err
	}
	return m, nil
}

// tagged prints msg and unwraps to err (which carries the sentinel for
// the exit code).
type tagged struct {
	msg string
	err error
}

func (t tagged) Error() string { return t.msg }
func (t tagged) Unwrap() error { return t.err }

// untag drops the "bad input: " a selection error starts with.
func untag(err error) string {
	return strings.TrimPrefix(err.Error(), archive.ErrBadInput.Error()+": ")
}

// skippedBackups says, when backup folders were left out for a manifest
// that fails authentication or is damaged, how many and which, with the
// fix: ErrBadProof (exit 4) naming verify-key when any fails
// authentication, else ErrIntegrity. nil when none was left out.
func skippedBackups(cat *repo.Catalog) error {
	var unauth, damaged []string
	for _, f := range cat.Folders {
		if f.Manifest != nil || f.Err == nil {
			continue
		}
		if errors.Is(f.Err, crypto.ErrBadProof) {
			unauth = append(unauth, f.Name)
		} else {
			damaged = append(damaged, f.Name)
		}
	}
	list := func(names []string) string {
		if len(names) > 3 {
			return strings.Join(names[:3], ", ") + ", ..."
		}
		return strings.Join(names, ", ")
	}
	switch {
	case len(unauth) > 0:
		more := ""
		if len(damaged) > 0 {
			more = fmt.Sprintf("; %d more are damaged", len(damaged))
		}
		return tagged{msg: fmt.Sprintf("%d backup(s) fail authentication (%s)%s: check verify-key (the verify key keygen printed for the signing key of the host that took them; walvault backup-list shows why each fails)",
			len(unauth), list(unauth), more), err: crypto.ErrBadProof}
	case len(damaged) > 0:
		return tagged{msg: fmt.Sprintf("%d backup(s) are damaged (%s): walvault backup-list shows why", len(damaged), list(damaged)), err: archive.ErrIntegrity}
	}
	return nil
}

// refuseDamaged keeps restore away from backups whose manifest is damaged
// or fails authentication (the catalog leaves them out of Backups): asked
// for by name, such a backup is an integrity failure; picked by target,
// each is skipped with a warning naming it.
func refuseDamaged(cat *repo.Catalog, want string) error {
	byName := want != "" && !strings.EqualFold(want, "LATEST")
	for _, f := range cat.Damaged() {
		if byName && f.Name == want {
			if errors.Is(f.Err, archive.ErrIntegrity) || errors.Is(f.Err, crypto.ErrBadProof) || errors.Is(f.Err, codec.ErrCorrupt) {
				return fmt.Errorf("backup %s cannot be restored: %w", want, f.Err)
			}
			return fmt.Errorf("%w: backup %s cannot be restored: %w", archive.ErrIntegrity, want, f.Err)
		}
		if !byName {
			slog.Warn("restore skips a backup whose manifest is damaged or fails authentication", "backup", f.Name, "err", f.Err)
		}
	}
	return nil
}

// onHistory says whether recovery along timeline target (whose history is
// hist) can start from backup m.
func onHistory(m *repo.Manifest, target uint32, hist []archive.HistoryEntry) bool {
	if target == 0 || m.Timeline == target {
		return true
	}
	for _, h := range hist {
		if h.TLI == m.Timeline {
			return m.StopLSN <= h.End
		}
	}
	return false
}

// selectBackup picks the backup to restore from backups (oldest first).
func selectBackup(backups []*repo.Manifest, sel Selection) (*repo.Manifest, error) {
	if len(backups) == 0 {
		return nil, fmt.Errorf("%w: the store has no complete backup: run walvault backup-push first", archive.ErrBadInput)
	}
	if sel.Backup != "" && !strings.EqualFold(sel.Backup, "LATEST") {
		for _, m := range backups {
			if m.Name == sel.Backup {
				if err := sel.fits(m); err != nil {
					return nil, fmt.Errorf("%w: %v", archive.ErrBadInput, err)
				}
				return m, nil
			}
		}
		return nil, fmt.Errorf("%w: no complete backup named %q in the store: walvault backup-list shows them", archive.ErrBadInput, sel.Backup)
	}
	var last error
	for i := len(backups) - 1; i >= 0; i-- {
		err := sel.fits(backups[i])
		if err == nil {
			return backups[i], nil
		}
		last = err
	}
	oldest := backups[0]
	switch {
	case sel.Time != nil:
		return nil, fmt.Errorf("%w: no backup finished before the target time %s: the oldest, %s, finished at %s", archive.ErrBadInput, archive.FormatTime(*sel.Time), oldest.Name, archive.FormatTime(oldest.StopTime))
	case sel.LSN != nil:
		return nil, fmt.Errorf("%w: no backup stops at or before the target LSN %s: the oldest, %s, stops at %s", archive.ErrBadInput, *sel.LSN, oldest.Name, oldest.StopLSN)
	case sel.XID != 0:
		return nil, fmt.Errorf("%w: no backup ended before transaction %d began: pick one with --backup", archive.ErrBadInput, sel.XID)
	}
	return nil, fmt.Errorf("%w: no backup fits: %v", archive.ErrBadInput, last)
}

// fits says why m cannot be restored to the selection's target, or nil.
func (sel Selection) fits(m *repo.Manifest) error {
	if !onHistory(m, sel.TargetTLI, sel.History) {
		return fmt.Errorf("backup %s (timeline %d, stop %s) is not on the history of timeline %d", m.Name, m.Timeline, m.StopLSN, sel.TargetTLI)
	}
	if sel.Time != nil && !m.StopTime.Before(*sel.Time) {
		return fmt.Errorf("backup %s finished at %s, not before the target time %s", m.Name, archive.FormatTime(m.StopTime), archive.FormatTime(*sel.Time))
	}
	if sel.LSN != nil && m.StopLSN > *sel.LSN {
		return fmt.Errorf("backup %s stops at %s, after the target LSN %s", m.Name, m.StopLSN, *sel.LSN)
	}
	if sel.XID != 0 && (m.StopNextXID == 0 || m.StopNextXID > sel.XID) {
		return fmt.Errorf("backup %s ended after transaction %d began", m.Name, sel.XID)
	}
	return nil
}
