package restore

import (
	"github.com/walvault/walvault/archive/internal/backuptest"
)

// The data directory and backups these tests restore from are built by
// archive/internal/backuptest, shared with verify's tests.
var (
	pushTestBackup = backuptest.Push
	signedRepo     = backuptest.SignedRepo
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

func timePtr[T any](v T) *T { return &v }
