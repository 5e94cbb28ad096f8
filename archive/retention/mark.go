package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// MarkPermanent sets or clears a backup's permanent flag (retention never
// deletes a permanent backup, nor its ancestors, nor the WAL that makes
// them consistent) by writing a signed mark record in its folder: the
// manifest is never rewritten, so its incrementals' record of its digest
// stays true and putting an older copy of anything back changes nothing.
// changed is false when the flag already had that value.
//
// A delete of the same backup racing with this is detected (its tombstone,
// or parts gone missing) and reported.
func MarkPermanent(ctx context.Context, r *repo.Repo, name string, permanent bool) (m *repo.Manifest, changed bool, err error) {
	st := r.Store
	if err := checkNoTombstone(ctx, st, name); err != nil {
		return nil, false, err
	}
	cat, err := r.LoadCatalog(ctx, repo.CatalogOptions{})
	if err != nil {
		return nil, false, err
	}
	f := cat.Folder(name)
	switch {
	case f == nil || !f.Has(repo.ManifestFile):
		return nil, false, fmt.Errorf("%w: no backup named %q in %s: walvault backup-list shows them", archive.ErrBadInput, name, st)
	case f.Backup() == nil:
		return nil, false, f.Err
	}
	m = f.Backup()
	if m.Permanent == permanent {
		return m, false, nil
	}
	if r.Cluster == "" {
		r.Cluster = m.SystemIdentifier // no cluster.json: the backup's own
	}
	now := time.Now()
	if err := r.WriteMark(ctx, name, permanent, now); err != nil {
		return nil, false, err
	}
	// A delete that began meanwhile wins: the backup is going, and our
	// record goes with it rather than wait in an orphan folder.
	if err := checkNoTombstone(ctx, st, name); err != nil {
		_ = st.Delete(ctx, repo.MarkKey(name, now))
		return nil, false, fmt.Errorf("%w (it was deleted while being marked)", err)
	}
	if missing, err := missingParts(ctx, st, m); err != nil {
		return nil, false, err
	} else if missing != "" {
		_ = st.Delete(ctx, repo.MarkKey(name, now))
		return nil, false, fmt.Errorf("%w: backup %s lost %s while being marked (a concurrent walvault delete?): it is gone", archive.ErrConflict, name, missing)
	}
	m.Permanent = permanent
	return m, true, nil
}

// checkNoTombstone refuses a backup whose deletion has begun.
func checkNoTombstone(ctx context.Context, st cloud.Store, name string) error {
	key := repo.BackupKey(name, repo.TombstoneFile)
	_, err := st.Stat(ctx, key)
	switch {
	case err == nil:
		return fmt.Errorf("%w: backup %s is being deleted (%s exists: a walvault delete is running or was interrupted; run walvault delete again to finish it)", archive.ErrConflict, name, key)
	case errors.Is(err, cloud.ErrNotFound):
		return nil
	}
	return archive.StoreErr(fmt.Errorf("%s: reading %s: %w", st, key, err))
}

// missingParts names the first part of m that is not in the store.
func missingParts(ctx context.Context, st cloud.Store, m *repo.Manifest) (string, error) {
	have := map[string]bool{}
	prefix := repo.BackupPrefix + m.Name + "/"
	err := st.List(ctx, prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		have[o.Key[len(prefix):]] = true
		return nil
	})
	if err != nil {
		return "", archive.StoreErr(fmt.Errorf("%s: listing %s: %w", st, prefix, err))
	}
	for _, p := range m.Parts {
		if !have[p.Name] {
			return repo.BackupKey(m.Name, p.Name), nil
		}
	}
	return "", nil
}
