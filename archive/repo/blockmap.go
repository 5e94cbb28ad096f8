package repo

import (
	"encoding/base64"
	"fmt"
	"math/bits"
)

// MaxBlockMapBlocks bounds the blocks a block map may describe: a 1 GiB
// relation segment of 8 KiB blocks. A file with more blocks (a server
// built with other RELSEG_SIZE or BLCKSZ) is stored whole.
const MaxBlockMapBlocks = 1 << 17

// BlockMap says which blocks of a file an incremental backup stores: bit
// i (byte i/8, least significant bit first) set means block i is there.
type BlockMap []byte

// NewBlockMap returns an empty map for a file of blocks blocks.
func NewBlockMap(blocks int64) BlockMap { return make(BlockMap, (blocks+7)/8) }

// DecodeBlockMap parses the base64 form of a map for a file of blocks
// blocks. It is read from the store: its length must be exactly what the
// file needs and no bit may be set past the last block.
func DecodeBlockMap(s string, blocks int64) (BlockMap, error) {
	if blocks < 0 || blocks > MaxBlockMapBlocks {
		return nil, fmt.Errorf("a block map for %d blocks, more than %d", blocks, MaxBlockMapBlocks)
	}
	want := (blocks + 7) / 8
	if int64(base64.StdEncoding.DecodedLen(len(s))) > want+2 {
		return nil, fmt.Errorf("a block map of %d characters for %d blocks", len(s), blocks)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || int64(len(b)) != want {
		return nil, fmt.Errorf("a block map that is not %d bytes of base64", want)
	}
	if r := blocks % 8; r != 0 && b[len(b)-1]>>r != 0 {
		return nil, fmt.Errorf("a block map with blocks past the end of the file")
	}
	return b, nil
}

// String is the base64 form stored in File.Blocks.
func (b BlockMap) String() string { return base64.StdEncoding.EncodeToString(b) }

// Has says whether block i is stored.
func (b BlockMap) Has(i int64) bool {
	return i >= 0 && i/8 < int64(len(b)) && b[i/8]&(1<<(i%8)) != 0
}

// Set marks block i as stored; i must be below the map's size.
func (b BlockMap) Set(i int64) { b[i/8] |= 1 << (i % 8) }

// Count is the number of blocks stored: the entry's size is Count()
// blocks.
func (b BlockMap) Count() int64 {
	n := 0
	for _, c := range b {
		n += bits.OnesCount8(c)
	}
	return int64(n)
}
