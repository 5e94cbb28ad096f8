package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// This file is the catalog's view of incremental backups: each one's
// ancestors resolved from the store, checked link by link.

// ReadManifestSum is ReadManifest that also returns the SHA-256 of
// manifest.json as read, what an incremental backup records of its parent
// (Manifest.ParentManifestSHA256). The whole object is read, also for a
// summary (Load reads a signed one to its end anyway).
func (r *Repo) ReadManifestSum(ctx context.Context, name string, summaryOnly bool) (*Manifest, string, error) {
	key := BackupKey(name, ManifestFile)
	var m *Manifest
	var sum string
	err := r.Load(ctx, key, Want{Proof: true, MaxSize: MaxManifestBytes}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		h := sha256.New() // anew on every attempt
		tee := io.TeeReader(rd, h)
		var err error
		if m, err = DecodeManifest(tee, summaryOnly); err != nil {
			if !archive.IsContextErr(err) && !errors.Is(err, archive.ErrStore) {
				return fmt.Errorf("%w: %s in %s is not a valid manifest: %v", archive.ErrIntegrity, key, r.Store, err)
			}
			return err
		}
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return err
		}
		sum = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, "", fmt.Errorf("backup %s: %w", name, archive.ErrNotInArchive)
	}
	if err != nil {
		return nil, "", err
	}
	if m.Name != name {
		return nil, "", fmt.Errorf("%w: %s in %s names backup %q", archive.ErrIntegrity, key, r.Store, m.Name)
	}
	if r.Cluster != "" && m.SystemIdentifier != r.Cluster {
		return nil, "", fmt.Errorf("%w: %s in %s is a backup of the cluster with system identifier %s, and this archive belongs to %s (cluster.json): a backup copied from another cluster's archive", archive.ErrIntegrity, key, r.Store, m.SystemIdentifier, r.Cluster)
	}
	return m, sum, nil
}

// Backup is the folder's manifest, also when its chain is broken (nil
// when it has none that can be read).
func (f *BackupFolder) Backup() *Manifest {
	if f.Manifest != nil {
		return f.Manifest
	}
	return f.Broken
}

// Folder is the folder of backup name (nil when the store has none).
func (c *Catalog) Folder(name string) *BackupFolder { return c.byName[name] }

// Ancestors are backup m's ancestors as the store holds them: its parent
// first, the full backup last; none for a full backup. For a backup
// whose chain is broken it stops before the first link that is missing.
func (c *Catalog) Ancestors(m *Manifest) []*Manifest {
	var out []*Manifest
	for _, name := range m.Chain {
		f := c.byName[name]
		if f == nil || f.Backup() == nil {
			break
		}
		out = append(out, f.Backup())
	}
	return out
}

// ChainStoredSize is what restoring m reads from the store: its stored
// size and every ancestor's.
func (c *Catalog) ChainStoredSize(m *Manifest) int64 {
	n := m.StoredSize
	for _, a := range c.Ancestors(m) {
		n += a.StoredSize
	}
	return n
}

// Children are the backups whose parent is name (those whose chain is
// broken too), oldest first.
func (c *Catalog) Children(name string) []*Manifest {
	var out []*Manifest
	for _, f := range c.Folders {
		if m := f.Backup(); m != nil && m.Incremental() && m.Parent == name {
			out = append(out, m)
		}
	}
	SortBackups(out)
	return out
}

// resolveChains checks every incremental backup's chain link by link and
// moves the manifest of one that cannot be restored to Broken, with Err
// saying why: its parent must be a backup of the store whose manifest is
// the very one it was taken against, and whose own chain is whole. A
// backup built on a broken one gets the same reason, which names the
// ancestor at fault.
func (c *Catalog) resolveChains() {
	done := map[string]string{} // name -> why its chain is broken ("": whole)
	visiting := map[string]bool{}
	var check func(f *BackupFolder) string
	check = func(f *BackupFolder) string {
		if why, ok := done[f.Name]; ok {
			return why
		}
		if visiting[f.Name] {
			return "it is its own ancestor"
		}
		visiting[f.Name] = true
		why := c.checkLink(f, check)
		delete(visiting, f.Name)
		done[f.Name] = why
		return why
	}
	for _, f := range c.Folders {
		if f.Manifest != nil {
			_ = check(f)
		}
	}
	for _, f := range c.Folders {
		if why := done[f.Name]; why != "" && f.Manifest != nil {
			f.Broken, f.Manifest = f.Manifest, nil
			f.Err = fmt.Errorf("%w: incremental backup %s cannot be restored: %s", archive.ErrIntegrity, f.Name, why)
		}
	}
}

// checkLink checks incremental backup f against its parent (check
// resolves the parent's own chain) and says what is wrong ("" nothing).
func (c *Catalog) checkLink(f *BackupFolder, check func(*BackupFolder) string) string {
	m := f.Manifest
	if !m.Incremental() {
		return ""
	}
	pf := c.byName[m.Parent]
	switch {
	case pf == nil || pf.Manifest == nil && pf.Err == nil:
		return fmt.Sprintf("needs its ancestor %s, which is not in %s (deleted or never completed)", m.Parent, c.r.Store)
	case pf.Manifest == nil && pf.Broken == nil:
		return fmt.Sprintf("needs its ancestor %s, whose manifest cannot be used (%s)", m.Parent, oneLine(pf.Err))
	}
	p := pf.Manifest
	switch {
	case pf.ManifestSHA256 != m.ParentManifestSHA256:
		return fmt.Sprintf("its ancestor %s is not the backup %s was taken against (the SHA-256 of its manifest is %.12s…, %s recorded %.12s…): it was replaced or rewritten", p.Name, m.Name, pf.ManifestSHA256, m.Name, m.ParentManifestSHA256)
	case !slices.Equal(m.Chain, append([]string{p.Name}, p.Chain...)):
		return fmt.Sprintf("its chain (%s) is not its parent %s followed by the parent's chain (%s)", strings.Join(m.Chain, ", "), p.Name, strings.Join(p.Chain, ", "))
	case p.SystemIdentifier != m.SystemIdentifier:
		return fmt.Sprintf("its parent %s is of another cluster (system identifier %s, not %s)", p.Name, p.SystemIdentifier, m.SystemIdentifier)
	case p.Timeline != m.Timeline:
		return fmt.Sprintf("its parent %s is on timeline %d, not %d", p.Name, p.Timeline, m.Timeline)
	case p.StartLSN > m.StartLSN:
		return fmt.Sprintf("its parent %s started at %s, after it (%s)", p.Name, p.StartLSN, m.StartLSN)
	case p.Incremental() && p.BlockSize != m.BlockSize:
		return fmt.Sprintf("its parent %s has %d-byte blocks, it has %d", p.Name, p.BlockSize, m.BlockSize)
	}
	return check(pf)
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), archive.ErrIntegrity.Error()+": ")), " ")
}

// ChainOrder sorts backups so that every child comes before its parent:
// deepest chains first (a child's chain is its parent's and one more),
// then newest first.
func ChainOrder(list []*Manifest) {
	sort.SliceStable(list, func(i, j int) bool {
		if len(list[i].Chain) != len(list[j].Chain) {
			return len(list[i].Chain) > len(list[j].Chain)
		}
		if !list[i].StopTime.Equal(list[j].StopTime) {
			return list[i].StopTime.After(list[j].StopTime)
		}
		return list[i].Name > list[j].Name
	})
}
