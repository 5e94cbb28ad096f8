package backup

import (
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/pgwal"
)

func TestParseRelPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want relFile
		ok   bool
	}{
		{"base/5/16384", relFile{pgwal.RelFork{Rel: pgwal.Rel{Tablespace: 1663, Database: 5, Relation: 16384}}, 0}, true},
		{"base/5/16384.2", relFile{pgwal.RelFork{Rel: pgwal.Rel{Tablespace: 1663, Database: 5, Relation: 16384}}, 2}, true},
		{"base/5/16384_vm", relFile{pgwal.RelFork{Rel: pgwal.Rel{Tablespace: 1663, Database: 5, Relation: 16384}, Fork: pgwal.ForkVM}, 0}, true},
		{"base/5/16384_fsm.1", relFile{pgwal.RelFork{Rel: pgwal.Rel{Tablespace: 1663, Database: 5, Relation: 16384}, Fork: pgwal.ForkFSM}, 1}, true},
		{"global/1262", relFile{pgwal.RelFork{Rel: pgwal.Rel{Tablespace: 1664, Relation: 1262}}, 0}, true},
		{"pg_tblspc/16400/PG_17_202406281/16384/16500_init", relFile{pgwal.RelFork{Rel: pgwal.Rel{Tablespace: 16400, Database: 16384, Relation: 16500}, Fork: pgwal.ForkInit}, 0}, true},
		{"base/5/PG_VERSION", relFile{}, false},
		{"base/5/pg_filenode.map", relFile{}, false},
		{"base/5/16384.0", relFile{}, false},
		{"base/5/016384", relFile{}, false},
		{"base/5/16384_xyz", relFile{}, false},
		{"global/pg_control", relFile{}, false},
		{"pg_xact/0000", relFile{}, false},
		{"base/5/99999999999", relFile{}, false},
	} {
		got, ok := parseRelPath(tc.path)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("%s: %+v %v, want %+v %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCoverage(t *testing.T) {
	w := func(tli uint32, a, b archive.LSN) pg.WALSummary { return pg.WALSummary{TLI: tli, Start: a, End: b} }
	for _, tc := range []struct {
		name string
		all  []pg.WALSummary
		gap  string // "" : covered
		use  int
	}{
		{"exact", []pg.WALSummary{w(1, 100, 200), w(1, 200, 300)}, "", 2},
		{"out of order, wider, others ignored", []pg.WALSummary{w(1, 250, 400), w(1, 50, 250), w(1, 10, 50), w(2, 100, 300)}, "", 2},
		{"a hole", []pg.WALSummary{w(1, 100, 180), w(1, 200, 300)}, "none covers 0/B4 to 0/C8", 0},
		{"short of the end", []pg.WALSummary{w(1, 100, 250)}, "none covers 0/FA to 0/12C", 0},
		{"another timeline only", []pg.WALSummary{w(2, 0, 1000)}, "none covers 0/64 to 0/12C", 0},
		{"none", nil, "none covers 0/64 to 0/12C", 0},
	} {
		use, gap := coverage(tc.all, 1, 100, 300)
		if gap != tc.gap || len(use) != tc.use {
			t.Errorf("%s: %d summaries, gap %q; want %d, %q", tc.name, len(use), gap, tc.use, tc.gap)
		}
	}
}

func TestChangeMapFile(t *testing.T) {
	cm := newChangeMap("the WAL summaries", true, 1000)
	rel := func(r uint32) pg.SummaryEntry { return pg.SummaryEntry{Tablespace: 1663, Database: 5, Relation: r} }
	add := func(e pg.SummaryEntry, blk uint32, limit bool) { e.Block, e.Limit = blk, limit; cm.addSummary(e) }
	add(pg.SummaryEntry{Tablespace: 1663, Database: 7}, 0, true) // database 7 created or dropped
	add(rel(10), 0, true)                                        // created
	add(rel(11), 1500, true)                                     // truncated in its second segment
	add(rel(11), 1200, false)
	add(rel(11), 5, false)
	for _, tc := range []struct {
		path  string
		whole string
		limit int64
		in    [2]int64 // a range
		n     int64    // changed blocks in it
	}{
		{"base/7/PG_VERSION", wholeNewDB, noLimit, [2]int64{0, 1}, 0},
		{"base/7/1259", wholeNewDB, noLimit, [2]int64{0, 1}, 0},
		{"base/5/10", wholeCreated, 0, [2]int64{0, 1}, 0},
		{"base/5/10_fsm", "", noLimit, [2]int64{0, 1}, 0}, // compared by content
		{"base/5/11", "", 1500, [2]int64{0, 1000}, 1},
		{"base/5/11.1", "", 500, [2]int64{0, 1000}, 1},
		{"base/5/12", "", noLimit, [2]int64{0, 1000}, 0},
		{"base/5/PG_VERSION", "", noLimit, [2]int64{0, 1}, 0},
	} {
		fc := cm.file(tc.path)
		if fc.whole != tc.whole || fc.whole == "" && (fc.limit != tc.limit || fc.changedIn(tc.in[0], tc.in[1]) != tc.n) {
			t.Errorf("%s: whole %q limit %d changed %d", tc.path, fc.whole, fc.limit, fc.changedIn(tc.in[0], tc.in[1]))
		}
	}
	d := cm.describe()
	for i := 0; i+1 < len(d); i += 2 {
		if d[i] == "blocks_changed" && d[i+1] != int64(2) {
			t.Errorf("describe: %v", d)
		}
	}
}
