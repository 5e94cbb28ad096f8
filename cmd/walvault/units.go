//go:build !walvault_front

package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/systemd"
)

// systemd-units: the scheduling the binary carries itself. The units and
// their validation are archive/systemd's; here are the flags and the
// output.

// unitExecutable is the binary the units run; tests replace it.
var unitExecutable = commandPath

func init() {
	register(unitCommands)
}

func unitCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "systemd-units",
		Usage: "write systemd units: backup-push and dump-push nightly (service + timer), the archiving agent, and the weekly restore drill",
		Description: "Writes walvault-backup.service/.timer (backup-push) and walvault-dump.service/.timer (dump-push --all, or\n" +
			"each --database) and walvault-agent@.service (walvault agent, Restart=always; the instance is the escaped data\n" +
			"directory) and walvault-drill.service/.timer (walvault drill, weekly: --drill-schedule) into --dir (default\n" +
			systemd.DefaultDir + "), filled with this binary's path, --config and --user,\n" +
			"or prints them with --print. Existing units are never overwritten without --force. Timers are Persistent=true:\n" +
			"a night missed while the machine was off runs at the next boot. Then: systemctl daemon-reload; systemctl\n" +
			"enable --now walvault-backup.timer walvault-dump.timer. Its flags are command-line only (and WALVAULT_CONFIG).",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "the config file the units run walvault with (must exist)", Value: systemd.DefaultConfig, EnvVars: []string{"WALVAULT_CONFIG"}},
			&cli.StringFlag{Name: "dir", Usage: "directory to write the units to (default " + systemd.DefaultDir + ")"},
			&cli.BoolFlag{Name: "print", Usage: "print the units on stdout instead of writing them"},
			&cli.BoolFlag{Name: "force", Usage: "replace existing unit files"},
			&cli.StringFlag{Name: "user", Usage: "the user the commands run as: the cluster's owner", Value: "postgres"},
			&cli.StringFlag{Name: "backup-schedule", Usage: "when backup-push runs: a systemd calendar event (systemd.time(7))", Value: "daily"},
			&cli.StringFlag{Name: "dump-schedule", Usage: "when dump-push runs: a systemd calendar event", Value: "*-*-* 02:00:00"},
			&cli.StringFlag{Name: "drill-schedule", Usage: "when the restore drill runs: a systemd calendar event", Value: "weekly"},
			&cli.StringFlag{Name: "randomized-delay", Usage: "timers start up to this much later, at random (0 for exactly on time)", Value: "1h"},
			&cli.StringSliceFlag{Name: "database", Usage: "dump this database (repeatable; default: every database with dump-push --all)"},
			&cli.StringFlag{Name: "env-file", Usage: "optional KEY=value file for the store's credentials and PG* settings (\"\" for none)", Value: systemd.DefaultEnvFile},
		},
		Action: systemdUnits,
	}}
}

func systemdUnits(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	if c.Bool("print") && c.IsSet("dir") {
		return usageError("--dir and --print: give one (--print writes the units to stdout, --dir to a directory)")
	}
	bin, err := unitExecutable()
	if err != nil {
		return fmt.Errorf("cannot tell where this walvault binary is: %w", err)
	}
	if c.String("config") == "" {
		// Abs("") would name the working directory.
		return usageError("--config is empty: the units run walvault with a config file; name it (default %s)", systemd.DefaultConfig)
	}
	cfg, err := filepath.Abs(c.String("config"))
	if err != nil {
		return usageError("--config %q: %v", c.String("config"), err)
	}
	store, dsn := configValues(cfg)
	files, err := systemd.Render(systemd.Settings{
		Version: version, Binary: bin, Config: cfg, User: c.String("user"), EnvFile: c.String("env-file"),
		BackupSchedule: c.String("backup-schedule"), DumpSchedule: c.String("dump-schedule"), DrillSchedule: c.String("drill-schedule"),
		RandomizedDelay: c.String("randomized-delay"), Databases: c.StringSlice("database"),
		Store: store, DSN: dsn,
	})
	if err != nil {
		return unitError(err)
	}
	if c.Bool("print") {
		for _, f := range files {
			fmt.Fprintf(c.App.Writer, "### %s\n%s\n", f.Name, f.Data)
		}
		return nil
	}
	dir := c.String("dir")
	if dir == "" {
		dir = systemd.DefaultDir
	}
	done, err := systemd.Write(dir, files, c.Bool("force"))
	if err != nil {
		return unitError(err)
	}
	w := c.App.Writer
	for i, f := range files {
		fmt.Fprintf(w, "%-9s %s\n", done[i], filepath.Join(dir, f.Name))
	}
	fmt.Fprintln(w, "next, as root:")
	if filepath.Clean(dir) != systemd.DefaultDir && filepath.Clean(dir) != "/run/systemd/system" {
		var paths []string
		for _, f := range files {
			paths = append(paths, shellQuote(filepath.Join(dir, f.Name)))
		}
		fmt.Fprintf(w, "  systemctl link %s   # systemd does not look for units in %s\n", strings.Join(paths, " "), shellQuote(dir))
	}
	fmt.Fprintln(w, "  systemctl daemon-reload")
	fmt.Fprintln(w, "  systemctl enable --now walvault-backup.timer walvault-dump.timer")
	fmt.Fprintln(w, "  systemctl start walvault-backup.service    # a backup now, to try it; journalctl -u walvault-backup.service")
	fmt.Fprintln(w, "  systemctl list-timers 'walvault-*'         # when they run next")
	fmt.Fprintf(w, "  systemctl enable --now walvault-agent@$(systemd-escape --path /var/lib/postgresql/15/main).service   # the agent (archive_command = 'walvault-wal push %%p')\n")
	fmt.Fprintln(w, "  systemctl enable --now walvault-drill.timer   # on the host that holds the identity: the weekly restore drill")
	return nil
}

// unitError words a setting the units cannot hold as a usage error.
func unitError(err error) error {
	if errors.Is(err, archive.ErrBadInput) {
		return usageError("%s", err)
	}
	return err
}

// configValues reads the store and the connection string from the config
// file, for the hardening choices; a file it cannot read gives "".
func configValues(path string) (store, dsn string) {
	src, err := altsrc.NewYamlSourceFromFile(path)
	if err != nil {
		return "", ""
	}
	store, _ = src.String("store")
	dsn, _ = src.String("dbname")
	return store, dsn
}
