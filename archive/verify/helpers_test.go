package verify

import (
	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
)

// The data directory and backups these tests verify are built by
// archive/internal/backuptest, shared with restore's tests.
var (
	pushTestBackup = backuptest.Push
	writeTree      = backuptest.WriteTree
)

// The synthetic store these tests build by hand is
// archive/internal/backuptest's, shared with the other commands' tests.
type synth = backuptest.Synth

var (
	newSynth      = backuptest.NewSynth
	newFlakyStore = backuptest.NewFlakyStore
	tmin          = backuptest.Tmin
	twoTimelines  = backuptest.TwoTimelines
)

// stopSegment is the last segment a backup needs: the one holding the byte
// before the stop LSN.
func stopSegment(tli uint32, stop archive.LSN, segSize int64) string {
	if stop > 0 {
		stop--
	}
	return archive.SegmentOf(tli, stop, segSize)
}
