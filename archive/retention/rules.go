package retention

import (
	"fmt"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// Reasons (also in the plan's output).
const (
	reasonPermanent = "permanent"
	reasonNewest    = "the newest backup (delete never removes it)"
)

// keep is one reason to keep one backup.
type keep struct {
	m   *repo.Manifest
	why string
}

// ruleKeeps is what one rule keeps. When from is set, the rule also keeps
// the unrestorable backups newer than from that nothing has kept yet: they
// do not count for the rule, but are newer than what it keeps.
type ruleKeeps struct {
	keeps []keep
	from  *repo.Manifest
	rule  string
}

// keeper collects the reasons the rules keep backups for, in the order the
// rules run: a later rule looks at what the earlier ones kept.
type keeper struct {
	reasons map[string][]string
	full    map[string]bool   // kept by a rule other than "permanent"
	keepAll map[uint32]string // timelines whose WAL is not touched, and why
	notes   []string
}

func (k *keeper) add(keeps ...keep) {
	for _, c := range keeps {
		k.reasons[c.m.Name] = append(k.reasons[c.m.Name], c.why)
		if c.why != reasonPermanent {
			k.full[c.m.Name] = true
		}
	}
}

// apply adds what a rule keeps, then the unrestorable backups after it.
func (k *keeper) apply(s *backupSet, r ruleKeeps) {
	k.add(r.keeps...)
	if r.from != nil {
		k.add(s.brokenAfter(r.from, r.rule, k)...)
	}
}

// applyRules runs the policy's rules, then those that hold whatever the
// policy: the newest backup, the newest that restores to the latest
// archived WAL, and the permanent ones.
func applyRules(s *backupSet, pol Policy, now time.Time, inv *repo.WALInventory) *keeper {
	k := &keeper{reasons: map[string][]string{}, full: map[string]bool{}, keepAll: map[uint32]string{}}
	if pol.RetainFull > 0 {
		k.apply(s, s.retainFull(pol.RetainFull))
	}
	if pol.Before != nil {
		k.apply(s, s.before(*pol.Before))
	}
	if pol.RetainWindow > 0 {
		k.apply(s, s.window(pol.RetainWindow, now))
	}
	if pol.MinKeep > 0 {
		k.apply(s, s.minKeep(pol.MinKeep, k))
	}
	k.add(s.newest(k)...)
	k.latestWAL(s, inv)
	k.add(s.permanent()...)
	return k
}

// retainFull keeps the n newest good backups (--retain-full).
func (s *backupSet) retainFull(n int) ruleKeeps {
	kept := s.good[max(0, len(s.good)-n):]
	r := ruleKeeps{from: kept[0], rule: "--retain-full"}
	for _, m := range kept {
		r.keeps = append(r.keeps, keep{m, newestReason(n, "--retain-full")})
	}
	return r
}

// before keeps the backups that finished at or after t (--before).
func (s *backupSet) before(t time.Time) ruleKeeps {
	var r ruleKeeps
	for _, m := range s.all {
		if !m.StopTime.Before(t) {
			r.keeps = append(r.keeps, keep{m, "finished after --before " + archive.FormatTime(t)})
		}
	}
	return r
}

// window keeps the backups that finished within w of now, and the newest
// good one before that, which restores to the window's start
// (--retain-window).
func (s *backupSet) window(w time.Duration, now time.Time) ruleKeeps {
	cutoff := now.Add(-w)
	r := ruleKeeps{rule: "--retain-window"}
	var base *repo.Manifest
	for _, m := range s.all {
		if !m.StopTime.Before(cutoff) {
			r.keeps = append(r.keeps, keep{m, "finished within --retain-window " + FormatWindow(w)})
		} else if s.broken[m.Name] == "" {
			base = m
		}
	}
	if base != nil {
		r.keeps = append(r.keeps, keep{base, "needed to restore to the start of --retain-window " + FormatWindow(w) + " (" + archive.FormatTime(cutoff) + ")"})
		r.from = base
	}
	return r
}

// minKeep keeps the n newest good backups that no rule keeps yet
// (--min-keep).
func (s *backupSet) minKeep(n int, k *keeper) ruleKeeps {
	kept := s.good[max(0, len(s.good)-n):]
	r := ruleKeeps{from: kept[0], rule: "--min-keep"}
	for _, m := range kept {
		if !k.full[m.Name] {
			r.keeps = append(r.keeps, keep{m, newestReason(n, "--min-keep")})
		}
	}
	return r
}

// newest keeps the newest good backup and the newest backup of all, when
// no rule keeps them yet: delete never removes the newest.
func (s *backupSet) newest(k *keeper) []keep {
	var out []keep
	g := s.good[len(s.good)-1]
	if !k.full[g.Name] {
		out = append(out, keep{g, reasonNewest})
	}
	if b := s.all[len(s.all)-1]; b != g && !k.full[b.Name] {
		out = append(out, keep{b, "the newest backup (delete never removes it), though it cannot be restored (" + s.broken[b.Name] + ")"})
	}
	return out
}

// latestWAL keeps the newest good backup that can restore to the most
// recently archived segment. When none can, that segment's timeline keeps
// all its WAL.
func (k *keeper) latestWAL(s *backupSet, inv *repo.WALInventory) {
	h := head(inv)
	if h == nil {
		return
	}
	var reach *repo.Manifest
	for _, m := range s.good {
		if _, ok := inv.PathTo(m, h.File.Timeline, m.StopLSN); ok {
			reach = m
		}
	}
	switch {
	case reach == nil:
		why := fmt.Sprintf("the newest archived WAL (%s) is on timeline %d, which no backup can restore to: all of it is kept; take a backup", h.File.Name, h.File.Timeline)
		k.keepAll[h.File.Timeline] = why
		k.notes = append(k.notes, why)
	case !k.full[reach.Name]:
		k.add(keep{reach, fmt.Sprintf("the newest backup that can restore to the latest archived WAL (%s, timeline %d)", h.File.Name, h.File.Timeline)})
	}
}

// permanent keeps the backups marked permanent.
func (s *backupSet) permanent() []keep {
	var out []keep
	for _, m := range s.all {
		if m.Permanent {
			out = append(out, keep{m, reasonPermanent})
		}
	}
	return out
}

// brokenAfter keeps the unrestorable backups newer than m that nothing
// has kept yet.
func (s *backupSet) brokenAfter(m *repo.Manifest, rule string, k *keeper) []keep {
	var out []keep
	for _, b := range s.all[s.index[m.Name]+1:] {
		if why := s.broken[b.Name]; why != "" && !k.full[b.Name] {
			out = append(out, keep{b, "cannot be restored (" + why + "): kept, but not counted by " + rule})
		}
	}
	return out
}

func newestReason(n int, flag string) string {
	if n == 1 {
		return fmt.Sprintf("the newest (%s 1)", flag)
	}
	return fmt.Sprintf("one of the %d newest (%s %d)", n, flag, n)
}
