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

// Load opens key and hands its body to fn, which must read from the start
// each time it is called. Through the retry decorator (every store Open
// returns), a connection that breaks while fn reads (reset or cut short;
// not a stall past the I/O timeout, which has waited long enough, and not
// a cancellation) is opened again and fn called anew; the error then wraps
// ErrInterrupted. Any other error of fn is returned as fn returned it.
func Load(ctx context.Context, s Store, key string, fn func(r io.Reader, info ObjectInfo) error) error {
	if l, ok := s.(interface {
		load(context.Context, string, func(io.Reader, ObjectInfo) error) error
	}); ok {
		return l.load(ctx, key, fn)
	}
	err := loadOnce(ctx, s, key, fn)
	if fe, ok := asFnErr(err); ok {
		return fe
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

// loadOnce is one attempt of Load.
func loadOnce(ctx context.Context, s Store, key string, fn func(io.Reader, ObjectInfo) error) error {
	rc, info, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	body := &watchedReader{r: rc}
	err = fn(body, info)
	if err == nil {
		return nil
	}
	if body.broke(ctx) {
		err = fmt.Errorf("%s: reading %s: %w: %w", s, key, ErrInterrupted, body.err)
		if errors.Is(body.err, os.ErrDeadlineExceeded) {
			return Permanent(err) // a stall: the I/O timeout has waited already
		}
		return err
	}
	return Permanent(fnError{err})
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
