package retention

import (
	"fmt"
	"time"

	"github.com/walvault/walvault/archive/repo"
)

// backupDecisions turns the rules' reasons into a decision per backup. A
// kept backup that holds a tombstone (an earlier delete stopped before
// its manifest went) has the tombstone removed by Apply.
func backupDecisions(backups []*repo.Manifest, reasons map[string][]string, tombstoned map[string]bool) (out []BackupDecision, stale []string) {
	out = []BackupDecision{}
	for _, m := range backups {
		d := BackupDecision{Name: m.Name, StopTime: m.StopTime, Timeline: m.Timeline, StartWAL: m.StartWAL, StopWAL: m.StopWAL,
			Permanent: m.Permanent, StoredSize: m.StoredSize, Reasons: reasons[m.Name], Type: repo.BackupFull, Parent: m.Parent}
		if m.Incremental() {
			d.Type = repo.BackupIncremental
		}
		if len(d.Reasons) == 0 {
			d.Delete = true
			d.Reasons = []string{"no rule keeps it"}
		} else if tombstoned[m.Name] {
			stale = append(stale, m.Name)
		}
		out = append(out, d)
	}
	return out, stale
}

// folderDecisions decides the backup folders without a manifest: an
// interrupted delete's leftovers go; an interrupted backup goes once it is
// older than orphanAge and than the oldest kept backup (it might be a
// backup still running).
func folderDecisions(orphans []*repo.BackupFolder, orphanAge time.Duration, now time.Time, oldestKept *repo.Manifest) []FolderDecision {
	out := []FolderDecision{}
	for _, f := range orphans {
		d := FolderDecision{Name: f.Name, Objects: len(f.Objects), Size: f.Size, Newest: f.Newest}
		age := now.Sub(f.Newest).Round(time.Second)
		switch {
		case f.Has(repo.TombstoneFile):
			d.Delete, d.Reason = true, "left by an interrupted delete ("+repo.TombstoneFile+")"
		case f.Newest.IsZero():
			d.Reason = "no manifest; the store does not say when it was written, so it is kept"
		case age >= orphanAge && f.Newest.Before(oldestKept.StartTime):
			d.Delete, d.Reason = true, fmt.Sprintf("no manifest: an interrupted or failed backup, last written %s ago, before the oldest kept backup", age)
		default:
			d.Reason = fmt.Sprintf("no manifest, last written %s ago: may be a backup in progress; deleted once it is older than %s (--orphan-age) and than the oldest kept backup", age, orphanAge)
		}
		out = append(out, d)
	}
	return out
}
