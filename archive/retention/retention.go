// Package retention is walvault delete and backup-mark: which backups a
// retention policy keeps, which objects go and why, carrying that out, and
// the permanent mark that exempts a backup from every rule.
package retention

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// Policy says which backups delete keeps. Every rule given keeps some
// backups; a backup is deleted only when no rule keeps it. Whatever the
// rules, the newest backup, permanent backups, and the newest backup that
// can restore to the latest archived WAL are kept.
type Policy struct {
	// RetainFull keeps the N newest backups (0: rule not given).
	RetainFull int
	// Before keeps the backups that finished at or after it (nil: not given).
	Before *time.Time
	// RetainWindow keeps every backup needed to restore to any moment of
	// the last RetainWindow: those that finished within it, and the newest
	// one that finished before it began.
	RetainWindow time.Duration
	// MinKeep keeps at least the N newest, whatever the other rules say.
	MinKeep int
	// OrphanAge: a backup folder without a manifest (an interrupted or
	// running backup) is deleted only once its newest object is this old
	// and older than the oldest kept backup.
	OrphanAge time.Duration
	// Now is the time the rules are evaluated at (zero: time.Now()).
	Now time.Time
	// Names, for delete NAME...: these backups are deleted and every other
	// one is kept (no other rule may be given).
	Names []string
	// RetainDumps keeps the N newest logical dumps of each database (the
	// globals dumps are a group of their own); 0: dumps are not touched.
	// It is a rule of its own: given alone, no backup or WAL is touched.
	RetainDumps int
}

// backupRules says whether the policy has a rule for backups.
func (pol Policy) backupRules() bool {
	return pol.RetainFull > 0 || pol.Before != nil || pol.RetainWindow > 0 || len(pol.Names) > 0
}

// BackupDecision is what delete does with one backup, and why.
type BackupDecision struct {
	Name       string    `json:"name"`
	StopTime   time.Time `json:"stop_time"`
	Timeline   uint32    `json:"timeline"`
	StartWAL   string    `json:"start_wal"`
	StopWAL    string    `json:"stop_wal"`
	Permanent  bool      `json:"permanent"`
	StoredSize int64     `json:"stored_size"`
	// Type is "full" or "incremental"; Parent names an incremental's.
	Type    string   `json:"type"`
	Parent  string   `json:"parent"`
	Delete  bool     `json:"delete"`
	Reasons []string `json:"reasons"`
}

// FolderDecision is what delete does with a backup folder that has no
// manifest (not a backup).
type FolderDecision struct {
	Name    string    `json:"name"`
	Objects int       `json:"objects"`
	Size    int64     `json:"size"`
	Newest  time.Time `json:"newest"`
	Delete  bool      `json:"delete"`
	Reason  string    `json:"reason"`
}

// WALRun is a run of consecutive WAL objects of one timeline that share a
// decision and its reason.
type WALRun struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"`
	Last     string `json:"last"`
	Objects  int    `json:"objects"`
	Bytes    int64  `json:"bytes"`
	Delete   bool   `json:"delete"`
	Reason   string `json:"reason"`
	keys     []string
}

// Totals counts one side of a plan.
type Totals struct {
	Backups    int   `json:"backups"`
	Folders    int   `json:"incomplete_folders"`
	WALObjects int   `json:"wal_objects"`
	Dumps      int   `json:"dumps"` // dump folders, with a manifest or not
	Bytes      int64 `json:"bytes"`
}

// Plan is exactly what delete removes and keeps, and why. Scripts read it
// as JSON (delete --json): the field names are a contract.
type Plan struct {
	Store      string           `json:"store"`
	Backups    []BackupDecision `json:"backups"`
	Incomplete []FolderDecision `json:"incomplete_folders"`
	WAL        []WALRun         `json:"wal"`
	History    int              `json:"history_files_kept"`
	Dumps      []DumpDecision   `json:"dumps"`
	Notes      []string         `json:"notes"`
	Delete     Totals           `json:"delete"`
	Keep       Totals           `json:"keep"`
	// kept backups whose folder holds a stale tombstone.
	staleTombstones []string
}

// Decide works out, without changing anything, which backups the policy
// keeps and which objects go: the backups that fall out, backup folders
// without a manifest that are safely old, and WAL that no kept backup
// needs and that is older than the kept backups.
//
// A kept backup needs the WAL of its timeline from its start segment on,
// and of every timeline that branches off it later (followed through the
// history files), from where that timeline begins. A permanent backup that
// no other rule keeps needs only its own WAL, start to stop. WAL that no
// kept backup needs is deleted when it is older than a kept backup on that
// backup's own line of timelines, or, off every kept backup's line (an
// abandoned timeline), when it was archived before the oldest kept backup
// started. History files are always kept.
//
// Dumps are decided apart (decideDumps), only when pol.RetainDumps is
// given; backups and WAL only when a backup rule is.
func Decide(ctx context.Context, r *repo.Repo, pol Policy) (*Plan, error) {
	now := pol.Now
	if now.IsZero() {
		now = time.Now()
	}
	plan := &Plan{Store: r.Store.String(), Backups: []BackupDecision{}, Incomplete: []FolderDecision{}, WAL: []WALRun{}, Notes: []string{}, Dumps: []DumpDecision{}}
	if len(pol.Names) > 0 {
		plan.Notes = append(plan.Notes, "backups named: only they are deleted (and the WAL no other backup needs); the retention rules do not apply")
	}
	if pol.backupRules() {
		if err := decideBackups(ctx, r, pol, now, plan); err != nil {
			return nil, err
		}
	} else {
		plan.Notes = append(plan.Notes, "no backup rule given (--retain-full, --before, --retain-window): backups and WAL are not touched")
	}
	if pol.RetainDumps > 0 {
		dumps, notes, err := decideDumps(ctx, r, pol.RetainDumps, pol.OrphanAge, now)
		if err != nil {
			return nil, err
		}
		plan.Dumps = dumps
		plan.Notes = append(plan.Notes, notes...)
	} else {
		plan.Notes = append(plan.Notes, "no --retain-dumps given: logical dumps are kept")
	}
	plan.total()
	return plan, nil
}

// decideBackups fills plan with the decisions on backups, their folders
// and the WAL.
func decideBackups(ctx context.Context, r *repo.Repo, pol Policy, now time.Time, plan *Plan) error {
	cat, err := r.LoadCatalog(ctx, repo.CatalogOptions{})
	if err != nil {
		return err
	}
	fs, err := classifyFolders(cat.Folders)
	if err != nil {
		return err
	}
	if len(fs.backups) == 0 && len(pol.Names) > 0 {
		return fmt.Errorf("%w: no backup named %q in %s: walvault backup-list shows them", archive.ErrBadInput, pol.Names[0], r.Store)
	}
	if len(fs.backups) == 0 {
		plan.keepEverything(fs.orphans)
		return nil
	}
	sortForRetention(fs.backups)
	if err := sameCluster(ctx, r, fs.backups); err != nil {
		return err
	}
	segSize, err := repo.SegmentSize(fs.backups)
	if err != nil {
		return err
	}
	// The WAL is read only once the backups say there is something to
	// decide: with none, or with backups of several clusters, nothing is.
	if err := cat.LoadWAL(ctx, repo.AllWAL, true); err != nil {
		return err
	}
	inv := cat.WAL(segSize)

	set, notes := newBackupSet(fs, inv)
	plan.Notes = append(plan.Notes, notes...)
	if len(set.good) == 0 {
		b := set.all[0]
		return fmt.Errorf("%w: no backup in %s can be restored (e.g. %s: %s): delete keeps everything; run walvault verify, and take a new backup",
			archive.ErrVerifyFailed, r.Store, b.Name, set.broken[b.Name])
	}
	// Locked backups are kept (with their chains and WAL); a named one is
	// refused.
	lk := newLocks(ctx, r.Store, now)
	if lk.on() {
		var keys []string
		for _, m := range set.all {
			keys = append(keys, repo.BackupKey(m.Name, repo.ManifestFile))
		}
		if err := lk.stat(ctx, keys); err != nil {
			return err
		}
	}
	var lockedKeeps []keep
	for _, m := range set.all {
		if t, ok := lk.lockedUntil(repo.BackupKey(m.Name, repo.ManifestFile)); ok {
			lockedKeeps = append(lockedKeeps, keep{m, lk.reason(t)})
		}
	}
	var k *keeper
	if len(pol.Names) > 0 {
		for _, kp := range lockedKeeps {
			if slices.Contains(pol.Names, kp.m.Name) {
				return fmt.Errorf("%w: delete %s refused: it is %s; run the delete again after that date", archive.ErrConflict, kp.m.Name, kp.why)
			}
		}
		if k, err = set.explicit(pol.Names, inv, r.Store.String()); err != nil {
			return err
		}
	} else {
		k = applyRules(set, pol, now, inv, lockedKeeps...)
	}
	plan.Notes = append(plan.Notes, k.notes...)
	needs := newWALNeeds(set, k, inv)
	plan.Notes = append(plan.Notes, needs.notes...)
	if lk.on() {
		var keys []string
		for _, o := range inv.Objects {
			if del, _ := needs.decide(o); del {
				keys = append(keys, o.Key)
			}
		}
		if err := lk.stat(ctx, keys); err != nil {
			return err
		}
	}
	plan.WAL = walRuns(inv, needs, lk)
	plan.History = len(inv.HistKey)
	if len(inv.Junk) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("%d object(s) under %s are not WAL file names (e.g. %s): left alone", len(inv.Junk), repo.WALPrefix, inv.Junk[0].Key))
	}
	plan.Backups, plan.staleTombstones = backupDecisions(set.all, k.reasons, fs.tombstoned)
	plan.Incomplete = folderDecisions(fs.orphans, pol.OrphanAge, now, needs.oldestFull)
	if err := keepLockedFolders(ctx, lk, plan.Incomplete, fs.orphans); err != nil {
		return err
	}
	if n := len(lockedKeeps); n > 0 || len(lk.until) > n {
		plan.Notes = append(plan.Notes, fmt.Sprintf("%d backup(s) and %d other object(s) are locked (%s) past now: kept, each saying until when; a delete after that date removes what the rules no longer keep",
			n, len(lk.until)-n, lk.kind))
	}
	if len(pol.Names) > 0 {
		for i := range plan.Incomplete {
			plan.Incomplete[i].Delete = false
			plan.Incomplete[i].Reason += "; kept: delete NAME removes only the backups named"
		}
	}
	return nil
}

// keepEverything is the plan of a store without a complete backup: WAL
// is kept until a backup exists, and so are the folders without one.
func (p *Plan) keepEverything(orphans []*repo.BackupFolder) {
	p.Notes = append(p.Notes, "the store has no complete backup: nothing is deleted (WAL is kept until a backup exists)")
	for _, f := range orphans {
		p.Incomplete = append(p.Incomplete, FolderDecision{Name: f.Name, Objects: len(f.Objects), Size: f.Size, Newest: f.Newest,
			Reason: "no manifest; kept while the store has no complete backup"})
	}
}

func (p *Plan) total() {
	p.Delete, p.Keep = Totals{}, Totals{}
	side := func(del bool) *Totals {
		if del {
			return &p.Delete
		}
		return &p.Keep
	}
	for _, b := range p.Backups {
		t := side(b.Delete)
		t.Backups++
		t.Bytes += b.StoredSize
	}
	for _, f := range p.Incomplete {
		t := side(f.Delete)
		t.Folders++
		t.Bytes += f.Size
	}
	for _, r := range p.WAL {
		t := side(r.Delete)
		t.WALObjects += r.Objects
		t.Bytes += r.Bytes
	}
	for _, d := range p.Dumps {
		t := side(d.Delete)
		t.Dumps++
		t.Bytes += d.StoredSize
	}
}
