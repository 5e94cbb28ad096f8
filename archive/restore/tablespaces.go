package restore

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// placedTablespace is a tablespace and where it goes.
type placedTablespace struct {
	repo.Tablespace
	// mapped: the user named the directory (--tablespace-map); otherwise
	// it is the location recorded in the manifest.
	mapped bool
}

// mapTablespaces decides where each tablespace goes: --tablespace-map by
// OID or name, else its original location. The manifest comes from the
// bucket, so its locations are held to more than the user's: they are
// used only when absent or empty (--force never applies to them), and
// only from an authenticated manifest; OID 0 and duplicate OIDs are
// refused here even though reading the manifest checks them too.
// A delta restore (delta) rebuilds the tablespace directories there are:
// they may hold files, wherever they are.
func mapTablespaces(m *repo.Manifest, tmap map[string]string, dest string, force, authenticated, delta bool) ([]repo.Tablespace, error) {
	if err := checkOIDs(m); err != nil {
		return nil, err
	}
	for k := range tmap {
		known := false
		var names []string
		for _, ts := range m.Tablespaces {
			known = known || k == ts.Name || k == strconv.FormatUint(uint64(ts.OID), 10)
			names = append(names, tsLabel(ts))
		}
		if !known {
			return nil, fmt.Errorf("%w: --tablespace-map %s: backup %s has no such tablespace (it has: %s)", archive.ErrBadInput, k, m.Name, archive.OrNone(strings.Join(names, ", ")))
		}
	}
	var placed []placedTablespace
	for _, ts := range m.Tablespaces {
		p, err := placeTablespace(m, ts, tmap, dest, force, authenticated, delta)
		if err != nil {
			return nil, err
		}
		placed = append(placed, p)
	}
	if err := checkNoOverlap(placed); err != nil {
		return nil, err
	}
	out := make([]repo.Tablespace, 0, len(placed))
	for _, p := range placed {
		out = append(out, p.Tablespace)
	}
	return out, nil
}

// checkOIDs refuses OID 0 (pg_tblspc/0 would stand for the data directory
// itself), a tablespace listed twice, and a part of a tablespace the
// manifest does not list.
func checkOIDs(m *repo.Manifest) error {
	seen := map[uint32]bool{}
	names := map[string]bool{}
	for _, ts := range m.Tablespaces {
		switch {
		case ts.OID == 0:
			return fmt.Errorf("%w: the manifest of backup %s lists a tablespace with OID 0", archive.ErrIntegrity, m.Name)
		case seen[ts.OID]:
			return fmt.Errorf("%w: the manifest of backup %s lists tablespace OID %d twice", archive.ErrIntegrity, m.Name, ts.OID)
		case ts.Name != "" && names[ts.Name]:
			return fmt.Errorf("%w: the manifest of backup %s lists tablespace name %q twice", archive.ErrIntegrity, m.Name, ts.Name)
		}
		seen[ts.OID], names[ts.Name] = true, true
	}
	for _, p := range m.Parts {
		if p.Tablespace != 0 && !seen[p.Tablespace] {
			return fmt.Errorf("%w: part %s of backup %s belongs to tablespace %d, which the manifest does not list", archive.ErrIntegrity, p.Name, m.Name, p.Tablespace)
		}
	}
	return nil
}

// placeTablespace decides the directory of one tablespace and checks it.
func placeTablespace(m *repo.Manifest, ts repo.Tablespace, tmap map[string]string, dest string, force, authenticated, delta bool) (placedTablespace, error) {
	byOID, okOID := tmap[strconv.FormatUint(uint64(ts.OID), 10)]
	byName, okName := tmap[ts.Name]
	okName = okName && ts.Name != ""
	if okOID && okName && filepath.Clean(byOID) != filepath.Clean(byName) {
		return placedTablespace{}, fmt.Errorf("%w: --tablespace-map names tablespace %s twice, with %s and %s", archive.ErrBadInput, tsLabel(ts), byOID, byName)
	}
	key := ts.Name
	if key == "" {
		key = strconv.FormatUint(uint64(ts.OID), 10)
	}
	p := placedTablespace{Tablespace: ts, mapped: okOID || okName}
	loc := ts.Location
	switch {
	case okOID:
		loc = byOID
	case okName:
		loc = byName
	}
	if !filepath.IsAbs(loc) {
		if p.mapped {
			return p, fmt.Errorf("%w: --tablespace-map %s=%s: give an absolute directory", archive.ErrBadInput, key, loc)
		}
		return p, fmt.Errorf("%w: the manifest of backup %s gives tablespace %s the location %q, which is not an absolute path", archive.ErrIntegrity, m.Name, tsLabel(ts), loc)
	}
	abs := filepath.Clean(loc)
	mapHint := fmt.Sprintf("restore it elsewhere with --tablespace-map %s=DIR", key)
	switch {
	case abs == dest || within(dest, abs):
		return p, fmt.Errorf("%w: tablespace %s would be restored at %q, which contains DEST: %s", archive.ErrBadInput, tsLabel(ts), abs, mapHint)
	case within(abs, dest):
		// The data directory's own files would share the directory.
		return p, fmt.Errorf("%w: tablespace %s would be restored at %q, inside DEST: %s", archive.ErrBadInput, tsLabel(ts), abs, mapHint)
	}
	switch {
	case delta && (p.mapped || authenticated):
		// Rebuilt in place; what goes is confined to the backup's own
		// version directories there (listLocal).
	case p.mapped:
		hint := mapHint + ", or pass --force to write over it (files of the backup are overwritten, nothing else is removed)"
		if err := checkEmptyDir(abs, "tablespace "+tsLabel(ts)+" directory", force, hint); err != nil {
			return p, err
		}
	default:
		// A location from the bucket is outside what the user named: it
		// is used only as a new or empty directory, and only when a
		// verify key vouches for the manifest that names it.
		if !authenticated {
			return p, fmt.Errorf("%w: backup %s puts tablespace %s at %q, outside DEST, and its manifest is not authenticated (--allow-unsigned): %s", archive.ErrBadInput, m.Name, tsLabel(ts), abs, mapHint)
		}
		hint := mapHint + " (--force applies only to DEST and to directories named with --tablespace-map)"
		if err := checkEmptyDir(abs, "tablespace "+tsLabel(ts)+" directory", false, hint); err != nil {
			return p, err
		}
	}
	p.Location = abs
	return p, nil
}

// checkNoOverlap refuses two tablespaces in one directory, or one inside
// another: their files would mix.
func checkNoOverlap(placed []placedTablespace) error {
	for i, a := range placed {
		for _, b := range placed[i+1:] {
			if a.Location != b.Location && !within(a.Location, b.Location) && !within(b.Location, a.Location) {
				continue
			}
			kind := archive.ErrIntegrity
			if a.mapped || b.mapped {
				kind = archive.ErrBadInput
			}
			return fmt.Errorf("%w: tablespaces %s and %s would be restored at %q and %q, one inside the other: give each its own directory with --tablespace-map", kind, tsLabel(a.Tablespace), tsLabel(b.Tablespace), a.Location, b.Location)
		}
	}
	return nil
}

// within says whether path p lies below dir (both absolute and clean).
func within(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

func tsLabel(ts repo.Tablespace) string {
	if ts.Name != "" {
		return fmt.Sprintf("%q (OID %d)", ts.Name, ts.OID)
	}
	return fmt.Sprintf("OID %d", ts.OID)
}
