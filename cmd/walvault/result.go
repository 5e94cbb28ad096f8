package main

import (
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// The commands a script runs for their outcome print, with --json, one
// JSON object on stdout when they end, success or failure: the fields the
// command set (resultOf), and always "command", "ok", "exit_code" and
// "error" (the one line walvault printed on stderr, null on success).
// Logs stay on stderr. dump-fetch and copy copy an archive's objects
// elsewhere; a command listed here gets --json from addJSONFlags when it
// does not declare it, so it reports at least its outcome.
var resultCommands = []string{"backup-push", "copy", "delete", "dump-fetch", "dump-push", "dump-restore", "restore"}

// addJSONFlags gives every command of resultCommands its --json.
func addJSONFlags(commands []*cli.Command) {
	for _, c := range commands {
		if slices.Contains(resultCommands, c.Name) && !hasFlag(c.Flags, "json") {
			c.Flags = append(c.Flags, boolFlag("json", "end with one JSON object on stdout (the outcome, or why it failed); logs stay on stderr"))
		}
	}
}

// result is the object a command fills for --json.
type result map[string]any

const resultKey = "walvault-json-result"

// resultOf is the command's result object when it runs with --json, nil
// otherwise; set on nil does nothing, so a command fills it unconditionally.
func resultOf(c *cli.Context) result {
	if !slices.Contains(resultCommands, c.Command.Name) || !c.Bool("json") {
		return nil
	}
	if c.App.Metadata == nil {
		c.App.Metadata = map[string]any{}
	}
	if r, ok := c.App.Metadata[resultKey].(result); ok {
		return r
	}
	r := result{}
	c.App.Metadata[resultKey] = r
	return r
}

func (r result) set(key string, v any) {
	if r != nil {
		r[key] = v
	}
}

// reporter prints the result object at the end of run.
type reporter struct {
	app     *cli.App
	out     io.Writer
	command string
	// asked: --json is on the command line, so a failure before the
	// command ran (a usage error) still ends with the object.
	asked bool
	why   string
}

func (r *reporter) start(app *cli.App, out io.Writer, args []string) {
	r.app, r.out = app, out
	if len(args) < 2 || !slices.Contains(resultCommands, args[1]) {
		return
	}
	r.command = args[1]
	for _, a := range args[2:] {
		if a == "--" {
			break
		}
		if a == "--json" || a == "-json" || strings.HasPrefix(a, "--json=") && a != "--json=false" {
			r.asked = true
		}
	}
}

// reason records the line run printed for the failure.
func (r *reporter) reason(line string) {
	if r.why == "" {
		r.why = line
	}
}

func (r *reporter) emit(code int) {
	if r.command == "" || r.app == nil {
		return
	}
	res, _ := r.app.Metadata[resultKey].(result)
	if res == nil && !r.asked {
		return
	}
	if res == nil {
		res = result{}
	}
	res["command"], res["exit_code"], res["ok"] = r.command, code, code == 0
	if code == 0 {
		res["error"] = nil
	} else {
		why := r.why
		if why == "" {
			why = "failed"
		}
		res["error"] = strings.TrimPrefix(why, "walvault "+r.command+": ")
	}
	_ = encodeJSON(r.out, map[string]any(res))
}
