package backup

import (
	"math/bits"
	"strconv"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/pgwal"
)

// This file is what an incremental knows, from the WAL since its parent's
// start (its summaries on PostgreSQL 17 and later, else the WAL itself),
// about the relation files beyond their pages' LSNs: which databases were
// created or dropped, which relation forks were created or cut, and, from
// summaries, every block that changed.

// The tablespaces of base/ and global/ (pg_tablespace.dat).
const (
	defaultTablespace = 1663
	globalTablespace  = 1664
)

// relFile is a file of a relation: its fork and segment.
type relFile struct {
	pgwal.RelFork
	seg int64
}

// parseRelPath reads a manifest path of a relation file:
// base/DB/REL[_fork][.seg], global/REL..., or
// pg_tblspc/SPC/PG_.../DB/REL...
func parseRelPath(p string) (relFile, bool) {
	var rf relFile
	parts := strings.Split(p, "/")
	var name string
	switch {
	case len(parts) == 3 && parts[0] == "base":
		rf.Tablespace, name = defaultTablespace, parts[2]
		if !oid(parts[1], &rf.Database) {
			return rf, false
		}
	case len(parts) == 2 && parts[0] == "global":
		rf.Tablespace, name = globalTablespace, parts[1]
	case len(parts) == 5 && parts[0] == "pg_tblspc" && strings.HasPrefix(parts[2], "PG_"):
		name = parts[4]
		if !oid(parts[1], &rf.Tablespace) || !oid(parts[3], &rf.Database) {
			return rf, false
		}
	default:
		return rf, false
	}
	if base, seg, ok := strings.Cut(name, "."); ok {
		n, err := strconv.ParseInt(seg, 10, 32)
		if err != nil || n <= 0 || seg[0] == '0' {
			return rf, false
		}
		rf.seg, name = n, base
	}
	if base, fork, ok := strings.Cut(name, "_"); ok {
		switch fork {
		case "fsm":
			rf.Fork = pgwal.ForkFSM
		case "vm":
			rf.Fork = pgwal.ForkVM
		case "init":
			rf.Fork = pgwal.ForkInit
		default:
			return rf, false
		}
		name = base
	}
	return rf, oid(name, &rf.Relation)
}

// dbDirOf is the database directory a file at manifest path p lies in
// directly: base/DB/NAME or pg_tblspc/SPC/PG_.../DB/NAME.
func dbDirOf(p string) (pgwal.DBDir, bool) {
	var d pgwal.DBDir
	parts := strings.Split(p, "/")
	switch {
	case len(parts) == 3 && parts[0] == "base":
		d.Tablespace = defaultTablespace
		return d, oid(parts[1], &d.Database)
	case len(parts) == 5 && parts[0] == "pg_tblspc" && strings.HasPrefix(parts[2], "PG_"):
		return d, oid(parts[1], &d.Tablespace) && oid(parts[3], &d.Database)
	}
	return d, false
}

// oid parses a decimal OID.
func oid(s string, v *uint32) bool {
	if s == "" || len(s) > 10 || s[0] == '0' && s != "0" {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	*v = uint32(n)
	return err == nil
}

// blockSet is a set of block numbers, as bitmaps of chunkBlocks blocks
// made when a block in them is added.
type blockSet map[uint32][]uint64

const chunkBlocks = 1 << 16

func (s blockSet) add(b uint32) {
	c := s[b/chunkBlocks]
	if c == nil {
		c = make([]uint64, chunkBlocks/64)
		s[b/chunkBlocks] = c
	}
	i := b % chunkBlocks
	c[i/64] |= 1 << (i % 64)
}

// count is how many blocks of [lo, hi) are in the set.
func (s blockSet) count(lo, hi int64) int64 {
	var n int64
	for lo < hi {
		c := s[uint32(lo/chunkBlocks)] // #nosec G115 -- block numbers are 32 bits
		end := min(hi, (lo/chunkBlocks+1)*chunkBlocks)
		if c == nil {
			lo = end
			continue
		}
		for ; lo < end; lo++ {
			i := lo % chunkBlocks
			if i%64 == 0 && lo+64 <= end {
				n += int64(bits.OnesCount64(c[i/64]))
				lo += 63
				continue
			}
			if c[i/64]&(1<<(i%64)) != 0 {
				n++
			}
		}
	}
	return n
}

func (s blockSet) has(b int64) bool {
	c := s[uint32(b/chunkBlocks)] // #nosec G115 -- block numbers are 32 bits
	i := b % chunkBlocks
	return c != nil && c[i/64]&(1<<(i%64)) != 0
}

// changeMap is what the WAL since the parent's start says.
type changeMap struct {
	// from names the source for the log: "the WAL summaries" or "the
	// WAL".
	from string
	// dbs are database directories created or dropped.
	dbs map[pgwal.DBDir]pgwal.Event
	// limits: for a relation fork created, dropped or truncated, the
	// fewest blocks it had (0: created or dropped): no block at or past
	// it is the parent's.
	limits map[pgwal.RelFork]uint32
	// blocks, from summaries only (exact), are the blocks of each
	// relation fork that WAL records changed.
	blocks map[pgwal.RelFork]blockSet
	exact  bool
	// relSeg is how many blocks one segment file of a relation holds.
	relSeg int64
}

func newChangeMap(from string, exact bool, relSeg int64) *changeMap {
	return &changeMap{from: from, exact: exact, relSeg: relSeg, dbs: map[pgwal.DBDir]pgwal.Event{},
		limits: map[pgwal.RelFork]uint32{}, blocks: map[pgwal.RelFork]blockSet{}}
}

func (cm *changeMap) limit(k pgwal.RelFork, blk uint32) {
	if old, ok := cm.limits[k]; !ok || blk < old {
		cm.limits[k] = blk
	}
}

// addSummary adds one row of a WAL summary.
func (cm *changeMap) addSummary(e pg.SummaryEntry) {
	k := pgwal.RelFork{Rel: pgwal.Rel{Tablespace: e.Tablespace, Database: e.Database, Relation: e.Relation}, Fork: e.Fork}
	switch {
	case e.Relation == 0:
		// Every relation of the database in the tablespace: it was
		// created or dropped.
		d := pgwal.DBDir{Tablespace: e.Tablespace, Database: e.Database}
		if _, ok := cm.dbs[d]; !ok {
			cm.dbs[d] = pgwal.Event{What: "created or dropped"}
		}
	case e.Limit:
		cm.limit(k, e.Block)
	default:
		s := cm.blocks[k]
		if s == nil {
			s = blockSet{}
			cm.blocks[k] = s
		}
		s.add(e.Block)
	}
}

// addWAL adds what pgwal found in the WAL.
func (cm *changeMap) addWAL(ch *pgwal.Changes) {
	for d, ev := range ch.Databases {
		cm.dbs[d] = ev
	}
	for k := range ch.Created {
		cm.limit(k, 0)
	}
	for r, blk := range ch.Truncated {
		cm.limit(pgwal.RelFork{Rel: r, Fork: pgwal.ForkMain}, blk)
	}
}

// fileChanges is what the map says about one file.
type fileChanges struct {
	// whole: no content of the file is the parent's (why, "" if not).
	whole string
	// limit is the segment-relative block from which no block is the
	// parent's (the file's block count or more: none).
	limit int64
	// changed, with exact, are its changed blocks (segment-relative
	// numbers are offset by base).
	changed blockSet
	base    int64
	exact   bool
}

// noLimit is a limit past any file.
const noLimit = int64(1) << 62

// file is what cm says about the file at manifest path p: every file of
// a database created or dropped is new; of the others, only relation
// files have changes.
func (cm *changeMap) file(p string) fileChanges {
	fc := fileChanges{limit: noLimit}
	if cm == nil {
		return fc
	}
	if d, ok := dbDirOf(p); ok {
		if _, ok := cm.dbs[d]; ok {
			fc.whole = wholeNewDB
			return fc
		}
	}
	rf, ok := parseRelPath(p)
	if !ok {
		return fc
	}
	fc.base = rf.seg * cm.relSeg
	if l, ok := cm.limits[rf.RelFork]; ok {
		fc.limit = max(int64(l)-fc.base, 0)
		if fc.limit == 0 {
			fc.whole = wholeCreated
			return fc
		}
	}
	fc.exact, fc.changed = cm.exact, cm.blocks[rf.RelFork]
	return fc
}

// changedIn says how many blocks of the segment-relative range [lo, hi)
// are known to have changed (exact maps only).
func (fc *fileChanges) changedIn(lo, hi int64) int64 {
	if fc.changed == nil {
		return 0
	}
	return fc.changed.count(fc.base+lo, fc.base+hi)
}

// describe says what the map holds, for the log.
func (cm *changeMap) describe() []any {
	var created, cut int
	for _, l := range cm.limits {
		if l == 0 {
			created++
		} else {
			cut++
		}
	}
	var blocks int64
	for _, s := range cm.blocks {
		for _, c := range s {
			for _, w := range c {
				blocks += int64(bits.OnesCount64(w))
			}
		}
	}
	out := []any{"from", cm.from, "databases_created_or_dropped", len(cm.dbs), "relation_forks_created_or_dropped", created, "relation_forks_truncated", cut}
	if cm.exact {
		out = append(out, "blocks_changed", blocks)
	}
	return out
}

// lsnRange is for the log.
func lsnRange(a, b archive.LSN) string { return a.String() + " to " + b.String() }
