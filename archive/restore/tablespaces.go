package restore

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// mapTablespaces decides where each tablespace goes: --tablespace-map by
// OID or name, else its original location.
func mapTablespaces(m *repo.Manifest, tmap map[string]string, dest string, force bool) ([]repo.Tablespace, error) {
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
	var out []repo.Tablespace
	for _, ts := range m.Tablespaces {
		loc := ts.Location
		for _, k := range []string{strconv.FormatUint(uint64(ts.OID), 10), ts.Name} {
			if d, ok := tmap[k]; ok && k != "" {
				loc = d
			}
		}
		abs, err := filepath.Abs(loc)
		if err != nil {
			return nil, err
		}
		if abs == dest || strings.HasPrefix(dest+"/", abs+"/") {
			return nil, fmt.Errorf("%w: tablespace %s would be restored at %s, which contains DEST", archive.ErrBadInput, tsLabel(ts), abs)
		}
		key := ts.Name
		if key == "" {
			key = strconv.FormatUint(uint64(ts.OID), 10)
		}
		hint := fmt.Sprintf("restore it elsewhere with --tablespace-map %s=DIR, or pass --force to write over it (files of the backup are overwritten, nothing else is removed)", key)
		if err := checkEmptyDir(abs, "tablespace "+tsLabel(ts)+" directory", force, hint); err != nil {
			return nil, err
		}
		ts.Location = abs
		out = append(out, ts)
	}
	return out, nil
}

func tsLabel(ts repo.Tablespace) string {
	if ts.Name != "" {
		return fmt.Sprintf("%s (OID %d)", ts.Name, ts.OID)
	}
	return fmt.Sprintf("OID %d", ts.OID)
}
