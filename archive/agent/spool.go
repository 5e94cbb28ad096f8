package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
)

// fileID is what identifies one version of a pg_wal file: PostgreSQL
// recycles segments by renaming and rewriting them, which changes the
// modification time.
type fileID struct {
	size  int64
	mtime int64 // nanoseconds
}

func idOf(fi os.FileInfo) fileID { return fileID{fi.Size(), fi.ModTime().UnixNano()} }

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	if !fi.Mode().IsRegular() {
		return fileID{}, fmt.Errorf("%w: %s is not a regular file", archive.ErrBadInput, path)
	}
	return idOf(fi), nil
}

// lockSpool takes the one-agent-per-data-directory lock: an flock on
// agent/lock, released by the kernel when the process ends however it
// ends. The file holds the owner's pid, for the message of the next one.
func lockSpool(dir, pgdata string) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- our spool
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd()) // #nosec G115 -- a file descriptor
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(p) // #nosec G304 -- our spool
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another walvault agent (pid %s) already runs for %s", ErrLocked, strings.TrimSpace(string(b)), pgdata)
		}
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// ErrLocked: another agent holds the data directory. It wraps
// archive.ErrConflict (exit 5).
var ErrLocked = fmt.Errorf("%w: agent already running", archive.ErrConflict)

// instanceID names this agent's spool for this pg_wal directory: a random
// word kept in agent/instance with the directory's device and inode. A
// spool copied along with a data directory (cp -a keeps mtimes) gets a new
// instance, so the copy's markers are not trusted.
func instanceID(dir, walDir string) (string, error) {
	fi, err := os.Stat(walDir)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	where := ""
	if ok {
		where = fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	p := filepath.Join(dir, "instance")
	if b, err := os.ReadFile(p); err == nil { // #nosec G304 -- our spool
		id, w, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		if w == where && len(id) == 32 {
			return id, nil
		}
	}
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(r[:])
	// Markers of another instance are now worthless.
	_ = os.RemoveAll(filepath.Join(dir, "durable"))
	if err := fsutil.WriteFileAtomic(p, []byte(id+" "+where+"\n"), true); err != nil {
		return "", err
	}
	return id, nil
}

// A marker in agent/durable/NAME says "NAME, with this size and mtime, is
// whole in this store, pushed by this agent instance". It is written only
// after the upload returned, so a crash can lose one (costing a re-check
// that uploads nothing) but never create a false one.
func markerText(id fileID, store, instance string) string {
	return fmt.Sprintf("%d %d %s %s\n", id.size, id.mtime, instance, store)
}

type markers struct {
	dir      string
	store    string // StoreIdentity
	instance string
}

// StoreIdentity names a store for markers: its identity (cloud.Identity:
// name and endpoint), hashed so that no secret an endpoint might carry is
// written down.
func StoreIdentity(identity string) string {
	h := sha256.Sum256([]byte(identity))
	return hex.EncodeToString(h[:])[:32]
}

func (m markers) write(name string, id fileID) error {
	return fsutil.WriteFileAtomic(filepath.Join(m.dir, name), []byte(markerText(id, m.store, m.instance)), false)
}

// valid reports whether NAME's marker vouches for id.
func (m markers) valid(name string, id fileID) bool {
	b, err := os.ReadFile(filepath.Join(m.dir, name)) // #nosec G304 -- our spool
	return err == nil && string(b) == markerText(id, m.store, m.instance)
}

func (m markers) remove(name string) { _ = os.Remove(filepath.Join(m.dir, name)) }

// list names the markers present (temporary files skipped).
func (m markers) list() []string {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if _, err := archive.ParseWALName(e.Name()); err == nil {
			out = append(out, e.Name())
		} else if strings.Contains(e.Name(), ".tmp") {
			_ = os.Remove(filepath.Join(m.dir, e.Name()))
		}
	}
	return out
}

// sameOwner refuses to run as anyone but the data directory's owner: the
// spool and the socket the agent creates in pg_wal must belong to the
// user PostgreSQL runs archive_command as (a root agent would leave files
// there that wal-push, run by PostgreSQL, cannot use).
func sameOwner(pgdata string) error {
	fi, err := os.Stat(pgdata)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s belongs to uid %d: run the agent as the data directory's owner (e.g. sudo -u postgres walvault agent ...), not as uid %d", archive.ErrBadInput, pgdata, st.Uid, os.Geteuid())
	}
	return nil
}
