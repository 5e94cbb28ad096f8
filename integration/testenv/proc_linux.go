package testenv

import "syscall"

// sysProcAttr puts the server in its own process group (Stop signals the
// whole group) and has the kernel kill it if the test binary dies first,
// so no server outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
