package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// StateFile is where walvault keeps the host-local state file name (a
// command's memory between runs, never the archive) unless told:
// $XDG_STATE_HOME/walvault/NAME, else /var/lib/walvault/NAME for root,
// else ~/.local/state/walvault/NAME; "" when there is no home either.
func StateFile(name string) string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "walvault", name)
	}
	if os.Geteuid() == 0 {
		return filepath.Join("/var/lib/walvault", name)
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "walvault", name)
	}
	return ""
}

// ErrTooLarge is ReadSmall's answer for a file over its bound.
var ErrTooLarge = errors.New("too large")

// ReadSmall reads all of path, which must hold at most max bytes (a file
// over it is an error wrapping ErrTooLarge, read no further). A missing
// file is nil, nil.
func ReadSmall(path string, max int64) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator's own state file
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)
	}
	return b, nil
}
