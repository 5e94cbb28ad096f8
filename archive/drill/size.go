package drill

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// walKept is how much WAL the drill counts on holding at once while
// replaying: its server runs with max_wal_size = 1GB, and recycles the
// replayed segments at each restartpoint.
const walKept = 1 << 30

// sizeEstimate is what a drill of a backup puts on disk.
type sizeEstimate struct {
	Files int64 // the backup's files, as restored
	WAL   int64 // WAL replayed, counted up to walKept (plus a segment)
}

func (e sizeEstimate) Total() int64 { return e.Files + e.WAL }

func (e sizeEstimate) String() string {
	return fmt.Sprintf("%s (%s of files, %s of WAL)", archive.HumanBytes(e.Total()), archive.HumanBytes(e.Files), archive.HumanBytes(e.WAL))
}

// estimate sizes a drill of m that replays walBytes of WAL.
func estimate(m *repo.Manifest, walBytes int64) sizeEstimate {
	var files int64
	for _, f := range m.Files {
		if f.Type == repo.TypeFile {
			files += f.Size
		}
	}
	if files == 0 {
		files = m.DataSize
	}
	return sizeEstimate{Files: files, WAL: min(walBytes, walKept) + m.SegmentSize}
}

// checkSize refuses a drill that would not fit: past maxSize (0: no
// limit), or past the free space of the directory's file system.
func checkSize(e sizeEstimate, maxSize int64, dir string) error {
	if maxSize > 0 && e.Total() > maxSize {
		return fmt.Errorf("%w: the drill would restore about %s, more than --max-size %s: raise --max-size, or drill an older, smaller backup with --backup",
			archive.ErrBadInput, e, archive.HumanBytes(maxSize))
	}
	free, err := freeBytes(dir)
	if err != nil {
		return fmt.Errorf("%w: free space of %s: %w", archive.ErrBadInput, dir, err)
	}
	if e.Total() > free {
		return fmt.Errorf("%w: the drill would restore about %s, and the file system of %s has %s free: free some space, or give --dir on a larger file system",
			archive.ErrBadInput, e, dir, archive.HumanBytes(free))
	}
	return nil
}

// recordedByDatabase sums, per database OID, the bytes of the relation
// files the backup recorded: base/<db>/<file> and
// pg_tblspc/<spc>/<version dir>/<db>/<file>, where a relation's file name
// starts with its relfilenode (1234, 1234.1, 1234_fsm, 1234_vm,
// 1234_init). PG_VERSION, pg_filenode.map and the like are left out, as
// the catalog's sizes leave them out.
func recordedByDatabase(m *repo.Manifest) map[uint32]int64 {
	out := map[uint32]int64{}
	for _, f := range m.Files {
		if f.Type != repo.TypeFile {
			continue
		}
		parts := strings.Split(f.Path, "/")
		var db, name string
		switch {
		case len(parts) == 3 && parts[0] == "base":
			db, name = parts[1], parts[2]
		case len(parts) == 5 && parts[0] == "pg_tblspc":
			db, name = parts[3], parts[4]
		default:
			continue
		}
		oid, err := strconv.ParseUint(db, 10, 32)
		if err != nil || name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		if path.Base(name) != name {
			continue
		}
		out[uint32(oid)] += f.Size
	}
	return out
}

// sizeSlack is what a database may grow past its recorded size and the WAL
// replayed: the free space and visibility maps are not WAL-logged page for
// page, and a relation's first extension comes in whole pages.
func sizeSlack(recorded int64) int64 { return 8<<20 + recorded/128 }

// compareSize judges a database's relation bytes after recovery against
// what the backup recorded and the WAL replayed since the backup began.
// Growth is bounded: every page that gets written on a primary is in the
// WAL (as a full-page image or a record), so after replay a database is at
// most what the backup recorded plus the WAL replayed (plus sizeSlack);
// more means files that did not come from this backup and its WAL, and
// fails. Shrinking is not bounded (DROP TABLE, TRUNCATE and VACUUM free
// any amount with a few bytes of WAL), so it is reported, not failed.
func compareSize(got, recorded, replayed int64) (ok bool, words string) {
	limit := recorded + replayed + sizeSlack(recorded)
	switch {
	case got > limit:
		return false, fmt.Sprintf("%s in relations, more than the %s the backup recorded plus the %s of WAL replayed since it began (and %s of slack): files that came from neither",
			archive.HumanBytes(got), archive.HumanBytes(recorded), archive.HumanBytes(replayed), archive.HumanBytes(sizeSlack(recorded)))
	case got+replayed < recorded:
		return true, fmt.Sprintf("%s in relations, %s less than the backup recorded with only %s of WAL replayed: dropped, truncated or vacuumed since",
			archive.HumanBytes(got), archive.HumanBytes(recorded-got), archive.HumanBytes(replayed))
	}
	return true, fmt.Sprintf("%s in relations (backup recorded %s; %s of WAL replayed since it began)", archive.HumanBytes(got), archive.HumanBytes(recorded), archive.HumanBytes(replayed))
}
