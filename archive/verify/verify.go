// Package verify checks what the store holds: that every part of every
// backup is there with its recorded size (and, with Full, reads back to
// its checksums), and that the WAL each backup needs is archived without
// gaps.
package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// Options tune verify.
type Options struct {
	// Backup limits the check to one backup (and skips the dumps); ""
	// checks them all, and every dump.
	Backup string
	// Full downloads, decrypts and decompresses every part and checks the
	// SHA-256 of each stored part and the CRC-32C of each file in it.
	// Without it, parts are checked for presence and size only.
	Full bool
	// Concurrency is how many parts are read at once (Full).
	Concurrency int
}

// Problem is one thing verify found wrong, naming the object.
type Problem struct {
	Object  string `json:"object"`
	Problem string `json:"problem"`
}

func (p Problem) String() string { return p.Object + ": " + p.Problem }

// TimelineReach is how far recovery from a backup gets on one timeline.
type TimelineReach struct {
	Timeline     uint32         `json:"timeline"`
	RestorableTo *repo.WALPoint `json:"restorable_to"`
	// Gap is the first gap on the way, when WAL follows it.
	Gap *repo.WALGap `json:"gap,omitempty"`
	// Newest is the newest segment archived on this timeline.
	Newest string `json:"newest,omitempty"`
}

// Backup is verify's finding for one backup.
type Backup struct {
	Name         string    `json:"name"`
	Timeline     uint32    `json:"timeline"`
	StartWAL     string    `json:"start_wal"`
	StopWAL      string    `json:"stop_wal"`
	StopTime     time.Time `json:"stop_time"`
	Permanent    bool      `json:"permanent"`
	Checked      string    `json:"checked"` // "sizes" or "full"
	Parts        int       `json:"parts"`
	StoredSize   int64     `json:"stored_size"`
	FilesChecked int       `json:"files_checked"`
	// BlockFilesChecked counts the files of an incremental backup stored
	// as some of their blocks whose entry is the size its block map says.
	BlockFilesChecked int `json:"block_files_checked"`
	// Type is "full" or "incremental"; Parent and Chain (parent first,
	// the full last) name an incremental's ancestors, ChainStoredSize is
	// what restoring it reads.
	Type            string   `json:"type"`
	Parent          string   `json:"parent"`
	Chain           []string `json:"chain"`
	ChainStoredSize int64    `json:"chain_stored_size"`
	// Ancestors is what verify found of each link of an incremental's
	// chain, parent first: a damaged one makes this backup fail too.
	Ancestors []Link `json:"ancestors,omitempty"`
	// Consistent: the WAL from the backup's start to its stop is archived.
	Consistent bool `json:"consistent"`
	// RestorableTo is the latest point recovery reaches on the newest
	// timeline the backup can follow; Timelines has every one.
	RestorableTo *repo.WALPoint  `json:"restorable_to"`
	Timelines    []TimelineReach `json:"timelines"`
	OK           bool            `json:"ok"`
	Problems     []Problem       `json:"problems"`
}

// Link is one ancestor of an incremental backup as verify found it.
type Link struct {
	Name              string `json:"name"`
	Parts             int    `json:"parts"`
	StoredSize        int64  `json:"stored_size"`
	FilesChecked      int    `json:"files_checked"`
	BlockFilesChecked int    `json:"block_files_checked"`
	OK                bool   `json:"ok"`
}

// Timeline is the WAL continuity of one timeline over the range the
// checked backups need.
type Timeline struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"` // first segment needed
	Last     string `json:"last"`  // last segment checked (the newest archived, or a switch point)
	// Ranges are the runs of segments needed (a permanent backup kept
	// alone needs only its own WAL, an island before the newer backups').
	Ranges   []SegmentSpan `json:"ranges"`
	Segments uint64        `json:"segments"` // archived segments in the ranges
	Gaps     []repo.WALGap `json:"gaps"`
}

// SegmentSpan is a run of segments, first to last.
type SegmentSpan struct {
	First string `json:"first"`
	Last  string `json:"last"`
}

// Report is everything verify found. OK only when every checked object is
// whole.
type Report struct {
	Store     string     `json:"store"`
	OK        bool       `json:"ok"`
	Backups   []*Backup  `json:"backups"`
	Timelines []Timeline `json:"timelines"`
	// Incomplete lists backup folders without a manifest: interrupted or
	// running backups, or interrupted deletes. They are not backups and
	// not a failure.
	Incomplete []string `json:"incomplete_backups,omitempty"`
	// Dumps are the logical dumps checked (every one, unless Backup limits
	// verify to one backup).
	Dumps []*Dump `json:"dumps"`
	// IncompleteDumps lists dump folders without a manifest (interrupted
	// or running dumps): not dumps, not a failure.
	IncompleteDumps []string  `json:"incomplete_dumps,omitempty"`
	Problems        []Problem `json:"problems"`
	// general: the problems that belong to no backup and no timeline gap.
	general []Problem
}

func (r *Report) fail(object, format string, a ...any) {
	p := Problem{Object: object, Problem: fmt.Sprintf(format, a...)}
	r.Problems = append(r.Problems, p)
	r.general = append(r.general, p)
}

// General lists the problems that belong to no backup and are no WAL gap
// (damaged manifests, missing history files, an empty store).
func (r *Report) General() []Problem { return r.general }

// Run checks the backups (all, or opts.Backup) and the WAL they need. It
// returns an error only when it could not check (the store failed, an
// encrypted object needs an identity); what it found is in the report.
func Run(ctx context.Context, r *repo.Repo, opts Options) (*Report, error) {
	rep := &Report{Store: r.Store.String(), Backups: []*Backup{}, Timelines: []Timeline{}, Dumps: []*Dump{}, Problems: []Problem{}}
	selected := func(name string) bool { return opts.Backup == "" || name == opts.Backup }
	// Manifests are read whole, so a damaged file list is found too; the
	// lists are then dropped to bound memory.
	cat, err := r.LoadCatalog(ctx, repo.CatalogOptions{FullManifest: selected, WAL: repo.AllWAL, History: true})
	if err != nil {
		return nil, err
	}
	backups, folders, err := rep.pickBackups(cat, opts, selected, r.Store.String())
	if err != nil {
		return nil, err
	}
	repo.SortBackups(backups)
	// The parts of every selected backup and of every ancestor of one are
	// checked, each once.
	checked := map[string]*Backup{}
	var order []*repo.Manifest
	var results []*Backup
	add := func(m *repo.Manifest, f *repo.BackupFolder) *Backup {
		bv := newBackup(m, opts.Full, cat)
		checkPartSizes(bv, m, f)
		checked[m.Name] = bv
		order, results = append(order, m), append(results, bv)
		return bv
	}
	for _, m := range backups {
		rep.Backups = append(rep.Backups, add(m, folders[m.Name]))
	}
	for _, m := range backups {
		for _, a := range cat.Ancestors(m) {
			if checked[a.Name] == nil {
				a.Files = nil
				add(a, cat.Folder(a.Name))
			}
		}
	}
	if opts.Full {
		for _, m := range order {
			if m.Encrypted && len(r.Identities) == 0 {
				return nil, fmt.Errorf("%w: backup %s is encrypted: a full check needs --identity-file (or check sizes only, without --full)", archive.ErrBadInput, m.Name)
			}
		}
		if err := verifyParts(ctx, r, order, results, max(1, opts.Concurrency)); err != nil {
			return nil, err
		}
	}
	// An ancestor fails its descendants for its own problems, not for
	// those it has from its own ancestors: each descendant sees every link.
	own := map[string][]Problem{}
	for name, bv := range checked {
		own[name] = slices.Clone(bv.Problems)
	}
	for _, bv := range rep.Backups {
		bv.linkAncestors(checked, own, folders)
	}
	if len(backups) > 0 {
		// What the listing holds counts only once authenticated: an object
		// that fails is a problem, and a gap where it is.
		bad, err := cat.AuthenticateWAL(ctx, nil)
		if err != nil {
			return nil, err
		}
		if opts.Full {
			more, err := readWAL(ctx, r, cat, backups, max(1, opts.Concurrency))
			if err != nil {
				return nil, err
			}
			bad = append(bad, more...)
		}
		for _, b := range bad {
			rep.fail(b.Key, "fails authentication: %s", b.Err)
		}
		if err := verifyWAL(cat, backups, rep, ownWALOnly(cat, backups)); err != nil {
			return nil, err
		}
	}
	if opts.Backup == "" {
		if err := verifyDumps(ctx, r, opts.Full, rep); err != nil {
			return nil, err
		}
	}
	rep.conclude()
	return rep, nil
}

// pickBackups takes the selected backups from the catalog's folders: the
// complete ones (their manifests without file lists, and their folders by
// name), reporting damaged manifests and noting incomplete folders.
func (rep *Report) pickBackups(cat *repo.Catalog, opts Options, selected func(string) bool, store string) ([]*repo.Manifest, map[string]*repo.BackupFolder, error) {
	var backups []*repo.Manifest
	folders := map[string]*repo.BackupFolder{}
	found := false
	for _, f := range cat.Folders {
		if !selected(f.Name) {
			continue
		}
		found = true
		switch {
		case f.Err != nil:
			rep.fail(repo.BackupKey(f.Name, repo.ManifestFile), "%v", trimWhere(f.Err))
		case f.Manifest == nil && opts.Backup != "":
			rep.fail(repo.BackupPrefix+f.Name+"/", "has no %s: the backup is incomplete (interrupted, failed or still running) and cannot be restored", repo.ManifestFile)
		case f.Manifest == nil:
			rep.Incomplete = append(rep.Incomplete, f.Name)
		default:
			f.Manifest.Files = nil // validated; --full reads them again, one backup at a time
			backups = append(backups, f.Manifest)
			folders[f.Name] = f
		}
	}
	if opts.Backup != "" && !found {
		return nil, nil, fmt.Errorf("%w: no backup named %q in %s: walvault backup-list shows them", archive.ErrBadInput, opts.Backup, store)
	}
	if len(backups) == 0 && opts.Backup == "" {
		rep.fail(repo.BackupPrefix, "no complete backup in the store: nothing can be restored (run walvault backup-push)")
	}
	return backups, folders, nil
}

func newBackup(m *repo.Manifest, full bool, cat *repo.Catalog) *Backup {
	bv := &Backup{Name: m.Name, Timeline: m.Timeline, StartWAL: m.StartWAL, StopWAL: m.StopWAL, StopTime: m.StopTime,
		Permanent: m.Permanent, Checked: "sizes", Parts: len(m.Parts), StoredSize: m.StoredSize, Problems: []Problem{}, Timelines: []TimelineReach{},
		Type: repo.BackupFull, Parent: m.Parent, Chain: append([]string{}, m.Chain...), ChainStoredSize: cat.ChainStoredSize(m)}
	if m.Incremental() {
		bv.Type = repo.BackupIncremental
	}
	if full {
		bv.Checked = "full"
	}
	return bv
}

// conclude gathers the backups' problems and the verdicts.
func (rep *Report) conclude() {
	for _, bv := range rep.Backups {
		bv.OK = len(bv.Problems) == 0
		rep.Problems = append(rep.Problems, bv.Problems...)
	}
	for _, d := range rep.Dumps {
		d.OK = len(d.Problems) == 0
		rep.Problems = append(rep.Problems, d.Problems...)
	}
	rep.OK = len(rep.Problems) == 0
}

// trimWhere drops the error class from a message the report files under
// the object it names.
func trimWhere(err error) string {
	return strings.TrimPrefix(err.Error(), archive.ErrIntegrity.Error()+": ")
}

// checkPartSizes compares the parts listed in the store with the manifest.
func checkPartSizes(bv *Backup, m *repo.Manifest, f *repo.BackupFolder) {
	for _, p := range f.MissingParts(m) {
		bv.Problems = append(bv.Problems, Problem{Object: p.Key, Problem: p.Problem})
	}
}

// linkAncestors records what was found of each ancestor of an
// incremental backup. A damaged one fails this backup too: when the
// ancestor is itself in the report, with one line pointing at it, else
// with the ancestor's own problems, which name its objects.
func (bv *Backup) linkAncestors(checked map[string]*Backup, own map[string][]Problem, selected map[string]*repo.BackupFolder) {
	for _, name := range bv.Chain {
		a := checked[name]
		if a == nil {
			continue // not in the store: the catalog reports the chain broken
		}
		probs := own[name]
		l := Link{Name: a.Name, Parts: a.Parts, StoredSize: a.StoredSize, FilesChecked: a.FilesChecked, BlockFilesChecked: a.BlockFilesChecked, OK: len(probs) == 0}
		bv.Ancestors = append(bv.Ancestors, l)
		if l.OK {
			continue
		}
		where := ", listed under it"
		if selected[a.Name] == nil {
			where = ", below"
		}
		bv.Problems = append(bv.Problems, Problem{Object: repo.BackupPrefix + bv.Name + "/",
			Problem: fmt.Sprintf("cannot be restored: its ancestor %s is damaged (%d problem(s)%s)", a.Name, len(probs), where)})
		if selected[a.Name] == nil {
			bv.Problems = append(bv.Problems, probs...)
		}
	}
}

// ownWALOnly names the backups that need only their own WAL, start to
// stop: the permanent ones (retention keeps no more for them), and those
// whose children all need only theirs (ancestors kept only for permanent
// backups built on them, as retention keeps them).
func ownWALOnly(cat *repo.Catalog, backups []*repo.Manifest) map[string]bool {
	var all []*repo.Manifest
	children := map[string][]*repo.Manifest{}
	for _, f := range cat.Folders {
		if m := f.Backup(); m != nil {
			all = append(all, m)
			if m.Incremental() {
				children[m.Parent] = append(children[m.Parent], m)
			}
		}
	}
	repo.ChainOrder(all) // children first
	only := map[string]bool{}
	for _, m := range all {
		kids := children[m.Name]
		o := m.Permanent || len(kids) > 0
		for _, k := range kids {
			o = o && only[k.Name]
		}
		only[m.Name] = o || m.Permanent
	}
	out := map[string]bool{}
	for _, m := range backups {
		out[m.Name] = only[m.Name]
	}
	return out
}
