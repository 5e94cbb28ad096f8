package pg

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/walvault/walvault/archive"
)

// CheckControlFile makes sure pgdata is the directory of the cluster with
// system identifier sysid: a wrong --pgdata would otherwise back up another
// cluster under this one's name.
func CheckControlFile(pgdata string, sysid uint64) error {
	f, err := os.Open(filepath.Join(pgdata, "global", "pg_control")) // #nosec G304 -- the data directory we back up
	if err != nil {
		return fmt.Errorf("%w: %s is not a readable PostgreSQL data directory: %w", archive.ErrBadInput, pgdata, err)
	}
	defer func() { _ = f.Close() }()
	var b [8]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return fmt.Errorf("%w: %s/global/pg_control: %w", archive.ErrBadInput, pgdata, err)
	}
	if got := binary.LittleEndian.Uint64(b[:]); got != sysid {
		return fmt.Errorf("%w: %s belongs to the cluster with system identifier %d, but the server we are connected to is %d: check --pgdata and the connection settings", archive.ErrBadInput, pgdata, got, sysid)
	}
	return nil
}

// ControlSystemID reads the system identifier from pgdata's pg_control,
// the first 8 bytes in the server's byte order (little-endian on every
// platform walvault runs on).
func ControlSystemID(pgdata string) (uint64, error) {
	f, err := os.Open(filepath.Join(pgdata, "global", "pg_control")) // #nosec G304 -- the data directory we serve
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	var b [8]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, fmt.Errorf("%s/global/pg_control: %w", pgdata, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}
