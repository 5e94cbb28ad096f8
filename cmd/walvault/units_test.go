package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive/systemd"
)

// unitsSetup makes a binary and a config file in directories with spaces
// (and a % and a $, which systemd would expand if not escaped) and points
// systemd-units at that binary.
func unitsSetup(t *testing.T) (dir, bin, cfg string) {
	dir = t.TempDir()
	bin = filepath.Join(dir, "opt dir", "wal%vault")
	cfg = filepath.Join(dir, "etc dir $HOME", "walvault.yaml")
	for _, p := range []string{bin, cfg} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil { // #nosec G306 -- a test executable
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("store: file:///var/backups/pg\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := unitExecutable
	unitExecutable = func() (string, error) { return bin, nil }
	t.Cleanup(func() { unitExecutable = old })
	return dir, bin, cfg
}

// unitKeys are the settings the units may use, by section: a misspelt key
// fails the test even where systemd-analyze is missing.
var unitKeys = map[string][]string{
	"Unit":    {"Description", "Wants", "After"},
	"Service": {"Type", "User", "EnvironmentFile", "ExecStart", "TimeoutStartSec", "Nice", "IOSchedulingClass", "IOSchedulingPriority", "ProtectSystem", "PrivateTmp", "NoNewPrivileges", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "Restart", "RestartSec", "KillSignal", "TimeoutStopSec", "Environment", "StateDirectory", "KillMode", "CPUSchedulingPolicy"},
	"Timer":   {"OnCalendar", "RandomizedDelaySec", "Persistent"},
	"Install": {"WantedBy"},
}

// parseUnit reads a unit file as systemd.syntax(7) describes it: comments,
// [Section] headers, Key=Value lines; no line continuations here.
func parseUnit(t *testing.T, name string, data []byte) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	keyRE := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		where := fmt.Sprintf("%s:%d %q", name, i+1, line)
		switch {
		case strings.TrimSpace(line) == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s: a line continuation", where)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, ok := unitKeys[section]; !ok {
				t.Fatalf("%s: unknown section", where)
			}
			if out[section] != nil {
				t.Fatalf("%s: section twice", where)
			}
			out[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" || !keyRE.MatchString(k) || strings.TrimSpace(v) != v || v == "" {
			t.Fatalf("%s: not Key=Value in a section", where)
		}
		known := false
		for _, s := range unitKeys[section] {
			known = known || s == k
		}
		if !known {
			t.Fatalf("%s: %s is not a key walvault's units use in [%s]", where, k, section)
		}
		plain := strings.ReplaceAll(v, "%%", "")
		if strings.Contains(name, "@") {
			plain = strings.ReplaceAll(plain, "%f", "") // a template's instance, the data directory
		}
		if strings.ContainsAny(plain, "%") {
			t.Fatalf("%s: an unescaped %% specifier", where)
		}
		out[section][k] = append(out[section][k], v)
	}
	return out
}

// execWords splits an ExecStart= value as systemd does: %% is %, words
// are separated by spaces, double quotes group, backslash escapes, $$ is $.
func execWords(t *testing.T, v string) []string {
	t.Helper()
	v = strings.ReplaceAll(v, "%%", "%")
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case quoted && ch == '\\' && i+1 < len(v):
			i++
			w.WriteByte(v[i])
		case quoted && ch == '"':
			quoted = false
			if i+1 < len(v) && v[i+1] != ' ' {
				t.Fatalf("ExecStart %q: a quote closes mid-word", v)
			}
		case quoted:
			w.WriteByte(ch)
		case ch == '"' && !inWord:
			quoted, inWord = true, true
		case ch == ' ':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		case ch == '\\' || ch == '"' || ch == '\'':
			t.Fatalf("ExecStart %q: an unquoted %c", v, ch)
		default:
			inWord = true
			w.WriteByte(ch)
		}
	}
	if quoted {
		t.Fatalf("ExecStart %q: unbalanced quotes", v)
	}
	if inWord {
		words = append(words, w.String())
	}
	for i, s := range words {
		if strings.Contains(strings.ReplaceAll(s, "$$", ""), "$") {
			t.Fatalf("ExecStart %q: word %q holds an unescaped $", v, s)
		}
		words[i] = strings.ReplaceAll(s, "$$", "$")
	}
	return words
}

func TestSystemdUnitsSyntax(t *testing.T) {
	dir, bin, cfg := unitsSetup(t)
	out := filepath.Join(dir, "units dir")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	db := `shop "eu" 100%$`
	code, stdout, stderr := runCLI(t, "systemd-units", "--dir", out, "--config", cfg, "--database", db, "--database", "crm",
		"--backup-schedule", "Mon..Sat *-*-* 01:30:00", "--randomized-delay", "30m")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"systemctl daemon-reload", "systemctl enable --now walvault-backup.timer walvault-dump.timer", "systemctl link"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout does not say %q:\n%s", want, stdout)
		}
	}
	units := map[string]map[string]map[string][]string{}
	var paths []string
	for _, name := range systemd.Names {
		p := filepath.Join(out, name)
		paths = append(paths, p)
		data, err := os.ReadFile(p) // #nosec G304 -- the test's own file
		if err != nil {
			t.Fatal(err)
		}
		units[name] = parseUnit(t, name, data)
	}
	backup := units["walvault-backup.service"]["Service"]
	if got, want := execWords(t, backup["ExecStart"][0]), []string{bin, "backup-push", "--config", cfg}; !reflect.DeepEqual(got, want) {
		t.Errorf("backup ExecStart runs %q, want %q", got, want)
	}
	dump := units["walvault-dump.service"]["Service"]
	if len(dump["ExecStart"]) != 2 {
		t.Fatalf("dump ExecStart= %q, want one per database", dump["ExecStart"])
	}
	for i, db := range []string{db, "crm"} {
		if got, want := execWords(t, dump["ExecStart"][i]), []string{bin, "dump-push", "--config", cfg, db}; !reflect.DeepEqual(got, want) {
			t.Errorf("dump ExecStart runs %q, want %q", got, want)
		}
	}
	for _, svc := range []map[string][]string{backup, dump} {
		for k, v := range map[string]string{"User": "postgres", "Type": "oneshot", "ProtectSystem": "full", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "EnvironmentFile": "-" + systemd.DefaultEnvFile} {
			if strings.Join(svc[k], ",") != v {
				t.Errorf("%s=%q, want %q", k, svc[k], v)
			}
		}
		if svc["ProtectHome"] != nil {
			t.Error("ProtectHome= set")
		}
	}
	ag := units["walvault-agent@.service"]["Service"]
	if got, want := execWords(t, ag["ExecStart"][0]), []string{bin, "agent", "--config", cfg, "--pgdata", "%f"}; !reflect.DeepEqual(got, want) {
		t.Errorf("agent ExecStart runs %q, want %q", got, want)
	}
	for k, v := range map[string]string{"User": "postgres", "Type": "simple", "Restart": "always", "NoNewPrivileges": "yes"} {
		if strings.Join(ag[k], ",") != v {
			t.Errorf("agent %s=%q, want %q", k, ag[k], v)
		}
	}
	for name, want := range map[string]string{"walvault-backup.timer": "Mon..Sat *-*-* 01:30:00", "walvault-dump.timer": "*-*-* 02:00:00"} {
		tm := units[name]["Timer"]
		if tm["OnCalendar"][0] != want || tm["Persistent"][0] != "true" || tm["RandomizedDelaySec"][0] != "1800" {
			t.Errorf("%s: %q", name, tm)
		}
		if units[name]["Install"]["WantedBy"][0] != "timers.target" {
			t.Errorf("%s: not wanted by timers.target", name)
		}
	}

	// systemd's own parser, where the machine has it.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("no systemd-analyze: the units were checked by the parser above only")
		return
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, paths...)...) // #nosec G204 -- the test's own files
	var msgs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msgs, &msgs
	err = cmd.Run()
	// Offline, verify may mention units the host lacks (postgresql.service);
	// anything about walvault's own files is a failure.
	if err != nil || strings.Contains(msgs.String(), "walvault-") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, msgs.String())
	}
	for _, sched := range []string{"Mon..Sat *-*-* 01:30:00", "*-*-* 02:00:00", "daily"} {
		if b, err := exec.Command(sa, "calendar", sched).CombinedOutput(); err != nil { // #nosec G204 -- fixed test values
			t.Errorf("systemd-analyze calendar %q: %v\n%s", sched, err, b)
		}
	}
}

func TestSystemdUnitsPrint(t *testing.T) {
	_, bin, cfg := unitsSetup(t)
	code, stdout, stderr := runCLI(t, "systemd-units", "--print", "--config", cfg, "--env-file", "")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	parts := strings.Split(stdout, "### ")[1:]
	if len(parts) != len(systemd.Names) {
		t.Fatalf("printed %d units:\n%s", len(parts), stdout)
	}
	for i, p := range parts {
		name, body, _ := strings.Cut(p, "\n")
		if name != systemd.Names[i] {
			t.Errorf("unit %d is %q, want %s", i, name, systemd.Names[i])
		}
		u := parseUnit(t, name, []byte(body))
		if strings.HasSuffix(name, ".service") {
			if u["Service"]["EnvironmentFile"] != nil {
				t.Errorf("%s: EnvironmentFile= with --env-file \"\"", name)
			}
			if got := execWords(t, u["Service"]["ExecStart"][0]); got[0] != bin || got[len(got)-1] == cfg && name == "walvault-dump.service" {
				t.Errorf("%s runs %q", name, got)
			}
		}
	}
	if !strings.Contains(stdout, `dump-push --config "`) || !strings.Contains(stdout, `" --all`) {
		t.Errorf("the dump unit does not dump every database by default:\n%s", stdout)
	}
}

func TestSystemdUnitsDir(t *testing.T) {
	dir, _, cfg := unitsSetup(t)
	out := filepath.Join(dir, "system")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "systemd-units", "--dir", out, "--config", cfg); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		ents, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			info, _ := e.Info()
			b, _ := os.ReadFile(filepath.Join(out, e.Name())) // #nosec G304 -- the test's own file
			m[e.Name()] = fmt.Sprintf("%v %s", info.Mode().Perm(), b)
			if info.Mode().Perm() != 0o644 {
				t.Errorf("%s: mode %v, want 0644", e.Name(), info.Mode().Perm())
			}
		}
		return m
	}
	first := snapshot()
	if len(first) != len(systemd.Names) {
		t.Fatalf("%d files in the directory, want %d (no temporary files left)", len(first), len(systemd.Names))
	}
	// Again with the same settings: nothing to do, success.
	code, stdout, _ := runCLI(t, "systemd-units", "--dir", out, "--config", cfg)
	if code != exitOK || strings.Count(stdout, "unchanged") != len(systemd.Names) {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	// Other settings: refused, nothing touched.
	code, stdout, stderr := runCLI(t, "systemd-units", "--dir", out, "--config", cfg, "--user", "pgadmin")
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "--force") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("overwrite without --force: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !reflect.DeepEqual(snapshot(), first) {
		t.Fatal("a refused run changed the directory")
	}
	if code, _, stderr := runCLI(t, "systemd-units", "--dir", out, "--config", cfg, "--user", "pgadmin", "--force"); code != exitOK {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	after := snapshot()
	if len(after) != len(systemd.Names) || !strings.Contains(after["walvault-backup.service"], "User=pgadmin\n") {
		t.Fatalf("--force did not replace the units: %v", after)
	}
}

func TestSystemdUnitsBadInput(t *testing.T) {
	dir, _, cfg := unitsSetup(t)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"user with a newline", []string{"--user", "postgres\nExecStartPre=/bin/sh"}, "--user"},
		{"user with a space", []string{"--user", "post gres"}, "--user"},
		{"schedule with a newline", []string{"--backup-schedule", "daily\nOnBootSec=1"}, "--backup-schedule"},
		{"schedule with a quote", []string{"--dump-schedule", `daily"`}, "--dump-schedule"},
		{"schedule systemd refuses", []string{"--backup-schedule", "nightly at 1"}, "--backup-schedule: not a systemd calendar event: \"nightly at 1\""},
		{"time out of range", []string{"--dump-schedule", "*-*-* 25:00"}, "--dump-schedule"},
		{"drill schedule with a newline", []string{"--drill-schedule", "weekly\nOnBootSec=1"}, "--drill-schedule"},
		{"database with a newline", []string{"--database", "shop\nx"}, "--database"},
		{"database like a flag", []string{"--database", "--all"}, "--database"},
		{"env file relative", []string{"--env-file", "walvault.env"}, "--env-file"},
		{"env file with a backslash", []string{"--env-file", `/etc/a\b`}, "--env-file"},
		{"config with a newline", []string{"--config", cfg + "\nx"}, "config file"},
		{"config missing", []string{"--config", filepath.Join(dir, "none.yaml")}, "config file"},
		{"config empty", []string{"--config", ""}, "--config is empty"},
		{"bad delay", []string{"--randomized-delay", "soon"}, "--randomized-delay"},
		{"dir and print", []string{"--dir", dir, "--print"}, "--dir and --print"},
		{"an argument", []string{"extra"}, "no arguments"},
		{"dir missing", []string{"--dir", filepath.Join(dir, "nope")}, "not a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"systemd-units", "--print", "--config", cfg}, tt.args...)
			if tt.name == "dir missing" {
				args = append([]string{"systemd-units", "--config", cfg}, tt.args...)
			}
			code, stdout, stderr := runCLI(t, args...)
			if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 naming %s", code, stdout, stderr, tt.want)
			}
		})
	}
}

// The hardening is left out, with the reason in the unit, where it would
// hide the file:// store or PostgreSQL's socket from the command.
// (archive/systemd tests the rules themselves.)
func TestSystemdUnitsHardeningExceptions(t *testing.T) {
	_, _, cfg := unitsSetup(t)
	if err := os.WriteFile(cfg, []byte("store: file:///tmp/walvault-store\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "systemd-units", "--print", "--config", cfg)
	if code != exitOK || strings.Contains(stdout, "\nPrivateTmp=yes") || !strings.Contains(stdout, "# PrivateTmp=yes is left out: the file:// store") {
		t.Fatalf("exit %d, stderr %q, units:\n%s", code, stderr, stdout)
	}
}

// The drill's units: walvault drill as the cluster's user, weekly by
// default, on /var/tmp, remembering the outcome where status looks, with
// SIGTERM to walvault alone (it cleans up), and lower priorities.
func TestSystemdUnitsDrill(t *testing.T) {
	_, bin, cfg := unitsSetup(t)
	for _, tt := range []struct {
		args  []string
		sched string
	}{{nil, "weekly"}, {[]string{"--drill-schedule", "Sun *-*-* 04:00:00", "--user", "pgadmin"}, "Sun *-*-* 04:00:00"}} {
		code, stdout, stderr := runCLI(t, append([]string{"systemd-units", "--print", "--config", cfg}, tt.args...)...)
		if code != exitOK || stderr != "" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		units := map[string]map[string]map[string][]string{}
		for _, p := range strings.Split(stdout, "### ")[1:] {
			name, body, _ := strings.Cut(p, "\n")
			units[name] = parseUnit(t, name, []byte(body))
		}
		svc := units["walvault-drill.service"]["Service"]
		if svc == nil {
			t.Fatalf("no walvault-drill.service:\n%s", stdout)
		}
		want := []string{bin, "drill", "--config", cfg, "--drill-state-file", systemd.DrillStateFile}
		if got := execWords(t, svc["ExecStart"][0]); !reflect.DeepEqual(got, want) {
			t.Errorf("drill ExecStart runs %q, want %q", got, want)
		}
		user := "postgres"
		if tt.args != nil {
			user = "pgadmin"
		}
		for k, v := range map[string]string{"User": user, "Type": "oneshot", "KillMode": "mixed", "StateDirectory": "walvault",
			"Environment": "TMPDIR=/var/tmp", "PrivateTmp": "yes", "CPUSchedulingPolicy": "batch", "IOSchedulingPriority": "7"} {
			if strings.Join(svc[k], ",") != v {
				t.Errorf("drill %s=%q, want %q", k, svc[k], v)
			}
		}
		// systemd takes the last Nice=: the drill's is the lowest.
		if n := svc["Nice"]; len(n) == 0 || n[len(n)-1] != "19" {
			t.Errorf("drill Nice=%q, want 19 last", n)
		}
		tm := units["walvault-drill.timer"]["Timer"]
		if tm["OnCalendar"][0] != tt.sched || tm["Persistent"][0] != "true" {
			t.Errorf("drill timer: %q", tm)
		}
	}
}
