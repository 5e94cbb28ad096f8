package retention

import (
	"fmt"
	"slices"
	"sort"
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
//
// extra are kept whatever the rules (locked backups), before the chains.
func applyRules(s *backupSet, pol Policy, now time.Time, inv *repo.WALInventory, extra ...keep) *keeper {
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
	k.add(extra...)
	k.keepChains(s)
	return k
}

// retainFull keeps the n newest full backups, each with its incremental
// backups: the nth newest full and every good backup after it
// (--retain-full). A full counts when it or a backup of its chain can be
// restored; in a store of full backups only, that is the n newest good
// backups.
func (s *backupSet) retainFull(n int) ruleKeeps {
	var fulls []*repo.Manifest
	counted := map[string]bool{}
	for _, m := range s.good {
		if b := s.base(m); b != nil && !counted[b.Name] {
			counted[b.Name] = true
			fulls = append(fulls, b)
		}
	}
	sort.SliceStable(fulls, func(i, j int) bool { return s.index[fulls[i].Name] < s.index[fulls[j].Name] })
	if len(fulls) == 0 { // cannot be: a good backup's chain is whole
		fulls = s.good[:1]
	}
	from := fulls[max(0, len(fulls)-n)]
	r := ruleKeeps{from: from, rule: "--retain-full"}
	for _, m := range s.good {
		switch {
		case s.index[m.Name] < s.index[from.Name]:
		case m.Incremental():
			r.keeps = append(r.keeps, keep{m, fmt.Sprintf("an incremental backup newer than the %s full backup (--retain-full %d)", nth(n), n)})
		default:
			r.keeps = append(r.keeps, keep{m, newestReason(n, "--retain-full")})
		}
	}
	return r
}

// nth names the nth newest: "newest", "2nd newest", ...
func nth(n int) string {
	switch {
	case n == 1:
		return "newest"
	case n%10 == 2 && n%100 != 12:
		return fmt.Sprintf("%dnd newest", n)
	case n%10 == 3 && n%100 != 13:
		return fmt.Sprintf("%drd newest", n)
	case n%10 == 1 && n%100 != 11:
		return fmt.Sprintf("%dst newest", n)
	}
	return fmt.Sprintf("%dth newest", n)
}

// keepChains keeps the ancestors of every kept backup: an incremental
// backup cannot be restored without them. Children come before parents,
// so a parent's reasons name each kept child. The ancestors of a backup
// kept only for being permanent are kept as it is: each with its own WAL.
func (k *keeper) keepChains(s *backupSet) {
	order := slices.Clone(s.all)
	repo.ChainOrder(order)
	for _, m := range order {
		if len(k.reasons[m.Name]) == 0 || !m.Incremental() {
			continue
		}
		p := s.byName[m.Parent]
		if p == nil {
			continue // its chain is broken; nothing to keep
		}
		k.reasons[p.Name] = append(k.reasons[p.Name], "parent of "+m.Name+" (kept)")
		if k.full[m.Name] {
			k.full[p.Name] = true
		}
	}
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

// explicit is delete NAME...: the named backups go, every other is kept.
// A name that would leave the store worse off is refused (ErrConflict):
// a permanent backup, the parent of a backup that is kept (an incremental
// backup cannot be restored without it), the newest backup that can be
// restored, and the newest that restores to the latest archived WAL.
func (s *backupSet) explicit(names []string, inv *repo.WALInventory, store string) (*keeper, error) {
	k := &keeper{reasons: map[string][]string{}, full: map[string]bool{}, keepAll: map[uint32]string{}}
	named := map[string]bool{}
	for _, n := range names {
		if _, ok := s.byName[n]; !ok {
			return nil, fmt.Errorf("%w: no backup named %q in %s: walvault backup-list shows them", archive.ErrBadInput, n, store)
		}
		named[n] = true
	}
	for _, m := range s.all {
		if !named[m.Name] {
			k.add(keep{m, "not named"})
		}
	}
	refuse := func(m *repo.Manifest, format string, a ...any) error {
		return fmt.Errorf("%w: delete %s refused: %s", archive.ErrConflict, m.Name, fmt.Sprintf(format, a...))
	}
	for _, m := range s.all {
		if !named[m.Name] {
			continue
		}
		if m.Permanent {
			return nil, refuse(m, "it is permanent (walvault backup-mark --no-permanent %s first)", m.Name)
		}
		for _, c := range s.children(m.Name) {
			if !named[c.Name] {
				return nil, refuse(m, "it is the parent of incremental backup %s, which is kept and cannot be restored without it (delete %s first, or name both)", c.Name, c.Name)
			}
		}
		if s.broken[m.Name] == "" && m == s.good[len(s.good)-1] {
			return nil, refuse(m, "it is the newest backup that can be restored (take a new backup first)")
		}
	}
	k.latestWAL(s, inv)
	for _, m := range s.all {
		if named[m.Name] && len(k.reasons[m.Name]) > 0 {
			return nil, refuse(m, "it is %s", k.reasons[m.Name][0])
		}
	}
	return k, nil
}
