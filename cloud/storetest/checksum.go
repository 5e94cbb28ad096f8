package storetest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/walvault/walvault/cloud"
)

// ChecksumBody tests a backend's wrapper of Get bodies (see
// cloud.MarkChecksum): a read that fails with sdkErr, the SDK's words for
// a failed validation of the store's checksum, plain or wrapped, unwraps to
// cloud.ErrChecksum and still to sdkErr, whose text stays in the message;
// other errors, and the end of the body, pass as they are.
func ChecksumBody(t *testing.T, wrap func(io.ReadCloser) io.ReadCloser, sdkErr error) {
	t.Helper()
	for _, tc := range []struct {
		name     string
		err      error // what the SDK's body returns after the data
		checksum bool
	}{
		{"mismatch", sdkErr, true},
		{"mismatch wrapped", fmt.Errorf("reading the body: %w", sdkErr), true},
		{"connection reset", syscall.ECONNRESET, false},
		{"cut short", io.ErrUnexpectedEOF, false},
		{"end", io.EOF, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := io.NopCloser(io.MultiReader(strings.NewReader("data"), iotest.ErrReader(tc.err)))
			got, err := io.ReadAll(wrap(body))
			if string(got) != "data" {
				t.Errorf("read %q; want the data before the error", got)
			}
			if tc.err == io.EOF {
				if err != nil {
					t.Errorf("the end of the body became %v", err)
				}
				return
			}
			if errors.Is(err, cloud.ErrChecksum) != tc.checksum || !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.err.Error()) {
				t.Errorf("error %v; want the SDK's error, ErrChecksum %v", err, tc.checksum)
			}
		})
	}
}
