package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// verifyWAL checks, for each backup, that its own WAL is archived and how
// far recovery from it gets on every timeline it can follow; then, per
// timeline, lists every gap in the range the backups need. A permanent
// backup needs only its own WAL (retention keeps no more for it), and so
// does an ancestor of permanent backups only (ownOnly).
func verifyWAL(cat *repo.Catalog, backups []*repo.Manifest, rep *Report, ownOnly map[string]bool) error {
	segSize, err := repo.SegmentSize(backups)
	if err != nil {
		return err
	}
	inv := cat.WAL(segSize)
	checkHistories(inv, rep)
	need := walNeeds{}
	for i, m := range backups {
		reachFrom(inv, m, rep.Backups[i], need, ownOnly[m.Name])
	}
	for _, t := range need.timelines() {
		rep.Timelines = append(rep.Timelines, checkTimeline(inv, t, need[t], rep))
	}
	return nil
}

// checkHistories reports history files that cannot be read, and
// timelines with WAL but no history file.
func checkHistories(inv *repo.WALInventory, rep *Report) {
	for _, tli := range inv.Timelines() {
		if e := inv.HistErr[tli]; e != nil {
			rep.fail(inv.HistKey[tli], "%v", e)
		} else if _, ok := inv.History[tli]; !ok && tli > 1 {
			if _, hasWAL := inv.Newest(tli); hasWAL {
				rep.fail(repo.HistoryPrefix+archive.HistoryName(tli), "missing: timeline %d has WAL in the store but no history file, so recovery cannot follow it", tli)
			}
		}
	}
}

// span is a run of segments a timeline must hold: from..to; an open one
// runs on to the newest archived segment.
type span struct {
	from, to uint64
	open     bool
}

// walNeeds are the spans each timeline must hold.
type walNeeds map[uint32][]span

func (n walNeeds) add(tli uint32, from, to uint64, open bool) {
	n[tli] = append(n[tli], span{from, to, open})
}

func (n walNeeds) timelines() []uint32 {
	var tls []uint32
	for t := range n {
		tls = append(tls, t)
	}
	sort.Slice(tls, func(i, j int) bool { return tls[i] < tls[j] })
	return tls
}

// reachFrom finds whether backup m can be made consistent and how far
// recovery from it gets on each timeline it can follow (into bv), and
// adds the WAL it needs to need.
func reachFrom(inv *repo.WALInventory, m *repo.Manifest, bv *Backup, need walNeeds, ownOnly bool) {
	segSize := inv.SegSize
	start, _ := archive.ParseWALName(m.StartWAL)
	stop, _ := archive.ParseWALName(m.StopWAL)
	own, _ := inv.PathTo(m, m.Timeline, m.StopLSN)
	w := inv.Walk(own)
	bv.Consistent = w.Last != nil && w.LastSegN >= stop.SegNo(segSize)
	if !bv.Consistent {
		bv.Problems = append(bv.Problems, Problem{Object: repo.WALKey(archive.WALFile{Name: w.Missing}),
			Problem: fmt.Sprintf("missing: backup %s cannot be made consistent without it (it needs %s to %s)", m.Name, m.StartWAL, m.StopWAL)})
	}
	if ownOnly {
		need.add(m.Timeline, start.SegNo(segSize), stop.SegNo(segSize), false)
	}
	for _, tli := range inv.Reachable(m, m.StopLSN) {
		path, ok := inv.PathTo(m, tli, m.StopLSN)
		if !ok {
			continue
		}
		w := inv.Walk(path)
		r := TimelineReach{Timeline: tli, RestorableTo: inv.Point(w), Gap: w.Gap, Newest: w.Newest}
		bv.Timelines = append(bv.Timelines, r)
		bv.RestorableTo = r.RestorableTo
		if ownOnly {
			continue
		}
		for _, sr := range path {
			switch {
			case sr.Open:
				need.add(sr.TLI, sr.First, sr.First, true)
			case sr.End > sr.First:
				need.add(sr.TLI, sr.First, sr.End-1, false)
			}
		}
	}
}

// checkTimeline merges the spans timeline t must hold and lists the gaps
// in them, each also a problem in rep.
func checkTimeline(inv *repo.WALInventory, t uint32, ss []span, rep *Report) Timeline {
	merged := mergeSpans(inv, t, ss)
	tv := Timeline{Timeline: t, First: inv.Name(t, merged[0].from), Last: inv.Name(t, merged[len(merged)-1].to), Gaps: []repo.WALGap{}}
	for _, x := range merged {
		tv.Ranges = append(tv.Ranges, SegmentSpan{First: inv.Name(t, x.from), Last: inv.Name(t, x.to)})
		gaps := inv.GapsIn(t, x.from, x.to)
		tv.Gaps = append(tv.Gaps, gaps...)
		tv.Segments += x.to - x.from + 1
		for _, g := range gaps {
			tv.Segments -= g.Count
			rep.Problems = append(rep.Problems, Problem{Object: repo.WALKey(archive.WALFile{Name: g.First}), Problem: fmt.Sprintf("missing: WAL %s: recovery along this timeline stops before it", g)})
		}
	}
	return tv
}

// mergeSpans runs the open spans of t to its newest archived segment,
// sorts the spans and merges those that touch or overlap.
func mergeSpans(inv *repo.WALInventory, t uint32, ss []span) []span {
	for i := range ss {
		if n, ok := inv.Newest(t); ok && ss[i].open && n > ss[i].to {
			ss[i].to = n
		}
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].from < ss[j].from })
	var merged []span
	for _, x := range ss {
		if k := len(merged) - 1; k >= 0 && x.from <= merged[k].to+1 {
			merged[k].to = max(merged[k].to, x.to)
			continue
		}
		merged = append(merged, x)
	}
	return merged
}

// readWAL reads every archived WAL object back (verify --full), checked
// as wal-fetch checks it: its proof, its content against the digests the
// proof covers, its bounds. A segment whose body was replaced while its
// metadata was kept passes a listing and a proof check, and only this
// finds it. What fails is taken out of the catalog (a gap where it is)
// and returned.
func readWAL(ctx context.Context, r *repo.Repo, cat *repo.Catalog, backups []*repo.Manifest, concurrency int) ([]repo.BadObject, error) {
	segSize, err := repo.SegmentSize(backups)
	if err != nil {
		return nil, err
	}
	inv := cat.WAL(segSize)
	var mu sync.Mutex
	var bad []repo.BadObject
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, o := range inv.Objects {
		g.Go(func() error {
			want := repo.Want{Proof: true, ContentFromMeta: true, Encrypted: true, MaxSize: segSize}
			if o.File.Kind == archive.KindBackup {
				want.MaxSize = repo.MaxBackupFileBytes
			}
			err := r.Load(gctx, o.Key, want, func(rd io.Reader, _ cloud.ObjectInfo) error {
				_, err := io.Copy(io.Discard, rd)
				return err
			})
			switch {
			case err == nil:
			case repo.IsKeyErr(err):
				return fmt.Errorf("%w (reading the WAL back needs --identity-file)", err)
			case errors.Is(err, archive.ErrStore), archive.IsContextErr(err):
				return err
			default:
				mu.Lock()
				bad = append(bad, repo.BadObject{Key: o.Key, Err: archive.OneLine(err.Error())})
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Key < bad[j].Key })
	cat.DropWAL(bad)
	return bad, nil
}
