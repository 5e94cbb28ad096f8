package restore

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/repo"
)

// finish gives the directories restore created their modes, creates the
// backup's symlinks and the tablespace links, hands what restore created
// to own (when restore runs as root), and flushes the directories.
func (x *extractor) finish(spcs []repo.Tablespace, own *owner) error {
	dest := x.roots[0]
	if err := x.mkdirAll(0, dest, "pg_tblspc"); err != nil {
		return err
	}
	// Modes first, while no symlink of the backup exists to go through.
	dirs, err := x.dirModes()
	if err != nil {
		return err
	}
	for _, ts := range spcs {
		link := fmt.Sprintf("pg_tblspc/%d", ts.OID)
		if x.force {
			_ = dest.Remove(link)
		}
		if err := dest.Symlink(ts.Location, link); err != nil {
			return fmt.Errorf("linking tablespace %s: %w", tsLabel(ts), err)
		}
	}
	if err := x.symlinks(); err != nil {
		return err
	}
	if own != nil {
		if err := x.chownAll(spcs, own); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := fsutil.SyncDir(d); err != nil {
			return fmt.Errorf("flushing %s: %w", d, err)
		}
	}
	for _, ts := range spcs {
		if err := fsutil.SyncDir(ts.Location); err != nil {
			return err
		}
	}
	return nil
}

// dirModes gives the directories of the backup that restore created
// their modes, permission bits only; a directory that was there before
// keeps its own. It returns the directories, to flush.
func (x *extractor) dirModes() ([]string, error) {
	var dirs []string
	for _, f := range x.m.Files {
		if f.Type != repo.TypeDir {
			continue
		}
		oid, root, rel := x.locate(f)
		perm := fs.FileMode(f.Perm() & 0o777)
		if perm != 0o700 && x.wasCreated(oid, rel) {
			if err := root.Chmod(rel, perm); err != nil {
				return nil, err
			}
		}
		dirs = append(dirs, filepath.Join(root.Name(), rel))
	}
	return dirs, nil
}

// symlinks creates the backup's symlinks (checkEntries has vetted them).
func (x *extractor) symlinks() error {
	for _, f := range x.m.Files {
		if f.Type != repo.TypeSymlink {
			continue
		}
		_, root, rel := x.locate(f)
		if x.force {
			_ = root.Remove(rel)
		}
		if err := root.Symlink(f.Link, rel); err != nil {
			return fmt.Errorf("creating symlink %s: %w", f.Path, err)
		}
	}
	return nil
}

// locate maps a manifest path to its root and where the file is now: its
// path there, or for a deferred file not yet in place its temporary name.
func (x *extractor) locate(f repo.File) (uint32, *os.Root, string) {
	oid, root, rel := x.locateFinal(f)
	if oid == 0 && deferredFiles[rel] && f.Type == repo.TypeFile {
		return oid, root, tempName(rel) // not yet in place
	}
	return oid, root, rel
}

// locateFinal maps a manifest path to its root and path there.
func (x *extractor) locateFinal(f repo.File) (uint32, *os.Root, string) {
	spc := x.m.Parts[f.Part].Tablespace
	if f.Stored == repo.StoredParent {
		spc = spcOfPath(x.m, f.Path) // no part of its own
	}
	if spc != 0 {
		return spc, x.roots[spc], strings.TrimPrefix(f.Path, fmt.Sprintf("pg_tblspc/%d/", spc))
	}
	return 0, x.roots[0], f.Path
}

// chownAll hands what restore created to own: the files and symlinks it
// wrote, the directories it made (never one that was there before, nor
// DEST or a tablespace directory that existed).
func (x *extractor) chownAll(spcs []repo.Tablespace, own *owner) error {
	for oid, r := range x.roots {
		if x.newRoots[oid] {
			if err := os.Lchown(r.Name(), own.uid, own.gid); err != nil {
				return err
			}
		}
	}
	for _, ts := range spcs {
		if err := x.roots[0].Lchown(fmt.Sprintf("pg_tblspc/%d", ts.OID), own.uid, own.gid); err != nil {
			return err
		}
	}
	var err error
	x.created.Range(func(k, _ any) bool {
		d, _ := k.(dirKey)
		if err = x.roots[d.oid].Lchown(d.rel, own.uid, own.gid); err != nil {
			err = fmt.Errorf("chown %s: %w", filepath.Join(x.roots[d.oid].Name(), d.rel), err)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	for _, f := range x.m.Files {
		if f.Type == repo.TypeDir {
			continue
		}
		_, root, rel := x.locate(f)
		if err := root.Lchown(rel, own.uid, own.gid); err != nil {
			return fmt.Errorf("chown %s: %w", f.Path, err)
		}
	}
	return nil
}
