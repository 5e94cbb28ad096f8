package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// A mistyped command line gets one line naming the mistake and the fix,
// and exit 2: never the whole help on stdout, never a success.

// unknownCommandKey is the App.Metadata entry CommandNotFound leaves for run.
const unknownCommandKey = "walvault.unknown-command"

// helpArgs reduces "walvault CMD ARGS... --help" to "walvault CMD --help":
// help was asked for, and urfave/cli would take the first of ARGS for a
// subcommand to show help on.
func helpArgs(app *cli.App, args []string) []string {
	cmd := app.Command(args[1])
	if cmd == nil || len(cmd.Subcommands) > 0 || len(args) < 3 {
		return args
	}
	words, _ := tableOf(cmd.Flags).split(args[2:], false)
	for _, w := range words {
		name, val, has := strings.Cut(strings.TrimLeft(w[0], "-"), "=")
		if (name == "help" || name == "h") && (!has || val == "true") {
			return []string{args[0], args[1], "--help"}
		}
	}
	return args
}

// missingValue reports a flag that takes a value written last with none:
// reorderArgs puts "--" before the positional arguments, and the flag
// package would take that "--" for the value.
func missingValue(app *cli.App, args []string) error {
	cmd := app.Command(args[1])
	if cmd == nil || len(cmd.Subcommands) > 0 || len(args) < 3 {
		return nil
	}
	t := tableOf(cmd.Flags)
	words, _ := t.split(args[2:], false)
	if len(words) == 0 {
		return nil
	}
	last := words[len(words)-1]
	name, _, has := strings.Cut(strings.TrimLeft(last[0], "-"), "=")
	if s, ok := t[name]; ok && s.takesValue && !has && len(last) == 1 {
		return usageError("%s", flagProblem("flag needs an argument: -"+name, nil, "walvault "+cmd.Name))
	}
	return nil
}

// onUsageError reports a command line the flag package refused in one
// line; without it urfave/cli prints the whole help to stdout as well.
func onUsageError(c *cli.Context, err error, _ bool) error {
	helpCmd, flags := "walvault", c.App.Flags
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		helpCmd, flags = "walvault "+c.Command.Name, c.Command.Flags
	}
	return usageError("%s", flagProblem(err.Error(), flags, helpCmd))
}

// flagProblem rewrites a flag package message (which writes every flag
// "-name") into one that names the flag as documented and the fix.
func flagProblem(msg string, flags []cli.Flag, helpCmd string) string {
	fix := fmt.Sprintf("run '%s --help' for its flags", helpCmd)
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		var names []string
		for _, f := range flags {
			names = append(names, f.Names()...)
		}
		return fmt.Sprintf("unknown flag %s%s: %s", dashed(name), didYouMean(name, names, dashed), fix)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("flag %s needs a value: write %s=VALUE, or %s", dashed(name), dashed(name), fix)
	}
	for _, p := range []string{" for flag -", " for -"} {
		if before, after, ok := strings.Cut(msg, p); ok && strings.HasPrefix(msg, "invalid ") {
			return fmt.Sprintf("%s for %s: %s", before, dashed(after), fix)
		}
	}
	return msg + ": " + fix
}

// dashed writes a flag name as it is documented: --name, or -h.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func commandNames(app *cli.App) []string {
	var names []string
	for _, c := range app.Commands {
		names = append(names, c.Names()...)
	}
	return names
}

// didYouMean suggests the candidate within two edits of name, written by
// show, if there is one.
func didYouMean(name string, candidates []string, show func(string) string) string {
	if len(name) < 3 {
		return ""
	}
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", show(best))
}

// editDistance is the Levenshtein distance between two short words.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
