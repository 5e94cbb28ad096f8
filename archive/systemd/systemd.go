// Package systemd writes walvault's systemd units: backup-push and
// dump-push as services with timers, the archiving agent as a template
// unit, and the restore drill as a service with a timer. The unit files
// are templates embedded here, filled with an
// installation's binary, its config file and the cluster's user; every value
// that comes from outside is validated and quoted per systemd.syntax(7)
// before it reaches a template, so the templates never escape anything
// themselves. The command line (flags, output) is cmd/walvault's.
package systemd

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

	"github.com/walvault/walvault/archive"
	cal "github.com/walvault/walvault/internal/calendar"
)

//go:embed units/*.service units/*.timer units/*.tmpl
var templates embed.FS

// Defaults of systemd-units.
const (
	DefaultDir     = "/etc/systemd/system"
	DefaultConfig  = "/etc/walvault/walvault.yaml"
	DefaultEnvFile = "/etc/walvault/walvault.env"
)

// Names are the files Render makes, in order: the nightly services with
// their timers, and the archiving agent, a template unit whose instance is
// the escaped data directory.
var Names = []string{
	"walvault-backup.service", "walvault-backup.timer",
	"walvault-dump.service", "walvault-dump.timer",
	"walvault-agent@.service",
	"walvault-drill.service", "walvault-drill.timer",
}

// DrillStateFile is where the drill unit remembers its outcomes: where
// walvault status run as root looks by default.
const DrillStateFile = "/var/lib/walvault/drill.json"

// Settings are what the units are made of, as the user gave them.
type Settings struct {
	Version string // walvault's, for the header
	Binary  string // the walvault binary the units run: an absolute path
	Config  string // the config file the units run walvault with: an absolute path
	User    string // the user the commands run as: the cluster's owner
	EnvFile string // optional KEY=value file systemd reads; "" for none
	// BackupSchedule, DumpSchedule and DrillSchedule (the restore drill)
	// are systemd calendar events.
	BackupSchedule, DumpSchedule, DrillSchedule string
	// RandomizedDelay is how much later, at most, the timers start: a Go
	// duration from 0 to 24h.
	RandomizedDelay string
	// Databases are the databases to dump; none: every one (dump-push --all).
	Databases []string
	// Store and DSN are the config file's store URL and connection string,
	// for the hardening choices ("" when unknown).
	Store, DSN string
}

// File is one unit file.
type File struct {
	Name string
	Data []byte
}

// inputError is a value that cannot go into a unit. Its text is the
// message alone (the CLI words it as a usage error); it matches
// archive.ErrBadInput.
type inputError struct{ msg string }

func (e inputError) Error() string        { return e.msg }
func (e inputError) Is(target error) bool { return target == archive.ErrBadInput }

func badInput(format string, a ...any) error { return inputError{fmt.Sprintf(format, a...)} }

// params are the templates' data: every string already valid and quoted
// for where it goes.
type params struct {
	Version                         string
	Exec, Config                    string // quoted words for ExecStart=
	User                            string
	EnvFile                         string // a path with % doubled, or ""
	BackupSchedule, DumpSchedule    string
	DrillSchedule, DrillStateFile   string
	Delay                           string // seconds, or "" for none
	DumpArgs                        []string
	DumpWhat                        string
	ProtectSystem, PrivateTmp       bool
	ProtectSystemWhy, PrivateTmpWhy string
}

// Render validates s and fills the templates, one File per name in Names.
// A value that cannot go into a unit file is an error matching
// archive.ErrBadInput, naming the setting.
func Render(s Settings) ([]File, error) {
	p, err := paramsOf(s)
	if err != nil {
		return nil, err
	}
	t, err := template.New("units").Option("missingkey=error").ParseFS(templates, "units/*")
	if err != nil {
		return nil, err
	}
	var files []File
	for _, name := range Names {
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, name, p); err != nil {
			return nil, err
		}
		files = append(files, File{name, b.Bytes()})
	}
	return files, nil
}

// paramsOf validates the settings into the templates' data.
func paramsOf(s Settings) (params, error) {
	p := params{Version: s.Version, ProtectSystem: true, PrivateTmp: true}
	bin := s.Binary
	if strings.ContainsRune(bin, '$') || !filepath.IsAbs(bin) {
		return p, badInput("this binary's path %q cannot go into a unit file (a relative path, or a '$'): install it elsewhere (make install)", bin)
	}
	var err error
	if p.Exec, err = word("this binary's path", bin); err != nil {
		return p, err
	}
	if p.Config, err = word("--config", s.Config); err != nil {
		return p, err
	}
	if p.User, err = userName(s.User); err != nil {
		return p, err
	}
	if s.EnvFile != "" {
		if p.EnvFile, err = path("--env-file", s.EnvFile); err != nil {
			return p, err
		}
	}
	if p.BackupSchedule, err = calendar("--backup-schedule", s.BackupSchedule); err != nil {
		return p, err
	}
	if p.DumpSchedule, err = calendar("--dump-schedule", s.DumpSchedule); err != nil {
		return p, err
	}
	if s.DrillSchedule == "" {
		s.DrillSchedule = "weekly"
	}
	if p.DrillSchedule, err = calendar("--drill-schedule", s.DrillSchedule); err != nil {
		return p, err
	}
	p.DrillStateFile = DrillStateFile
	d, err := time.ParseDuration(s.RandomizedDelay)
	if s.RandomizedDelay == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 || d > 24*time.Hour {
		return p, badInput("--randomized-delay %q: use a duration from 0 to 24h, such as 30m or 1h", s.RandomizedDelay)
	}
	if d > 0 {
		p.Delay = strconv.FormatInt(int64(d.Round(time.Second)/time.Second), 10)
	}
	p.DumpArgs, p.DumpWhat = []string{"--all"}, "every database"
	if len(s.Databases) > 0 {
		p.DumpArgs, p.DumpWhat = nil, "the selected databases"
		for _, db := range s.Databases {
			w, err := database(db)
			if err != nil {
				return p, err
			}
			p.DumpArgs = append(p.DumpArgs, w)
		}
	}
	if why := systemDirNeeded(s.Store); why != "" {
		p.ProtectSystem, p.ProtectSystemWhy = false, why
	}
	if why := sharedTmpNeeded(s.Store, s.DSN); why != "" {
		p.PrivateTmp, p.PrivateTmpWhy = false, why
	}
	return p, nil
}

// Write writes each file atomically (a temporary file in dir, then a link
// or rename onto the name), and none at all when one exists with other
// content and force is off. It returns what it did with each: "wrote",
// "replaced" or "unchanged".
func Write(dir string, files []File, force bool) ([]string, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, badInput("--dir %s: not a directory", dir)
	}
	done := make([]string, len(files))
	var clash []string
	for i, f := range files {
		old, err := os.ReadFile(filepath.Join(dir, f.Name)) // #nosec G304 -- the unit's own name in the directory the user named
		switch {
		case err == nil && bytes.Equal(old, f.Data):
			done[i] = "unchanged"
		case err == nil && !force:
			clash = append(clash, f.Name)
		case err == nil:
			done[i] = "replaced"
		case errors.Is(err, fs.ErrNotExist):
			done[i] = "wrote"
		default:
			return nil, fmt.Errorf("cannot read %s: %w", filepath.Join(dir, f.Name), err)
		}
	}
	if len(clash) > 0 {
		return nil, badInput("%s already exist(s) in %s with other content: nothing written; --force replaces them", strings.Join(clash, ", "), dir)
	}
	for i, f := range files {
		if done[i] == "unchanged" {
			continue
		}
		if err := writeFile(dir, f, done[i] == "replaced"); err != nil {
			return nil, err
		}
	}
	if d, err := os.Open(dir); err == nil { // #nosec G304 -- the directory the user named, opened to fsync it
		_ = d.Sync()
		_ = d.Close()
	}
	return done, nil
}

func writeFile(dir string, f File, replace bool) (err error) {
	final := filepath.Join(dir, f.Name)
	tmp, err := os.CreateTemp(dir, "."+f.Name+".tmp-*")
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
	if _, err := tmp.Write(f.Data); err != nil {
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
		return badInput("%s appeared while writing: nothing replaced; --force replaces it", final)
	}
	if _, err := os.Lstat(final); !errors.Is(err, fs.ErrNotExist) {
		return badInput("%s appeared while writing: nothing replaced; --force replaces it", final)
	}
	return os.Rename(tmp.Name(), final) // a file system without hard links
}

// text refuses what a unit file cannot hold: control characters (a
// newline would start a new setting), invalid UTF-8, and values that
// systemd would trim.
func text(what, s string) error {
	if s == "" || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return badInput("%s %q: empty, not UTF-8, or with leading or trailing spaces", what, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
			return badInput("%s %q: a control character (such as a newline) cannot go into a unit file", what, s)
		}
	}
	return nil
}

// word quotes s as one word of ExecStart= (systemd.syntax(7),
// systemd.service(7) "Command lines"): inside double quotes, \ and " are
// escaped, and % (specifiers) and $ (environment variables) are doubled.
func word(what, s string) (string, error) {
	if err := text(what, s); err != nil {
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

// path is an absolute path for a setting that takes the rest of the line
// as it is (EnvironmentFile=): only specifiers are expanded there.
func path(what, s string) (string, error) {
	if err := text(what, s); err != nil {
		return "", err
	}
	if !filepath.IsAbs(s) || strings.ContainsAny(s, `\"'`) {
		return "", badInput("%s %q: use an absolute path without quotes or backslashes", what, s)
	}
	return strings.ReplaceAll(s, "%", "%%"), nil
}

// Compiled on first use: wal-push and wal-fetch start without them.
var userNameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10})$`)
})

func userName(s string) (string, error) {
	if !userNameRE().MatchString(s) {
		return "", badInput("--user %q: a user name (letters, digits, '_', '.', '-'; not first; at most 32) or a numeric uid", s)
	}
	return s, nil
}

// calendarChars are the characters of systemd.time(7) calendar events
// ("daily", "Mon..Fri *-*-* 02:30", "*-*-* 01:00:00 Europe/Berlin");
// systemd-analyze calendar checks the meaning.
var calendarChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9 *,:./~+_-]{1,200}$`) })

func calendar(what, s string) (string, error) {
	if err := text(what, s); err != nil {
		return "", err
	}
	if !calendarChars().MatchString(s) {
		return "", badInput("%s %q: a systemd calendar event such as daily, 'Mon..Fri 02:30' or '*-*-* 01:00:00' (check one with systemd-analyze calendar)", what, s)
	}
	// Before anything is written: a timer systemd refuses would never run.
	if via, err := cal.Check(context.Background(), s); err != nil {
		return "", badInput("%s: %v (checked with %s); use e.g. daily, 'Mon..Fri 02:30' or '*-*-* 01:00:00'", what, err, via)
	}
	return s, nil
}

// database is a database name as dump-push's argument.
func database(s string) (string, error) {
	if len(s) > 63 || strings.HasPrefix(s, "-") {
		return "", badInput("--database %q: a database name (at most 63 bytes, not starting with '-')", s)
	}
	return word("--database", s)
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

// socketDirs is where PostgreSQL's Unix socket is looked for.
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
