package drill

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// leftovers lists the processes the drill's server left behind: run by
// uid, from one of exes (postgres, walvault), working in dir or below it.
// The server's backends, a restore_command still running, and the WAL
// prefetcher wal-fetch starts in a session of its own all work in the data
// directory; nothing else of that user runs those programs there.
func leftovers(uid int, exes []string, dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || int(st.Uid) != uid {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || !sameProgram(strings.TrimSuffix(exe, " (deleted)"), exes) {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil {
			continue
		}
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		if cwd == dir || strings.HasPrefix(cwd, dir+"/") {
			out = append(out, pid)
		}
	}
	return out
}

func sameProgram(exe string, exes []string) bool {
	for _, x := range exes {
		if x == "" {
			continue
		}
		if p, err := filepath.EvalSymlinks(x); err == nil {
			x = p
		}
		if exe == x {
			return true
		}
	}
	return false
}

// endLeftovers stops the processes leftovers finds: SIGTERM, then SIGKILL
// after a few seconds. It returns how many it found.
func endLeftovers(uid int, exes []string, dir string) int {
	pids := leftovers(uid, exes, dir)
	found := len(pids)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		pids = alive(pids)
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	return found
}

// freeBytes is the space an unprivileged user may still use on dir's
// file system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil // #nosec G115 -- block counts of a mounted file system
}

func alive(pids []int) []int {
	var out []int
	for _, p := range pids {
		if syscall.Kill(p, 0) == nil {
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat"); err == nil && !zombie(b) {
				out = append(out, p)
			}
		}
	}
	return out
}

// zombie says whether a /proc/PID/stat line is that of a process that
// has exited and waits for its parent.
func zombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
