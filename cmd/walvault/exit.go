package main

import (
	"errors"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/wal"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// Exit codes. PostgreSQL reads them: restore_command's 1 means "no such
// file", and anything above 125 aborts recovery, so all stay below 126
// but exitStopRecovery, which wal-fetch uses for exactly that.
const (
	exitOK        = 0
	exitNotFound  = 1 // wal-fetch: the file is not in the archive
	exitUsage     = 2 // bad command line or configuration
	exitStore     = 3 // the store cannot be reached or refuses us
	exitIntegrity = 4 // an object is corrupt, truncated or undecryptable
	exitConflict  = 5 // the archive holds different content or another cluster
	exitPostgres  = 6 // PostgreSQL refused or failed
	exitVerify    = 7 // verify found a problem
	exitFailure   = 9 // anything else
	// exitStopRecovery: wal-fetch found the file but cannot use it (or,
	// outside a standby, cannot reach the store): PostgreSQL stops
	// recovery instead of ending it.
	exitStopRecovery = wal.ExitStopRecovery
)

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, archive.ErrNotInArchive):
		return exitNotFound
	case errors.Is(err, errUsage), errors.Is(err, cloud.ErrBadURL), errors.Is(err, crypto.ErrBadKey),
		errors.Is(err, crypto.ErrInsecureKey), errors.Is(err, archive.ErrNotWALName), errors.Is(err, archive.ErrBadInput):
		return exitUsage
	case errors.Is(err, archive.ErrConflict), errors.Is(err, archive.ErrOtherCluster), errors.Is(err, cloud.ErrLocked):
		return exitConflict
	case errors.Is(err, codec.ErrCorrupt), errors.Is(err, archive.ErrIntegrity),
		errors.Is(err, crypto.ErrWrongKey), errors.Is(err, crypto.ErrNoIdentity), errors.Is(err, crypto.ErrBadProof):
		return exitIntegrity
	case errors.Is(err, archive.ErrPostgres):
		return exitPostgres
	case errors.Is(err, archive.ErrVerifyFailed):
		return exitVerify
	case errors.Is(err, cloud.ErrAccess), errors.Is(err, cloud.ErrNotFound), errors.Is(err, archive.ErrStore):
		return exitStore
	}
	return exitFailure
}

func isNotInArchive(err error) bool { return errors.Is(err, archive.ErrNotInArchive) }
