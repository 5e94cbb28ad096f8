package main

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want invocation
		err  bool
	}{
		{argv: []string{"push", "pg_wal/000000010000000000000001"}, want: invocation{verb: "push", args: []string{"pg_wal/000000010000000000000001"}}},
		{argv: []string{"push", "--socket", "/s", "p"}, want: invocation{verb: "push", args: []string{"p"}, socket: "/s"}},
		{argv: []string{"--socket=/s", "fetch", "N", "D"}, want: invocation{verb: "fetch", args: []string{"N", "D"}, socket: "/s"}},
		{argv: []string{"fetch", "--config=/etc/w.yaml", "--store=file:///x", "N", "D"}, want: invocation{verb: "fetch", args: []string{"N", "D"}, extra: []string{"--config=/etc/w.yaml", "--store=file:///x"}}},
		{argv: []string{"push", "--config", "/etc/w.yaml", "pg_wal/1"}, want: invocation{verb: "push", args: []string{"pg_wal/1"}, extra: []string{"--config", "/etc/w.yaml"}}},
		{argv: []string{"push", "-store", "file:///x", "--s3-path-style", "--log-level=debug", "p"},
			want: invocation{verb: "push", args: []string{"p"}, extra: []string{"-store", "file:///x", "--s3-path-style", "--log-level=debug"}}},
		{argv: []string{"fetch", "N", "D", "--identity-file", "/k"}, want: invocation{verb: "fetch", args: []string{"N", "D"}, extra: []string{"--identity-file", "/k"}}},
		{argv: []string{"push", "--bogus", "x", "p"}, want: invocation{verb: "push", args: []string{"p"}, extra: []string{"--bogus", "x"}}},
		{argv: []string{"push", "-h"}, err: true},
		{argv: []string{"push", "--", "-odd"}, want: invocation{verb: "push", args: []string{"-odd"}}},
		{argv: []string{"status"}, want: invocation{verb: "status", args: []string{}}},
		{argv: nil, err: true},
		{argv: []string{"push"}, err: true},
		{argv: []string{"fetch", "N"}, err: true},
		{argv: []string{"delete", "x"}, err: true},
		{argv: []string{"push", "p", "--socket"}, err: true},
		{argv: []string{"push", "p", "--config"}, err: true},
	} {
		t.Setenv("WALVAULT_SOCKET", "")
		got, err := parse(c.argv)
		if (err != nil) != c.err {
			t.Errorf("%q: error %v, want error %v", c.argv, err, c.err)
			continue
		}
		if c.err {
			continue
		}
		if len(got.args) == 0 {
			got.args = []string{}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %+v, want %+v", c.argv, got, c.want)
		}
	}
}

// The client links nothing but the standard library and the protocol.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(p, "/")
		switch {
		case p == "github.com/walvault/walvault/cmd/walvault-wal", p == "github.com/walvault/walvault/archive/agent/proto":
		case strings.HasPrefix(p, "vendor/"), !strings.Contains(first, "."):
		default:
			t.Errorf("walvault-wal depends on %s", p)
		}
	}
}
