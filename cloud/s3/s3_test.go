package s3

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"testing/iotest"

	"github.com/walvault/walvault/cloud/storetest"
)

func TestReadFirst(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 100000) // 1 MB
	for _, tc := range []struct {
		n, limit, hint int64
		eof            bool
	}{
		{0, 100, 0, true},
		{10, 100, 0, true},
		{100, 100, 0, false}, // exactly full: more may follow
		{1000000, 2 << 20, 0, true},
		{1000000, 2 << 20, 10, true},      // wrong hint
		{1000000, 2 << 20, 1000000, true}, // right hint
		{1000000, 300000, 0, false},
	} {
		r := iotest.HalfReader(bytes.NewReader(data[:tc.n]))
		buf, eof, err := readFirst(ctx, r, tc.limit, tc.hint)
		want := data[:min(tc.n, tc.limit)]
		if err != nil || eof != tc.eof || !bytes.Equal(buf, want) {
			t.Errorf("n=%d limit=%d hint=%d: %d bytes, eof %v, %v; want %d bytes, eof %v", tc.n, tc.limit, tc.hint, len(buf), eof, err, len(want), tc.eof)
		}
	}
	boom := errors.New("boom")
	if _, _, err := readFirst(ctx, iotest.ErrReader(boom), 100, 0); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
}

func TestS3PartSize(t *testing.T) {
	s := &store{partSize: defaultPartSize}
	for _, hint := range []int64{0, 1 << 20, 1 << 30, 100 << 30, 1 << 40, 5 << 40} {
		got := s.partSizeFor(hint)
		if got < defaultPartSize || got%(1<<20) != 0 || got > maxPartSize {
			t.Errorf("partSizeFor(%d) = %d", hint, got)
		}
		if hint <= 1<<30 && got != defaultPartSize {
			t.Errorf("partSizeFor(%d) = %d MiB; want the default", hint, got>>20)
		}
		// A hint up to 10% low still fits in S3's 10,000 parts.
		if parts := (hint + hint/10 + got - 1) / got; parts > maxParts {
			t.Errorf("hint %d: %d parts of %d MiB", hint, parts, got>>20)
		}
	}
}

// TestChecksumBody: the SDK's failed response checksum validation is
// reported as cloud.ErrChecksum.
func TestChecksumBody(t *testing.T) {
	storetest.ChecksumBody(t, checksumBody, errors.New("checksum did not match: algorithm CRC32, expect 3hV0Lg==, actual AAAAAA=="))
}
