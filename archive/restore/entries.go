package restore

import (
	"fmt"
	"path"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// reservedLinks are data directory paths restore writes to after the
// backup's symlinks exist, or that it makes itself: a symlink there would
// send the recovery settings, pg_control or WAL somewhere else.
var reservedLinks = map[string]bool{
	"pg_wal": true, "pg_tblspc": true, "global": true,
	"postgresql.auto.conf": true, "recovery.conf": true, "recovery.signal": true, "standby.signal": true,
}

// checkEntries checks the file list before anything is written, for what
// restore relies on beyond the manifest's own validation: every path once,
// each in the directory of its part, nothing below a symlink of the
// backup (no write can go through one), no symlink where restore writes
// later or where pg_tblspc links go, and symlinks that leave their
// directory only when the manifest is authenticated (a bucket writer must
// not point the restored server's writes elsewhere).
func checkEntries(m *repo.Manifest, authenticated bool) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: the manifest of backup %s: %s", archive.ErrIntegrity, m.Name, fmt.Sprintf(format, a...))
	}
	seen := make(map[string]bool, len(m.Files))
	links := map[string]bool{}
	for _, f := range m.Files {
		if seen[f.Path] {
			return bad("%q is listed twice", f.Path)
		}
		seen[f.Path] = true
		if f.Part < 0 || f.Part >= len(m.Parts) {
			return bad("%q is in part %d, which does not exist", f.Path, f.Part)
		}
		spc := m.Parts[f.Part].Tablespace
		if f.Stored == repo.StoredParent {
			spc = spcOfPath(m, f.Path) // stored in the parent: no part of its own
		}
		if spc != 0 {
			if rel, ok := strings.CutPrefix(f.Path, fmt.Sprintf("pg_tblspc/%d/", spc)); !ok || !repo.SafeRelPath(rel) {
				return bad("%q is in a part of tablespace %d but not in its directory", f.Path, spc)
			}
		} else if under, ok := strings.CutPrefix(f.Path, "pg_tblspc/"); ok && (strings.Contains(under, "/") || f.Type != repo.TypeFile || strings.Trim(under, "0123456789") == "") {
			// pg_tblspc/<oid> are the links restore makes.
			return bad("%q: only restore puts things in pg_tblspc", f.Path)
		}
		if f.Type != repo.TypeSymlink {
			continue
		}
		links[f.Path] = true
		if spc == 0 && (reservedLinks[f.Path] || strings.HasPrefix(f.Path, "global/")) {
			return bad("%q is a symlink; restore refuses one there", f.Path)
		}
		if f.Link == "" || strings.ContainsRune(f.Link, 0) {
			return bad("symlink %q has no valid target", f.Path)
		}
		if !authenticated && linkLeaves(f.Link) {
			return bad("symlink %q points to %q, outside its directory, and the manifest is not authenticated (--allow-unsigned)", f.Path, f.Link)
		}
	}
	for _, f := range m.Files {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if links[dir] {
				return bad("%q lies below the symlink %q", f.Path, dir)
			}
		}
	}
	return nil
}

// linkLeaves says whether a symlink target may resolve outside the
// directory that holds the link: an absolute target, or any "..", which
// with other links of the backup can climb higher than it looks.
func linkLeaves(target string) bool {
	if path.IsAbs(target) {
		return true
	}
	for _, c := range strings.Split(target, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}
