package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// WALScope says how much of wal/ a catalog lists.
type WALScope int

// The scopes.
const (
	// NoWAL lists no WAL.
	NoWAL WALScope = iota
	// WALOfBackups lists the WAL directories from the oldest backup's
	// start on: what listing and restoring backups need.
	WALOfBackups
	// AllWAL lists every WAL directory, and what is not WAL.
	AllWAL
)

// CatalogOptions say what a command needs of the bucket.
type CatalogOptions struct {
	// FullManifest says which backups' manifests are read whole, with
	// their file lists (nil: only the summaries).
	FullManifest func(name string) bool
	// WAL is how much of wal/ to list.
	WAL WALScope
	// History reads the timeline history files (those that are encrypted
	// need the identity).
	History bool
}

// Catalog is what the bucket holds, read once per command: the backup
// folders with their manifests, the WAL listing and the timeline
// histories. Commands decide from it rather than list the store again, so
// that backup-list, restore, verify and delete agree on what a backup is.
type Catalog struct {
	r *Repo
	// Folders is every backups/<name>/ folder, by name.
	Folders []*BackupFolder
	byName  map[string]*BackupFolder
	wal     []cloud.ObjectInfo
	hist    *histories
	inv     *WALInventory
	// walChecked are the WAL keys AuthenticateWAL checked; BadWAL the
	// ones that failed, taken out of wal.
	walChecked map[string]bool
	BadWAL     []BadObject
}

// BackupFolder is what the store holds under backups/<name>/.
type BackupFolder struct {
	Folder
	// Manifest is nil when there is none (or it vanished); Err is set when
	// it exists but cannot be read as one, or when it is an incremental
	// backup whose chain is broken (then Broken holds it).
	Manifest *Manifest
	Err      error
	// Broken is the sound manifest of an incremental backup that cannot be
	// restored because of its chain: an ancestor is missing, damaged, or
	// not the one it was taken against (Err says which). It is not in
	// Backups(); delete may remove it.
	Broken *Manifest
	// ManifestSHA256 is the SHA-256 of manifest.json as read, what an
	// incremental backup records of its parent.
	ManifestSHA256 string
}

// PartProblem is a part (or its sums object) of a backup that the listing
// does not show as its manifest records it.
type PartProblem struct {
	Key     string
	Problem string
}

// MissingParts lists the parts of m, and their sums objects, that the
// folder does not hold with the size m records: without them the backup
// cannot be restored.
func (f *BackupFolder) MissingParts(m *Manifest) []PartProblem {
	var out []PartProblem
	for _, p := range m.Parts {
		key := BackupKey(m.Name, p.Name)
		o, ok := f.Objects[p.Name]
		switch {
		case !ok:
			out = append(out, PartProblem{key, "missing"})
		case o.Size != p.StoredSize:
			out = append(out, PartProblem{key, fmt.Sprintf("is %d bytes, the manifest says %d: the stored part is truncated or altered", o.Size, p.StoredSize)})
		}
		if p.Sums == "" {
			continue // a backup from before sums
		}
		so, ok := f.Objects[p.Name+SumsSuffix]
		switch want := SumsLen(p.StoredSize); {
		case !ok:
			out = append(out, PartProblem{SumsKey(key), "missing: the part cannot be authenticated without it"})
		case so.Size != want:
			out = append(out, PartProblem{SumsKey(key), fmt.Sprintf("is %d bytes, a part of %d bytes has one of %d: it is truncated or altered", so.Size, p.StoredSize, want)})
		}
	}
	return out
}

// histories are the timeline history files read from wal/history/.
type histories struct {
	parsed map[uint32][]archive.HistoryEntry
	keys   map[uint32]string
	errs   map[uint32]error // files that could not be read
}

// LoadCatalog lists backups/ once and reads every manifest (eight at a
// time), then lists wal/ and reads the history files as opts says.
func (r *Repo) LoadCatalog(ctx context.Context, opts CatalogOptions) (*Catalog, error) {
	if err := r.BindCluster(ctx); err != nil {
		return nil, err
	}
	folders, err := r.scanBackupFolders(ctx, opts.FullManifest)
	if err != nil {
		return nil, err
	}
	c := &Catalog{r: r, Folders: folders, byName: map[string]*BackupFolder{}, hist: &histories{parsed: map[uint32][]archive.HistoryEntry{}, keys: map[uint32]string{}, errs: map[uint32]error{}}}
	for _, f := range folders {
		c.byName[f.Name] = f
	}
	c.resolveChains()
	if opts.WAL == NoWAL {
		return c, nil
	}
	if err := c.LoadWAL(ctx, opts.WAL, opts.History); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadWAL lists wal/ (as scope says) and, with history, reads the
// timeline history files, for a catalog loaded without them: a command
// that may decide from the backups alone need not read the WAL first.
func (c *Catalog) LoadWAL(ctx context.Context, scope WALScope, history bool) error {
	r := c.r
	var dirOK func(tli, log uint32) bool
	if scope == WALOfBackups {
		minLog, any := uint32(0), false
		for _, m := range c.Backups() {
			if wf, err := archive.ParseWALName(m.StartWAL); err == nil && (!any || wf.Log < minLog) {
				minLog, any = wf.Log, true
			}
		}
		dirOK = func(_, log uint32) bool { return any && log >= minLog }
	}
	var err error
	if c.wal, err = r.listWAL(ctx, dirOK); err != nil {
		return err
	}
	c.inv = nil
	for _, o := range c.wal {
		name, ok := strings.CutPrefix(o.Key, HistoryPrefix)
		if !ok {
			continue
		}
		if wf, err := archive.ParseWALName(name); err == nil && wf.Kind == archive.KindHistory && wf.Timeline > 1 {
			c.hist.keys[wf.Timeline] = o.Key
		}
	}
	if !history {
		return nil
	}
	for tli := range c.hist.keys {
		h, err := r.ReadHistory(ctx, tli)
		switch {
		case err == nil:
			c.hist.parsed[tli] = h
		case isKeyErr(err):
			return fmt.Errorf("%w (the timeline history files are encrypted: give --identity-file)", err)
		case errors.Is(err, archive.ErrStore), archive.IsContextErr(err):
			return err
		default:
			c.hist.errs[tli] = err
		}
	}
	return nil
}

// Backups is every complete backup (one with a readable, authenticated
// manifest), oldest first by finish time. The others are in Folders with
// Err set.
func (c *Catalog) Backups() []*Manifest {
	var list []*Manifest
	for _, f := range c.Folders {
		switch {
		case f.Manifest != nil:
			list = append(list, f.Manifest)
		case f.Err != nil:
			// The commands say so in their own words (backup-list marks it,
			// restore warns when it skips it, verify reports it).
			slog.Debug("leaving out a backup whose manifest is damaged or fails authentication", "backup", f.Name, "err", f.Err)
		case f.Has(ManifestFile):
			slog.Debug("ignoring a backup whose manifest vanished", "backup", f.Name)
		default:
			slog.Debug("ignoring an incomplete backup (no manifest: interrupted, failed or still running)", "backup", f.Name)
		}
	}
	SortBackups(list)
	return list
}

// SortBackups orders backups oldest first by finish time, then name.
func SortBackups(list []*Manifest) {
	sort.SliceStable(list, func(i, j int) bool {
		if !list[i].StopTime.Equal(list[j].StopTime) {
			return list[i].StopTime.Before(list[j].StopTime)
		}
		return list[i].Name < list[j].Name
	})
}

// WAL is the inventory of the listed WAL for segments of segSize.
func (c *Catalog) WAL(segSize int64) *WALInventory {
	if c.inv == nil || c.inv.SegSize != segSize {
		c.inv = newInventory(c.wal, segSize, c.hist)
	}
	return c.inv
}

// LatestTimeline is the highest timeline with a history file in the
// store, or 0 when there is none (everything is on one timeline).
func (c *Catalog) LatestTimeline() uint32 {
	var latest uint32
	for tli := range c.hist.keys {
		latest = max(latest, tli)
	}
	return latest
}

// History is the parsed history file of timeline tli (nil for timeline 1).
func (c *Catalog) History(tli uint32) ([]archive.HistoryEntry, error) {
	if tli <= 1 {
		return nil, nil
	}
	if err := c.hist.errs[tli]; err != nil {
		return nil, err
	}
	h, ok := c.hist.parsed[tli]
	if !ok {
		return nil, fmt.Errorf("%w: timeline %d has no history file %s", archive.ErrBadInput, tli, archive.HistoryName(tli))
	}
	return h, nil
}

// WALRange is the archived WAL a backup can replay: from its first
// segment to the newest one reachable without a gap, on its timeline.
type WALRange struct {
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
	// LastTime is when Last was stored: recovery from the backup reaches
	// a moment at or just before it (the end of its PITR window).
	LastTime time.Time `json:"last_time,omitzero"`
	// Restorable: the range reaches the backup's stop segment, so the backup
	// can be made consistent.
	Restorable bool `json:"restorable"`
}

// Range is backup m's WAL range.
func (inv *WALInventory) Range(m *Manifest) WALRange {
	start, err1 := archive.ParseWALName(m.StartWAL)
	stop, err2 := archive.ParseWALName(m.StopWAL)
	if err1 != nil || err2 != nil || start.Kind != archive.KindSegment {
		return WALRange{}
	}
	var r WALRange
	seg := start.SegNo(m.SegmentSize)
	for inv.Has(m.Timeline, seg) {
		if r.First == "" {
			r.First = m.StartWAL
		}
		r.Last = archive.SegmentName(m.Timeline, seg, m.SegmentSize)
		r.LastTime = inv.segs[m.Timeline][seg].ModTime
		seg++
	}
	r.Restorable = r.Last != "" && seg > stop.SegNo(m.SegmentSize)
	return r
}

// ReadHistory fetches and parses the history file of timeline tli.
func (r *Repo) ReadHistory(ctx context.Context, tli uint32) ([]archive.HistoryEntry, error) {
	if tli <= 1 {
		return nil, nil
	}
	name := archive.HistoryName(tli)
	var h []archive.HistoryEntry
	err := r.Load(ctx, HistoryPrefix+name, Want{Proof: true, Encrypted: true, MaxSize: MaxHistoryBytes}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		b, err := io.ReadAll(io.LimitReader(rd, MaxHistoryBytes))
		if err != nil {
			return err
		}
		if h, err = archive.ParseHistory(string(b)); err != nil {
			return fmt.Errorf("%w: %s in %s: %w", archive.ErrIntegrity, name, r.Store, err)
		}
		return nil
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, fmt.Errorf("%w: timeline %d has no history file %s in %s", archive.ErrBadInput, tli, name, r.Store)
	}
	return h, err
}

// scanBackupFolders lists backups/ once and reads every manifest (whole
// when full says so, else the summary), eight at a time.
func (r *Repo) scanBackupFolders(ctx context.Context, full func(name string) bool) ([]*BackupFolder, error) {
	listed, err := ListFolders(ctx, r.Store, BackupPrefix)
	if err != nil {
		return nil, err
	}
	folders := make([]*BackupFolder, 0, len(listed))
	var withManifest []*BackupFolder
	for _, l := range listed {
		f := &BackupFolder{Folder: *l}
		folders = append(folders, f)
		switch {
		case !ValidBackupName(f.Name):
			// Not a folder walvault made: its name is data, never read further.
			f.Err = fmt.Errorf("%w: %q under %s is not a backup name walvault writes", archive.ErrIntegrity, f.Name, BackupPrefix)
		case f.Has(ManifestFile):
			withManifest = append(withManifest, f)
		}
	}
	return folders, eachFolder(ctx, withManifest, func(ctx context.Context, f *BackupFolder) error {
		m, sum, err := r.ReadManifestSum(ctx, f.Name, full == nil || !full(f.Name))
		if err == nil {
			err = r.applyMarks(ctx, f, m)
		}
		switch {
		case err == nil:
			f.Manifest, f.ManifestSHA256 = m, sum
		case errors.Is(err, archive.ErrNotInArchive):
		case errors.Is(err, archive.ErrIntegrity), errors.Is(err, codec.ErrCorrupt), errors.Is(err, crypto.ErrBadProof):
			f.Err = err
		default:
			return err
		}
		return nil
	})
}
