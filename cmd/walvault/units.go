package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/internal/calendar"
)

// systemd-units: the scheduling the binary carries itself. The unit files
// are templates embedded here, filled with this installation's binary, its
// config file and the cluster's user; every value that comes from outside
// is validated and quoted per systemd.syntax(7) before it reaches a
// template, so the templates never escape anything themselves.

//go:embed units/*.service units/*.timer units/*.tmpl
var unitTemplates embed.FS

const (
	defaultUnitDir    = "/etc/systemd/system"
	defaultUnitConfig = "/etc/walvault/walvault.yaml"
	defaultUnitEnv    = "/etc/walvault/walvault.env"
)

// unitNames are the files systemd-units writes, in order: the nightly
// services with their timers, and the archiving agent, a template unit
// whose instance is the escaped data directory.
var unitNames = []string{
	"walvault-backup.service", "walvault-backup.timer",
	"walvault-dump.service", "walvault-dump.timer",
	"walvault-agent@.service",
}

// unitExecutable is the binary the units run; tests replace it.
var unitExecutable = func() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

func init() {
	register(unitCommands)
}

func unitCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "systemd-units",
		Usage: "write systemd units: backup-push and dump-push nightly (service + timer), and the archiving agent",
		Description: "Writes walvault-backup.service/.timer (backup-push) and walvault-dump.service/.timer (dump-push --all, or\n" +
			"each --database) and walvault-agent@.service (walvault agent, Restart=always; the instance is the escaped data\n" +
			"directory) into --dir (default " + defaultUnitDir + "), filled with this binary's path, --config and --user,\n" +
			"or prints them with --print. Existing units are never overwritten without --force. Timers are Persistent=true:\n" +
			"a night missed while the machine was off runs at the next boot. Then: systemctl daemon-reload; systemctl\n" +
			"enable --now walvault-backup.timer walvault-dump.timer. Its flags are command-line only (and WALVAULT_CONFIG).",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "the config file the units run walvault with (must exist)", Value: defaultUnitConfig, EnvVars: []string{"WALVAULT_CONFIG"}},
			&cli.StringFlag{Name: "dir", Usage: "directory to write the units to (default " + defaultUnitDir + ")"},
			&cli.BoolFlag{Name: "print", Usage: "print the units on stdout instead of writing them"},
			&cli.BoolFlag{Name: "force", Usage: "replace existing unit files"},
			&cli.StringFlag{Name: "user", Usage: "the user the commands run as: the cluster's owner", Value: "postgres"},
			&cli.StringFlag{Name: "backup-schedule", Usage: "when backup-push runs: a systemd calendar event (systemd.time(7))", Value: "daily"},
			&cli.StringFlag{Name: "dump-schedule", Usage: "when dump-push runs: a systemd calendar event", Value: "*-*-* 02:00:00"},
			&cli.StringFlag{Name: "randomized-delay", Usage: "timers start up to this much later, at random (0 for exactly on time)", Value: "1h"},
			&cli.StringSliceFlag{Name: "database", Usage: "dump this database (repeatable; default: every database with dump-push --all)"},
			&cli.StringFlag{Name: "env-file", Usage: "optional KEY=value file for the store's credentials and PG* settings (\"\" for none)", Value: defaultUnitEnv},
		},
		Action: systemdUnits,
	}}
}

// unitParams are the templates' data: every string already valid and
// quoted for where it goes.
type unitParams struct {
	Version                         string
	Exec, Config                    string // quoted words for ExecStart=
	User                            string
	EnvFile                         string // a path with % doubled, or ""
	BackupSchedule, DumpSchedule    string
	Delay                           string // seconds, or "" for none
	DumpArgs                        []string
	DumpWhat                        string
	ProtectSystem, PrivateTmp       bool
	ProtectSystemWhy, PrivateTmpWhy string
}

type unitFile struct {
	name string
	data []byte
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
	p, err := unitSettings(c, bin)
	if err != nil {
		return err
	}
	files, err := renderUnits(p)
	if err != nil {
		return err
	}
	if c.Bool("print") {
		for _, f := range files {
			fmt.Fprintf(c.App.Writer, "### %s\n%s\n", f.name, f.data)
		}
		return nil
	}
	dir := c.String("dir")
	if dir == "" {
		dir = defaultUnitDir
	}
	done, err := writeUnits(dir, files, c.Bool("force"))
	if err != nil {
		return err
	}
	w := c.App.Writer
	for i, f := range files {
		fmt.Fprintf(w, "%-9s %s\n", done[i], filepath.Join(dir, f.name))
	}
	fmt.Fprintln(w, "next, as root:")
	if filepath.Clean(dir) != defaultUnitDir && filepath.Clean(dir) != "/run/systemd/system" {
		var paths []string
		for _, f := range files {
			paths = append(paths, shellQuote(filepath.Join(dir, f.name)))
		}
		fmt.Fprintf(w, "  systemctl link %s   # systemd does not look for units in %s\n", strings.Join(paths, " "), shellQuote(dir))
	}
	fmt.Fprintln(w, "  systemctl daemon-reload")
	fmt.Fprintln(w, "  systemctl enable --now walvault-backup.timer walvault-dump.timer")
	fmt.Fprintln(w, "  systemctl start walvault-backup.service    # a backup now, to try it; journalctl -u walvault-backup.service")
	fmt.Fprintln(w, "  systemctl list-timers 'walvault-*'         # when they run next")
	fmt.Fprintf(w, "  systemctl enable --now walvault-agent@$(systemd-escape --path /var/lib/postgresql/15/main).service   # the agent (archive_command = 'walvault-wal push %%p')\n")
	return nil
}

// unitSettings validates the command line into the templates' data.
func unitSettings(c *cli.Context, bin string) (unitParams, error) {
	p := unitParams{Version: version, ProtectSystem: true, PrivateTmp: true}
	if strings.ContainsRune(bin, '$') || !filepath.IsAbs(bin) {
		return p, usageError("this binary's path %q cannot go into a unit file (a relative path, or a '$'): install it elsewhere (make install)", bin)
	}
	exec, err := unitWord("this binary's path", bin)
	if err != nil {
		return p, err
	}
	p.Exec = exec
	cfg, err := filepath.Abs(c.String("config"))
	if err != nil {
		return p, usageError("--config %q: %v", c.String("config"), err)
	}
	if p.Config, err = unitWord("--config", cfg); err != nil {
		return p, err
	}
	if p.User, err = unitUser(c.String("user")); err != nil {
		return p, err
	}
	if env := c.String("env-file"); env != "" {
		if p.EnvFile, err = unitPath("--env-file", env); err != nil {
			return p, err
		}
	}
	if p.BackupSchedule, err = unitCalendar("--backup-schedule", c.String("backup-schedule")); err != nil {
		return p, err
	}
	if p.DumpSchedule, err = unitCalendar("--dump-schedule", c.String("dump-schedule")); err != nil {
		return p, err
	}
	d, err := time.ParseDuration(c.String("randomized-delay"))
	if c.String("randomized-delay") == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 || d > 24*time.Hour {
		return p, usageError("--randomized-delay %q: use a duration from 0 to 24h, such as 30m or 1h", c.String("randomized-delay"))
	}
	if d > 0 {
		p.Delay = strconv.FormatInt(int64(d.Round(time.Second)/time.Second), 10)
	}
	p.DumpArgs, p.DumpWhat = []string{"--all"}, "every database"
	if dbs := c.StringSlice("database"); len(dbs) > 0 {
		p.DumpArgs, p.DumpWhat = nil, "the selected databases"
		for _, db := range dbs {
			w, err := unitDatabase(db)
			if err != nil {
				return p, err
			}
			p.DumpArgs = append(p.DumpArgs, w)
		}
	}
	store, dsn := configValues(cfg)
	if why := systemDirNeeded(store); why != "" {
		p.ProtectSystem, p.ProtectSystemWhy = false, why
	}
	if why := sharedTmpNeeded(store, dsn); why != "" {
		p.PrivateTmp, p.PrivateTmpWhy = false, why
	}
	return p, nil
}

func renderUnits(p unitParams) ([]unitFile, error) {
	t, err := template.New("units").Option("missingkey=error").ParseFS(unitTemplates, "units/*")
	if err != nil {
		return nil, err
	}
	var files []unitFile
	for _, name := range unitNames {
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, name, p); err != nil {
			return nil, err
		}
		files = append(files, unitFile{name, b.Bytes()})
	}
	return files, nil
}

// writeUnits writes each file atomically (a temporary file in dir, then a
// link or rename onto the name), and none at all when one exists with
// other content and force is off. It returns what it did with each.
func writeUnits(dir string, files []unitFile, force bool) ([]string, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, usageError("--dir %s: not a directory", dir)
	}
	done := make([]string, len(files))
	var clash []string
	for i, f := range files {
		old, err := os.ReadFile(filepath.Join(dir, f.name)) // #nosec G304 -- the unit's own name in the directory the user named
		switch {
		case err == nil && bytes.Equal(old, f.data):
			done[i] = "unchanged"
		case err == nil && !force:
			clash = append(clash, f.name)
		case err == nil:
			done[i] = "replaced"
		case errors.Is(err, fs.ErrNotExist):
			done[i] = "wrote"
		default:
			return nil, fmt.Errorf("cannot read %s: %w", filepath.Join(dir, f.name), err)
		}
	}
	if len(clash) > 0 {
		return nil, usageError("%s already exist(s) in %s with other content: nothing written; --force replaces them", strings.Join(clash, ", "), dir)
	}
	for i, f := range files {
		if done[i] == "unchanged" {
			continue
		}
		if err := writeUnitFile(dir, f, done[i] == "replaced"); err != nil {
			return nil, err
		}
	}
	if d, err := os.Open(dir); err == nil { // #nosec G304 -- the directory the user named, opened to fsync it
		_ = d.Sync()
		_ = d.Close()
	}
	return done, nil
}

func writeUnitFile(dir string, f unitFile, replace bool) (err error) {
	final := filepath.Join(dir, f.name)
	tmp, err := os.CreateTemp(dir, "."+f.name+".tmp-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", dir, err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	// Unit files are world-readable, as systemd's own are.
	if err := tmp.Chmod(0o644); err != nil { // #nosec G302 -- unit files hold no secret and are 0644 by convention
		return err
	}
	if _, err := tmp.Write(f.data); err != nil {
		return fmt.Errorf("cannot write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if replace {
		return os.Rename(tmp.Name(), final)
	}
	// A link never replaces a file that appeared since we looked.
	switch err := os.Link(tmp.Name(), final); {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return usageError("%s appeared while writing: nothing replaced; --force replaces it", final)
	}
	if _, err := os.Lstat(final); !errors.Is(err, fs.ErrNotExist) {
		return usageError("%s appeared while writing: nothing replaced; --force replaces it", final)
	}
	return os.Rename(tmp.Name(), final) // a file system without hard links
}

// unitText refuses what a unit file cannot hold: control characters
// (a newline would start a new setting), invalid UTF-8, and values that
// systemd would trim.
func unitText(what, s string) error {
	if s == "" || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return usageError("%s %q: empty, not UTF-8, or with leading or trailing spaces", what, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
			return usageError("%s %q: a control character (such as a newline) cannot go into a unit file", what, s)
		}
	}
	return nil
}

// unitWord quotes s as one word of ExecStart= (systemd.syntax(7),
// systemd.service(7) "Command lines"): inside double quotes, \ and " are
// escaped, and % (specifiers) and $ (environment variables) are doubled.
func unitWord(what, s string) (string, error) {
	if err := unitText(what, s); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\\', '"':
			b.WriteByte('\\')
		case '%', '$':
			b.WriteRune(r)
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String(), nil
}

// unitPath is an absolute path for a setting that takes the rest of the
// line as it is (EnvironmentFile=): only specifiers are expanded there.
func unitPath(what, s string) (string, error) {
	if err := unitText(what, s); err != nil {
		return "", err
	}
	if !filepath.IsAbs(s) || strings.ContainsAny(s, `\"'`) {
		return "", usageError("%s %q: use an absolute path without quotes or backslashes", what, s)
	}
	return strings.ReplaceAll(s, "%", "%%"), nil
}

// Compiled on first use: wal-push and wal-fetch start without them.
var unitUserName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10})$`)
})

func unitUser(s string) (string, error) {
	if !unitUserName().MatchString(s) {
		return "", usageError("--user %q: a user name (letters, digits, '_', '.', '-'; not first; at most 32) or a numeric uid", s)
	}
	return s, nil
}

// unitCalendar accepts the characters of systemd.time(7) calendar events
// ("daily", "Mon..Fri *-*-* 02:30", "*-*-* 01:00:00 Europe/Berlin");
// systemd-analyze calendar checks the meaning.
var unitCalendarChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9 *,:./~+_-]{1,200}$`) })

func unitCalendar(what, s string) (string, error) {
	if err := unitText(what, s); err != nil {
		return "", err
	}
	if !unitCalendarChars().MatchString(s) {
		return "", usageError("%s %q: a systemd calendar event such as daily, 'Mon..Fri 02:30' or '*-*-* 01:00:00' (check one with systemd-analyze calendar)", what, s)
	}
	// Before anything is written: a timer systemd refuses would never run.
	if via, err := calendar.Check(context.Background(), s); err != nil {
		return "", usageError("%s: %v (checked with %s); use e.g. daily, 'Mon..Fri 02:30' or '*-*-* 01:00:00'", what, err, via)
	}
	return s, nil
}

// unitDatabase is a database name as dump-push's argument.
func unitDatabase(s string) (string, error) {
	if len(s) > 63 || strings.HasPrefix(s, "-") {
		return "", usageError("--database %q: a database name (at most 63 bytes, not starting with '-')", s)
	}
	return unitWord("--database", s)
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

// filePath is the directory of a file:// store URL, or "".
func filePath(store string) string {
	p, ok := strings.CutPrefix(store, "file://")
	if !ok {
		return ""
	}
	return filepath.Clean("/" + p)
}

func under(p string, dirs ...string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// systemDirNeeded says why ProtectSystem=full would break the commands.
func systemDirNeeded(store string) string {
	if p := filePath(store); p != "" && under(p, "/usr", "/boot", "/efi", "/etc") {
		return "the file:// store is in a directory it makes read-only"
	}
	return ""
}

// socketDirs is where PostgreSQL's Unix socket is looked for; tests replace it.
var socketDirs = []string{"/run/postgresql", "/var/run/postgresql"}

// sharedTmpNeeded says why PrivateTmp=yes would break the commands: it
// gives the service its own empty /tmp and /var/tmp.
func sharedTmpNeeded(store, dsn string) string {
	if p := filePath(store); p != "" && under(p, "/tmp", "/var/tmp") {
		return "the file:// store is in /tmp or /var/tmp, which the service would not see"
	}
	if strings.Contains(dsn, "/tmp") {
		return "the connection string (dbname) names a directory in /tmp, which the service would not see"
	}
	for _, d := range socketDirs {
		if m, _ := filepath.Glob(filepath.Join(d, ".s.PGSQL.*")); len(m) > 0 {
			return ""
		}
	}
	if m, _ := filepath.Glob("/tmp/.s.PGSQL.*"); len(m) > 0 {
		return "PostgreSQL's socket is in /tmp, which the service would not see"
	}
	return ""
}

// shellQuote quotes a path for a command line printed for the user.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
