package main

import (
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/cloud"
)

// walvault-wal's copy of wal-push's and wal-fetch's flags (it may link
// nothing of walvault's) is generated from this table:
//go:generate go test -run ^TestWALClientFlags$ . -args -update

// Every setting is a flag, a WALVAULT_* environment variable, and a key of
// the same name in the optional YAML config file. Precedence: flag > env >
// file > default.

func envName(flag string) []string { return []string{cloud.EnvVar(flag)} }

func stringFlag(name, usage, value string) cli.Flag {
	return &namedString{altsrc.NewStringFlag(&cli.StringFlag{Name: name, Usage: usage, Value: value, EnvVars: envName(name)}), []string{name}}
}

func intFlag(name, usage string, value int) cli.Flag {
	return &namedInt{altsrc.NewIntFlag(&cli.IntFlag{Name: name, Usage: usage, Value: value, EnvVars: envName(name)}), []string{name}}
}

func boolFlag(name, usage string) cli.Flag {
	return &namedBool{altsrc.NewBoolFlag(&cli.BoolFlag{Name: name, Usage: usage, EnvVars: envName(name)}), []string{name}}
}

func sliceFlag(name, usage string) cli.Flag {
	return &namedSlice{altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: name, Usage: usage, EnvVars: envName(name)}), []string{name}}
}

// configFlag is not itself read from the file.
func configFlag() cli.Flag {
	return &namedCLIString{&cli.StringFlag{Name: "config", Usage: "YAML file with settings (keys are flag names)", EnvVars: []string{"WALVAULT_CONFIG"}}, []string{"config"}}
}

// The flags built here carry their names, computed once. urfave/cli
// computes a flag's names with a regular expression at every Names call
// and finds a flag by calling Names on each in turn (IsSet, which applying
// the config file calls for every flag): 4.6% of the CPU of a wal-push
// with --config. Each type keeps every method of the flag it wraps.
type (
	namedString struct {
		*altsrc.StringFlag
		names []string
	}
	namedInt struct {
		*altsrc.IntFlag
		names []string
	}
	namedBool struct {
		*altsrc.BoolFlag
		names []string
	}
	namedSlice struct {
		*altsrc.StringSliceFlag
		names []string
	}
	namedCLIString struct {
		*cli.StringFlag
		names []string
	}
)

func (f *namedString) Names() []string    { return f.names }
func (f *namedInt) Names() []string       { return f.names }
func (f *namedBool) Names() []string      { return f.names }
func (f *namedSlice) Names() []string     { return f.names }
func (f *namedCLIString) Names() []string { return f.names }

// storeFlags reach and read the archive; every archive command takes them.
func storeFlags() []cli.Flag {
	return append([]cli.Flag{
		configFlag(),
		stringFlag("store", "where the archive lives: file:///path, s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix", ""),
		stringFlag("identity-file", "age identity (private key) file used to decrypt", ""),
		boolFlag("allow-insecure-identity", "accept an identity file readable by group or others"),
		stringFlag("log-level", "debug, info, warn or error", "info"),
		durationFlag("io-timeout", "give up on a store connection on which no data moves for this long", "60s"),
		stringFlag("max-upload-rate", "most bytes per second this process sends to the store, all uploads together, e.g. 20MiB (default: no limit)", ""),
		stringFlag("max-download-rate", "most bytes per second this process reads from the store, all downloads together, e.g. 50MiB (default: no limit)", ""),
	}, append(backendFlags(), authFlags()...)...)
}

// backendFlags are the settings of every registered store backend.
func backendFlags() []cli.Flag {
	var out []cli.Flag
	for _, s := range cloud.Settings() {
		if s.Switch {
			out = append(out, boolFlag(s.Name, s.Help))
		} else {
			out = append(out, stringFlag(s.Name, s.Help, ""))
		}
	}
	return out
}

// backendValues are the values of the backend settings c has (all of
// them, where it takes storeFlags).
func backendValues(c *cli.Context) cloud.Values {
	set := cloud.Values{}
	for _, s := range cloud.Settings() {
		if !hasFlag(c.Command.Flags, s.Name) {
			continue
		}
		if s.Switch {
			if c.Bool(s.Name) {
				set[s.Name] = "true"
			}
		} else if v := c.String(s.Name); v != "" {
			set[s.Name] = v
		}
	}
	return set
}

// writeFlags shape what is written.
func writeFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("compression", "lz4, zstd or none", "lz4"),
		intFlag("compression-level", "0 for the algorithm's default; lz4 1-9, zstd 1-22", 0),
		sliceFlag("recipient", "age public key (age1...) or recipients file to encrypt to; repeatable"),
		intFlag("upload-concurrency", "parallel uploads", 4),
		signingKeyFlag(),
		lockFlags()[0], lockFlags()[1],
	}
}

func join(sets ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, s := range sets {
		out = append(out, s...)
	}
	return out
}

func durationFlag(name, usage string, value string) cli.Flag {
	return stringFlag(name, usage+" (e.g. 30s, 5m)", value)
}
