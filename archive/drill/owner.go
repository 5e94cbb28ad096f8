package drill

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/restore"
)

// account is who the drill's server runs as, and owns its directory.
type account struct {
	Name     string
	UID, GID int
	Groups   []uint32 // supplementary groups (a config file readable by group postgres)
	// Switch: the drill runs as root and starts the server's processes
	// as this account.
	Switch bool
}

// DefaultServerUser is the account a drill run as root starts PostgreSQL
// as when neither --owner nor the owner of --dir says otherwise.
const DefaultServerUser = "postgres"

// chooseAccount decides who runs the drill's server. Not root: the
// running user (PostgreSQL runs as the owner of its data directory), and
// --owner may only name that user. Root, which PostgreSQL refuses to run
// as: --owner, else the owner of an existing --dir when it is not root,
// else the local user postgres. Never an owner named in the backup: that
// is bucket text, and would let whoever wrote the bucket choose the local
// account that runs what the backup holds.
func chooseAccount(spec, dir string) (*account, error) {
	if os.Geteuid() != 0 {
		self, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("who is running the drill: %w", err)
		}
		a := &account{Name: self.Username, UID: os.Geteuid(), GID: os.Getegid()}
		if spec != "" {
			o, err := lookupAccount(spec)
			if err != nil {
				return nil, err
			}
			if o.UID != a.UID {
				return nil, fmt.Errorf("%w: --owner %s: only root can run the drill's server as another user; run the drill as that user instead", archive.ErrBadInput, spec)
			}
		}
		return a, nil
	}
	if spec == "" {
		if fi, err := os.Stat(dir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10))
				if err != nil {
					return nil, fmt.Errorf("%w: --dir %s belongs to uid %d, which has no entry here: give --owner USER", archive.ErrBadInput, dir, st.Uid)
				}
				spec = u.Username + ":" + strconv.FormatUint(uint64(st.Gid), 10)
			}
		}
	}
	what := "--owner " + spec
	if spec == "" {
		spec, what = DefaultServerUser, "the default server user "+DefaultServerUser
	}
	a, err := lookupAccount(spec)
	if err != nil {
		return nil, fmt.Errorf("%w (running as root, the drill starts PostgreSQL as %s, since PostgreSQL refuses to run as root: give --owner USER)", err, what)
	}
	if a.UID == 0 {
		return nil, fmt.Errorf("%w: %s is root, which PostgreSQL refuses to run as: give --owner with the user PostgreSQL runs as (postgres)", archive.ErrBadInput, what)
	}
	a.Switch = true
	return a, nil
}

// lookupAccount reads USER[:GROUP] as restore's --owner does; the user
// must have an entry here (the server's processes take its name and
// supplementary groups).
func lookupAccount(spec string) (*account, error) {
	uid, gid, err := restore.ParseOwner(spec)
	if err != nil {
		return nil, err
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil, fmt.Errorf("%w: --owner %q: uid %d has no entry here, and the drill's server needs one", archive.ErrBadInput, spec, uid)
	}
	a := &account{Name: u.Username, UID: uid, GID: gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if n, err := strconv.ParseUint(id, 10, 32); err == nil {
				a.Groups = append(a.Groups, uint32(n))
			}
		}
	}
	return a, nil
}

// spec is the account as restore's --owner takes it.
func (a *account) spec() string { return strconv.Itoa(a.UID) + ":" + strconv.Itoa(a.GID) }

// sysProcAttr runs a child as the account (nothing to change when the
// drill already runs as it).
func (a *account) credential() *syscall.Credential {
	if !a.Switch {
		return nil
	}
	return &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID), Groups: a.Groups} // #nosec G115 -- ids from the user database
}

// chown hands path to the account (a no-op when the drill runs as it).
func (a *account) chown(path string) error {
	if !a.Switch {
		return nil
	}
	return os.Lchown(path, a.UID, a.GID)
}
