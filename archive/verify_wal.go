package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// This file reads the archived WAL as a whole: one listing, the timeline
// history files, and the paths recovery follows from a backup to a
// timeline. verify, delete (retention) and the restore pre-check share it.

// walObject is one archived WAL object other than a history file.
type walObject struct {
	Key     string
	File    WALFile
	SegNo   uint64
	Size    int64
	ModTime time.Time
}

// walInventory is one listing of wal/.
type walInventory struct {
	segSize int64
	// objects: segments, .partial and .backup files, by timeline, segment
	// number and name.
	objects []*walObject
	// segs: the full segments present, by timeline and number; sorted:
	// their numbers in order.
	segs   map[uint32]map[uint64]*walObject
	sorted map[uint32][]uint64
	// history: parsed history files by timeline; histKey: their keys;
	// histErr: history files that could not be read.
	history map[uint32][]historyEntry
	histKey map[uint32]string
	histErr map[uint32]error
	// junk: keys under wal/ that are not WAL file names, left alone.
	junk []cloud.ObjectInfo
}

// scanWAL lists wal/ (only the directories dirOK accepts, when it is not
// nil: dirOK gets the timeline and log of wal/<tli><log>/) and reads every
// history file. A history file that cannot be read is recorded in histErr;
// a missing identity for an encrypted one is returned as an error.
func scanWAL(ctx context.Context, cfg *Config, segSize int64, dirOK func(tli, log uint32) bool) (*walInventory, error) {
	st := cfg.Store
	var dirs []string
	err := st.List(ctx, WALPrefix, cloud.ListOptions{Delimiter: "/"}, func(o cloud.ObjectInfo) error {
		if !o.IsPrefix {
			return nil
		}
		name := strings.TrimSuffix(o.Key[len(WALPrefix):], "/")
		if o.Key == HistoryPrefix {
			dirs = append(dirs, o.Key)
			return nil
		}
		if len(name) == 16 && dirOK != nil {
			tli, ok1 := parseHex8(name[:8])
			log, ok2 := parseHex8(name[8:])
			if ok1 && ok2 && !dirOK(tli, log) {
				return nil
			}
		}
		dirs = append(dirs, o.Key)
		return nil
	})
	if err != nil {
		return nil, asStoreErr(fmt.Errorf("%s: listing %s: %w", st, WALPrefix, err))
	}
	inv := &walInventory{segSize: segSize, segs: map[uint32]map[uint64]*walObject{}, sorted: map[uint32][]uint64{},
		history: map[uint32][]historyEntry{}, histKey: map[uint32]string{}, histErr: map[uint32]error{}}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, d := range dirs {
		g.Go(func() error {
			err := st.List(gctx, d, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
				mu.Lock()
				defer mu.Unlock()
				inv.add(o)
				return nil
			})
			if err != nil {
				return asStoreErr(fmt.Errorf("%s: listing %s: %w", st, d, err))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(inv.objects, func(i, j int) bool {
		a, b := inv.objects[i], inv.objects[j]
		if a.File.Timeline != b.File.Timeline {
			return a.File.Timeline < b.File.Timeline
		}
		if a.SegNo != b.SegNo {
			return a.SegNo < b.SegNo
		}
		return a.File.Name < b.File.Name
	})
	for tli, m := range inv.segs {
		nums := make([]uint64, 0, len(m))
		for n := range m {
			nums = append(nums, n)
		}
		sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
		inv.sorted[tli] = nums
	}
	for tli := range inv.histKey {
		h, err := readHistory(ctx, cfg, tli)
		switch {
		case err == nil:
			inv.history[tli] = h
		case isKeyErr(err):
			return nil, fmt.Errorf("%w (the timeline history files are encrypted: give --identity-file)", err)
		case errors.Is(err, ErrStore), isContextErr(err):
			return nil, err
		default:
			inv.histErr[tli] = err
		}
	}
	return inv, nil
}

// add files one listed object.
func (inv *walInventory) add(o cloud.ObjectInfo) {
	rest := o.Key[len(WALPrefix):]
	dir, name, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(name, "/") {
		inv.junk = append(inv.junk, o)
		return
	}
	wf, err := ParseWALName(name)
	if err != nil {
		inv.junk = append(inv.junk, o)
		return
	}
	if wf.Kind == KindHistory {
		if dir+"/" != HistoryPrefix[len(WALPrefix):] || wf.Timeline <= 1 {
			inv.junk = append(inv.junk, o)
			return
		}
		inv.histKey[wf.Timeline] = o.Key
		return
	}
	if dir != name[:16] || uint64(wf.Seg) >= SegmentsPerLog(inv.segSize) {
		inv.junk = append(inv.junk, o)
		return
	}
	w := &walObject{Key: o.Key, File: wf, SegNo: wf.SegNo(inv.segSize), Size: o.Size, ModTime: o.ModTime}
	inv.objects = append(inv.objects, w)
	if wf.Kind == KindSegment {
		if inv.segs[wf.Timeline] == nil {
			inv.segs[wf.Timeline] = map[uint64]*walObject{}
		}
		inv.segs[wf.Timeline][w.SegNo] = w
	}
}

func (inv *walInventory) has(tli uint32, seg uint64) bool { return inv.segs[tli][seg] != nil }

// nextPresent is the smallest segment number of tli above seg that is
// archived.
func (inv *walInventory) nextPresent(tli uint32, seg uint64) (uint64, bool) {
	nums := inv.sorted[tli]
	i := sort.Search(len(nums), func(i int) bool { return nums[i] > seg })
	if i == len(nums) {
		return 0, false
	}
	return nums[i], true
}

// newest is the highest archived segment number of tli.
func (inv *walInventory) newest(tli uint32) (uint64, bool) {
	nums := inv.sorted[tli]
	if len(nums) == 0 {
		return 0, false
	}
	return nums[len(nums)-1], true
}

// timelines lists every timeline the archive knows, from segments and
// history files, in order.
func (inv *walInventory) timelines() []uint32 {
	seen := map[uint32]bool{}
	for _, o := range inv.objects {
		seen[o.File.Timeline] = true
	}
	for t := range inv.histKey {
		seen[t] = true
	}
	out := make([]uint32, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (inv *walInventory) seg(lsn LSN) uint64 { return uint64(lsn) / uint64(inv.segSize) } // #nosec G115 -- sizes are positive

func (inv *walInventory) name(tli uint32, seg uint64) string {
	return SegmentName(tli, seg, inv.segSize)
}

// segRange is part of a recovery path: segments [First, End) of timeline
// TLI; Open ranges have no end (the path's last timeline).
type segRange struct {
	TLI   uint32
	First uint64
	End   uint64
	Open  bool
}

// pathTo returns the segments recovery from backup m reads to follow
// timeline target to its end, or ok=false when target's history does not
// pass through m's timeline after limit (m's stop LSN for a restore: the
// backup must be consistent before the branch; its start for retention,
// which keeps more). The segment holding a switch point is read from the
// new timeline, as PostgreSQL does.
func (inv *walInventory) pathTo(m *Manifest, target uint32, limit LSN) ([]segRange, bool) {
	start, err := ParseWALName(m.StartWAL)
	if err != nil {
		return nil, false
	}
	first := start.SegNo(inv.segSize)
	if target == m.Timeline {
		return []segRange{{TLI: target, First: first, Open: true}}, true
	}
	h, ok := inv.history[target]
	if !ok {
		return nil, false
	}
	for j, e := range h {
		if e.TLI != m.Timeline {
			continue
		}
		if e.End < limit {
			return nil, false
		}
		path := []segRange{{TLI: e.TLI, First: first, End: max(first, inv.seg(e.End))}}
		for i := j + 1; i < len(h); i++ {
			b := inv.seg(h[i-1].End)
			path = append(path, segRange{TLI: h[i].TLI, First: b, End: max(b, inv.seg(h[i].End))})
		}
		return append(path, segRange{TLI: target, First: inv.seg(h[len(h)-1].End), Open: true}), true
	}
	return nil, false
}

// reachable lists the timelines recovery from m can follow (m's own and
// the ones branching off it after limit), in order.
func (inv *walInventory) reachable(m *Manifest, limit LSN) []uint32 {
	out := []uint32{m.Timeline}
	for _, t := range inv.timelines() {
		if _, ok := inv.pathTo(m, t, limit); ok && t != m.Timeline {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// WALGap is a run of missing segments.
type WALGap struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"`
	Last     string `json:"last"`
	Count    uint64 `json:"count"`
}

func (g WALGap) String() string {
	if g.Count == 1 {
		return fmt.Sprintf("%s (1 segment, timeline %d)", g.First, g.Timeline)
	}
	return fmt.Sprintf("%s - %s (%d segments, timeline %d)", g.First, g.Last, g.Count, g.Timeline)
}

// WALPoint is a place in the archive: the last segment recovery can read
// and the LSN where it ends.
type WALPoint struct {
	Timeline uint32 `json:"timeline"`
	Segment  string `json:"segment"`
	LSN      string `json:"lsn"` // the end of Segment: recovery can replay up to here
}

// walWalk is the outcome of reading a path from its start.
type walWalk struct {
	Last     *walObject // last segment read without a gap; nil: not even the first
	Gap      *WALGap    // the first gap, when more WAL follows it on the path
	Missing  string     // the first segment not found (the gap's first, or the end)
	Newest   string     // the newest segment archived on the path's last timeline
	LastTLI  uint32
	LastSegN uint64
}

// walk reads path from its start as recovery would and stops at the first
// missing segment. A segment missing inside a closed range (before a
// timeline switch the history records), or one followed by more WAL on an
// open range, is a gap.
func (inv *walInventory) walk(path []segRange) walWalk {
	var w walWalk
	if len(path) > 0 {
		lt := path[len(path)-1].TLI
		if n, ok := inv.newest(lt); ok {
			w.Newest = inv.name(lt, n)
		}
	}
	for _, r := range path {
		for s := r.First; r.Open || s < r.End; s++ {
			if o := inv.segs[r.TLI][s]; o != nil {
				w.Last, w.LastTLI, w.LastSegN = o, r.TLI, s
				continue
			}
			w.Missing = inv.name(r.TLI, s)
			next, ok := inv.nextPresent(r.TLI, s)
			switch {
			case !r.Open && (!ok || next > r.End):
				// Nothing of this timeline's range follows: the rest of it
				// up to the switch is missing.
				w.Gap = inv.gap(r.TLI, s, r.End)
			case ok:
				w.Gap = inv.gap(r.TLI, s, next)
			}
			return w
		}
	}
	return w
}

// gap describes the missing segments [from, to) of tli.
func (inv *walInventory) gap(tli uint32, from, to uint64) *WALGap {
	if to <= from {
		to = from + 1
	}
	return &WALGap{Timeline: tli, First: inv.name(tli, from), Last: inv.name(tli, to-1), Count: to - from}
}

// point turns the end of a walk into a WALPoint.
func (inv *walInventory) point(w walWalk) *WALPoint {
	if w.Last == nil {
		return nil
	}
	return &WALPoint{Timeline: w.LastTLI, Segment: w.Last.File.Name, LSN: LSN((w.LastSegN + 1) * uint64(inv.segSize)).String()} // #nosec G115 -- sizes are positive
}

// gapsIn lists the missing runs of tli's segments in [lo, hi].
func (inv *walInventory) gapsIn(tli uint32, lo, hi uint64) []WALGap {
	var out []WALGap
	s := lo
	for s <= hi {
		if inv.has(tli, s) {
			next, ok := inv.nextMissing(tli, s)
			if !ok {
				break
			}
			s = next
			continue
		}
		end := hi + 1
		if n, ok := inv.nextPresent(tli, s); ok && n <= hi {
			end = n
		}
		out = append(out, *inv.gap(tli, s, end))
		s = end
	}
	return out
}

// nextMissing is the first segment number after seg (present) that is not
// archived on tli.
func (inv *walInventory) nextMissing(tli uint32, seg uint64) (uint64, bool) {
	nums := inv.sorted[tli]
	i := sort.Search(len(nums), func(i int) bool { return nums[i] >= seg })
	for ; i < len(nums); i++ {
		if nums[i] != seg {
			return seg, true
		}
		if seg == ^uint64(0) {
			return 0, false
		}
		seg++
	}
	return seg, true
}

// segmentSize returns the WAL segment size the backups agree on.
func segmentSize(backups []*Manifest) (int64, error) {
	var size int64
	for _, m := range backups {
		if size != 0 && m.SegmentSize != size {
			return 0, fmt.Errorf("%w: backups disagree on the WAL segment size (%d and %d bytes): the store holds WAL of more than one cluster", ErrOtherCluster, size, m.SegmentSize)
		}
		size = m.SegmentSize
	}
	return size, nil
}

// CheckWALReachable says, before a restore writes anything, whether the
// archive holds the WAL that recovery from backup m to target needs: the
// backup's own WAL (start to stop), and for a target past it every segment
// up to the target without a gap. A gap that would make recovery stop
// short (and, for "latest", promote there as if it were the end) is an
// ErrIntegrity naming the missing segments and the latest reachable
// point. Targets whose position cannot be known in advance (a transaction
// id, a restore point name) only get a warning.
func CheckWALReachable(ctx context.Context, cfg *Config, m *Manifest, target Target) error {
	tli := m.Timeline
	switch t := strings.ToLower(target.Timeline); t {
	case "current":
	case "", "latest":
		latest, err := latestTimeline(ctx, cfg.Store)
		if err != nil {
			return err
		}
		tli = max(tli, latest)
	default:
		var v uint32
		if _, err := fmt.Sscan(t, &v); err != nil || v == 0 {
			return fmt.Errorf("%w: --target-timeline %q: use latest, current or a timeline number", ErrBadInput, target.Timeline)
		}
		tli = v
	}
	startLog := uint32(0)
	if wf, err := ParseWALName(m.StartWAL); err == nil {
		startLog = wf.Log
	}
	inv, err := scanWAL(ctx, cfg, m.SegmentSize, func(_, log uint32) bool { return log >= startLog })
	if err != nil {
		return err
	}
	if tli != m.Timeline {
		if e := inv.histErr[tli]; e != nil {
			return e
		}
		if _, ok := inv.history[tli]; !ok {
			return fmt.Errorf("%w: timeline %d has no history file %s in %s: recovery cannot follow it", ErrIntegrity, tli, HistoryName(tli), cfg.Store)
		}
	}
	path, ok := inv.pathTo(m, tli, m.Stop())
	if !ok {
		return fmt.Errorf("%w: backup %s (timeline %d, stop %s) is not on the history of timeline %d: pick another backup or --target-timeline", ErrBadInput, m.Name, m.Timeline, m.StopLSN, tli)
	}
	w := inv.walk(path)
	stop, _ := ParseWALName(m.StopWAL)
	if w.Last == nil || w.LastTLI == m.Timeline && w.LastSegN < stop.SegNo(m.SegmentSize) {
		return fmt.Errorf("%w: backup %s cannot be made consistent: WAL segment %s is not in %s (the backup needs %s to %s)",
			ErrIntegrity, m.Name, w.Missing, cfg.Store, m.StartWAL, m.StopWAL)
	}
	reached := inv.point(w)
	if w.Gap == nil {
		if target.LSN != nil && *target.LSN >= mustLSN(reached.LSN) {
			return fmt.Errorf("%w: --target-lsn %s is past the newest archived WAL (%s, which ends at %s): force a segment switch on the server (SELECT pg_switch_wal()) and wait for it to be archived, or pick an earlier target",
				ErrIntegrity, *target.LSN, reached.Segment, reached.LSN)
		}
		return nil
	}
	where := fmt.Sprintf("the archive has a gap: WAL %s is missing from %s, and the archive continues after it (to %s)", w.Gap, cfg.Store, orNone(w.Newest))
	switch {
	case target.Immediate:
		return nil
	case target.LSN != nil:
		if *target.LSN < mustLSN(reached.LSN) {
			return nil
		}
		return fmt.Errorf("%w: --target-lsn %s cannot be reached: %s; recovery would stop at %s (end of %s). Restore to an earlier target, or put the missing WAL back",
			ErrIntegrity, *target.LSN, where, reached.LSN, reached.Segment)
	case target.Time != nil:
		if !target.Time.After(w.Last.ModTime) {
			return nil
		}
		return fmt.Errorf("%w: --target-time %s cannot be reached: %s; the WAL before the gap was archived by %s, so recovery would stop at %s (end of %s) short of the target. Restore to an earlier target (e.g. --target-lsn %s), or put the missing WAL back",
			ErrIntegrity, fmtTime(*target.Time), where, fmtTime(w.Last.ModTime), reached.LSN, reached.Segment, reached.LSN)
	case target.XID != "" || target.Name != "":
		slog.Warn("the archive has a gap; recovery fails if the target lies after it", "gap", w.Gap.String(), "reachable_to", reached.LSN)
		return nil
	}
	return fmt.Errorf("%w: restoring to the end of the archive would stop short: %s; recovery would end at %s (end of %s) and promote there, losing everything after it. Restore to a target before the gap (e.g. --target-lsn %s), or put the missing WAL back",
		ErrIntegrity, where, reached.LSN, reached.Segment, reached.LSN)
}

func mustLSN(s string) LSN { l, _ := ParseLSN(s); return l }

// isKeyErr: decryption needs an identity that is missing or wrong.
func isKeyErr(err error) bool {
	return errors.Is(err, crypto.ErrNoIdentity) || errors.Is(err, crypto.ErrWrongKey)
}
