package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

// The config file and the environment. Every setting is a flag, a
// WALVAULT_* variable and a key of the config file (flags.go); the file is
// the one --config or WALVAULT_CONFIG names, else /etc/walvault/walvault.yaml
// when it exists. Both are strict: a key or a WALVAULT_* variable that is no
// setting of any command is refused, with a did-you-mean, before the
// command runs, so a typo never goes unnoticed (a "recipients:" that
// silently left a dump unencrypted).

// defaultConfig is the config file read when none is named and it exists.
const defaultConfig = "/etc/walvault/walvault.yaml"

// testDefaultConfigEnv moves defaultConfig for tests, which must not
// depend on the machine's /etc. It is reserved (see reservedEnv).
const testDefaultConfigEnv = "WALVAULT_TEST_DEFAULT_CONFIG"

func defaultConfigFile() string {
	if p, ok := os.LookupEnv(testDefaultConfigEnv); ok {
		return p
	}
	return defaultConfig
}

// reservedEnv says whether a WALVAULT_* variable that is no setting is
// still walvault's: the test suite's (WALVAULT_TEST_*), the benchmarks'
// (WALVAULT_BENCH_*) and WALVAULT_BIN (the binary the end-to-end tests
// run). WALVAULT_SOCKET, the agent's socket, is a setting of the agent's
// (and walvault-wal's), only not a config file key.
func reservedEnv(name string) bool {
	return strings.HasPrefix(name, "WALVAULT_TEST_") || strings.HasPrefix(name, "WALVAULT_BENCH_") || name == "WALVAULT_BIN"
}

// knownSettings are every command's config file keys (flags the file
// sets) and environment variables.
var knownSettings = sync.OnceValues(func() (keys, envs []string) {
	seenKey, seenEnv := map[string]bool{}, map[string]bool{}
	for _, mk := range commandMakers {
		for _, c := range mk() {
			for _, f := range c.Flags {
				if _, ok := f.(altsrc.FlagInputSourceExtension); ok && !seenKey[f.Names()[0]] {
					seenKey[f.Names()[0]] = true
					keys = append(keys, f.Names()[0])
				}
				if df, ok := f.(cli.DocGenerationFlag); ok {
					for _, e := range df.GetEnvVars() {
						if !seenEnv[e] {
							seenEnv[e] = true
							envs = append(envs, e)
						}
					}
				}
			}
		}
	}
	for _, k := range extraConfigKeys {
		if !seenKey[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	sort.Strings(envs)
	return keys, envs
})

// checkEnvironment refuses WALVAULT_* variables that are no setting.
func checkEnvironment(*cli.Context) error {
	_, envs := knownSettings()
	var bad []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "WALVAULT_") || reservedEnv(name) || slices.Contains(envs, name) {
			continue
		}
		bad = append(bad, name+didYouMean(name, envs, func(s string) string { return s }))
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return handOver(usageError("the environment sets %s, which %s no walvault setting: unset it, or name a setting (walvault COMMAND --help lists them with their variables)",
		strings.Join(bad, ", "), plural(len(bad), "is", "are")))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// configPath is the config file a command reads: --config or
// WALVAULT_CONFIG (set to "" for none), else the default when it exists.
func configPath(c *cli.Context) string {
	if p := c.String("config"); p != "" || c.IsSet("config") {
		return p
	}
	if p := defaultConfigFile(); p != "" {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			return p
		}
	}
	return ""
}

// applyConfigFile fills the flags neither given nor set in the environment
// from the YAML config file, after checking its keys. The default file,
// when read, is named as --config from then on (restore_command repeats
// it).
func applyConfigFile(c *cli.Context) error {
	path := configPath(c)
	if path == "" {
		return nil
	}
	if !c.IsSet("config") {
		_ = c.Set("config", path)
	}
	if _, err := os.Stat(path); err != nil {
		return usageError("config file %s cannot be read: %v (fix --config / WALVAULT_CONFIG)", path, errors.Unwrap(err))
	}
	src, err := altsrc.NewYamlSourceFromFile(path)
	if err != nil {
		return usageError("config file %s is not valid YAML with flag names as keys: %s", path, oneLine(err.Error()))
	}
	if err := checkConfigKeys(path); err != nil {
		return err
	}
	if err := altsrc.ApplyInputSourceValues(c, numbersAsText{src}, c.Command.Flags); err != nil {
		return usageError("config file %s: %s", path, oneLine(err.Error()))
	}
	return nil
}

// checkConfigKeys refuses keys that are no setting of any command.
func checkConfigKeys(path string) error {
	b, err := os.ReadFile(path) // #nosec G304 -- the config file the user named
	if err != nil {
		return usageError("config file %s cannot be read: %v", path, errors.Unwrap(err))
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return usageError("config file %s is not valid YAML with flag names as keys: %s", path, oneLine(err.Error()))
	}
	keys, _ := knownSettings()
	var bad []string
	for k := range doc {
		if !slices.Contains(keys, k) {
			bad = append(bad, fmt.Sprintf("%q%s", k, didYouMean(k, keys, func(s string) string { return fmt.Sprintf("%q", s) })))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return handOver(usageError("config file %s: %s %s no walvault setting: every key is a setting's name (README, Configuration)",
		path, strings.Join(bad, ", "), plural(len(bad), "is", "are")))
}

// numbersAsText lets a setting that takes text be written as a YAML
// number (lock-days: 30), as a DBA would.
type numbersAsText struct{ altsrc.InputSourceContext }

func (n numbersAsText) String(name string) (string, error) {
	s, err := n.InputSourceContext.String(name)
	if err == nil {
		return s, nil
	}
	if i, ierr := n.Int(name); ierr == nil {
		return strconv.Itoa(i), nil
	}
	if f, ferr := n.Float64(name); ferr == nil {
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	return s, err
}
