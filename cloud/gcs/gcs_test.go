package gcs

import (
	"errors"
	"testing"

	"github.com/walvault/walvault/cloud/storetest"
)

// TestChecksumBody: the client's failed CRC32C check of a download is
// reported as cloud.ErrChecksum.
func TestChecksumBody(t *testing.T) {
	storetest.ChecksumBody(t, checksumBody, errors.New("storage: bad CRC on read: got 1154755010, want 2013506586"))
}
