package restore

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/walvault/walvault/archive"
)

// owner is who the restored files are handed to.
type owner struct{ uid, gid int }

// chooseOwner decides, when restore runs as root, who gets what it
// creates: the user of --owner (spec), else the owner of DEST when DEST
// existed before the restore. Never the owner the manifest records: that
// is bucket text, and would let a bucket writer choose who owns the data
// directory. nil means the files stay with the running user; rootOwned
// says that is root, which PostgreSQL refuses to run as.
func chooseOwner(spec, dest string, destExisted bool) (own *owner, rootOwned bool, err error) {
	asRoot := os.Geteuid() == 0
	if spec != "" {
		o, err := parseOwner(spec)
		if err != nil {
			return nil, false, err
		}
		if !asRoot {
			if o.uid == os.Geteuid() && o.gid == os.Getegid() {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("%w: --owner %s: only root can give the restored files to another user; run restore as that user instead", archive.ErrBadInput, spec)
		}
		return o, o.uid == 0, nil
	}
	if !asRoot {
		return nil, false, nil
	}
	if destExisted {
		fi, err := os.Stat(dest)
		if err != nil {
			return nil, false, fmt.Errorf("%w: DEST %s: %w", archive.ErrBadInput, dest, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			return &owner{uid: int(st.Uid), gid: int(st.Gid)}, false, nil
		}
	}
	return nil, true, nil
}

// ParseOwner reads --owner USER[:GROUP], each a name or a number;
// without GROUP, the user's primary group. A number without an entry in
// the user database needs its GROUP. The drill reads its --owner with it
// too.
func ParseOwner(spec string) (uid, gid int, err error) {
	o, err := parseOwner(spec)
	if err != nil {
		return 0, 0, err
	}
	return o.uid, o.gid, nil
}

// parseOwner reads USER[:GROUP], each a name or a number; without GROUP,
// the user's primary group.
func parseOwner(spec string) (*owner, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	bad := func(why string) error {
		return fmt.Errorf("%w: --owner %q: %s (expected USER or USER:GROUP, names or numbers)", archive.ErrBadInput, spec, why)
	}
	if name == "" {
		return nil, bad("no user")
	}
	o := &owner{uid: -1, gid: -1}
	if u, err := user.Lookup(name); err == nil {
		o.uid, _ = strconv.Atoi(u.Uid)
		o.gid, _ = strconv.Atoi(u.Gid)
	} else if n, err := strconv.ParseUint(name, 10, 31); err == nil {
		o.uid = int(n)
		if u, err := user.LookupId(name); err == nil {
			o.gid, _ = strconv.Atoi(u.Gid)
		}
	} else {
		return nil, bad("no such user")
	}
	if hasGroup && group != "" {
		if g, err := user.LookupGroup(group); err == nil {
			o.gid, _ = strconv.Atoi(g.Gid)
		} else if n, err := strconv.ParseUint(group, 10, 31); err == nil {
			o.gid = int(n)
		} else {
			return nil, bad("no such group")
		}
	}
	if o.gid < 0 {
		return nil, bad("user " + name + " has no entry here to take a group from: give USER:GROUP")
	}
	return o, nil
}
