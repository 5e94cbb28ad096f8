package main

import (
	"os"
	"path/filepath"
)

// fullName is the complete program's file name when make build installs
// the front as walvault (front.go).
const fullName = "walvault-full"

// commandPath is the walvault to name in a command line another process
// runs (restore_command, the prefetcher, the systemd units): the front
// beside this binary when this is walvault-full, else this binary.
func commandPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	if filepath.Base(exe) == fullName {
		if front := besideSelf("walvault"); front != "" {
			return front, nil
		}
	}
	return exe, nil
}

// besideSelf is the executable file name in this binary's directory, or "".
func besideSelf(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	p := filepath.Join(filepath.Dir(exe), name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	return ""
}
