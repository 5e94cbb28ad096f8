// Package cloud is walvault's storage layer: one small Store interface, the
// file:// backend, URL parsing, and decorators for cross-cutting concerns
// such as retries. The SDK backends live in cloud/s3, cloud/gcs and
// cloud/azure, registered by the program that wants them (cloud/all), so
// nothing that only needs the interface links an SDK. It knows nothing
// about PostgreSQL.
package cloud

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors every backend maps its own to, so callers can use errors.Is.
var (
	// ErrNotFound: the object (or, for Open, the bucket) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a write-once Put found the key already taken.
	ErrExists = errors.New("object already exists")
	// ErrAccess: credentials are missing, wrong or not allowed to do this.
	ErrAccess = errors.New("access denied")
)

// ObjectInfo describes one stored object, or with IsPrefix a common prefix
// returned by a delimited listing.
type ObjectInfo struct {
	Key      string // relative to the store's prefix
	Size     int64  // stored bytes
	ModTime  time.Time
	Metadata map[string]string // user metadata; keys are lower case
	IsPrefix bool
	// RetainUntil is the object's retain-until date under the store's
	// immutability (zero: not locked, or the backend cannot tell). Get and
	// Stat fill it; a listing does not.
	RetainUntil time.Time
}

// PutOptions control one upload.
type PutOptions struct {
	// Metadata is stored with the object. Keys must be lower case ASCII
	// letters, digits and '-'; values printable ASCII.
	Metadata map[string]string
	// IfAbsent makes the write conditional: when the key exists, Put fails
	// with ErrExists and the stored object is untouched.
	IfAbsent bool
	// SizeHint is the expected stored size, or 0 when unknown. Backends may
	// use it to pick a part size; it is never trusted for correctness.
	SizeHint int64
	// Retention, when set, locks the object until its date (the lock
	// decorator sets it; see WithLock). A backend that cannot lock objects
	// fails the Put (NoRetention).
	Retention *Retention
	// NoLock exempts a transient object (a probe, a delete marker file)
	// from the store's lock.
	NoLock bool
}

// ListOptions control a listing.
type ListOptions struct {
	// Delimiter, when non-empty, groups keys that share the text up to the
	// next delimiter after the prefix into one IsPrefix entry.
	Delimiter string
}

// Store is a flat key/value object store. Keys use '/' as separator and are
// relative to the prefix the store was opened with. Implementations are safe
// for concurrent use. cloud/storetest is the suite every backend and
// decorator passes.
//
// A decorator (a Store that wraps another, such as the retry decorator)
// embeds the store it wraps and overrides what it changes. One that changes
// Get must implement Load with LoadOnce over its own Get: the wrapped
// store's Load, promoted by embedding, would not see the change.
type Store interface {
	// Put streams body to key. It returns nil only once the whole object is
	// durable in the store; a failed or cancelled Put leaves no object
	// (or the previous one) under key, never a partial one. Put may read
	// body again from its start (see Body); so may its caller's retry.
	Put(ctx context.Context, key string, body Body, opts PutOptions) error
	// Get opens key for reading. The returned info carries the metadata.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	// Load opens key and hands its body and info to fn, which reads from
	// the start each time it is called: a store may call fn again when the
	// connection breaks while fn reads (the retry decorator does; see
	// LoadOnce for what counts as broken). fn's own errors are returned as
	// fn returned them, never retried. Backends implement it with LoadOnce.
	Load(ctx context.Context, key string, fn func(r io.Reader, info ObjectInfo) error) error
	// GetRange opens bytes [off, off+n) of key for reading: fewer when the
	// object ends first, none when off is at or past its end or n is 0 (a
	// missing key is ErrNotFound all the same). off and n must not be
	// negative. It is for a reader that fetches a few authenticated pieces
	// of a large object (delta restore); the body carries no metadata.
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// Stat returns the object's size and metadata, or ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every key under prefix, in lexical order. Returning
	// an error from fn stops the listing and List returns that error.
	List(ctx context.Context, prefix string, opts ListOptions, fn func(ObjectInfo) error) error
	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// String names the store for messages, without any secret.
	String() string
}

// Body is what Put uploads: a stream that can start over. Before reading
// it again from its start (the retry decorator does after a transient
// failure), a store calls Rewind. An error from Rewind ends the retries:
// ErrNoRewind (a body made with Once) returns the upload's own error; any
// other is the cause (a source that cannot be read again) and is returned.
// The body types say at compile time whether an upload can be retried:
// Bytes and Seekable can, an encoder that re-reads its source can (the
// object layer's), Once cannot.
type Body interface {
	io.Reader
	Rewind() error
}

// CheckRange refuses a range GetRange cannot mean: a negative offset or
// length.
func CheckRange(key string, off, n int64) error {
	if off < 0 || n < 0 {
		return Permanent(fmt.Errorf("%s: a range of %d bytes at offset %d", key, n, off))
	}
	return nil
}

type writeNextKey struct{}

// WriteNext marks ctx for a Stat whose caller writes the key when it is
// missing (wal-push before its conditional upload). A backend whose HEAD
// answers 404 alike for a missing object and a missing bucket, and spends
// a second request to tell them apart, may skip that request there: the
// write that follows reports a missing bucket itself.
func WriteNext(ctx context.Context) context.Context {
	return context.WithValue(ctx, writeNextKey{}, true)
}

// WritesNext reports whether ctx was marked by WriteNext.
func WritesNext(ctx context.Context) bool {
	v, _ := ctx.Value(writeNextKey{}).(bool)
	return v
}

// TrivialRange settles a GetRange that needs no ranged request: a range
// GetRange cannot mean (refused), and one of no byte (an empty body once
// the object is known to exist: servers read a length of 0 as "to the
// end"). done says whether the backend's GetRange is finished.
func TrivialRange(ctx context.Context, s Store, key string, off, n int64) (body io.ReadCloser, done bool, err error) {
	if err := CheckRange(key, off, n); err != nil {
		return nil, true, err
	}
	if n != 0 {
		return nil, false, nil
	}
	if _, err := s.Stat(ctx, key); err != nil {
		return nil, true, err
	}
	return EmptyBody(), true, nil
}

// EmptyBody is the body of a range that holds no byte.
func EmptyBody() io.ReadCloser { return io.NopCloser(bytes.NewReader(nil)) }

// RangeAfterError is what a backend answers when its server refused a
// range request with err: a range that starts at or past the end of an
// object that exists is empty (servers answer 416 there); anything else
// is err.
func RangeAfterError(ctx context.Context, s Store, key string, off int64, err error) (io.ReadCloser, error) {
	info, serr := s.Stat(ctx, key)
	if serr != nil {
		if errors.Is(serr, ErrNotFound) {
			return nil, serr
		}
		return nil, err
	}
	if off >= info.Size {
		return EmptyBody(), nil
	}
	return nil, err
}

// ErrNoRewind is Rewind's answer for a body that can be read only once.
var ErrNoRewind = errors.New("the body cannot be read again")

// BytesBody is a Body over bytes already in memory.
type BytesBody struct {
	*bytes.Reader
	b []byte
}

// Bytes is a Body over b.
func Bytes(b []byte) *BytesBody { return &BytesBody{Reader: bytes.NewReader(b), b: b} }

// Rewind starts over.
func (b *BytesBody) Rewind() error {
	b.Reader.Reset(b.b)
	return nil
}

// Bytes are the body's bytes, for a backend that sends them in one request.
func (b *BytesBody) Bytes() []byte { return b.b }

// Unread is what a read of the body would return from here.
func (b *BytesBody) Unread() []byte { return b.b[len(b.b)-b.Reader.Len():] }

// Seekable is a Body over r that starts over at the offset r is at now.
func Seekable(r io.ReadSeeker) Body {
	start, err := r.Seek(0, io.SeekCurrent)
	return &seekBody{ReadSeeker: r, start: start, err: err}
}

type seekBody struct {
	io.ReadSeeker
	start int64
	err   error // r could not tell its offset: it cannot start over
}

func (s *seekBody) Rewind() error {
	if s.err != nil {
		return ErrNoRewind
	}
	_, err := s.Seek(s.start, io.SeekStart)
	return err
}

// Once is a Body of a stream that can be read only once: a Put of it is a
// single attempt.
func Once(r io.Reader) Body { return onceBody{r} }

type onceBody struct{ io.Reader }

func (onceBody) Rewind() error { return ErrNoRewind }

// Closer is implemented by stores that hold resources (clients, servers).
type Closer interface{ Close() error }

// Close releases s's resources if it holds any.
func Close(s Store) error {
	if c, ok := s.(Closer); ok {
		return c.Close()
	}
	return nil
}
