package archive

import (
	"context"
	"errors"
)

// Errors the CLI maps to exit codes with errors.Is.
var (
	// ErrNotInArchive: the requested file is not in the store (wal-fetch
	// exits 1, which PostgreSQL expects for files that do not exist).
	ErrNotInArchive = errors.New("not in the archive")
	// ErrBadInput: the command was asked to do something that cannot work.
	ErrBadInput = errors.New("bad input")
	// ErrConflict: the store already holds different content under the name.
	ErrConflict = errors.New("archive already holds different content")
	// ErrOtherCluster: the store prefix belongs to another cluster.
	ErrOtherCluster = errors.New("store belongs to another cluster")
	// ErrIntegrity: stored data fails its checksum or does not decode.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrPostgres: PostgreSQL refused or failed.
	ErrPostgres = errors.New("postgres error")
	// ErrVerifyFailed: verify found missing or damaged data.
	ErrVerifyFailed = errors.New("verification failed")
	// ErrStore: the store could not be used (unreachable, refused...).
	ErrStore = errors.New("store error")
)

// storeError tags err as coming from the store while printing only err.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() []error {
	return []error{e.err, ErrStore}
}

// StoreErr tags err as the store's failure (exit 3) without changing its
// message; nil stays nil.
func StoreErr(err error) error {
	if err == nil {
		return nil
	}
	return storeError{err}
}

// IsContextErr reports a cancellation or deadline: never the object's
// fault, never worth a retry.
func IsContextErr(err error) bool {
	return err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
