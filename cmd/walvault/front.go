//go:build walvault_front

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/cloud"
)

// The front: this package built with -tags walvault_front, installed as
// `walvault` by make build beside walvault-full (the same package built
// whole). archive_command and restore_command start a process per WAL
// file, and a whole walvault spends ~17 ms of CPU initialising the
// packages of every cloud SDK before main runs, more than compressing the
// segment. The front links only what wal-push, wal-fetch and the
// prefetcher need, with the file and S3 backends, and starts in ~4-6 ms.
// Whatever it is not sure to run exactly as walvault-full would (another
// command, --help, a flag, variable or config key it does not know, an
// azure:// or gs:// store) it hands over before doing anything: it execs
// walvault-full with the same arguments and environment, in the same
// process, so PostgreSQL, signals and exit codes see one program.

// frontBuild says which program this is.
const frontBuild = true

// frontCommands are the commands the front runs itself.
var frontCommands = map[string]bool{"wal-push": true, "wal-fetch": true, "wal-prefetch": true}

// errHandOver marks what only walvault-full can run.
var errHandOver = errors.New("for walvault-full")

// handOver makes err hand the command over to walvault-full.
func handOver(err error) error { return fmt.Errorf("%w: %w", errHandOver, err) }

// frontRuns says whether the front runs this command line itself: one of
// its commands, with flags it has, and no help.
func frontRuns(app *cli.App, args []string) bool {
	if len(args) < 2 || !frontCommands[args[1]] {
		return false
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return false
	}
	t := tableOf(cmd.Flags)
	words, _ := t.split(args[2:], true)
	for _, w := range words {
		name, _, _ := strings.Cut(strings.TrimLeft(w[0], "-"), "=")
		if _, ok := t[name]; !ok || name == "help" || name == "h" {
			return false
		}
	}
	return true
}

// frontStores hands the command over when a store it may open has a
// scheme the front does not link, or cannot be resolved here (walvault-full
// then reports the problem as it always did).
func frontStores(c *cli.Context) error {
	urls := []string{c.String("store")}
	if hasFlag(c.Command.Flags, "fallback-store") {
		urls = append(urls, c.StringSlice("fallback-store")...)
	}
	seconds, err := copyStores(c)
	if err != nil {
		return handOver(err)
	}
	for _, s := range seconds {
		urls = append(urls, s.URL)
	}
	for _, u := range urls {
		if u == "" {
			continue
		}
		loc, err := cloud.ParseURL(u)
		if err != nil {
			continue // reported by the command, as walvault-full would
		}
		if _, ok := cloud.BackendOf(loc.Scheme); !ok {
			return handOver(fmt.Errorf("%s:// is not linked into the front", loc.Scheme))
		}
	}
	return nil
}

// execFull replaces this process with walvault-full, same arguments and
// environment. It returns only when that fails.
func execFull(args []string) error {
	exe, err := fullPath()
	if err != nil {
		return err
	}
	err = syscall.Exec(exe, args, os.Environ()) // #nosec G204 G702 -- walvault-full, the user's own arguments
	return fmt.Errorf("running %s: %w", exe, err)
}

// fullPath finds walvault-full: beside this binary (symbolic links
// followed), else in PATH.
func fullPath() (string, error) {
	if p := besideSelf(fullName); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath(fullName); err == nil {
		return p, nil
	}
	self, _ := os.Executable()
	return "", usageError("this walvault is the front of archive_command and restore_command (wal-push and wal-fetch over file:// and s3:// stores); "+
		"everything else runs in %s, which is neither beside %s nor in PATH: install both (make install), or build one complete binary with 'go build ./cmd/walvault'", fullName, self)
}
