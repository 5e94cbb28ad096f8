package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/cloud"
)

// RetentionPolicy says which backups delete keeps. Every rule given keeps
// some backups; a backup is deleted only when no rule keeps it. Whatever
// the rules, the newest backup, permanent backups, and the newest backup
// that can restore to the latest archived WAL are kept.
type RetentionPolicy struct {
	// RetainFull keeps the N newest backups (0: rule not given).
	RetainFull int
	// Before keeps the backups that finished at or after it (nil: not given).
	Before *time.Time
	// RetainWindow keeps every backup needed to restore to any moment of
	// the last RetainWindow: those that finished within it, and the newest
	// one that finished before it began.
	RetainWindow time.Duration
	// MinKeep keeps at least the N newest, whatever the other rules say.
	MinKeep int
	// OrphanAge: a backup folder without a manifest (an interrupted or
	// running backup) is deleted only once its newest object is this old
	// and older than the oldest kept backup.
	OrphanAge time.Duration
	// Now is the time the rules are evaluated at (zero: time.Now()).
	Now time.Time
}

// BackupDecision is what delete does with one backup, and why.
type BackupDecision struct {
	Name       string    `json:"name"`
	StopTime   time.Time `json:"stop_time"`
	Timeline   uint32    `json:"timeline"`
	StartWAL   string    `json:"start_wal"`
	StopWAL    string    `json:"stop_wal"`
	Permanent  bool      `json:"permanent"`
	StoredSize int64     `json:"stored_size"`
	Delete     bool      `json:"delete"`
	Reasons    []string  `json:"reasons"`
}

// FolderDecision is what delete does with a backup folder that has no
// manifest (not a backup).
type FolderDecision struct {
	Name    string    `json:"name"`
	Objects int       `json:"objects"`
	Size    int64     `json:"size"`
	Newest  time.Time `json:"newest"`
	Delete  bool      `json:"delete"`
	Reason  string    `json:"reason"`
}

// WALRun is a run of consecutive WAL objects of one timeline that share a
// decision and its reason.
type WALRun struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"`
	Last     string `json:"last"`
	Objects  int    `json:"objects"`
	Bytes    int64  `json:"bytes"`
	Delete   bool   `json:"delete"`
	Reason   string `json:"reason"`
	keys     []string
}

// RetentionTotals counts one side of a plan.
type RetentionTotals struct {
	Backups    int   `json:"backups"`
	Folders    int   `json:"incomplete_folders"`
	WALObjects int   `json:"wal_objects"`
	Bytes      int64 `json:"bytes"`
}

// RetentionPlan is exactly what delete removes and keeps, and why.
type RetentionPlan struct {
	Store      string           `json:"store"`
	Backups    []BackupDecision `json:"backups"`
	Incomplete []FolderDecision `json:"incomplete_folders"`
	WAL        []WALRun         `json:"wal"`
	History    int              `json:"history_files_kept"`
	Notes      []string         `json:"notes"`
	Delete     RetentionTotals  `json:"delete"`
	Keep       RetentionTotals  `json:"keep"`
	// kept backups whose folder holds a stale tombstone.
	staleTombstones []string
}

// Reasons (also in the plan's output).
const (
	reasonPermanent = "permanent"
	reasonNewest    = "the newest backup (delete never removes it)"
)

// sortForRetention orders backups oldest first by the time they finished,
// then by stop LSN and name; never by timeline number.
func sortForRetention(list []*Manifest) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if !a.StopTime.Equal(b.StopTime) {
			return a.StopTime.Before(b.StopTime)
		}
		if a.Stop() != b.Stop() {
			return a.Stop() < b.Stop()
		}
		return a.Name < b.Name
	})
}

// PlanRetention decides, without changing anything, which backups the
// policy keeps and which objects go: the backups that fall out, backup
// folders without a manifest that are safely old, and WAL that no kept
// backup needs and that is older than the kept backups.
//
// A kept backup needs the WAL of its timeline from its start segment on,
// and of every timeline that branches off it later (followed through the
// history files), from where that timeline begins. A permanent backup that
// no other rule keeps needs only its own WAL, start to stop. WAL that no
// kept backup needs is deleted when it is older than a kept backup on that
// backup's own line of timelines, or, off every kept backup's line (an
// abandoned timeline), when it was archived before the oldest kept backup
// started. History files are always kept.
func PlanRetention(ctx context.Context, cfg *Config, pol RetentionPolicy) (*RetentionPlan, error) {
	now := pol.Now
	if now.IsZero() {
		now = time.Now()
	}
	plan := &RetentionPlan{Store: cfg.Store.String(), Backups: []BackupDecision{}, Incomplete: []FolderDecision{}, WAL: []WALRun{}, Notes: []string{}}
	folders, err := scanBackupFolders(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	var backups []*Manifest
	var orphans []*backupFolder
	tombstoned := map[string]bool{}
	for _, f := range folders {
		switch {
		case f.Err != nil:
			return nil, fmt.Errorf("%w: %v: delete needs every backup's manifest to know which WAL it needs; run walvault verify, and if that backup is lost remove %s%s/ by hand",
				ErrIntegrity, strings.TrimPrefix(f.Err.Error(), ErrIntegrity.Error()+": "), BackupPrefix, f.Name)
		case f.Manifest == nil:
			orphans = append(orphans, f)
		default:
			backups = append(backups, f.Manifest)
			tombstoned[f.Name] = f.has(tombstoneFile)
		}
	}
	if len(backups) == 0 {
		plan.Notes = append(plan.Notes, "the store has no complete backup: nothing is deleted (WAL is kept until a backup exists)")
		for _, f := range orphans {
			plan.Incomplete = append(plan.Incomplete, FolderDecision{Name: f.Name, Objects: len(f.Objects), Size: f.Size, Newest: f.Newest,
				Reason: "no manifest; kept while the store has no complete backup"})
		}
		plan.total()
		return plan, nil
	}
	sortForRetention(backups)
	if err := sameCluster(ctx, cfg.Store, backups); err != nil {
		return nil, err
	}
	segSize, err := segmentSize(backups)
	if err != nil {
		return nil, err
	}
	inv, err := scanWAL(ctx, cfg, segSize, nil)
	if err != nil {
		return nil, err
	}

	// A backup that cannot be restored (a part missing or cut short, or
	// its own WAL gone) never counts as one of the backups a rule keeps:
	// it must not push a good one out. It is kept, though, when it is
	// newer than the oldest good one kept, and never decides anything.
	folderOf := map[string]*backupFolder{}
	for _, f := range folders {
		folderOf[f.Name] = f
	}
	broken := map[string]string{}
	var good []*Manifest
	for _, m := range backups {
		if why := unrestorable(m, folderOf[m.Name], inv); why != "" {
			broken[m.Name] = why
			plan.Notes = append(plan.Notes, fmt.Sprintf("backup %s cannot be restored: %s; it is not counted by the retention rules (run walvault verify)", m.Name, why))
		} else {
			good = append(good, m)
		}
	}
	if len(good) == 0 {
		return nil, fmt.Errorf("%w: no backup in %s can be restored (e.g. %s: %s): delete keeps everything; run walvault verify, and take a new backup",
			ErrVerifyFailed, cfg.Store, backups[0].Name, broken[backups[0].Name])
	}

	// Which backups stay, and why.
	n := len(good)
	index := map[string]int{}
	for i, m := range backups {
		index[m.Name] = i
	}
	reasons := map[string][]string{}
	full := map[string]bool{} // kept by a rule other than "permanent"
	keep := func(m *Manifest, why string) {
		reasons[m.Name] = append(reasons[m.Name], why)
		if why != reasonPermanent {
			full[m.Name] = true
		}
	}
	// keepBrokenAfter keeps the unrestorable backups newer than m.
	keepBrokenAfter := func(m *Manifest, rule string) {
		for _, b := range backups[index[m.Name]+1:] {
			if why := broken[b.Name]; why != "" && !full[b.Name] {
				keep(b, "cannot be restored ("+why+"): kept, but not counted by "+rule)
			}
		}
	}
	if pol.RetainFull > 0 {
		kept := good[max(0, n-pol.RetainFull):]
		for _, m := range kept {
			keep(m, newestReason(pol.RetainFull, "--retain-full"))
		}
		keepBrokenAfter(kept[0], "--retain-full")
	}
	if pol.Before != nil {
		for _, m := range backups {
			if !m.StopTime.Before(*pol.Before) {
				keep(m, "finished after --before "+fmtTime(*pol.Before))
			}
		}
	}
	if pol.RetainWindow > 0 {
		cutoff := now.Add(-pol.RetainWindow)
		var base *Manifest
		for _, m := range backups {
			if !m.StopTime.Before(cutoff) {
				keep(m, "finished within --retain-window "+FormatWindow(pol.RetainWindow))
			} else if broken[m.Name] == "" {
				base = m
			}
		}
		if base != nil {
			keep(base, "needed to restore to the start of --retain-window "+FormatWindow(pol.RetainWindow)+" ("+fmtTime(cutoff)+")")
			keepBrokenAfter(base, "--retain-window")
		}
	}
	if pol.MinKeep > 0 {
		kept := good[max(0, n-pol.MinKeep):]
		for _, m := range kept {
			if !full[m.Name] {
				keep(m, newestReason(pol.MinKeep, "--min-keep"))
			}
		}
		keepBrokenAfter(kept[0], "--min-keep")
	}
	if !full[good[n-1].Name] {
		keep(good[n-1], reasonNewest)
	}
	if b := backups[len(backups)-1]; !full[b.Name] {
		keep(b, "the newest backup (delete never removes it), though it cannot be restored ("+broken[b.Name]+")")
	}
	keepAll := map[uint32]string{} // timelines whose WAL is not touched, and why
	if head := inv.head(); head != nil {
		var reach *Manifest
		for _, m := range good {
			if _, ok := inv.pathTo(m, head.File.Timeline, m.Stop()); ok {
				reach = m
			}
		}
		switch {
		case reach == nil:
			keepAll[head.File.Timeline] = fmt.Sprintf("the newest archived WAL (%s) is on timeline %d, which no backup can restore to: all of it is kept; take a backup", head.File.Name, head.File.Timeline)
			plan.Notes = append(plan.Notes, keepAll[head.File.Timeline])
		case !full[reach.Name]:
			keep(reach, fmt.Sprintf("the newest backup that can restore to the latest archived WAL (%s, timeline %d)", head.File.Name, head.File.Timeline))
		}
	}
	for _, m := range backups {
		if m.Permanent {
			keep(m, reasonPermanent)
		}
	}

	// What the kept backups need, and what lies behind them.
	var oldestFull *Manifest
	needFrom := map[uint32]uint64{}
	needBy := map[uint32]string{}
	pastBelow := map[uint32]uint64{} // segments below: older than a kept backup on the timeline
	pastBy := map[uint32]string{}
	ancestorTo := map[uint32]uint64{} // segments up to: an ancestor's WAL before a kept backup's timeline branched off
	ancestorBy := map[uint32]string{}
	setNeed := func(tli uint32, seg uint64, by string) {
		if v, ok := needFrom[tli]; !ok || seg < v {
			needFrom[tli], needBy[tli] = seg, by
		}
	}
	type island struct {
		tli         uint32
		first, last uint64
		name        string
	}
	var islands []island
	for _, m := range backups {
		start, _ := ParseWALName(m.StartWAL)
		stop, _ := ParseWALName(m.StopWAL)
		ks := start.SegNo(segSize)
		if !full[m.Name] {
			if m.Permanent {
				islands = append(islands, island{m.Timeline, ks, stop.SegNo(segSize), m.Name})
			}
			continue
		}
		if oldestFull == nil || m.StartTime.Before(oldestFull.StartTime) {
			oldestFull = m
		}
		setNeed(m.Timeline, ks, m.Name)
		for tli, h := range inv.history {
			for j, e := range h {
				if e.TLI != m.Timeline || e.End < m.Start() {
					continue
				}
				for i := j + 1; i < len(h); i++ {
					setNeed(h[i].TLI, inv.seg(h[i-1].End), m.Name)
				}
				setNeed(tli, inv.seg(h[len(h)-1].End), m.Name)
				break
			}
		}
		if ks > pastBelow[m.Timeline] {
			pastBelow[m.Timeline], pastBy[m.Timeline] = ks, m.Name
		}
		for _, e := range inv.history[m.Timeline] {
			// Backups come oldest first: the reason names the oldest.
			if cur, ok := ancestorTo[e.TLI]; !ok || inv.seg(e.End) > cur {
				ancestorTo[e.TLI], ancestorBy[e.TLI] = inv.seg(e.End), fmt.Sprintf("%s (timeline %d)", m.Name, m.Timeline)
			}
		}
	}
	for _, tli := range inv.timelines() {
		if _, ok := inv.history[tli]; tli > 1 && !ok {
			why := fmt.Sprintf("timeline %d has no readable history file %s: delete cannot tell which backups need its WAL, so none of it is deleted", tli, HistoryName(tli))
			if e := inv.histErr[tli]; e != nil {
				why = fmt.Sprintf("timeline %d's history file cannot be read (%v): none of its WAL is deleted", tli, e)
			}
			keepAll[tli] = why
			plan.Notes = append(plan.Notes, why)
		}
	}

	decide := func(o *walObject) (bool, string) {
		t, s := o.File.Timeline, o.SegNo
		if why, ok := keepAll[t]; ok {
			return false, why
		}
		if from, ok := needFrom[t]; ok && s >= from {
			return false, "needed by kept backup " + needBy[t] + " (and any newer)"
		}
		for _, is := range islands {
			if t == is.tli && s >= is.first && s <= is.last {
				return false, "makes permanent backup " + is.name + " consistent"
			}
		}
		if s < pastBelow[t] {
			return true, "older than the start of kept backup " + pastBy[t]
		}
		if to, ok := ancestorTo[t]; ok && s <= to {
			return true, fmt.Sprintf("timeline %d up to where a later timeline branched off: older than kept backup %s", t, ancestorBy[t])
		}
		switch {
		case o.ModTime.IsZero():
			return false, "not needed by any kept backup, but the store does not say when it was archived"
		case o.ModTime.Before(oldestFull.StartTime):
			return true, "on no kept backup's timeline path (e.g. a timeline a restore abandoned), archived before the oldest kept backup started"
		}
		return false, "not needed by any kept backup, but archived after the oldest kept backup started: it may belong to a timeline still in use"
	}
	var run *WALRun
	for _, o := range inv.objects {
		del, why := decide(o)
		if run == nil || run.Timeline != o.File.Timeline || run.Delete != del || run.Reason != why {
			plan.WAL = append(plan.WAL, WALRun{Timeline: o.File.Timeline, First: o.File.Name, Delete: del, Reason: why})
			run = &plan.WAL[len(plan.WAL)-1]
		}
		run.Last = o.File.Name
		run.Objects++
		run.Bytes += o.Size
		if del {
			run.keys = append(run.keys, o.Key)
		}
	}
	plan.History = len(inv.histKey)
	if len(inv.junk) > 0 {
		plan.Notes = append(plan.Notes, fmt.Sprintf("%d object(s) under %s are not WAL file names (e.g. %s): left alone", len(inv.junk), WALPrefix, inv.junk[0].Key))
	}

	for _, m := range backups {
		d := BackupDecision{Name: m.Name, StopTime: m.StopTime, Timeline: m.Timeline, StartWAL: m.StartWAL, StopWAL: m.StopWAL,
			Permanent: m.Permanent, StoredSize: m.StoredSize, Reasons: reasons[m.Name]}
		if len(d.Reasons) == 0 {
			d.Delete = true
			d.Reasons = []string{"no rule keeps it"}
		} else if tombstoned[m.Name] {
			plan.staleTombstones = append(plan.staleTombstones, m.Name)
		}
		plan.Backups = append(plan.Backups, d)
	}
	for _, f := range orphans {
		d := FolderDecision{Name: f.Name, Objects: len(f.Objects), Size: f.Size, Newest: f.Newest}
		age := now.Sub(f.Newest).Round(time.Second)
		switch {
		case f.has(tombstoneFile):
			d.Delete, d.Reason = true, "left by an interrupted delete ("+tombstoneFile+")"
		case f.Newest.IsZero():
			d.Reason = "no manifest; the store does not say when it was written, so it is kept"
		case age >= pol.OrphanAge && f.Newest.Before(oldestFull.StartTime):
			d.Delete, d.Reason = true, fmt.Sprintf("no manifest: an interrupted or failed backup, last written %s ago, before the oldest kept backup", age)
		default:
			d.Reason = fmt.Sprintf("no manifest, last written %s ago: may be a backup in progress; deleted once it is older than %s (--orphan-age) and than the oldest kept backup", age, pol.OrphanAge)
		}
		plan.Incomplete = append(plan.Incomplete, d)
	}
	plan.total()
	return plan, nil
}

func newestReason(n int, flag string) string {
	if n == 1 {
		return fmt.Sprintf("the newest (%s 1)", flag)
	}
	return fmt.Sprintf("one of the %d newest (%s %d)", n, flag, n)
}

// unrestorable says why backup m cannot be restored, from what the store
// lists: a part missing or of another size, or its own WAL (start to stop)
// not archived. "" when nothing is wrong that a listing can see.
func unrestorable(m *Manifest, f *backupFolder, inv *walInventory) string {
	for _, p := range m.Parts {
		o, ok := f.Objects[p.Name]
		switch {
		case !ok:
			return p.Name + " is missing"
		case o.Size != p.StoredSize:
			return fmt.Sprintf("%s is %d bytes, the manifest says %d", p.Name, o.Size, p.StoredSize)
		}
	}
	path, _ := inv.pathTo(m, m.Timeline, m.Stop())
	w := inv.walk(path)
	stop, err := ParseWALName(m.StopWAL)
	if err != nil || w.Last == nil || w.LastSegN < stop.SegNo(inv.segSize) {
		return "its WAL segment " + w.Missing + " is not archived"
	}
	return ""
}

// head is the most recently archived segment, the archive's present.
func (inv *walInventory) head() *walObject {
	var h *walObject
	for _, o := range inv.objects {
		if o.File.Kind == KindSegment && !o.ModTime.IsZero() && (h == nil || o.ModTime.After(h.ModTime)) {
			h = o
		}
	}
	return h
}

func (p *RetentionPlan) total() {
	p.Delete, p.Keep = RetentionTotals{}, RetentionTotals{}
	side := func(del bool) *RetentionTotals {
		if del {
			return &p.Delete
		}
		return &p.Keep
	}
	for _, b := range p.Backups {
		t := side(b.Delete)
		t.Backups++
		t.Bytes += b.StoredSize
	}
	for _, f := range p.Incomplete {
		t := side(f.Delete)
		t.Folders++
		t.Bytes += f.Size
	}
	for _, r := range p.WAL {
		t := side(r.Delete)
		t.WALObjects += r.Objects
		t.Bytes += r.Bytes
	}
}

// sameCluster refuses a store whose backups come from more than one
// cluster (or another than cluster.json names): WAL names of two clusters
// collide, and no rule could tell whose WAL is whose.
func sameCluster(ctx context.Context, st cloud.Store, backups []*Manifest) error {
	ids := map[string]string{}
	for _, m := range backups {
		ids[m.SystemIdentifier] = m.Name
	}
	ci, ok, err := readCluster(ctx, st)
	if err != nil {
		return err
	}
	if ok {
		for id, name := range ids {
			if id != ci.SystemIdentifier {
				return fmt.Errorf("%w: backup %s is of the cluster with system identifier %s, but %s in %s names %s: this prefix holds more than one cluster's data, and delete will not guess which WAL is whose; move one cluster to its own prefix",
					ErrOtherCluster, name, id, ClusterKey, st, ci.SystemIdentifier)
			}
		}
	}
	if len(ids) > 1 {
		var all []string
		for id, name := range ids {
			all = append(all, id+" ("+name+")")
		}
		sort.Strings(all)
		return fmt.Errorf("%w: %s holds backups of several clusters (system identifiers %s): delete will not guess which WAL is whose; give each cluster its own prefix",
			ErrOtherCluster, st, strings.Join(all, ", "))
	}
	return nil
}

// RetentionResult is what ApplyRetention removed.
type RetentionResult struct {
	Backups    int      `json:"backups"`
	Folders    int      `json:"incomplete_folders"`
	WALObjects int      `json:"wal_objects"`
	Objects    int      `json:"objects"`
	Skipped    []string `json:"skipped,omitempty"`
}

// deleteConcurrency is how many objects are deleted at once.
const deleteConcurrency = 8

// ApplyRetention carries out a plan. Each backup goes manifest first (a
// tombstone is written before, so that an interrupted delete's leftovers
// are recognised and finished by the next run), then its other objects;
// then the incomplete folders; then the WAL. A backup marked permanent
// since the plan was made is skipped.
func ApplyRetention(ctx context.Context, cfg *Config, plan *RetentionPlan) (*RetentionResult, error) {
	res := &RetentionResult{}
	var objects atomic.Int64
	defer func() { res.Objects = int(objects.Load()) }()
	for _, b := range plan.Backups {
		if !b.Delete {
			continue
		}
		m, err := ReadManifest(ctx, cfg, b.Name, true)
		switch {
		case err == nil && m.Permanent:
			slog.Warn("skipping a backup marked permanent since the plan was made", "backup", b.Name)
			res.Skipped = append(res.Skipped, b.Name)
			continue
		case err != nil && !errors.Is(err, ErrNotInArchive):
			return res, err
		}
		n, err := deleteBackup(ctx, cfg.Store, b.Name)
		objects.Add(int64(n))
		if err != nil {
			return res, err
		}
		res.Backups++
		slog.Info("deleted backup", "backup", b.Name, "objects", n)
	}
	for _, f := range plan.Incomplete {
		if !f.Delete {
			continue
		}
		if _, err := cfg.Store.Stat(ctx, BackupKey(f.Name, ManifestFile)); err == nil {
			slog.Warn("skipping a folder that has become a backup since the plan was made", "backup", f.Name)
			res.Skipped = append(res.Skipped, f.Name)
			continue
		} else if !errors.Is(err, cloud.ErrNotFound) {
			return res, asStoreErr(fmt.Errorf("%s: %w", cfg.Store, err))
		}
		n, err := deleteFolder(ctx, cfg.Store, f.Name)
		objects.Add(int64(n))
		if err != nil {
			return res, err
		}
		res.Folders++
		slog.Info("deleted an incomplete backup folder", "folder", BackupPrefix+f.Name+"/", "objects", n)
	}
	var keys []string
	for _, r := range plan.WAL {
		keys = append(keys, r.keys...)
	}
	n, err := deleteKeys(ctx, cfg.Store, keys)
	objects.Add(int64(n))
	res.WALObjects = n
	if err != nil {
		return res, err
	}
	if n > 0 {
		slog.Info("deleted WAL", "objects", n)
	}
	for _, name := range plan.staleTombstones {
		if err := cfg.Store.Delete(ctx, BackupKey(name, tombstoneFile)); err != nil {
			return res, asStoreErr(fmt.Errorf("%s: deleting %s: %w", cfg.Store, BackupKey(name, tombstoneFile), err))
		}
	}
	return res, nil
}

// deleteBackup removes a backup so that every prefix of the sequence
// leaves something a re-run finishes: tombstone, manifest (from here on it
// is not a backup), the other objects, the tombstone.
func deleteBackup(ctx context.Context, st cloud.Store, name string) (int, error) {
	body, _ := json.Marshal(map[string]string{"deleted_by": "walvault delete", "at": time.Now().UTC().Format(time.RFC3339)})
	tomb := BackupKey(name, tombstoneFile)
	if err := st.Put(ctx, tomb, bytes.NewReader(body), cloud.PutOptions{SizeHint: int64(len(body))}); err != nil {
		return 0, asStoreErr(fmt.Errorf("%s: writing %s: %w", st, tomb, err))
	}
	key := BackupKey(name, ManifestFile)
	if err := st.Delete(ctx, key); err != nil {
		return 0, asStoreErr(fmt.Errorf("%s: deleting %s: %w", st, key, err))
	}
	n, err := deleteFolder(ctx, st, name)
	return n + 1, err
}

// deleteFolder removes everything under backups/<name>/, the tombstone
// last.
func deleteFolder(ctx context.Context, st cloud.Store, name string) (int, error) {
	prefix := BackupPrefix + name + "/"
	var keys []string
	hasTomb := false
	err := st.List(ctx, prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		if o.Key == prefix+tombstoneFile {
			hasTomb = true
		} else {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return 0, asStoreErr(fmt.Errorf("%s: listing %s: %w", st, prefix, err))
	}
	n, err := deleteKeys(ctx, st, keys)
	if err != nil || !hasTomb {
		return n, err
	}
	if err := st.Delete(ctx, prefix+tombstoneFile); err != nil {
		return n, asStoreErr(fmt.Errorf("%s: deleting %s: %w", st, prefix+tombstoneFile, err))
	}
	return n + 1, nil
}

func deleteKeys(ctx context.Context, st cloud.Store, keys []string) (int, error) {
	var n atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleteConcurrency)
	for _, k := range keys {
		g.Go(func() error {
			if err := st.Delete(gctx, k); err != nil {
				return asStoreErr(fmt.Errorf("%s: deleting %s: %w", st, k, err))
			}
			n.Add(1)
			return nil
		})
	}
	err := g.Wait()
	return int(n.Load()), err
}

// ParseWindow reads a --retain-window: Go durations (36h, 90m) plus days
// and weeks (7d, 2w, 1d12h).
func ParseWindow(s string) (time.Duration, error) {
	bad := fmt.Errorf("%w: %q is not a duration: use e.g. 7d, 2w, 36h or 1d12h", ErrBadInput, s)
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, bad
	}
	var total time.Duration
	for t != "" {
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		j := i
		for j < len(t) && !(t[j] >= '0' && t[j] <= '9' || t[j] == '.') {
			j++
		}
		if i == 0 || j == i {
			return 0, bad
		}
		num, unit := t[:i], t[i:j]
		var d time.Duration
		switch unit {
		case "d", "w":
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, bad
			}
			day := 24 * time.Hour
			if unit == "w" {
				day *= 7
			}
			d = time.Duration(v * float64(day))
		default:
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, bad
			}
		}
		total += d
		t = t[j:]
	}
	if total <= 0 {
		return 0, bad
	}
	return total, nil
}

// FormatWindow prints a duration the way --retain-window reads it.
func FormatWindow(d time.Duration) string {
	day := 24 * time.Hour
	if d < day {
		return trimZeroUnits(d.String())
	}
	if d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return fmt.Sprintf("%dd%s", d/day, trimZeroUnits((d % day).String()))
}

// trimZeroUnits turns 12h0m0s into 12h and 30m0s into 30m.
func trimZeroUnits(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
