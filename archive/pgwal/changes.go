package pgwal

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/walvault/walvault/archive"
)

// Resource managers and record kinds (rmgrlist.h, pg_control.h,
// storage_xlog.h, dbcommands_xlog.h).
const (
	rmXLOG  = 0
	rmXact  = 1
	rmSmgr  = 2
	rmDbase = 4

	xlrInfoMask         = 0x0F
	xlrSpecialRelUpdate = 0x01

	xlogSwitch          = 0x40
	xlogParameterChange = 0x60

	smgrCreate       = 0x10
	smgrTruncate     = 0x20
	smgrTruncateHeap = 0x0001

	// PostgreSQL 15 and later.
	dbaseCreateFileCopy = 0x00
	dbaseCreateWALLog   = 0x10
	dbaseDrop           = 0x20
	// PostgreSQL 14: one create record (a file copy), and the drop.
	dbaseCreate14 = 0x00
	dbaseDrop14   = 0x10

	walLevelMinimal = 0
)

// Forks of a relation (common/relpath.h).
const (
	ForkMain = 0
	ForkFSM  = 1
	ForkVM   = 2
	ForkInit = 3
)

// DBDir is a database's directory in a tablespace.
type DBDir struct{ Tablespace, Database uint32 }

// Rel is a relation's file number in a database and tablespace.
type Rel struct{ Tablespace, Database, Relation uint32 }

// RelFork is one fork of a relation.
type RelFork struct {
	Rel
	Fork uint8
}

// Event is the first record that did something.
type Event struct {
	LSN  archive.LSN
	What string
}

// Changes are what a stretch of WAL says about relation files beyond the
// blocks its records reference.
type Changes struct {
	// Databases are the database directories created (by copying a
	// template's files, or block by block) or dropped, each with the
	// first record that did.
	Databases map[DBDir]Event
	// Created are the relation forks whose files were created.
	Created map[RelFork]archive.LSN
	// Truncated is, for each relation whose main fork was truncated, the
	// smallest number of blocks it was cut to.
	Truncated map[Rel]uint32
	// Minimal is the first record saying the server runs with wal_level =
	// minimal (0: none): pages were then written without WAL.
	Minimal archive.LSN
	// Unknown is the first record that changes relation files in a way
	// this package does not read (0: none), of resource manager
	// UnknownRmgr.
	Unknown     archive.LSN
	UnknownRmgr uint8
}

func newChanges() Changes {
	return Changes{Databases: map[DBDir]Event{}, Created: map[RelFork]archive.LSN{}, Truncated: map[Rel]uint32{}}
}

// merge adds d, which comes later in the WAL, to c.
func (c *Changes) merge(d *Changes) {
	if c.Databases == nil {
		*c = newChanges()
	}
	for k, v := range d.Databases {
		if _, ok := c.Databases[k]; !ok {
			c.Databases[k] = v
		}
	}
	for k, v := range d.Created {
		if _, ok := c.Created[k]; !ok {
			c.Created[k] = v
		}
	}
	for k, v := range d.Truncated {
		if old, ok := c.Truncated[k]; !ok || v < old {
			c.Truncated[k] = v
		}
	}
	if c.Minimal == 0 {
		c.Minimal = d.Minimal
	}
	if c.Unknown == 0 {
		c.Unknown, c.UnknownRmgr = d.Unknown, d.UnknownRmgr
	}
}

// interesting says whether a record's content is decoded: parameter
// changes, relation file and database records, and any other record that
// says it changes relation files outside its block references (but
// transaction ends, whose dropped relations are gone from the data
// directory by the next checkpoint).
func interesting(info, rmid uint8) bool {
	switch rmid {
	case rmXLOG:
		return info&^xlrInfoMask == xlogParameterChange
	case rmSmgr, rmDbase:
		return true
	case rmXact:
		return false
	}
	return info&xlrSpecialRelUpdate != 0
}

// isSwitch says whether a record header is XLOG_SWITCH's: the rest of its
// segment is padding.
func isSwitch(hdr []byte) bool { return hdr[17] == rmXLOG && hdr[16]&^xlrInfoMask == xlogSwitch }

var errShort = errors.New("its data is too short for its kind")

// record adds what one kept record says.
func (c *Changes) record(at archive.LSN, hdr, body []byte, major int) error {
	info, rmid := hdr[16], hdr[17]
	data, err := mainData(body, major)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	kind := info &^ xlrInfoMask
	switch rmid {
	case rmXLOG:
		// xl_parameter_change: five ints, then wal_level.
		if len(data) < 24 {
			return errShort
		}
		if int32(le.Uint32(data[20:])) == walLevelMinimal && c.Minimal == 0 { // #nosec G115 -- a C int
			c.Minimal = at
		}
	case rmSmgr:
		return c.smgr(at, kind, data)
	case rmDbase:
		return c.dbase(at, kind, data, major)
	default:
		if c.Unknown == 0 {
			c.Unknown, c.UnknownRmgr = at, rmid
		}
	}
	return nil
}

// smgr reads xl_smgr_create {spc, db, rel, fork} and xl_smgr_truncate
// {blkno, spc, db, rel, flags}.
func (c *Changes) smgr(at archive.LSN, kind uint8, data []byte) error {
	le := binary.LittleEndian
	switch kind {
	case smgrCreate:
		if len(data) < 16 {
			return errShort
		}
		fork := le.Uint32(data[12:])
		if fork > ForkInit {
			return fmt.Errorf("fork %d", fork)
		}
		k := RelFork{Rel{le.Uint32(data[0:]), le.Uint32(data[4:]), le.Uint32(data[8:])}, uint8(fork)}
		if _, ok := c.Created[k]; !ok {
			c.Created[k] = at
		}
	case smgrTruncate:
		if len(data) < 20 {
			return errShort
		}
		blk, flags := le.Uint32(data[0:]), le.Uint32(data[16:])
		if flags&smgrTruncateHeap == 0 {
			return nil // the visibility map or free space map only
		}
		k := Rel{le.Uint32(data[4:]), le.Uint32(data[8:]), le.Uint32(data[12:])}
		if old, ok := c.Truncated[k]; !ok || blk < old {
			c.Truncated[k] = blk
		}
	}
	return nil
}

// dbase reads the create records ({db, spc, ...}) and the drop record
// {db, n, spc[n]}.
func (c *Changes) dbase(at archive.LSN, kind uint8, data []byte, major int) error {
	le := binary.LittleEndian
	add := func(spc, db uint32, what string) {
		k := DBDir{spc, db}
		if _, ok := c.Databases[k]; !ok {
			c.Databases[k] = Event{LSN: at, What: what}
		}
	}
	create, copied, drop := kind == dbaseCreateWALLog, kind == dbaseCreateFileCopy, kind == dbaseDrop
	if major <= 14 {
		create, copied, drop = false, kind == dbaseCreate14, kind == dbaseDrop14
	}
	switch {
	case create || copied:
		if len(data) < 8 {
			return errShort
		}
		what := "created"
		if copied {
			what = "created by copying files"
		}
		add(le.Uint32(data[4:]), le.Uint32(data[0:]), what)
	case drop:
		if len(data) < 8 {
			return errShort
		}
		db, n := le.Uint32(data[0:]), le.Uint32(data[4:])
		if uint64(len(data)) < 8+4*uint64(n) {
			return errShort
		}
		for i := range n {
			add(le.Uint32(data[8+4*i:]), db, "dropped")
		}
	default:
		return fmt.Errorf("unknown database record kind %#x", kind)
	}
	return nil
}

// mainData finds a record's main data: its last bytes, whose length the
// data header after the block headers gives.
func mainData(b []byte, major int) ([]byte, error) {
	le := binary.LittleEndian
	off, blockData := 0, 0
	need := func(n int) error {
		if off+n > len(b) {
			return errors.New("its block headers run past its end")
		}
		return nil
	}
	for off < len(b) {
		id := b[off]
		off++
		switch {
		case id == 255: // XLR_BLOCK_ID_DATA_SHORT
			if err := need(1); err != nil {
				return nil, err
			}
			return tail(b, off+1, blockData, int(b[off]))
		case id == 254: // XLR_BLOCK_ID_DATA_LONG
			if err := need(4); err != nil {
				return nil, err
			}
			return tail(b, off+4, blockData, int(le.Uint32(b[off:])))
		case id == 253: // XLR_BLOCK_ID_ORIGIN
			off += 2
		case id == 252: // XLR_BLOCK_ID_TOPLEVEL_XID
			off += 4
		case id <= 32: // a block reference
			n, data, err := blockHeader(b[off:], major)
			if err != nil {
				return nil, err
			}
			off += n
			blockData += data
		default:
			return nil, fmt.Errorf("unknown block id %d", id)
		}
	}
	return nil, nil // no main data
}

// tail checks that the block data and the main data fill the record after
// its headers, and returns the main data.
func tail(b []byte, off, blockData, mainLen int) ([]byte, error) {
	if mainLen < 0 || off+blockData+mainLen != len(b) {
		return nil, errors.New("its lengths do not add up")
	}
	return b[len(b)-mainLen:], nil
}

// blockHeader reads one XLogRecordBlockHeader (after its id) and returns
// its length and how many bytes of block data follow the headers for it.
func blockHeader(b []byte, major int) (n, data int, err error) {
	le := binary.LittleEndian
	if len(b) < 3 {
		return 0, 0, errShort
	}
	flags := b[0]
	data = int(le.Uint16(b[1:]))
	n = 3
	if flags&0x10 != 0 { // BKPBLOCK_HAS_IMAGE
		if len(b) < n+5 {
			return 0, 0, errShort
		}
		data += int(le.Uint16(b[n:]))
		info := b[n+4]
		n += 5
		compressed := info&0x1C != 0 // BKPIMAGE_COMPRESS_{PGLZ,LZ4,ZSTD}
		if major <= 14 {
			compressed = info&0x02 != 0 // BKPIMAGE_IS_COMPRESSED
		}
		if info&0x01 != 0 && compressed { // BKPIMAGE_HAS_HOLE
			n += 2
		}
	}
	if flags&0x80 == 0 { // not BKPBLOCK_SAME_REL: a RelFileLocator
		n += 12
	}
	n += 4 // the block number
	if len(b) < n {
		return 0, 0, errShort
	}
	return n, data, nil
}
