package retention

import (
	"github.com/walvault/walvault/archive/internal/backuptest"
)

// The synthetic store these tests build by hand is
// archive/internal/backuptest's, shared with the other commands' tests.
var (
	newSynth     = backuptest.NewSynth
	tmin         = backuptest.Tmin
	twoTimelines = backuptest.TwoTimelines
)
