package restore

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// checkWAL refuses, before anything is written, a backup the archive
// cannot bring to the target: its own WAL (start to stop) must be there,
// or the restored server can never become consistent, and so must the WAL
// from there to the target.
func checkWAL(r *repo.Repo, cat *repo.Catalog, m *repo.Manifest, target Target) error {
	if rg := cat.WAL(m.SegmentSize).Range(m); !rg.Restorable {
		return fmt.Errorf("%w: backup %s cannot be made consistent: its WAL %s to %s is not all in %s (have: %s to %s)",
			archive.ErrIntegrity, m.Name, m.StartWAL, m.StopWAL, r.Store, archive.OrNone(rg.First), archive.OrNone(rg.Last))
	}
	if m.Encrypted && len(r.Identities) == 0 {
		return fmt.Errorf("%w: backup %s is encrypted: give the identity file with --identity-file", archive.ErrBadInput, m.Name)
	}
	return CheckWALReachable(cat, m, target, r.Store.String())
}

// CheckWALReachable says, before a restore writes anything, whether the
// archive (cat, listed with its WAL and history files; store names it)
// holds the WAL that recovery from backup m to target needs: the backup's
// own WAL (start to stop), and for a target past it every segment up to
// the target without a gap. A gap that would make recovery stop short
// (and, for "latest", promote there as if it were the end) is an
// ErrIntegrity naming the missing segments and the latest reachable
// point. Targets whose position cannot be known in advance (a transaction
// id, a restore point name) only get a warning.
func CheckWALReachable(cat *repo.Catalog, m *repo.Manifest, target Target, store string) error {
	inv := cat.WAL(m.SegmentSize)
	tli, err := targetTimeline(cat, m, target)
	if err != nil {
		return err
	}
	if tli != m.Timeline {
		if e := inv.HistErr[tli]; e != nil {
			return e
		}
		if _, ok := inv.History[tli]; !ok {
			return fmt.Errorf("%w: timeline %d has no history file %s in %s: recovery cannot follow it", archive.ErrIntegrity, tli, archive.HistoryName(tli), store)
		}
	}
	path, ok := inv.PathTo(m, tli, m.StopLSN)
	if !ok {
		return fmt.Errorf("%w: backup %s (timeline %d, stop %s) is not on the history of timeline %d: pick another backup or --target-timeline", archive.ErrBadInput, m.Name, m.Timeline, m.StopLSN, tli)
	}
	w := inv.Walk(path)
	stop, _ := archive.ParseWALName(m.StopWAL)
	if w.Last == nil || w.LastTLI == m.Timeline && w.LastSegN < stop.SegNo(m.SegmentSize) {
		return fmt.Errorf("%w: backup %s cannot be made consistent: WAL segment %s is not in %s (the backup needs %s to %s)",
			archive.ErrIntegrity, m.Name, w.Missing, store, m.StartWAL, m.StopWAL)
	}
	reached := inv.Point(w)
	if w.Gap == nil {
		if target.LSN != nil && *target.LSN >= mustLSN(reached.LSN) {
			return fmt.Errorf("%w: --target-lsn %s is past the newest archived WAL (%s, which ends at %s): force a segment switch on the server (SELECT pg_switch_wal()) and wait for it to be archived, or pick an earlier target",
				archive.ErrIntegrity, *target.LSN, reached.Segment, reached.LSN)
		}
		return nil
	}
	return checkGap(w, reached, target, store)
}

// targetTimeline is the timeline recovery follows to the target.
func targetTimeline(cat *repo.Catalog, m *repo.Manifest, target Target) (uint32, error) {
	switch t := strings.ToLower(target.Timeline); t {
	case "current":
		return m.Timeline, nil
	case "", "latest":
		return max(m.Timeline, cat.LatestTimeline()), nil
	default:
		var v uint32
		if _, err := fmt.Sscan(t, &v); err != nil || v == 0 {
			return 0, fmt.Errorf("%w: --target-timeline %q: use latest, current or a timeline number", archive.ErrBadInput, target.Timeline)
		}
		return v, nil
	}
}

// checkGap says whether the target lies before the gap w ran into.
func checkGap(w repo.WALWalk, reached *repo.WALPoint, target Target, store string) error {
	where := fmt.Sprintf("the archive has a gap: WAL %s is missing from %s, and the archive continues after it (to %s)", w.Gap, store, archive.OrNone(w.Newest))
	switch {
	case target.Immediate:
		return nil
	case target.LSN != nil:
		if *target.LSN < mustLSN(reached.LSN) {
			return nil
		}
		return fmt.Errorf("%w: --target-lsn %s cannot be reached: %s; recovery would stop at %s (end of %s). Restore to an earlier target, or put the missing WAL back",
			archive.ErrIntegrity, *target.LSN, where, reached.LSN, reached.Segment)
	case target.Time != nil:
		if !target.Time.After(w.Last.ModTime) {
			return nil
		}
		return fmt.Errorf("%w: --target-time %s cannot be reached: %s; the WAL before the gap was archived by %s, so recovery would stop at %s (end of %s) short of the target. Restore to an earlier target (e.g. --target-lsn %s), or put the missing WAL back",
			archive.ErrIntegrity, archive.FormatTime(*target.Time), where, archive.FormatTime(w.Last.ModTime), reached.LSN, reached.Segment, reached.LSN)
	case target.XID != "" || target.Name != "":
		slog.Warn("the archive has a gap; recovery fails if the target lies after it", "gap", w.Gap.String(), "reachable_to", reached.LSN)
		return nil
	}
	return fmt.Errorf("%w: restoring to the end of the archive would stop short: %s; recovery would end at %s (end of %s) and promote there, losing everything after it. Restore to a target before the gap (e.g. --target-lsn %s), or put the missing WAL back",
		archive.ErrIntegrity, where, reached.LSN, reached.Segment, reached.LSN)
}

func mustLSN(s string) archive.LSN { l, _ := archive.ParseLSN(s); return l }

// walToTarget selects the keys of the segments recovery from backup m to
// target reads, as far as the listing has them without a gap.
func walToTarget(cat *repo.Catalog, m *repo.Manifest, target Target) func(string) bool {
	inv := cat.WAL(m.SegmentSize)
	tli, err := targetTimeline(cat, m, target)
	if err != nil {
		return func(string) bool { return false }
	}
	path, ok := inv.PathTo(m, tli, m.StopLSN)
	if !ok {
		return func(string) bool { return false }
	}
	keys := inv.WalkKeys(path, inv.Walk(path))
	return func(k string) bool { return keys[k] }
}
