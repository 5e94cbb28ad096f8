package wal

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/crypto"
)

// PostgreSQL reads a restore_command that exits non-zero as "this file is
// not in the archive". During an archive recovery that ends recovery at
// the end of what it could fetch and promotes: a segment that is there
// but cannot be used (tampered with, undecryptable, of another cluster,
// too large), or a store that cannot be reached, would silently cut
// point-in-time recovery short and start a new timeline. Only an exit
// status above 125 (or a signal other than SIGTERM) makes PostgreSQL stop
// recovery with FATAL instead, so that the cause can be fixed and the
// server started again, resuming where it was.

// ExitStopRecovery is the exit status wal-fetch (and walvault-wal fetch)
// uses to make PostgreSQL stop recovery.
const ExitStopRecovery = 255

// StopRecoveryHint ends the one line a fetch that stops recovery prints.
const StopRecoveryHint = "; exiting 255 so that PostgreSQL stops recovery instead of ending it here: fix the cause, then start the server again and recovery resumes"

// StopsRecovery says whether a failed fetch into the data directory
// pgdata must stop recovery rather than report the file absent. Only
// ErrNotInArchive is "absent". A standby (standby.signal) is the
// exception for failures that may pass (the store unreachable, a local
// error): PostgreSQL retries restore_command on a standby, and streams
// meanwhile, so stopping the server would be worse. What is wrong with
// the object itself, or with the settings that read it, stops a standby
// too: retrying cannot fix it.
func StopsRecovery(err error, pgdata string) bool {
	if err == nil || errors.Is(err, archive.ErrNotInArchive) {
		return false
	}
	if !IsStandby(pgdata) {
		return true
	}
	return errors.Is(err, archive.ErrIntegrity) || errors.Is(err, codec.ErrCorrupt) ||
		errors.Is(err, crypto.ErrBadProof) || errors.Is(err, crypto.ErrWrongKey) || errors.Is(err, crypto.ErrNoIdentity) ||
		errors.Is(err, crypto.ErrBadKey) || errors.Is(err, archive.ErrBadInput) || errors.Is(err, archive.ErrOtherCluster)
}

// IsStandby says whether pgdata recovers as a standby (PostgreSQL 12 and
// later: standby.signal).
func IsStandby(pgdata string) bool {
	_, err := os.Stat(filepath.Join(pgdata, "standby.signal"))
	return err == nil
}

// DataDirOf is the data directory of a restore_command's %p
// (pg_wal/RECOVERYXLOG, relative to the data directory, or absolute).
func DataDirOf(dest string) string { return filepath.Dir(filepath.Dir(dest)) }
