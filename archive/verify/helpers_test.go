package verify

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/backuptest"
	"github.com/walvault/walvault/cloud"
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

// badChecksumStore fails every read of a part at its end as a store whose
// own checksum of the object does not match would.
type badChecksumStore struct{ cloud.Store }

func (b badChecksumStore) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	rc, info, err := b.Store.Get(ctx, key)
	if err != nil || !strings.Contains(key, "/part-") {
		return rc, info, err
	}
	return &checksumFailure{rc}, info, nil
}

type checksumFailure struct{ io.ReadCloser }

func (c *checksumFailure) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err == io.EOF {
		err = fmt.Errorf("%w: checksum did not match", cloud.ErrChecksum)
	}
	return n, err
}
