package retention

import (
	"fmt"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// segBy is a segment number and the kept backup it comes from (named in
// the reason).
type segBy struct {
	seg uint64
	by  string
}

// island is the WAL of a permanent backup that no other rule keeps (or
// of an ancestor of one): its own start to stop segment, which makes it
// consistent.
type island struct {
	tli         uint32
	first, last uint64
	name        string // "permanent backup X" or "backup X, in a permanent chain"
}

// walNeeds is what the kept backups need of the WAL, and what lies behind
// them, per timeline.
type walNeeds struct {
	// keepAll: timelines whose WAL is not touched, and why.
	keepAll map[uint32]string
	// needFrom: segments from here on are needed by a kept backup.
	needFrom map[uint32]segBy
	// olderThan: segments below are older than a kept backup on the
	// timeline.
	olderThan map[uint32]segBy
	// ancestorTo: segments up to here are an ancestor's WAL from before a
	// kept backup's timeline branched off; by names that backup and its
	// timeline.
	ancestorTo map[uint32]segBy
	islands    []island
	// oldestFull is the kept backup (by a rule other than permanent) that
	// started first.
	oldestFull *repo.Manifest
	notes      []string
}

// newWALNeeds works out what the backups k keeps need of the WAL.
func newWALNeeds(s *backupSet, k *keeper, inv *repo.WALInventory) *walNeeds {
	n := &walNeeds{keepAll: k.keepAll, needFrom: map[uint32]segBy{}, olderThan: map[uint32]segBy{}, ancestorTo: map[uint32]segBy{}}
	for _, m := range s.all {
		start, _ := archive.ParseWALName(m.StartWAL)
		stop, _ := archive.ParseWALName(m.StopWAL)
		ks := start.SegNo(inv.SegSize)
		if !k.full[m.Name] {
			// Permanent, or an ancestor of a backup kept only for that.
			if len(k.reasons[m.Name]) > 0 {
				what := "permanent backup " + m.Name
				if !m.Permanent {
					what = "backup " + m.Name + " (in the chain of a permanent backup)"
				}
				n.islands = append(n.islands, island{m.Timeline, ks, stop.SegNo(inv.SegSize), what})
			}
			continue
		}
		n.addKept(m, ks, inv)
	}
	n.keepUnfollowable(inv)
	return n
}

// addKept records what kept backup m (starting at segment ks) needs, and
// what it makes old. Backups come oldest first.
func (n *walNeeds) addKept(m *repo.Manifest, ks uint64, inv *repo.WALInventory) {
	if n.oldestFull == nil || m.StartTime.Before(n.oldestFull.StartTime) {
		n.oldestFull = m
	}
	n.need(m.Timeline, ks, m.Name)
	// Every timeline that branches off m's after m started, and those in
	// between, from where each begins.
	for tli, h := range inv.History {
		for j, e := range h {
			if e.TLI != m.Timeline || e.End < m.StartLSN {
				continue
			}
			for i := j + 1; i < len(h); i++ {
				n.need(h[i].TLI, inv.Seg(h[i-1].End), m.Name)
			}
			n.need(tli, inv.Seg(h[len(h)-1].End), m.Name)
			break
		}
	}
	if ks > n.olderThan[m.Timeline].seg {
		n.olderThan[m.Timeline] = segBy{ks, m.Name}
	}
	for _, e := range inv.History[m.Timeline] {
		// Backups come oldest first: the reason names the oldest.
		if cur, ok := n.ancestorTo[e.TLI]; !ok || inv.Seg(e.End) > cur.seg {
			n.ancestorTo[e.TLI] = segBy{inv.Seg(e.End), fmt.Sprintf("%s (timeline %d)", m.Name, m.Timeline)}
		}
	}
}

// need records that segments of tli from seg on are needed by backup by.
func (n *walNeeds) need(tli uint32, seg uint64, by string) {
	if v, ok := n.needFrom[tli]; !ok || seg < v.seg {
		n.needFrom[tli] = segBy{seg, by}
	}
}

// keepUnfollowable keeps all the WAL of a timeline (above 1) without a
// readable history file: no one can tell which backups need it.
func (n *walNeeds) keepUnfollowable(inv *repo.WALInventory) {
	for _, tli := range inv.Timelines() {
		if _, ok := inv.History[tli]; tli > 1 && !ok {
			why := fmt.Sprintf("timeline %d has no readable history file %s: delete cannot tell which backups need its WAL, so none of it is deleted", tli, archive.HistoryName(tli))
			if e := inv.HistErr[tli]; e != nil {
				why = fmt.Sprintf("timeline %d's history file cannot be read (%v): none of its WAL is deleted", tli, e)
			}
			n.keepAll[tli] = why
			n.notes = append(n.notes, why)
		}
	}
}

// decide says whether WAL object o goes, and why.
func (n *walNeeds) decide(o *repo.WALObject) (bool, string) {
	t, s := o.File.Timeline, o.SegNo
	if why, ok := n.keepAll[t]; ok {
		return false, why
	}
	if from, ok := n.needFrom[t]; ok && s >= from.seg {
		return false, "needed by kept backup " + from.by + " (and any newer)"
	}
	for _, is := range n.islands {
		if t == is.tli && s >= is.first && s <= is.last {
			return false, "makes " + is.name + " consistent"
		}
	}
	if past := n.olderThan[t]; s < past.seg {
		return true, "older than the start of kept backup " + past.by
	}
	if to, ok := n.ancestorTo[t]; ok && s <= to.seg {
		return true, fmt.Sprintf("timeline %d up to where a later timeline branched off: older than kept backup %s", t, to.by)
	}
	switch {
	case o.ModTime.IsZero():
		return false, "not needed by any kept backup, but the store does not say when it was archived"
	case o.ModTime.Before(n.oldestFull.StartTime):
		return true, "on no kept backup's timeline path (e.g. a timeline a restore abandoned), archived before the oldest kept backup started"
	}
	return false, "not needed by any kept backup, but archived after the oldest kept backup started: it may belong to a timeline still in use"
}

// walRuns decides every WAL object, grouped into runs of one timeline
// with one decision and reason.
//
// An object lk holds locked is kept: runs of them say until when.
func walRuns(inv *repo.WALInventory, n *walNeeds, lk *locks) []WALRun {
	runs := []WALRun{}
	var run *WALRun
	latest := map[int]time.Time{} // run index -> its latest retain-until date
	for _, o := range inv.Objects {
		del, why := n.decide(o)
		if until, locked := lk.lockedUntil(o.Key); del && locked {
			del, why = false, lk.walReason()
			if i := len(runs) - 1; run != nil && run.Reason == why && run.Timeline == o.File.Timeline {
				latest[i] = maxTime(latest[i], until)
			} else {
				latest[len(runs)] = until
			}
		}
		if run == nil || run.Timeline != o.File.Timeline || run.Delete != del || run.Reason != why {
			runs = append(runs, WALRun{Timeline: o.File.Timeline, First: o.File.Name, Delete: del, Reason: why})
			run = &runs[len(runs)-1]
		}
		run.Last = o.File.Name
		run.Objects++
		run.Bytes += o.Size
		if del {
			run.keys = append(run.keys, o.Key)
		}
	}
	for i, t := range latest {
		runs[i].Reason += "; the latest until " + t.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return runs
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
