package retention

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// folders is the catalog's backup folders sorted out: the backups, the
// folders without a manifest, and which backups hold a tombstone.
type folders struct {
	backups    []*repo.Manifest
	orphans    []*repo.BackupFolder
	tombstoned map[string]bool
	byName     map[string]*repo.BackupFolder
}

// classifyFolders sorts the backup folders out. A damaged manifest stops
// delete: without it, no one can tell which WAL that backup needs.
func classifyFolders(list []*repo.BackupFolder) (*folders, error) {
	fs := &folders{tombstoned: map[string]bool{}, byName: map[string]*repo.BackupFolder{}}
	for _, f := range list {
		fs.byName[f.Name] = f
		switch {
		case f.Broken != nil:
			// Sound, but its chain is not: a backup that cannot be
			// restored, which the rules may delete.
			fs.backups = append(fs.backups, f.Broken)
			fs.tombstoned[f.Name] = f.Has(repo.TombstoneFile)
		case f.Err != nil:
			return nil, fmt.Errorf("%w: %v: delete needs every backup's manifest to know which WAL it needs; run walvault verify, and if that backup is lost remove %s%s/ by hand",
				archive.ErrIntegrity, strings.TrimPrefix(f.Err.Error(), archive.ErrIntegrity.Error()+": "), repo.BackupPrefix, f.Name)
		case f.Manifest == nil:
			fs.orphans = append(fs.orphans, f)
		default:
			fs.backups = append(fs.backups, f.Manifest)
			fs.tombstoned[f.Name] = f.Has(repo.TombstoneFile)
		}
	}
	return fs, nil
}

// sortForRetention orders backups oldest first by the time they finished,
// then by stop LSN and name; never by timeline number.
func sortForRetention(list []*repo.Manifest) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if !a.StopTime.Equal(b.StopTime) {
			return a.StopTime.Before(b.StopTime)
		}
		if a.StopLSN != b.StopLSN {
			return a.StopLSN < b.StopLSN
		}
		return a.Name < b.Name
	})
}

// sameCluster refuses a store whose backups come from more than one
// cluster (or another than cluster.json names): WAL names of two clusters
// collide, and no rule could tell whose WAL is whose.
func sameCluster(ctx context.Context, r *repo.Repo, backups []*repo.Manifest) error {
	ids := map[string]string{}
	for _, m := range backups {
		ids[m.SystemIdentifier] = m.Name
	}
	ci, ok, err := r.ReadCluster(ctx)
	if err != nil {
		return err
	}
	if ok {
		for id, name := range ids {
			if id != ci.SystemIdentifier {
				return fmt.Errorf("%w: backup %s is of the cluster with system identifier %s, but %s in %s names %s: this prefix holds more than one cluster's data, and delete will not guess which WAL is whose; move one cluster to its own prefix",
					archive.ErrOtherCluster, name, id, repo.ClusterKey, r.Store, ci.SystemIdentifier)
			}
		}
	}
	if len(ids) > 1 {
		var all []string
		for id, name := range ids {
			all = append(all, id+" ("+name+")")
		}
		sort.Strings(all)
		return fmt.Errorf("%w: %s holds backups of several clusters (system identifiers %s): delete will not guess which WAL is whose; give each cluster its own prefix",
			archive.ErrOtherCluster, r.Store, strings.Join(all, ", "))
	}
	return nil
}

// backupSet is the backups the rules decide on, oldest first. A backup
// that cannot be restored (a part missing or cut short, or its own WAL
// gone, or for an incremental backup a link of its chain) is not among
// the good ones: it never counts as one of the backups a rule keeps, so
// it cannot push a good one out.
type backupSet struct {
	all    []*repo.Manifest
	good   []*repo.Manifest
	broken map[string]string         // name -> why it cannot be restored
	index  map[string]int            // name -> position in all
	byName map[string]*repo.Manifest // every backup, by name
}

// newBackupSet finds the backups that cannot be restored, with a note for
// each.
func newBackupSet(fs *folders, inv *repo.WALInventory) (*backupSet, []string) {
	s := &backupSet{all: fs.backups, broken: map[string]string{}, index: map[string]int{}, byName: map[string]*repo.Manifest{}}
	partsWhy := map[string]string{}
	for i, m := range s.all {
		s.index[m.Name], s.byName[m.Name] = i, m
		partsWhy[m.Name] = missingPart(m, fs.byName[m.Name])
	}
	var notes []string
	for _, m := range s.all {
		if why := s.unrestorable(m, fs.byName[m.Name], partsWhy, inv); why != "" {
			s.broken[m.Name] = why
			notes = append(notes, fmt.Sprintf("backup %s cannot be restored: %s; it is not counted by the retention rules (run walvault verify)", m.Name, why))
		} else {
			s.good = append(s.good, m)
		}
	}
	return s, notes
}

// unrestorable says why backup m cannot be restored, from what the store
// lists: its chain broken, a part of it or of an ancestor missing or of
// another size, or its own WAL (start to stop) not archived (an
// incremental backup needs its ancestors' parts, not their WAL). "" when
// nothing is wrong that a listing can see.
func (s *backupSet) unrestorable(m *repo.Manifest, f *repo.BackupFolder, partsWhy map[string]string, inv *repo.WALInventory) string {
	if f.Broken != nil {
		why := strings.TrimPrefix(f.Err.Error(), archive.ErrIntegrity.Error()+": ")
		return strings.TrimPrefix(why, "incremental backup "+m.Name+" cannot be restored: ")
	}
	if why := partsWhy[m.Name]; why != "" {
		return why
	}
	for _, a := range m.Chain {
		if why := partsWhy[a]; why != "" {
			return fmt.Sprintf("its ancestor %s cannot be read (%s)", a, why)
		}
	}
	path, _ := inv.PathTo(m, m.Timeline, m.StopLSN)
	w := inv.Walk(path)
	stop, err := archive.ParseWALName(m.StopWAL)
	if err != nil || w.Last == nil || w.LastSegN < stop.SegNo(inv.SegSize) {
		return "its WAL segment " + w.Missing + " is not archived"
	}
	return ""
}

// missingPart says which part of m the store lacks or holds at another
// size ("" when none).
func missingPart(m *repo.Manifest, f *repo.BackupFolder) string {
	for _, p := range m.Parts {
		o, ok := f.Objects[p.Name]
		switch {
		case !ok:
			return p.Name + " is missing"
		case o.Size != p.StoredSize:
			return fmt.Sprintf("%s is %d bytes, the manifest says %d", p.Name, o.Size, p.StoredSize)
		}
	}
	return ""
}

// children are the backups whose parent is name, oldest first.
func (s *backupSet) children(name string) []*repo.Manifest {
	var out []*repo.Manifest
	for _, m := range s.all {
		if m.Incremental() && m.Parent == name {
			out = append(out, m)
		}
	}
	return out
}

// base is the full backup m's chain starts from (m itself when it is
// full; nil when the store lacks it).
func (s *backupSet) base(m *repo.Manifest) *repo.Manifest {
	if !m.Incremental() {
		return m
	}
	return s.byName[m.Chain[len(m.Chain)-1]]
}

// head is the most recently archived segment, the archive's present.
func head(inv *repo.WALInventory) *repo.WALObject {
	var h *repo.WALObject
	for _, o := range inv.Objects {
		if o.File.Kind == archive.KindSegment && !o.ModTime.IsZero() && (h == nil || o.ModTime.After(h.ModTime)) {
			h = o
		}
	}
	return h
}
