// Package cloud is walvault's storage layer: one small Store interface, the
// file:// backend, URL parsing, and decorators for cross-cutting concerns
// such as retries. The SDK backends live in cloud/s3, cloud/gcs and
// cloud/azure, registered by the program that wants them (cloud/all), so
// nothing that only needs the interface links an SDK. It knows nothing
// about PostgreSQL.
package cloud

import (
	"context"
	"errors"
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
}

// ListOptions control a listing.
type ListOptions struct {
	// Delimiter, when non-empty, groups keys that share the text up to the
	// next delimiter after the prefix into one IsPrefix entry.
	Delimiter string
}

// Store is a flat key/value object store. Keys use '/' as separator and are
// relative to the prefix the store was opened with. Implementations are safe
// for concurrent use.
type Store interface {
	// Put streams r to key. It returns nil only once the whole object is
	// durable in the store; a failed or cancelled Put leaves no object
	// (or the previous one) under key, never a partial one.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error
	// Get opens key for reading. The returned info carries the metadata.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
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

// Closer is implemented by stores that hold resources (clients, servers).
type Closer interface{ Close() error }

// Close releases s's resources if it holds any.
func Close(s Store) error {
	if c, ok := s.(Closer); ok {
		return c.Close()
	}
	return nil
}
