package wal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"

	"github.com/walvault/walvault/archive/codec"
)

// encodePass is wal-push's one read of a file, run in the background:
// the content's SHA-256 and, when it is small enough, its encoded form.
type encodePass struct {
	done    chan struct{}
	sum     string
	encoded []byte // nil when over encodeInMemoryLimit
	err     error
}

func startEncodePass(f *os.File, size int64, s codec.Settings) *encodePass {
	p := &encodePass{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.sum, p.encoded, p.err = hashAndEncode(io.NewSectionReader(f, 0, size), size, s)
	}()
	return p
}

// wait returns once the pass is over; its fields are then set. It may be
// called any number of times.
func (p *encodePass) wait() { <-p.done }

// encodeInMemoryLimit bounds the encoded copy hashAndEncode keeps.
const encodeInMemoryLimit = 8 << 20

var errTooBig = errors.New("encoded object over the in-memory limit")

type boundedBuffer struct{ bytes.Buffer }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > encodeInMemoryLimit {
		return 0, errTooBig
	}
	return b.Buffer.Write(p)
}

// hashAndEncode reads r once, returning its SHA-256 and, when it fits in
// encodeInMemoryLimit, its encoded form.
func hashAndEncode(r io.Reader, size int64, s codec.Settings) (string, []byte, error) {
	h := sha256.New()
	var buf boundedBuffer
	// Room for a 4:1 ratio up front saves the buffer's copies as it grows.
	buf.Grow(int(min(size/6+64<<10, encodeInMemoryLimit)))
	enc, err := codec.NewWriter(&buf, s)
	if err != nil {
		return "", nil, err
	}
	chunk := make([]byte, 256<<10)
	for {
		n, rerr := io.ReadFull(r, chunk)
		if n > 0 {
			h.Write(chunk[:n])
			if enc != nil {
				if _, err := enc.Write(chunk[:n]); err != nil {
					enc = nil // too big: the upload encodes while streaming
				}
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return "", nil, rerr
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if enc == nil || enc.Close() != nil {
		return sum, nil, nil
	}
	return sum, buf.Bytes(), nil
}
