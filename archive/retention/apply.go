package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Result is what Apply removed. Scripts read it as JSON (delete --json).
type Result struct {
	Backups    int      `json:"backups"`
	Folders    int      `json:"incomplete_folders"`
	WALObjects int      `json:"wal_objects"`
	Dumps      int      `json:"dumps"`
	Objects    int      `json:"objects"`
	Skipped    []string `json:"skipped,omitempty"`
}

// deleteConcurrency is how many objects are deleted at once.
const deleteConcurrency = 8

// Apply carries out a plan. The backups go manifests first, children
// before parents (a tombstone is written before each, so that an
// interrupted delete's leftovers are recognised and finished by the next
// run), then their other objects; then the incomplete folders; then the
// WAL; then the dumps. A backup marked permanent since the plan was made
// is skipped, and so are its ancestors and those of a backup taken since.
func Apply(ctx context.Context, r *repo.Repo, plan *Plan) (*Result, error) {
	res := &Result{}
	var objects atomic.Int64
	defer func() { res.Objects = int(objects.Load()) }()
	del, skipped, err := backupsToDelete(ctx, r, plan)
	if err != nil {
		return res, err
	}
	res.Skipped = append(res.Skipped, skipped...)
	// Manifests first, children before parents: from the first deletion
	// on, no listed backup lacks a part or an ancestor.
	for _, name := range del {
		if err := dropManifest(ctx, r, name); err != nil {
			return res, err
		}
		objects.Add(1)
	}
	for _, name := range del {
		n, err := deleteFolder(ctx, r.Store, name)
		objects.Add(int64(n))
		if err != nil {
			return res, err
		}
		res.Backups++
		slog.Info("deleted backup", "backup", name, "objects", n+1)
	}
	for _, f := range plan.Incomplete {
		if !f.Delete {
			continue
		}
		if _, err := r.Store.Stat(ctx, repo.BackupKey(f.Name, repo.ManifestFile)); err == nil {
			slog.Warn("skipping a folder that has become a backup since the plan was made", "backup", f.Name)
			res.Skipped = append(res.Skipped, f.Name)
			continue
		} else if !errors.Is(err, cloud.ErrNotFound) {
			return res, archive.StoreErr(fmt.Errorf("%s: %w", r.Store, err))
		}
		n, err := deleteFolder(ctx, r.Store, f.Name)
		objects.Add(int64(n))
		if err != nil {
			return res, err
		}
		res.Folders++
		slog.Info("deleted an incomplete backup folder", "folder", repo.BackupPrefix+f.Name+"/", "objects", n)
	}
	var keys []string
	for _, run := range plan.WAL {
		keys = append(keys, run.keys...)
	}
	n, err := deleteKeys(ctx, r.Store, keys)
	objects.Add(int64(n))
	res.WALObjects = n
	if err != nil {
		return res, err
	}
	if n > 0 {
		slog.Info("deleted WAL", "objects", n)
	}
	dn, err := applyDumps(ctx, r, plan, res)
	objects.Add(int64(dn))
	if err != nil {
		return res, err
	}
	for _, name := range plan.staleTombstones {
		key := repo.BackupKey(name, repo.TombstoneFile)
		if err := r.Store.Delete(ctx, key); err != nil {
			return res, archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", r.Store, key, err))
		}
	}
	return res, nil
}

// backupsToDelete is the plan's backups to delete as the store holds
// them now, children before parents, and those skipped: marked permanent
// since the plan was made, or an ancestor of a backup that is kept (one
// marked permanent, or taken since the plan with a parent it deletes).
func backupsToDelete(ctx context.Context, r *repo.Repo, plan *Plan) (del, skipped []string, err error) {
	cat, err := r.LoadCatalog(ctx, repo.CatalogOptions{})
	if err != nil {
		return nil, nil, err
	}
	planned := map[string]bool{}
	for _, b := range plan.Backups {
		if b.Delete {
			planned[b.Name] = true
		}
	}
	needed := map[string]string{} // name -> the kept backup that needs it
	for _, f := range cat.Folders {
		m := f.Backup()
		if m == nil || planned[m.Name] && !m.Permanent {
			continue
		}
		if planned[m.Name] {
			needed[m.Name] = ""
		}
		for _, a := range m.Chain {
			if _, ok := needed[a]; !ok {
				needed[a] = m.Name
			}
		}
	}
	var ms []*repo.Manifest
	for _, b := range plan.Backups {
		if !b.Delete {
			continue
		}
		by, keep := needed[b.Name]
		switch {
		case keep && by == "":
			slog.Warn("skipping a backup marked permanent since the plan was made", "backup", b.Name)
			skipped = append(skipped, b.Name)
		case keep:
			slog.Warn("skipping a backup that a kept backup needs (marked permanent or taken since the plan was made)", "backup", b.Name, "needed_by", by)
			skipped = append(skipped, b.Name)
		case cat.Folder(b.Name) == nil || cat.Folder(b.Name).Backup() == nil:
			del = append(del, b.Name) // gone already, or half deleted: finish it
		default:
			ms = append(ms, cat.Folder(b.Name).Backup())
		}
	}
	repo.ChainOrder(ms)
	for _, m := range ms {
		del = append(del, m.Name)
	}
	return del, skipped, nil
}

// dropManifest makes backup name stop being one, so that every prefix of
// what follows leaves something a re-run finishes: the tombstone, then
// the manifest; deleteFolder removes the rest, the tombstone last.
func dropManifest(ctx context.Context, r *repo.Repo, name string) error {
	st := r.Store
	body, _ := json.Marshal(map[string]string{"deleted_by": "walvault delete", "at": time.Now().UTC().Format(time.RFC3339)})
	tomb := repo.BackupKey(name, repo.TombstoneFile)
	if err := r.PutBytes(ctx, tomb, body, cloud.PutOptions{NoLock: true}); err != nil { // transient: deleted last
		return fmt.Errorf("%s: writing %s: %w", st, tomb, err)
	}
	key := repo.BackupKey(name, repo.ManifestFile)
	if err := st.Delete(ctx, key); err != nil {
		return archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", st, key, err))
	}
	return nil
}

// deleteFolder removes everything under backups/<name>/, the tombstone
// last.
func deleteFolder(ctx context.Context, st cloud.Store, name string) (int, error) {
	prefix := repo.BackupPrefix + name + "/"
	var keys []string
	hasTomb := false
	err := st.List(ctx, prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		if o.Key == prefix+repo.TombstoneFile {
			hasTomb = true
		} else {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return 0, archive.StoreErr(fmt.Errorf("%s: listing %s: %w", st, prefix, err))
	}
	n, err := deleteKeys(ctx, st, keys)
	if err != nil || !hasTomb {
		return n, err
	}
	if err := st.Delete(ctx, prefix+repo.TombstoneFile); err != nil {
		return n, archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", st, prefix+repo.TombstoneFile, err))
	}
	return n + 1, nil
}

// deleteKeys deletes keys, deleteConcurrency at a time, and counts what
// went.
func deleteKeys(ctx context.Context, st cloud.Store, keys []string) (int, error) {
	var n atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleteConcurrency)
	for _, k := range keys {
		g.Go(func() error {
			if err := st.Delete(gctx, k); err != nil {
				return archive.StoreErr(fmt.Errorf("%s: deleting %s: %w", st, k, err))
			}
			n.Add(1)
			return nil
		})
	}
	err := g.Wait()
	return int(n.Load()), err
}
