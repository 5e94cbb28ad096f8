package cloud

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
)

// What the SDK backends (cloud/s3, cloud/gcs, cloud/azure) share besides
// the transport and the error wording.

// PartSlack is added to a backend's part (chunk, block) size so that an
// object slightly larger than one part (a 16 MiB WAL segment plus
// compression or encryption framing) goes up in one request instead of
// two, the second tiny.
const PartSlack = 1 << 20

// SourceReader wraps a Put body that an SDK reads itself. It stops at the
// end of ctx and remembers the body's own error, so that Put can tell a
// source that failed from an upload that did.
type SourceReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

// NewSourceReader wraps r, the body of a Put under ctx.
func NewSourceReader(ctx context.Context, r io.Reader) *SourceReader {
	return &SourceReader{ctx: ctx, r: r}
}

func (e *SourceReader) Read(p []byte) (int, error) {
	if err := e.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

// Err is the body's last error other than io.EOF, or nil.
func (e *SourceReader) Err() error { return e.err }

// EmitSorted hands one page of a listing to fn in lexical order. SDKs
// return a page's objects and common prefixes as two sorted lists, while
// List promises one order.
func EmitSorted(entries []ObjectInfo, fn func(ObjectInfo) error) error {
	slices.SortFunc(entries, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, e := range entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}
