package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Logical dumps have their own rule (--retain-dumps N: the N newest dumps
// of each database, the globals dumps counting as one more group). They
// never change which backups or WAL are kept, nor the other way round.

// DumpDecision is what delete does with one dump folder. A folder without
// a manifest (an interrupted dump) has no kind, database or stop time.
type DumpDecision struct {
	Name       string    `json:"name"`
	Database   string    `json:"database"`
	Kind       string    `json:"kind"`
	StopTime   time.Time `json:"stop_time"`
	StoredSize int64     `json:"stored_size"`
	Incomplete bool      `json:"incomplete,omitempty"`
	Delete     bool      `json:"delete"`
	Reason     string    `json:"reason"`
	stale      bool      // kept, but holds a tombstone an interrupted delete left
}

// dumpGroup is the group a dump is counted in: its database, or the
// globals.
func dumpGroup(m *repo.DumpManifest) (key, text string) {
	if m.Kind == repo.DumpKindGlobals {
		return "g", "the globals"
	}
	return "d/" + m.Database, "database " + m.Database
}

// decideDumps applies --retain-dumps n: per database (and for the
// globals), the n newest dumps by finish time are kept, older ones go. A
// folder without a manifest goes once it is orphanAge old (at once when an
// interrupted delete left it); a dump whose manifest cannot be trusted is
// kept, with a note.
func decideDumps(ctx context.Context, r *repo.Repo, n int, orphanAge time.Duration, now time.Time) ([]DumpDecision, []string, error) {
	folders, err := r.ListDumps(ctx)
	if err != nil {
		return nil, nil, err
	}
	var notes []string
	byName := map[string]*DumpDecision{}
	out := make([]DumpDecision, 0, len(folders))
	groups := map[string][]*repo.DumpManifest{}
	for _, f := range folders {
		tomb := f.Has(repo.TombstoneFile)
		d := DumpDecision{Name: f.Name, StoredSize: f.Size}
		switch {
		case f.Err != nil:
			d.Reason = "its manifest cannot be trusted (" + f.Err.Error() + "): kept"
			notes = append(notes, fmt.Sprintf("dump %s: %v: delete keeps it; check it, and if that dump is lost remove %s%s/ by hand", f.Name, f.Err, repo.DumpPrefix, f.Name))
		case f.Manifest == nil:
			d.Incomplete = true
			age := now.Sub(f.Newest).Round(time.Second)
			switch {
			case tomb:
				d.Delete, d.Reason = true, "left by an interrupted delete ("+repo.TombstoneFile+")"
			case f.Newest.IsZero():
				d.Reason = "no manifest; the store does not say when it was written, so it is kept"
			case age >= orphanAge:
				d.Delete, d.Reason = true, fmt.Sprintf("no manifest: an interrupted or failed dump, last written %s ago", age)
			default:
				d.Reason = fmt.Sprintf("no manifest, last written %s ago: may be a dump in progress; deleted once it is older than %s (--orphan-age)", age, orphanAge)
			}
		default:
			m := f.Manifest
			d.Kind, d.Database, d.StopTime, d.StoredSize = m.Kind, m.Database, m.StopTime, m.StoredSize
			d.stale = tomb
			key, _ := dumpGroup(m)
			groups[key] = append(groups[key], m)
		}
		out = append(out, d)
	}
	for i := range out {
		byName[out[i].Name] = &out[i]
	}
	for _, list := range groups {
		sort.SliceStable(list, func(i, j int) bool {
			if !list[i].StopTime.Equal(list[j].StopTime) {
				return list[i].StopTime.After(list[j].StopTime)
			}
			return list[i].Name > list[j].Name
		})
		for i, m := range list {
			d := byName[m.Name]
			_, text := dumpGroup(m)
			if i < n {
				d.Reason = fmt.Sprintf("one of the %d newest dumps of %s (--retain-dumps %d)", n, text, n)
				if n == 1 {
					d.Reason = fmt.Sprintf("the newest dump of %s (--retain-dumps 1)", text)
				}
			} else {
				d.Delete = true
				d.Reason = fmt.Sprintf("older than the %d newest dumps of %s (--retain-dumps %d)", n, text, n)
				d.stale = false
			}
		}
	}
	if err := keepLockedDumps(ctx, r, now, out, folders); err != nil {
		return nil, nil, err
	}
	return out, notes, nil
}

// keepLockedDumps keeps the dumps the plan deletes that are locked: by
// their manifest, written last, or without one by any of their objects.
func keepLockedDumps(ctx context.Context, r *repo.Repo, now time.Time, ds []DumpDecision, folders []*repo.DumpFolder) error {
	lk := newLocks(ctx, r.Store, now)
	if !lk.on() {
		return nil
	}
	keysOf := map[string][]string{}
	var all []string
	for i, f := range folders {
		if !ds[i].Delete {
			continue
		}
		if f.Manifest != nil {
			keysOf[f.Name] = []string{repo.DumpKey(f.Name, repo.ManifestFile)}
		} else {
			for file := range f.Objects {
				keysOf[f.Name] = append(keysOf[f.Name], repo.DumpKey(f.Name, file))
			}
		}
		all = append(all, keysOf[f.Name]...)
	}
	if err := lk.stat(ctx, all); err != nil {
		return err
	}
	for i := range ds {
		var latest time.Time
		for _, k := range keysOf[ds[i].Name] {
			if t, ok := lk.lockedUntil(k); ok {
				latest = maxTime(latest, t)
			}
		}
		if !latest.IsZero() {
			ds[i].Delete, ds[i].Reason = false, ds[i].Reason+"; kept: "+lk.reason(latest)
		}
	}
	return nil
}

// applyDumps deletes the planned dumps, each crash-safe like a backup:
// tombstone, manifest (from here on it is not a dump), the object, the
// tombstone. A folder that has become a dump since the plan is skipped.
func applyDumps(ctx context.Context, r *repo.Repo, plan *Plan, res *Result) (int, error) {
	objects := 0
	for _, d := range plan.Dumps {
		if !d.Delete {
			if d.stale {
				key := repo.DumpKey(d.Name, repo.TombstoneFile)
				if err := r.Store.Delete(ctx, key); err != nil && !errors.Is(err, cloud.ErrNotFound) {
					return objects, archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", r.Store, key, err))
				}
			}
			continue
		}
		man := repo.DumpKey(d.Name, repo.ManifestFile)
		if d.Incomplete {
			if _, err := r.Store.Stat(ctx, man); err == nil {
				slog.Warn("skipping a folder that has become a dump since the plan was made", "dump", d.Name)
				res.Skipped = append(res.Skipped, d.Name)
				continue
			} else if !errors.Is(err, cloud.ErrNotFound) {
				return objects, archive.StoreErr(fmt.Errorf("%s: %w", r.Store, err))
			}
		} else {
			body, _ := json.Marshal(map[string]string{"deleted_by": "walvault delete", "at": time.Now().UTC().Format(time.RFC3339)})
			tomb := repo.DumpKey(d.Name, repo.TombstoneFile)
			if err := r.PutBytes(ctx, tomb, body, cloud.PutOptions{NoLock: true}); err != nil {
				return objects, fmt.Errorf("%s: writing %s: %w", r.Store, tomb, err)
			}
			if err := r.Store.Delete(ctx, man); err != nil && !errors.Is(err, cloud.ErrNotFound) {
				return objects, archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", r.Store, man, err))
			}
			objects++
		}
		n, err := deleteDumpFolder(ctx, r.Store, d.Name)
		objects += n
		if err != nil {
			return objects, err
		}
		res.Dumps++
		slog.Info("deleted dump", "dump", d.Name, "objects", n)
	}
	return objects, nil
}

// deleteDumpFolder removes everything under dumps/<name>/, the manifest
// first and the tombstone last.
func deleteDumpFolder(ctx context.Context, st cloud.Store, name string) (int, error) {
	prefix := repo.DumpPrefix + name + "/"
	var keys []string
	hasTomb, hasMan := false, false
	err := st.List(ctx, prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		switch o.Key {
		case prefix + repo.TombstoneFile:
			hasTomb = true
		case prefix + repo.ManifestFile:
			hasMan = true
		default:
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return 0, archive.StoreErr(fmt.Errorf("%s: listing %s: %w", st, prefix, err))
	}
	n := 0
	if hasMan {
		if err := st.Delete(ctx, prefix+repo.ManifestFile); err != nil {
			return 0, archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", st, prefix+repo.ManifestFile, err))
		}
		n++
	}
	m, err := deleteKeys(ctx, st, keys)
	n += m
	if err != nil || !hasTomb {
		return n, err
	}
	if err := st.Delete(ctx, prefix+repo.TombstoneFile); err != nil {
		return n, archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", st, prefix+repo.TombstoneFile, err))
	}
	return n + 1, nil
}
