package retention

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// MarkPermanent sets or clears a backup's permanent flag (retention never
// deletes a permanent backup, nor its ancestors, nor the WAL that makes
// them consistent). A backup that is the parent of an incremental backup
// is not changed (ErrConflict): its child records its manifest's digest. The
// manifest is replaced by a complete new one in a single Put, which every
// backend applies atomically: readers see the old manifest or the new one,
// never none and never a partial one. changed is false when the flag
// already had that value.
//
// A delete of the same backup racing with this is detected (its tombstone,
// or parts gone missing) and reported; the backup is then not resurrected
// with a manifest whose parts are being removed.
func MarkPermanent(ctx context.Context, r *repo.Repo, name string, permanent bool) (m *repo.Manifest, changed bool, err error) {
	st := r.Store
	if err := checkNoTombstone(ctx, st, name); err != nil {
		return nil, false, err
	}
	m, err = r.ReadManifest(ctx, name, false)
	if err != nil {
		if errors.Is(err, archive.ErrNotInArchive) {
			return nil, false, fmt.Errorf("%w: no backup named %q in %s: walvault backup-list shows them", archive.ErrBadInput, name, st)
		}
		return nil, false, err
	}
	if m.Permanent == permanent {
		return m, false, nil
	}
	// An incremental backup records the SHA-256 of its parent's manifest
	// and is refused against any other: rewriting a parent would make its
	// children unrestorable.
	cat, err := r.LoadCatalog(ctx, repo.CatalogOptions{})
	if err != nil {
		return nil, false, err
	}
	if kids := cat.Children(name); len(kids) > 0 {
		how := "mark the newest incremental backup of the chain instead: that keeps its ancestors, " + name + " among them"
		if !permanent {
			how = "it can be changed once they are deleted"
		}
		return nil, false, fmt.Errorf("%w: backup %s is the parent of incremental backup %s, which records the SHA-256 of its manifest: rewriting it would make %s unrestorable; %s",
			archive.ErrConflict, name, kids[0].Name, kids[0].Name, how)
	}
	m.Permanent = permanent
	body, err := repo.EncodeManifest(m)
	if err != nil {
		return nil, false, err
	}
	// What we write must read back as this very manifest.
	if back, err := repo.DecodeManifest(bytes.NewReader(body), false); err != nil || back.Name != name || back.Permanent != permanent || len(back.Files) != len(m.Files) {
		return nil, false, fmt.Errorf("internal error: the rewritten manifest of %s does not read back (%v)", name, err)
	}
	key := repo.BackupKey(name, repo.ManifestFile)
	if err := r.WriteManifest(ctx, m, false); err != nil {
		return nil, false, err
	}
	// A delete that began meanwhile wins: take our manifest away again
	// rather than leave one that points at parts being removed.
	if err := checkNoTombstone(ctx, st, name); err != nil {
		_ = st.Delete(ctx, key)
		return nil, false, fmt.Errorf("%w (it was deleted while being marked)", err)
	}
	if missing, err := missingParts(ctx, st, m); err != nil {
		return nil, false, err
	} else if missing != "" {
		_ = st.Delete(ctx, key)
		return nil, false, fmt.Errorf("%w: backup %s lost %s while being marked (a concurrent walvault delete?): it is gone", archive.ErrConflict, name, missing)
	}
	got, err := r.ReadManifest(ctx, name, true)
	if err != nil {
		return nil, false, err
	}
	if got.Permanent != permanent {
		return nil, false, fmt.Errorf("%w: %s in %s still says permanent=%v after the update: another process rewrote it", archive.ErrConflict, key, st, got.Permanent)
	}
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
