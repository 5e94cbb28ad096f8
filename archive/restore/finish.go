package restore

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/repo"
)

// finish creates symlinks and tablespace links, applies directory modes,
// hands everything to the data directory's owner (own, when restore runs
// as root), and flushes the directories.
func (x *extractor) finish(spcs []repo.Tablespace, own *owner) error {
	dest := x.roots[0]
	if err := dest.MkdirAll("pg_tblspc", 0o700); err != nil {
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
	dirs, err := x.linksAndModes()
	if err != nil {
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

// linksAndModes creates the backup's symlinks and gives its directories
// their modes; it returns the directories, to flush.
func (x *extractor) linksAndModes() ([]string, error) {
	var dirs []string
	for _, f := range x.m.Files {
		root, rel := x.locate(f)
		switch f.Type {
		case repo.TypeSymlink:
			if x.force {
				_ = root.Remove(rel)
			}
			if err := root.Symlink(f.Link, rel); err != nil {
				return nil, fmt.Errorf("creating symlink %s: %w", f.Path, err)
			}
		case repo.TypeDir:
			if perm := fs.FileMode(f.Perm()); perm != 0o700 {
				if err := root.Chmod(rel, perm); err != nil {
					return nil, err
				}
			}
			dirs = append(dirs, filepath.Join(root.Name(), rel))
		}
	}
	return dirs, nil
}

// locate maps a manifest path to its root and path there.
func (x *extractor) locate(f repo.File) (*os.Root, string) {
	p := x.m.Parts[f.Part]
	if p.Tablespace != 0 {
		return x.roots[p.Tablespace], strings.TrimPrefix(f.Path, fmt.Sprintf("pg_tblspc/%d/", p.Tablespace))
	}
	if f.Path == "global/pg_control" {
		return x.roots[0], controlTemp
	}
	return x.roots[0], f.Path
}

// chownAll gives the restored tree to the data directory's owner.
func (x *extractor) chownAll(spcs []repo.Tablespace, own *owner) error {
	for _, r := range x.roots {
		if err := os.Lchown(r.Name(), own.uid, own.gid); err != nil {
			return err
		}
	}
	for _, ts := range spcs {
		_ = x.roots[0].Lchown(fmt.Sprintf("pg_tblspc/%d", ts.OID), own.uid, own.gid)
	}
	_ = x.roots[0].Lchown("pg_tblspc", own.uid, own.gid)
	for _, f := range x.m.Files {
		root, rel := x.locate(f)
		if err := root.Lchown(rel, own.uid, own.gid); err != nil {
			return fmt.Errorf("chown %s: %w", f.Path, err)
		}
	}
	return nil
}

// owner is who the restored files are handed to.
type owner struct{ uid, gid int }

// dataOwner finds the backup's data directory owner on this machine: by
// name (uids differ between machines), else by the recorded ids. It is
// nil unless restore runs as root, and for root itself: nothing to hand
// over then.
func dataOwner(o repo.FileOwner) *owner {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := o.UID, o.GID
	if u, err := user.Lookup(o.User); o.User != "" && err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	} else if o.User != "" {
		slog.Warn("the data directory's owner does not exist here; using the recorded uid", "user", o.User, "uid", uid)
	}
	if g, err := user.LookupGroup(o.Group); o.Group != "" && err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if uid == 0 {
		return nil
	}
	return &owner{uid: uid, gid: gid}
}
