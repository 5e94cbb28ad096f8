//go:build !linux

package testenv

import "syscall"

// sysProcAttr puts the server in its own process group so Stop can signal
// all of it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
