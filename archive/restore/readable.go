package restore

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/walvault/walvault/archive"
)

// ServerFile is a file restore_command reads when PostgreSQL runs it as
// the data directory's owner: the identity, the config file, a verify-key
// file.
type ServerFile struct {
	What string // "identity file", "config file", "verify-key file"
	Path string
}

// checkServerReads refuses, before anything is written, a restore (run as
// root for another user, own) whose restore_command could not read the
// files it names: PostgreSQL would start, fail to fetch any WAL, and stop.
func checkServerReads(own *owner, files []ServerFile) error {
	if own == nil || own.uid == 0 {
		return nil
	}
	name := strconv.Itoa(own.uid)
	gids := map[int]bool{own.gid: true}
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
		if ids, err := u.GroupIds(); err == nil {
			for _, g := range ids {
				if n, err := strconv.Atoi(g); err == nil {
					gids[n] = true
				}
			}
		}
	}
	for _, f := range files {
		if why := unreadable(f.Path, own.uid, gids); why != "" {
			return fmt.Errorf("%w: restore_command runs as %s (the owner of the restored data directory), who cannot read the %s %s (%s): PostgreSQL could not fetch WAL. Give %s a copy it can read (install -o %s -m 0600 %s DIR/) and name that, or run restore as %s",
				archive.ErrBadInput, name, f.What, f.Path, why, name, name, f.Path, name)
		}
	}
	return nil
}

// unreadable says why uid (in groups gids) cannot read path, or "".
// Permission bits only (no ACLs): what they allow is what they say.
func unreadable(path string, uid int, gids map[int]bool) string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err.Error()
	}
	for d := filepath.Dir(real); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err.Error()
		}
		if !may(fi, uid, gids, 1) {
			return fmt.Sprintf("directory %s is mode %04o, owner %s", d, fi.Mode().Perm(), ownerOf(fi))
		}
		if d == "/" || d == "." {
			break
		}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err.Error()
	}
	if !may(fi, uid, gids, 4) {
		return fmt.Sprintf("mode %04o, owner %s", fi.Mode().Perm(), ownerOf(fi))
	}
	return ""
}

// may says whether uid in gids has permission bit (4 read, 1 search) on fi.
func may(fi os.FileInfo, uid int, gids map[int]bool, bit os.FileMode) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return perm&(bit<<6) != 0
	case gids[int(st.Gid)]:
		return perm&(bit<<3) != 0
	}
	return perm&bit != 0
}

func ownerOf(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "?"
	}
	id := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}
