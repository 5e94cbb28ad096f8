package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// ErrInterrupted marks a download the connection cut short, as opposed to
// an object that does not decode: a decoder sees both as an early end.
var ErrInterrupted = errors.New("the download was interrupted")

// LoadOnce is Store.Load without retries, over s's Get: what a backend's
// Load is, and what a decorator that changes Get implements Load with. It
// opens key and hands its body to fn once. When fn fails because the
// connection broke while it read (reset or cut short; not a cancellation),
// the error names the store and key and wraps ErrInterrupted and the
// network's error: the retry decorator calls fn again then, except after a
// stall past the I/O timeout, which has waited long enough (that error is
// permanent). Any other error of fn is returned as fn returned it.
func LoadOnce(ctx context.Context, s Store, key string, fn func(io.Reader, ObjectInfo) error) error {
	rc, info, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	body := &watchedReader{r: rc}
	err = fn(body, info)
	if err == nil || !body.broke(ctx) {
		return err
	}
	err = fmt.Errorf("%s: reading %s: %w: %w", s, key, ErrInterrupted, body.err)
	if errors.Is(body.err, os.ErrDeadlineExceeded) {
		return Permanent(err) // a stall: the I/O timeout has waited already
	}
	return err
}

// fnError carries an error of Load's fn through the retry loop, unretried,
// to be returned as it was.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }
func (e fnError) Unwrap() error { return e.err }

func asFnErr(err error) (error, bool) {
	var p permanentError
	if errors.As(err, &p) {
		if fe, ok := p.err.(fnError); ok {
			return fe.err, true
		}
	}
	return nil, false
}

// watchedReader remembers the error of the stream under a decoder, so a
// network failure is not taken for a damaged object.
type watchedReader struct {
	r   io.Reader
	err error
}

func (t *watchedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// broke reports whether the network cut the stream short or reset it (not
// a cancellation, nor a checksum mismatch, which is the object's fault).
func (t *watchedReader) broke(ctx context.Context) bool {
	if t.err == nil || ctx.Err() != nil {
		return false
	}
	var ne net.Error
	return errors.Is(t.err, io.ErrUnexpectedEOF) || errors.As(t.err, &ne) ||
		errors.Is(t.err, syscall.ECONNRESET) || errors.Is(t.err, syscall.EPIPE)
}
