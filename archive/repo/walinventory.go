package repo

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// This file reads the archived WAL as a whole: one listing, the timeline
// history files, and the paths recovery follows from a backup to a
// timeline. verify, delete (retention), backup-list and restore's
// up-front check share it.

// WALObject is one archived WAL object other than a history file.
type WALObject struct {
	Key     string
	File    archive.WALFile
	SegNo   uint64
	Size    int64
	ModTime time.Time
}

// WALInventory is one listing of wal/.
type WALInventory struct {
	SegSize int64
	// objects: segments, .partial and .backup files, by timeline, segment
	// number and name.
	Objects []*WALObject
	// segs: the full segments present, by timeline and number; sorted:
	// their numbers in order.
	segs   map[uint32]map[uint64]*WALObject
	sorted map[uint32][]uint64
	// history: parsed history files by timeline; histKey: their keys;
	// histErr: history files that could not be read.
	History map[uint32][]archive.HistoryEntry
	HistKey map[uint32]string
	HistErr map[uint32]error
	// junk: keys under wal/ that are not WAL file names, left alone.
	Junk []cloud.ObjectInfo
}

// listWAL lists wal/: only the directories dirOK accepts, when it is not
// nil (dirOK gets the timeline and log of wal/<tli><log>/), and always
// wal/history/.
func (r *Repo) listWAL(ctx context.Context, dirOK func(tli, log uint32) bool) ([]cloud.ObjectInfo, error) {
	st := r.Store
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
			if tli, log, ok := archive.ParseWALDir(name); ok && !dirOK(tli, log) {
				return nil
			}
		}
		dirs = append(dirs, o.Key)
		return nil
	})
	if err != nil {
		return nil, archive.StoreErr(fmt.Errorf("%s: listing %s: %w", st, WALPrefix, err))
	}
	var objects []cloud.ObjectInfo
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, d := range dirs {
		g.Go(func() error {
			err := st.List(gctx, d, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
				mu.Lock()
				defer mu.Unlock()
				objects = append(objects, o)
				return nil
			})
			if err != nil {
				return archive.StoreErr(fmt.Errorf("%s: listing %s: %w", st, d, err))
			}
			return nil
		})
	}
	return objects, g.Wait()
}

// newInventory indexes a listing of wal/ for segments of segSize, with the
// history files read from it (h).
func newInventory(objects []cloud.ObjectInfo, segSize int64, h *histories) *WALInventory {
	inv := &WALInventory{SegSize: segSize, segs: map[uint32]map[uint64]*WALObject{}, sorted: map[uint32][]uint64{},
		History: h.parsed, HistKey: h.keys, HistErr: h.errs}
	for _, o := range objects {
		inv.add(o)
	}
	sort.Slice(inv.Objects, func(i, j int) bool {
		a, b := inv.Objects[i], inv.Objects[j]
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
	return inv
}

// add files one listed object.
func (inv *WALInventory) add(o cloud.ObjectInfo) {
	rest := o.Key[len(WALPrefix):]
	dir, name, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(name, "/") {
		inv.Junk = append(inv.Junk, o)
		return
	}
	wf, err := archive.ParseWALName(name)
	if err != nil {
		inv.Junk = append(inv.Junk, o)
		return
	}
	if wf.Kind == archive.KindHistory {
		if dir+"/" != HistoryPrefix[len(WALPrefix):] || wf.Timeline <= 1 {
			inv.Junk = append(inv.Junk, o)
			return
		}
		return // read by the catalog into History
	}
	if dir != name[:16] || uint64(wf.Seg) >= archive.SegmentsPerLog(inv.SegSize) {
		inv.Junk = append(inv.Junk, o)
		return
	}
	w := &WALObject{Key: o.Key, File: wf, SegNo: wf.SegNo(inv.SegSize), Size: o.Size, ModTime: o.ModTime}
	inv.Objects = append(inv.Objects, w)
	if wf.Kind == archive.KindSegment {
		if inv.segs[wf.Timeline] == nil {
			inv.segs[wf.Timeline] = map[uint64]*WALObject{}
		}
		inv.segs[wf.Timeline][w.SegNo] = w
	}
}

func (inv *WALInventory) Has(tli uint32, seg uint64) bool { return inv.segs[tli][seg] != nil }

// nextPresent is the smallest segment number of tli above seg that is
// archived.
func (inv *WALInventory) NextPresent(tli uint32, seg uint64) (uint64, bool) {
	nums := inv.sorted[tli]
	i := sort.Search(len(nums), func(i int) bool { return nums[i] > seg })
	if i == len(nums) {
		return 0, false
	}
	return nums[i], true
}

// newest is the highest archived segment number of tli.
func (inv *WALInventory) Newest(tli uint32) (uint64, bool) {
	nums := inv.sorted[tli]
	if len(nums) == 0 {
		return 0, false
	}
	return nums[len(nums)-1], true
}

// timelines lists every timeline the archive knows, from segments and
// history files, in order.
func (inv *WALInventory) Timelines() []uint32 {
	seen := map[uint32]bool{}
	for _, o := range inv.Objects {
		seen[o.File.Timeline] = true
	}
	for t := range inv.HistKey {
		seen[t] = true
	}
	out := make([]uint32, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (inv *WALInventory) Seg(lsn archive.LSN) uint64 { return uint64(lsn) / uint64(inv.SegSize) } // #nosec G115 -- sizes are positive

func (inv *WALInventory) Name(tli uint32, seg uint64) string {
	return archive.SegmentName(tli, seg, inv.SegSize)
}

// SegRange is part of a recovery path: segments [First, End) of timeline
// TLI; Open ranges have no end (the path's last timeline).
type SegRange struct {
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
func (inv *WALInventory) PathTo(m *Manifest, target uint32, limit archive.LSN) ([]SegRange, bool) {
	start, err := archive.ParseWALName(m.StartWAL)
	if err != nil {
		return nil, false
	}
	first := start.SegNo(inv.SegSize)
	if target == m.Timeline {
		return []SegRange{{TLI: target, First: first, Open: true}}, true
	}
	h, ok := inv.History[target]
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
		path := []SegRange{{TLI: e.TLI, First: first, End: max(first, inv.Seg(e.End))}}
		for i := j + 1; i < len(h); i++ {
			b := inv.Seg(h[i-1].End)
			path = append(path, SegRange{TLI: h[i].TLI, First: b, End: max(b, inv.Seg(h[i].End))})
		}
		return append(path, SegRange{TLI: target, First: inv.Seg(h[len(h)-1].End), Open: true}), true
	}
	return nil, false
}

// reachable lists the timelines recovery from m can follow (m's own and
// the ones branching off it after limit), in order.
func (inv *WALInventory) Reachable(m *Manifest, limit archive.LSN) []uint32 {
	out := []uint32{m.Timeline}
	for _, t := range inv.Timelines() {
		if _, ok := inv.PathTo(m, t, limit); ok && t != m.Timeline {
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

// WALWalk is the outcome of reading a path from its start.
type WALWalk struct {
	Last     *WALObject // last segment read without a gap; nil: not even the first
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
func (inv *WALInventory) Walk(path []SegRange) WALWalk {
	var w WALWalk
	if len(path) > 0 {
		lt := path[len(path)-1].TLI
		if n, ok := inv.Newest(lt); ok {
			w.Newest = inv.Name(lt, n)
		}
	}
	for _, r := range path {
		for s := r.First; r.Open || s < r.End; s++ {
			if o := inv.segs[r.TLI][s]; o != nil {
				w.Last, w.LastTLI, w.LastSegN = o, r.TLI, s
				continue
			}
			w.Missing = inv.Name(r.TLI, s)
			next, ok := inv.NextPresent(r.TLI, s)
			switch {
			case !r.Open && (!ok || next > r.End):
				// Nothing of this timeline's range follows: the rest of it
				// up to the switch is missing.
				w.Gap = inv.Gap(r.TLI, s, r.End)
			case ok:
				w.Gap = inv.Gap(r.TLI, s, next)
			}
			return w
		}
	}
	return w
}

// WalkKeys are the keys of the segments walk w read along path, from the
// path's start to w.Last.
func (inv *WALInventory) WalkKeys(path []SegRange, w WALWalk) map[string]bool {
	keys := map[string]bool{}
	if w.Last == nil {
		return keys
	}
	for _, r := range path {
		for s := r.First; r.Open || s < r.End; s++ {
			o := inv.segs[r.TLI][s]
			if o == nil {
				return keys
			}
			keys[o.Key] = true
			if o == w.Last {
				return keys
			}
		}
	}
	return keys
}

// gap describes the missing segments [from, to) of tli.
func (inv *WALInventory) Gap(tli uint32, from, to uint64) *WALGap {
	if to <= from {
		to = from + 1
	}
	return &WALGap{Timeline: tli, First: inv.Name(tli, from), Last: inv.Name(tli, to-1), Count: to - from}
}

// point turns the end of a walk into a WALPoint.
func (inv *WALInventory) Point(w WALWalk) *WALPoint {
	if w.Last == nil {
		return nil
	}
	return &WALPoint{Timeline: w.LastTLI, Segment: w.Last.File.Name, LSN: archive.LSN((w.LastSegN + 1) * uint64(inv.SegSize)).String()} // #nosec G115 -- sizes are positive
}

// gapsIn lists the missing runs of tli's segments in [lo, hi].
func (inv *WALInventory) GapsIn(tli uint32, lo, hi uint64) []WALGap {
	var out []WALGap
	s := lo
	for s <= hi {
		if inv.Has(tli, s) {
			next, ok := inv.NextMissing(tli, s)
			if !ok {
				break
			}
			s = next
			continue
		}
		end := hi + 1
		if n, ok := inv.NextPresent(tli, s); ok && n <= hi {
			end = n
		}
		out = append(out, *inv.Gap(tli, s, end))
		s = end
	}
	return out
}

// nextMissing is the first segment number after seg (present) that is not
// archived on tli.
func (inv *WALInventory) NextMissing(tli uint32, seg uint64) (uint64, bool) {
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

// SegmentSize returns the WAL segment size the backups agree on.
func SegmentSize(backups []*Manifest) (int64, error) {
	var size int64
	for _, m := range backups {
		if size != 0 && m.SegmentSize != size {
			return 0, fmt.Errorf("%w: backups disagree on the WAL segment size (%d and %d bytes): the store holds WAL of more than one cluster", archive.ErrOtherCluster, size, m.SegmentSize)
		}
		size = m.SegmentSize
	}
	return size, nil
}

// MissingSegments lists the segments first..last of timeline tli that are
// not in the store, listing each WAL directory once.
func (r *Repo) MissingSegments(ctx context.Context, tli uint32, first, last uint64, segSize int64) ([]string, error) {
	have := map[string]bool{}
	listed := map[string]bool{}
	var missing []string
	for s := first; s <= last; s++ {
		name := archive.SegmentName(tli, s, segSize)
		dir := WALPrefix + name[:16] + "/"
		if !listed[dir] {
			listed[dir] = true
			err := r.Store.List(ctx, dir, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
				have[o.Key[len(dir):]] = true
				return nil
			})
			if err != nil {
				return nil, archive.StoreErr(fmt.Errorf("%s: listing %s: %w", r.Store, dir, err))
			}
		}
		if !have[name] {
			missing = append(missing, name)
		}
	}
	return missing, nil
}
