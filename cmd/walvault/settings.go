package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/archive/check"
	"github.com/walvault/walvault/cloud"
)

// Which value would `walvault wal-push` see for a setting, given its
// command line, the VAR=value assignments before it, the server's
// environment and its config file? check asks that of archive_command.
// The answer is read off wal-push's own flag table (flags.go), so it
// follows every flag, environment variable and config key the command
// has: precedence flag > environment > config file, as urfave/cli and
// applyConfigFile apply them.

// setting is one flag as a setting: its name (also its config file key),
// the environment variables that set it, and whether it takes a value on
// the command line.
type setting struct {
	name       string
	env        []string
	takesValue bool
}

// settingsTable is a command's flags by every name and alias.
type settingsTable map[string]setting

func tableOf(flags []cli.Flag) settingsTable {
	t := settingsTable{}
	for _, f := range append(append([]cli.Flag(nil), flags...), cli.HelpFlag) {
		names := f.Names()
		if len(names) == 0 {
			continue
		}
		s := setting{name: names[0], takesValue: true}
		if df, ok := f.(cli.DocGenerationFlag); ok {
			s.takesValue, s.env = df.TakesValue(), df.GetEnvVars()
		}
		for _, n := range names {
			t[n] = s
		}
	}
	return t
}

// commandFlags is the flags of the named command, as registered.
func commandFlags(name string) []cli.Flag {
	for _, mk := range commandMakers {
		for _, c := range mk() {
			if c.Name == name {
				return c.Flags
			}
		}
	}
	return nil
}

// walPushResolver resolves, for check, the settings of the walvault
// wal-push that archive_command runs.
func walPushResolver() check.Resolver {
	return tableOf(commandFlags("wal-push")).resolve
}

// resolve is a check.Resolver over the table's command.
func (t settingsTable) resolve(args []string, assign, env map[string]string, envWhy string) check.Resolved {
	r := &walvaultRun{table: t, assign: assign, env: env, envWhy: envWhy}
	var res check.Resolved
	r.flags, res.Args = t.parse(args)
	r.config = r.findConfig()
	res.Store = r.setting("store")
	res.Endpoint = r.endpoint(res.Store.Value)
	res.Recipients = r.setting("recipient")
	return res
}

// split cuts a command's arguments into its flags, each as the words it
// takes ("--x=1", or "--x" "1"), and its positional arguments. Flags may
// stand anywhere; after "--" everything is positional. A flag the command
// does not have takes a value when unknownTakesValue says so.
func (t settingsTable) split(args []string, unknownTakesValue bool) (flags [][]string, positional []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		name, _, has := strings.Cut(strings.TrimLeft(a, "-"), "=")
		s, known := t[name]
		if !has && (known && s.takesValue || !known && unknownTakesValue) && i+1 < len(args) {
			flags = append(flags, []string{a, args[i+1]})
			i++
			continue
		}
		flags = append(flags, []string{a})
	}
	return flags, positional
}

// parse splits a command line into flag values, by each flag's first name,
// and positional arguments. A flag the command does not have makes it
// fail; until then, assume it takes a value, as most do.
func (t settingsTable) parse(args []string) (flags map[string][]string, positional []string) {
	words, positional := t.split(args, true)
	flags = map[string][]string{}
	for _, w := range words {
		name, val, _ := strings.Cut(strings.TrimLeft(w[0], "-"), "=")
		if s, known := t[name]; known {
			name = s.name
		}
		if len(w) == 2 {
			val = w[1]
		}
		flags[name] = append(flags[name], val)
	}
	return flags, positional
}

// walvaultRun is one run of the command as check sees it.
type walvaultRun struct {
	table  settingsTable
	flags  map[string][]string
	assign map[string]string
	env    map[string]string // nil: check cannot see it
	envWhy string
	config configFile
}

// configFile is the config file a run reads, if any.
type configFile struct {
	path, from string
	src        altsrc.InputSourceContext
	err        error
}

// lookupEnv finds k in the assignments, then in the server's environment.
func (r *walvaultRun) lookupEnv(k string) (v, from string, ok bool) {
	if v, ok := r.assign[k]; ok {
		return v, k + " in archive_command", true
	}
	if v, ok := r.env[k]; ok && v != "" {
		return v, k + " in the server's environment", true
	}
	return "", "", false
}

// findConfig finds the config file (--config, else its environment
// variable, else the default file when it exists) and opens it.
func (r *walvaultRun) findConfig() configFile {
	var c configFile
	named := false
	if v := r.flags["config"]; len(v) > 0 {
		c.path, c.from, named = v[len(v)-1], "--config in archive_command", true
	} else {
		for _, k := range r.table["config"].env {
			if v, ok := r.assign[k]; ok {
				c.path, c.from, named = v, k+" in archive_command", true
				break
			}
			if v, ok := r.env[k]; ok {
				c.path, c.from, named = v, k+" in the server's environment", true
				break
			}
		}
	}
	if p := defaultConfigFile(); !named && p != "" {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			c.path, c.from = p, "the default config file"
		}
	}
	switch {
	case c.path == "":
	case !filepath.IsAbs(c.path):
		c.err = errors.New("the path is relative, so it depends on the server's working directory")
	default:
		c.src, c.err = openConfigFile(c.path)
	}
	return c
}

// openConfigFile reads a config file with the YAML reader the commands
// use (applyConfigFile).
func openConfigFile(path string) (altsrc.InputSourceContext, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, errors.Unwrap(err)
	}
	src, err := altsrc.NewYamlSourceFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %s", oneLine(err.Error()))
	}
	return src, nil
}

// values are what the file sets for key: one string, or a list for a
// repeatable setting.
func (c configFile) values(key string) []string {
	if v, err := c.src.String(key); err == nil {
		if v != "" {
			return []string{v}
		}
		return nil
	}
	if v, err := c.src.StringSlice(key); err == nil && len(v) > 0 {
		return v
	}
	return nil
}

func knownSetting(values []string, from string) check.Setting {
	return check.Setting{Value: values[len(values)-1], Values: values, From: from, Known: true}
}

// setting resolves one setting: flag, then environment (assignments
// first), then config file.
func (r *walvaultRun) setting(name string) check.Setting {
	def := r.table[name]
	if v := r.flags[name]; len(v) > 0 {
		return knownSetting(v, "--"+name+" in archive_command")
	}
	for _, k := range def.env {
		if v, from, ok := r.lookupEnv(k); ok {
			return knownSetting([]string{v}, from)
		}
	}
	envNames := strings.Join(def.env, " or ")
	if c := r.config; c.path != "" {
		if c.err != nil {
			return check.Setting{Why: fmt.Sprintf("config file %s (%s) cannot be read here: %v", c.path, c.from, c.err)}
		}
		if v := c.values(name); len(v) > 0 {
			s := knownSetting(v, "config file "+c.path)
			if r.env == nil {
				s.From += " (unless the server's environment sets " + envNames + ", which check cannot see)"
			}
			return s
		}
	}
	if r.env == nil {
		return check.Setting{Why: "it would come from the server's environment (" + envNames + " or " +
			strings.Join(r.table["config"].env, " or ") + "), which check cannot see: " + r.envWhy}
	}
	return check.Setting{Known: true, From: "nowhere"}
}

// endpoint resolves the endpoint of storeURL's backend: its endpoint
// setting, else what the SDK finds in the environment.
func (r *walvaultRun) endpoint(storeURL string) check.Setting {
	loc, err := cloud.ParseURL(storeURL)
	if err != nil {
		return check.Setting{}
	}
	b, ok := cloud.BackendOf(loc.Scheme)
	if !ok || b.EndpointSetting() == "" {
		return check.Setting{}
	}
	ep := r.setting(b.EndpointSetting())
	if ep.Known && ep.Value == "" && b.EnvEndpoint != nil {
		getenv := func(k string) string { v, _, _ := r.lookupEnv(k); return v }
		if v, k := b.EnvEndpoint(getenv); v != "" {
			_, from, _ := r.lookupEnv(k)
			ep = knownSetting([]string{v}, from)
		}
	}
	return ep
}
