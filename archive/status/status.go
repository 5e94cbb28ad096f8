// Package status gathers the figures a monitor alerts on: the newest
// backup and its age, the newest database dump and its age, the last archived WAL segment and its age, the
// server's archiving (pg_stat_archiver, .ready files) when it can be
// reached, the point-in-time recovery window, WAL gaps in the newest part
// of the archive (only what is new since the last run, remembered in a
// small state file) and the archive's size. Thresholds turn the figures
// into a check; the same figures go out as a Prometheus textfile.
package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// Options say how to gather the figures.
type Options struct {
	// Now is the time ages are measured from (zero: time.Now()).
	Now time.Time
	// StateFile remembers how far the WAL was checked for gaps, and the
	// gaps found; "" checks from the newest backup's start every run.
	StateFile string
	// Server reads the server's archiving; nil: not asked (the server
	// fields stay null).
	Server ServerProbe
	// DrillStateFile is where walvault drill remembers its outcomes on
	// this host ("": not read).
	DrillStateFile string
}

// ServerProbe reads pg_stat_archiver and the .ready files of the server
// whose archive this is. It returns an error when the server cannot be
// reached; status reports the error and leaves the server's fields null.
type ServerProbe func(ctx context.Context, now time.Time) (*Server, error)

// Backup is the newest complete backup.
type Backup struct {
	Name       string    `json:"name"`
	FinishTime time.Time `json:"finish_time"`
	AgeSeconds float64   `json:"age_seconds"`
	Timeline   uint32    `json:"timeline"`
	StoredSize int64     `json:"stored_size"`
	// Type is "full" or "incremental"; Parent names an incremental's,
	// and ChainStoredSize is what restoring it reads.
	Type            string `json:"type"`
	Parent          string `json:"parent"`
	ChainStoredSize int64  `json:"chain_stored_size"`
}

// Dump is the newest database dump.
type Dump struct {
	Name       string    `json:"name"`
	Database   string    `json:"database"`
	FinishTime time.Time `json:"finish_time"`
	AgeSeconds float64   `json:"age_seconds"`
	StoredSize int64     `json:"stored_size"`
}

// Segment is an archived WAL segment and when it was stored.
type Segment struct {
	Name       string    `json:"name"`
	Time       time.Time `json:"time"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Window is the point-in-time recovery window: from the end of the oldest
// backup that can be made consistent to the newest archived segment that
// recovery from a backup reaches without a gap. End is the time that
// segment was stored: the last restorable moment lies at or shortly before
// it.
type Window struct {
	Start       time.Time `json:"start"`
	StartBackup string    `json:"start_backup"`
	End         time.Time `json:"end"`
	EndSegment  string    `json:"end_segment"`
	EndLSN      string    `json:"end_lsn"`
	EndTimeline uint32    `json:"end_timeline"`
	Seconds     float64   `json:"seconds"`
}

// GapCheck is what this run checked for gaps: the newest part of each
// timeline, from where the last run stopped.
type GapCheck struct {
	// Checked lists, per timeline, the segments looked at this run.
	Checked []Span `json:"checked"`
	// Gaps are the gaps known now: found this run, or by an earlier run
	// and still missing.
	Gaps []repo.WALGap `json:"gaps"`
	// Segments is the number of missing segments in Gaps.
	Segments uint64 `json:"missing_segments"`
	// State is the state file used ("" when none).
	State string `json:"state_file,omitempty"`
	// Note says why the check was limited, when it was.
	Note string `json:"note,omitempty"`
}

// Span is a run of segments of one timeline.
type Span struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"`
	Last     string `json:"last"`
}

// Size is the archive's size, from the listing.
type Size struct {
	Bytes       int64 `json:"bytes"`
	BackupBytes int64 `json:"backup_bytes"`
	WALBytes    int64 `json:"wal_bytes"`
	DumpBytes   int64 `json:"dump_bytes"`
	OtherBytes  int64 `json:"other_bytes"`
	Objects     int64 `json:"objects"`
}

// BadBackup is a backup folder whose manifest exists but is damaged or
// fails authentication: counted and reported, never used for ages.
type BadBackup struct {
	Name  string `json:"name"`
	Mark  string `json:"mark"` // DAMAGED or UNAUTHENTICATED
	Error string `json:"error"`
}

// Report is everything status found.
type Report struct {
	Store string    `json:"store"`
	Time  time.Time `json:"time"`
	// NewestBackup is nil when the store holds no complete backup.
	NewestBackup *Backup `json:"newest_backup"`
	// NewestDump is the newest database dump (dump-push) whose manifest
	// authenticates; nil when there is none. Globals dumps do not count.
	NewestDump *Dump `json:"newest_dump"`
	// Dumps counts the database and globals dumps with a trusted manifest.
	Dumps int `json:"dumps"`
	// Backups counts the complete backups; BadBackups lists those whose
	// manifest is damaged or fails authentication; Incomplete counts
	// folders without a manifest (interrupted or running backups).
	Backups     int         `json:"backups"`
	BadBackups  []BadBackup `json:"bad_backups"`
	Incomplete  int         `json:"incomplete_backups"`
	LastSegment *Segment    `json:"last_archived_segment"`
	// Server is nil when the server was not asked or could not be reached
	// (ServerError says why).
	Server      *Server  `json:"server"`
	ServerError string   `json:"server_error,omitempty"`
	PITR        *Window  `json:"pitr_window"`
	WAL         GapCheck `json:"wal_gaps"`
	Size        Size     `json:"archive_size"`
	// MissingParts are parts (or their sums objects) of complete backups
	// that the store lacks or holds at another size.
	MissingParts []string `json:"missing_parts"`
	// UnauthenticatedWAL are WAL objects whose proof failed: not counted
	// as archived (a gap where they are).
	UnauthenticatedWAL []repo.BadObject `json:"unauthenticated_wal"`
	// PITRGaps are gaps that cut the archive short of a continuous window
	// from the oldest backup on: recovery from the backups before one
	// stops there.
	PITRGaps []repo.WALGap `json:"pitr_gaps"`
	// Drill is what this host remembers of restore drills; nil when no
	// drill state file is read.
	Drill *Drill `json:"drill"`
	// Notes are things worth knowing that are no figure.
	Notes []string `json:"notes,omitempty"`
	// CopyStores are the second stores (copy-store) compared with this
	// one; filled by the caller (CollectCopyStores).
	CopyStores []CopyStore `json:"copy_stores,omitempty"`
}

// ArchiveLag is the server's archive lag in seconds, or nil when unknown.
func (r *Report) ArchiveLag() *float64 {
	if r.Server == nil {
		return nil
	}
	return r.Server.ArchiveLagSeconds
}

// ReadyFiles is the server's .ready count, or nil when unknown.
func (r *Report) ReadyFiles() *int {
	if r.Server == nil {
		return nil
	}
	return r.Server.ReadyFiles
}

// Collect gathers the figures from the store (and the server, when
// opts.Server is set). Manifests are read through the catalog, so they are
// authenticated as every reader's are. It fails only when the store cannot
// be read; the server's failure is in the report.
func Collect(ctx context.Context, r *repo.Repo, opts Options) (*Report, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	rep := &Report{Store: cloud.Redact(r.Store.String()), Time: now.UTC(), BadBackups: []BadBackup{},
		MissingParts: []string{}, UnauthenticatedWAL: []repo.BadObject{}, PITRGaps: []repo.WALGap{}}
	rep.WAL.Gaps, rep.WAL.Checked = []repo.WALGap{}, []Span{}
	cat, err := r.LoadCatalog(ctx, repo.CatalogOptions{WAL: repo.NoWAL})
	if err != nil {
		return nil, err
	}
	if err := cat.LoadWAL(ctx, repo.AllWAL, true); err != nil {
		if !repo.IsKeyErr(err) {
			return nil, err
		}
		// Encrypted history files need the identity: go on along each
		// backup's own timeline.
		if err := cat.LoadWAL(ctx, repo.AllWAL, false); err != nil {
			return nil, err
		}
		rep.Notes = append(rep.Notes, "the timeline history files are encrypted and no --identity-file was given: the PITR window follows each backup's own timeline only")
	}
	backups := rep.readBackups(cat, now)
	if err := rep.readDumps(ctx, r, now); err != nil {
		return nil, err
	}
	rep.readDrill(opts.DrillStateFile, now)
	if opts.Server != nil {
		srv, err := opts.Server(ctx, now)
		if err != nil {
			if archive.IsContextErr(err) {
				return nil, err
			}
			rep.ServerError = archive.OneLine(err.Error())
		} else {
			rep.Server = srv
		}
	}
	segSize, err := repo.SegmentSize(backups)
	if err != nil {
		return nil, err
	}
	if segSize == 0 && rep.Server != nil {
		segSize = rep.Server.SegSize
	}
	known := segSize != 0
	if !known {
		// No backup and no server: no segment size. The smallest one
		// PostgreSQL allows accepts every segment name, which is all the
		// newest segment needs.
		segSize = 1 << 20
	}
	if err := rep.authenticateWAL(ctx, cat, backups, segSize, known, opts.StateFile); err != nil {
		return nil, err
	}
	inv := cat.WAL(segSize)
	rep.lastSegment(inv, now)
	rep.size(ctx, r, cat, inv)
	if len(backups) > 0 {
		rep.PITR, rep.PITRGaps = window(inv, backups)
	}
	if !known {
		rep.WAL.Note = "no backup and no server to tell the WAL segment size: gaps not checked"
		return rep, nil
	}
	if err := rep.checkGaps(inv, backups, opts.StateFile); err != nil {
		return nil, err
	}
	return rep, nil
}

// readBackups fills the backup figures from the catalog and returns the
// complete backups, oldest first.
func (rep *Report) readBackups(cat *repo.Catalog, now time.Time) []*repo.Manifest {
	for _, b := range cat.Damaged() {
		rep.BadBackups = append(rep.BadBackups, BadBackup{Name: b.Name, Mark: b.Mark, Error: archive.OneLine(b.Err.Error())})
	}
	for _, f := range cat.Folders {
		if f.Err == nil && f.Manifest == nil {
			rep.Incomplete++
		}
	}
	backups := cat.Backups()
	rep.Backups = len(backups)
	for _, m := range backups {
		for _, p := range cat.Folder(m.Name).MissingParts(m) {
			rep.MissingParts = append(rep.MissingParts, p.Key+": "+p.Problem)
		}
	}
	if n := len(backups); n > 0 {
		m := backups[n-1]
		rep.NewestBackup = &Backup{Name: m.Name, FinishTime: m.StopTime.UTC(), AgeSeconds: age(now, m.StopTime), Timeline: m.Timeline, StoredSize: m.StoredSize,
			Type: repo.BackupFull, Parent: m.Parent, ChainStoredSize: cat.ChainStoredSize(m)}
		if m.Incremental() {
			rep.NewestBackup.Type = repo.BackupIncremental
		}
	}
	return backups
}

// readDumps fills the dump figures: the newest database dump whose
// manifest authenticates (a damaged or unauthenticated one is a note,
// never used for ages).
func (rep *Report) readDumps(ctx context.Context, r *repo.Repo, now time.Time) error {
	folders, err := r.ListDumps(ctx)
	if err != nil {
		return err
	}
	for _, f := range folders {
		if f.Err != nil {
			mark := "DAMAGED"
			if errors.Is(f.Err, crypto.ErrBadProof) {
				mark = "UNAUTHENTICATED"
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s dump %s not counted: %s", mark, f.Name, archive.OneLine(f.Err.Error())))
		}
	}
	dumps := repo.CompleteDumps(folders)
	rep.Dumps = len(dumps)
	for i := len(dumps) - 1; i >= 0; i-- {
		if m := dumps[i]; m.Kind == repo.DumpKindDatabase {
			rep.NewestDump = &Dump{Name: m.Name, Database: m.Database, FinishTime: m.StopTime.UTC(), AgeSeconds: age(now, m.StopTime), StoredSize: m.StoredSize}
			break
		}
	}
	return nil
}

func age(now, t time.Time) float64 { return max(0, now.Sub(t).Seconds()) }

// lastSegment is the segment object stored last.
func (rep *Report) lastSegment(inv *repo.WALInventory, now time.Time) {
	var last *repo.WALObject
	for _, o := range inv.Objects {
		if o.File.Kind != archive.KindSegment {
			continue
		}
		if last == nil || o.ModTime.After(last.ModTime) || o.ModTime.Equal(last.ModTime) && o.Key > last.Key {
			last = o
		}
	}
	if last != nil {
		rep.LastSegment = &Segment{Name: last.File.Name, Time: last.ModTime.UTC(), AgeSeconds: age(now, last.ModTime)}
	}
}

// size adds up the listing: backup folders, WAL, history files and what
// lies at the top (cluster.json).
func (rep *Report) size(ctx context.Context, r *repo.Repo, cat *repo.Catalog, inv *repo.WALInventory) {
	s := &rep.Size
	for _, f := range cat.Folders {
		s.BackupBytes += f.Size
		s.Objects += int64(len(f.Objects))
	}
	for _, o := range inv.Objects {
		s.WALBytes += o.Size
		s.Objects++
	}
	for _, o := range inv.Junk {
		s.OtherBytes += o.Size
		s.Objects++
	}
	// The inventory keeps only the history files' keys; they, the dumps
	// and the top of the store are small listings.
	for _, p := range []string{repo.HistoryPrefix, repo.DumpPrefix, ""} {
		opt := cloud.ListOptions{}
		if p == "" {
			opt.Delimiter = "/"
		}
		err := r.Store.List(ctx, p, opt, func(o cloud.ObjectInfo) error {
			if o.IsPrefix {
				return nil
			}
			switch p {
			case repo.HistoryPrefix:
				s.WALBytes += o.Size
			case repo.DumpPrefix:
				s.DumpBytes += o.Size
			default:
				s.OtherBytes += o.Size
			}
			s.Objects++
			return nil
		})
		if err != nil {
			slog.Debug("listing for the archive size", "prefix", p, "err", err)
		}
	}
	s.Bytes = s.BackupBytes + s.WALBytes + s.DumpBytes + s.OtherBytes
}

// window finds the PITR window: the newest point recovery from any backup
// reaches without a gap, on any timeline it can follow, ends it; the
// oldest backup from which recovery runs on without a break to the
// backups after it starts it. Gaps that cut earlier backups off from the
// window are returned: a window is never reported across one.
func window(inv *repo.WALInventory, backups []*repo.Manifest) (*Window, []repo.WALGap) {
	type reach struct {
		m   *repo.Manifest
		end *repo.WALObject
		wk  repo.WALWalk
		gap *repo.WALGap
	}
	var rs []reach
	for _, m := range backups {
		stop, err := archive.ParseWALName(m.StopWAL)
		if err != nil {
			continue
		}
		own, ok := inv.PathTo(m, m.Timeline, m.StopLSN)
		if !ok {
			continue
		}
		if ow := inv.Walk(own); ow.Last == nil || ow.LastSegN < stop.SegNo(inv.SegSize) {
			continue // cannot be made consistent
		}
		rc := reach{m: m}
		for _, tli := range inv.Reachable(m, m.StopLSN) {
			path, ok := inv.PathTo(m, tli, m.StopLSN)
			if !ok {
				continue
			}
			wk := inv.Walk(path)
			if wk.Last != nil && (rc.end == nil || wk.Last.ModTime.After(rc.end.ModTime)) {
				rc.end, rc.wk, rc.gap = wk.Last, wk, wk.Gap
			}
		}
		if rc.end != nil {
			rs = append(rs, rc)
		}
	}
	if len(rs) == 0 {
		return nil, nil
	}
	// The furthest by position (timeline, then segment); an object's time
	// in the store is only when it was last written.
	best := 0
	for i, rc := range rs {
		b := rs[best].wk
		if rc.wk.LastTLI > b.LastTLI || rc.wk.LastTLI == b.LastTLI && rc.wk.LastSegN > b.LastSegN {
			best = i
		}
	}
	// From the backup that reaches furthest, back while each earlier
	// backup's recovery reaches the start of the one after it.
	start := best
	for i := best - 1; i >= 0; i-- {
		if !reaches(inv, rs[i].wk, rs[i].end, rs[start].m) {
			break
		}
		start = i
	}
	var gaps []repo.WALGap
	for i := 0; i < start; i++ {
		if g := rs[i].gap; g != nil {
			gaps = append(gaps, *g)
		}
	}
	p := inv.Point(rs[best].wk)
	w := &Window{Start: rs[start].m.StopTime.UTC(), StartBackup: rs[start].m.Name,
		End: rs[best].end.ModTime.UTC(), EndSegment: p.Segment, EndLSN: p.LSN, EndTimeline: p.Timeline}
	if w.End.Before(w.Start) {
		w.End = w.Start
	}
	w.Seconds = w.End.Sub(w.Start).Seconds()
	return w, dedupGaps(gaps)
}

// reaches says whether a walk that ended at last (on w's last timeline)
// got as far as the start of backup next: by position on the same
// timeline, by the time it was archived across a timeline switch.
func reaches(inv *repo.WALInventory, w repo.WALWalk, last *repo.WALObject, next *repo.Manifest) bool {
	if w.LastTLI == next.Timeline {
		if s, err := archive.ParseWALName(next.StartWAL); err == nil {
			return w.LastSegN >= s.SegNo(inv.SegSize)
		}
	}
	return !last.ModTime.Before(next.StopTime)
}

// authenticateWAL checks the proofs of the WAL this run looks at: what
// was archived since the last run (the first run: from the oldest
// backup's start), so that a name planted in the bucket is neither the
// newest archived segment nor a filled gap. What fails is reported and
// taken for missing. Older WAL was checked by earlier runs; verify checks
// all of it.
func (rep *Report) authenticateWAL(ctx context.Context, cat *repo.Catalog, backups []*repo.Manifest, segSize int64, known bool, stateFile string) error {
	from := map[uint32]uint64{}
	var oldest uint64
	haveOldest := false
	if known {
		st, _ := loadState(stateFile, rep.Store, segSize)
		for tli, n := range st.Checked {
			from[tli] = n + 1
		}
		for _, m := range backups {
			if w, err := archive.ParseWALName(m.StartWAL); err == nil && (!haveOldest || w.SegNo(segSize) < oldest) {
				oldest, haveOldest = w.SegNo(segSize), true
			}
		}
	}
	bad, err := cat.AuthenticateWAL(ctx, func(key string) bool {
		wf, err := archive.ParseWALName(key[strings.LastIndexByte(key, '/')+1:])
		if err != nil || !known {
			return true // no segment size to place it: check everything
		}
		n := wf.SegNo(segSize)
		if f, ok := from[wf.Timeline]; ok {
			return n >= f
		}
		return !haveOldest || n >= oldest
	})
	if err != nil {
		return err
	}
	rep.UnauthenticatedWAL = append(rep.UnauthenticatedWAL, bad...)
	return nil
}

// checkGaps looks for gaps in the WAL stored since the last run (from the
// newest backup's start on a timeline never checked), re-checks the gaps
// found before, and remembers how far it got.
func (rep *Report) checkGaps(inv *repo.WALInventory, backups []*repo.Manifest, stateFile string) error {
	st, note := loadState(stateFile, rep.Store, inv.SegSize)
	if note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	rep.WAL.State = stateFile
	// Where each timeline's check starts when no run checked it: the
	// newest backup's start on it; the oldest WAL retention left.
	from := map[uint32]uint64{}
	oldest := map[uint32]uint64{}
	for _, m := range backups {
		if s, err := archive.ParseWALName(m.StartWAL); err == nil {
			n := s.SegNo(inv.SegSize)
			from[m.Timeline] = max(from[m.Timeline], n)
			if o, ok := oldest[m.Timeline]; !ok || n < o {
				oldest[m.Timeline] = n
			}
		}
	}
	next := &state{Store: rep.Store, SegSize: inv.SegSize, Checked: map[uint32]uint64{}}
	// This run's range on each timeline: from the newest segment seen
	// last time (present then, so what came after it is new) to the
	// newest now.
	type span struct{ lo, hi uint64 }
	ranges := map[uint32]span{}
	tlis := inv.Timelines()
	for _, tli := range tlis {
		newest, ok := inv.Newest(tli)
		if !ok {
			continue
		}
		lo, seen := st.Checked[tli]
		if seen && lo > newest {
			seen = false // the timeline shrank (retention, a reset store): start over
		}
		if !seen {
			start, ok := from[tli]
			if !ok {
				// No backup on this timeline: from its first archived
				// segment (a timeline starts at a switch point).
				start, _ = inv.NextPresent(tli, 0)
				if inv.Has(tli, 0) {
					start = 0
				}
			}
			lo = min(start, newest)
		}
		ranges[tli] = span{lo, newest}
		next.Checked[tli] = newest
	}
	var gaps []repo.WALGap
	// Gaps found before, below this run's range: still missing?
	for _, g := range st.Gaps {
		first, err1 := archive.ParseWALName(g.First)
		last, err2 := archive.ParseWALName(g.Last)
		if err1 != nil || err2 != nil || first.Timeline != g.Timeline || last.Timeline != g.Timeline || first.Kind != archive.KindSegment {
			continue
		}
		lo, hi := first.SegNo(inv.SegSize), last.SegNo(inv.SegSize)
		if o, ok := oldest[g.Timeline]; len(backups) > 0 && (!ok || hi < o) {
			continue // older than every backup on the timeline: retention's to delete, no gap
		}
		if r, ok := ranges[g.Timeline]; ok && r.lo > 0 && hi >= r.lo {
			hi = r.lo - 1
		}
		if hi < lo || hi-lo > maxGapSegments {
			continue
		}
		gaps = append(gaps, inv.GapsIn(g.Timeline, lo, hi)...)
	}
	for _, tli := range tlis {
		r, ok := ranges[tli]
		if !ok {
			continue
		}
		rep.WAL.Checked = append(rep.WAL.Checked, Span{Timeline: tli, First: inv.Name(tli, r.lo), Last: inv.Name(tli, r.hi)})
		gaps = append(gaps, inv.GapsIn(tli, r.lo, r.hi)...)
	}
	gaps = dedupGaps(gaps)
	for _, g := range gaps {
		rep.WAL.Segments += g.Count
	}
	rep.WAL.Gaps = gaps
	next.Gaps = gaps
	if stateFile == "" {
		return nil
	}
	if err := saveState(stateFile, next); err != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the state file %s could not be written (%v): the next run checks the same WAL again", stateFile, err))
	}
	return nil
}

// maxGapSegments bounds a remembered gap: the state file is local, but a
// damaged one must not make status walk billions of segments.
const maxGapSegments = 1 << 24

// dedupGaps sorts gaps and drops repeats (remembered gaps are clipped to
// below this run's range, so they never overlap it).
func dedupGaps(gaps []repo.WALGap) []repo.WALGap {
	type key struct {
		tli         uint32
		first, last string
	}
	seen := map[key]bool{}
	out := []repo.WALGap{}
	for _, g := range gaps {
		k := key{g.Timeline, g.First, g.Last}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Timeline != out[j].Timeline {
			return out[i].Timeline < out[j].Timeline
		}
		return out[i].First < out[j].First
	})
	return out
}
