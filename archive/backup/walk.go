package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// walkEntry is one thing found in the data directory or a tablespace.
type walkEntry struct {
	Path       string // manifest path, '/'-separated, relative to PGDATA
	Abs        string // where to read it
	Type       string // repo.TypeFile, repo.TypeDir or repo.TypeSymlink
	Size       int64  // at walk time; the file is read as it is when copied
	Mode       fs.FileMode
	MTime      time.Time
	Link       string
	Tablespace uint32
}

// The rules below follow what PostgreSQL's own base backup leaves out
// (src/backend/backup/basebackup.c), plus the recovery signal files, which
// would turn the restored server into something the restore did not ask
// for.

// skipTopFiles are files at the top of the data directory never backed up.
var skipTopFiles = map[string]bool{
	"postmaster.pid":           true, // a running server's lock
	"postmaster.opts":          true,
	"backup_label":             true, // the backup's own comes from the stop call
	"tablespace_map":           true,
	"backup_manifest":          true, // belongs to the backup this server was made from
	"postgresql.auto.conf.tmp": true,
	"current_logfiles.tmp":     true,
	"recovery.signal":          true, // restore writes its own
	"standby.signal":           true,
	"recovery.conf":            true,
	"recovery.done":            true,
}

// emptyDirs are top-level directories kept, but empty: their contents are
// rebuilt at startup or come from the archive.
var emptyDirs = map[string]bool{
	"pg_wal":       true, // WAL comes from the archive
	"pg_stat_tmp":  true,
	"pg_replslot":  true,
	"pg_dynshmem":  true,
	"pg_notify":    true,
	"pg_serial":    true,
	"pg_snapshots": true,
	"pg_subtrans":  true,
}

// keptInWAL are the subdirectories of pg_wal a server expects to exist.
var keptInWAL = map[string]bool{"archive_status": true, "summaries": true}

// Compiled on first use, not at every start of the binary (wal-push too).
var (
	relFileRe = lazyRegexp(`^(\d+)(_(fsm|vm|init))?(\.\d+)?$`)
	tempRelRe = lazyRegexp(`^t\d+_\d+(_(fsm|vm|init))?(\.\d+)?$`)
	digitsRe  = lazyRegexp(`^\d+$`)
	dbDirRe   = lazyRegexp(`^(base/\d+|pg_tblspc/\d+/PG_[^/]+/\d+)$`)
)

func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// skipEntry says whether name, found in directory rel (relative to PGDATA,
// "" for the top), is left out of the backup.
func skipEntry(rel, name string, isDir bool) bool {
	if strings.HasPrefix(name, "pgsql_tmp") || strings.HasPrefix(name, "pg_internal.init") {
		return true // temporary files and the relcache init file
	}
	if rel == "" && !isDir && skipTopFiles[name] {
		return true
	}
	if top, rest, _ := strings.Cut(rel, "/"); emptyDirs[top] {
		if top == "pg_wal" && rest == "" && isDir && keptInWAL[name] {
			return false
		}
		return true
	}
	return false
}

// isDBDir says whether rel holds a database's relation files.
func isDBDir(rel string) bool { return dbDirRe().MatchString(rel) }

// dbDirSkips returns the names in a database directory that are left out:
// temporary relations, and every fork but the init fork of unlogged
// relations (they are reset from the init fork at startup).
func dbDirSkips(names []string) map[string]bool {
	unlogged := map[string]bool{}
	for _, n := range names {
		if m := relFileRe().FindStringSubmatch(n); m != nil && m[3] == "init" {
			unlogged[m[1]] = true
		}
	}
	skip := map[string]bool{}
	for _, n := range names {
		if tempRelRe().MatchString(n) {
			skip[n] = true
			continue
		}
		if m := relFileRe().FindStringSubmatch(n); m != nil && unlogged[m[1]] && m[3] != "init" {
			skip[n] = true
		}
	}
	return skip
}

// walkResult is everything a backup will contain, before it is read.
type walkResult struct {
	Base        []walkEntry
	Tablespaces []repo.Tablespace
	Spc         map[uint32][]walkEntry
	Total       int64
}

// walkDataDir lists the data directory and its tablespaces (only the
// subdirectory of this server version, spcDir, e.g. PG_15_202209061).
// Things that vanish while we look are not an error: the server drops
// tables during a backup, and WAL replay recreates the state.
func walkDataDir(pgdata, spcDir string, spcNames map[uint32]string) (*walkResult, error) {
	if err := checkDataDir(pgdata); err != nil {
		return nil, err
	}
	w := &walker{res: &walkResult{Spc: map[uint32][]walkEntry{}}, spcDir: spcDir, spcNames: spcNames}
	if err := w.dir(pgdata, "", 0, &w.res.Base); err != nil {
		return nil, fmt.Errorf("%w: %w", archive.ErrBadInput, err)
	}
	return w.res, nil
}

// checkDataDir refuses what is not a PostgreSQL data directory.
func checkDataDir(pgdata string) error {
	st, err := os.Stat(pgdata)
	if err != nil {
		return fmt.Errorf("%w: data directory %s: %w", archive.ErrBadInput, pgdata, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: data directory %s is not a directory", archive.ErrBadInput, pgdata)
	}
	if _, err := os.Stat(filepath.Join(pgdata, "PG_VERSION")); err != nil {
		return fmt.Errorf("%w: %s is not a PostgreSQL data directory (no PG_VERSION)", archive.ErrBadInput, pgdata)
	}
	return nil
}

// walker is one walk of a data directory and its tablespaces.
type walker struct {
	res      *walkResult
	spcDir   string
	spcNames map[uint32]string
}

// dir appends what directory abs (rel in the backup, in tablespace spc)
// holds to out, descending into subdirectories.
func (w *walker) dir(abs, rel string, spc uint32, out *[]walkEntry) error {
	ents, err := os.ReadDir(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && rel != "" {
			return nil
		}
		return fmt.Errorf("reading %s: %w", abs, err)
	}
	var skips map[string]bool
	if isDBDir(rel) {
		names := make([]string, len(ents))
		for i, e := range ents {
			names[i] = e.Name()
		}
		skips = dbDirSkips(names)
	}
	for _, e := range ents {
		name := e.Name()
		if skips[name] || skipEntry(rel, name, e.IsDir()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("reading %s: %w", filepath.Join(abs, name), err)
		}
		if err := w.entry(abs, rel, name, info, spc, out); err != nil {
			return err
		}
	}
	return nil
}

// entry adds one thing found in directory abs (rel in the backup).
func (w *walker) entry(abs, rel, name string, info fs.FileInfo, spc uint32, out *[]walkEntry) error {
	childAbs, childRel := filepath.Join(abs, name), path.Join(rel, name)
	ent := walkEntry{Path: childRel, Abs: childAbs, Mode: info.Mode().Perm(), MTime: info.ModTime(), Tablespace: spc}
	isLink := info.Mode()&fs.ModeSymlink != 0
	switch {
	case isLink && rel == "pg_tblspc" && digitsRe().MatchString(name):
		return w.tablespace(childAbs, name)
	case isLink && rel == "" && name == "pg_wal":
		// pg_wal on another disk: back it up as the (empty) directory
		// it stands for, as pg_basebackup does.
		ent.Type, ent.Mode = repo.TypeDir, 0o700
		*out = append(*out, ent)
		return w.dir(childAbs, childRel, spc, out)
	case isLink:
		link, err := os.Readlink(childAbs)
		if err != nil {
			return nil
		}
		ent.Type, ent.Link = repo.TypeSymlink, link
		*out = append(*out, ent)
	case info.IsDir():
		ent.Type = repo.TypeDir
		*out = append(*out, ent)
		return w.dir(childAbs, childRel, spc, out)
	case info.Mode().IsRegular():
		ent.Type, ent.Size = repo.TypeFile, info.Size()
		w.res.Total += info.Size()
		*out = append(*out, ent)
	default:
		slog.Warn("skipping a file that is neither regular, directory nor symlink", "path", childAbs)
	}
	return nil
}

// tablespace walks the tablespace pg_tblspc/name links to.
func (w *walker) tablespace(link, name string) error {
	oid64, err := strconv.ParseUint(name, 10, 32)
	if err != nil {
		return nil
	}
	oid := uint32(oid64)
	target, err := os.Readlink(link)
	if err != nil {
		return fmt.Errorf("reading tablespace link %s: %w", link, err)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	w.res.Tablespaces = append(w.res.Tablespaces, repo.Tablespace{OID: oid, Name: w.spcNames[oid], Location: filepath.Clean(target)})
	root := filepath.Join(target, w.spcDir)
	info, err := os.Stat(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // dropped meanwhile
		}
		return fmt.Errorf("tablespace %d at %s: %w", oid, target, err)
	}
	rel := "pg_tblspc/" + name + "/" + w.spcDir
	var out []walkEntry
	out = append(out, walkEntry{Path: rel, Abs: root, Type: repo.TypeDir, Mode: info.Mode().Perm(), MTime: info.ModTime(), Tablespace: oid})
	if err := w.dir(root, rel, oid, &out); err != nil {
		return err
	}
	w.res.Spc[oid] = out
	return nil
}

// partPlan is the list of entries one part will hold.
type partPlan struct {
	Tablespace uint32
	Entries    []walkEntry
	Size       int64
}

// planParts cuts the entries into parts of about target bytes, in walk
// order, each tablespace in parts of its own. A file larger than target
// gets a part to itself: files are never split.
func planParts(w *walkResult, target int64) []partPlan {
	var plans []partPlan
	add := func(spc uint32, ents []walkEntry) {
		cur := partPlan{Tablespace: spc}
		for _, e := range ents {
			if e.Type == repo.TypeFile && cur.Size > 0 && cur.Size+e.Size > target {
				plans = append(plans, cur)
				cur = partPlan{Tablespace: spc}
			}
			cur.Entries = append(cur.Entries, e)
			cur.Size += e.Size
		}
		if len(cur.Entries) > 0 {
			plans = append(plans, cur)
		}
	}
	add(0, w.Base)
	for _, ts := range w.Tablespaces {
		add(ts.OID, w.Spc[ts.OID])
	}
	return plans
}

// partTarget picks the part size: at most limit, but small enough that a
// small database still spreads over the workers (so compression, upload
// and, later, restore run in parallel), and never tiny.
func partTarget(total, limit int64, workers int) int64 {
	const floor = 16 << 20
	t := total / int64(2*max(workers, 1))
	if t < floor {
		t = floor
	}
	if t > limit {
		t = limit
	}
	return t
}
