package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// --amcheck stands alone or takes =heap, from the command line, the
// environment or the config file, and never swallows the next word.
func TestAmcheckFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := func(body string) string {
		p := filepath.Join(dir, strings.NewReplacer(" ", "_", ":", "").Replace(body)+".yaml")
		if err := os.WriteFile(p, []byte(body+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name string
		args []string
		env  string
		want string
		bad  bool
	}{
		{name: "absent", want: ""},
		{name: "alone", args: []string{"--amcheck"}, want: "btree"},
		{name: "heap", args: []string{"--amcheck=heap"}, want: "heap"},
		{name: "off", args: []string{"--amcheck=false"}, want: ""},
		{name: "alone before another flag", args: []string{"--amcheck", "--dir", "/x"}, want: "btree"},
		{name: "environment", env: "heap", want: "heap"},
		{name: "config heap", args: []string{"--config", cfg("amcheck: heap")}, want: "heap"},
		{name: "config true", args: []string{"--config", cfg("amcheck: true")}, want: "btree"},
		{name: "flag beats config", args: []string{"--config", cfg("amcheck: heap"), "--amcheck"}, want: "btree"},
		{name: "nonsense", args: []string{"--amcheck=maybe"}, bad: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("WALVAULT_AMCHECK", tt.env)
			}
			got := "unset"
			flags := []cli.Flag{configFlag(), amcheckFlag(), stringFlag("dir", "", "")}
			app := &cli.App{Writer: &strings.Builder{}, ErrWriter: &strings.Builder{}, Commands: []*cli.Command{{
				Name: "drill", Flags: flags, Before: applyConfigFile, OnUsageError: onUsageError,
				Action: func(c *cli.Context) error {
					got = c.Generic("amcheck").(*amcheckMode).mode
					if c.NArg() > 0 {
						t.Errorf("positional arguments %q", c.Args().Slice())
					}
					return nil
				},
			}}}
			err := app.Run(reorderArgs(app, append([]string{"walvault", "drill"}, tt.args...)))
			switch {
			case tt.bad && err == nil:
				t.Fatalf("accepted, mode %q", got)
			case !tt.bad && err != nil:
				t.Fatal(err)
			case !tt.bad && got != tt.want:
				t.Errorf("mode %q, want %q", got, tt.want)
			}
		})
	}
	if tableOf([]cli.Flag{amcheckFlag()})["amcheck"].takesValue {
		t.Error("the settings table thinks --amcheck takes the next word")
	}
}

// Bad drill options end in exit 2 with one line, before the store is
// opened.
func TestDrillUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "--amcheck=maybe"}, "--amcheck"},
		{[]string{"drill", "somewhere"}, "no arguments"},
		{[]string{"drill", "--max-size", "lots"}, "--max-size"},
		{[]string{"drill", "--target-lsn", "nowhere"}, "--target-lsn"},
		{[]string{"drill", "--download-concurrency", "0"}, "--download-concurrency"},
	} {
		code, stdout, stderr := runCLI(t, tt.args...)
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 naming %s", tt.args, code, stdout, stderr, tt.want)
		}
	}
}
