package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive/check"
)

// TestSettingsTable: the table check resolves with is wal-push's own.
func TestSettingsTable(t *testing.T) {
	tab := tableOf(commandFlags("wal-push"))
	for _, tt := range []struct {
		name  string
		value bool
		env   string
	}{
		{"store", true, "WALVAULT_STORE"},
		{"config", true, "WALVAULT_CONFIG"},
		{"recipient", true, "WALVAULT_RECIPIENT"},
		{"s3-endpoint", true, "WALVAULT_S3_ENDPOINT"},
		{"spool-dir", true, "WALVAULT_SPOOL_DIR"},
		{"s3-path-style", false, "WALVAULT_S3_PATH_STYLE"},
		{"allow-insecure-identity", false, "WALVAULT_ALLOW_INSECURE_IDENTITY"},
		{"help", false, ""},
		{"h", false, ""},
	} {
		s, ok := tab[tt.name]
		if !ok || s.takesValue != tt.value || strings.Join(s.env, ",") != tt.env {
			t.Errorf("%s: %+v (in the table: %v), want value %v env %q", tt.name, s, ok, tt.value, tt.env)
		}
	}
	for _, f := range commandFlags("wal-push") {
		if _, ok := tab[f.Names()[0]]; !ok {
			t.Errorf("wal-push's --%s is not in the table", f.Names()[0])
		}
	}
}

func TestResolveWALPushSettings(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "wv.yaml")
	if err := os.WriteFile(cfgFile, []byte("store: s3://bucket/from-file\nrecipient:\n  - age1a\n  - age1b\ns3-endpoint: http://minio:9000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("store: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srvEnv := map[string]string{"PATH": "/usr/bin", "WALVAULT_STORE": "file:///srv/env-store", "WALVAULT_RECIPIENT": "age1env",
		"AWS_SECRET_ACCESS_KEY": "hush"}
	tests := []struct {
		name     string
		args     []string
		assign   map[string]string
		env      map[string]string
		store    string
		from     string // a part of Store.From ("" to skip)
		known    bool
		why      string // a part of Store.Why when !known
		endpoint string
		epFrom   string // a part of Endpoint.From ("" to skip)
		recips   string
		pos      string
	}{
		{name: "env store", args: []string{"%p"}, env: srvEnv, store: "file:///srv/env-store", from: "WALVAULT_STORE in the server's environment", known: true, recips: "age1env", pos: "%p"},
		{name: "flag beats env", args: []string{"--store", "file:///x", "%p"}, env: srvEnv, store: "file:///x", from: "--store in archive_command", known: true, recips: "age1env", pos: "%p"},
		{name: "last flag wins", args: []string{"--store=file:///x", "-store", "file:///z", "%p"}, env: srvEnv, store: "file:///z", from: "--store in archive_command", known: true, recips: "age1env", pos: "%p"},
		{name: "assignment beats env", args: []string{"%p"}, assign: map[string]string{"WALVAULT_STORE": "file:///y"}, env: srvEnv, store: "file:///y", from: "WALVAULT_STORE in archive_command", known: true, recips: "age1env", pos: "%p"},
		{name: "config file", args: []string{"--config", cfgFile, "%p"}, env: map[string]string{"PATH": "/usr/bin"},
			store: "s3://bucket/from-file", from: "config file " + cfgFile, known: true, endpoint: "http://minio:9000", epFrom: "config file", recips: "age1a,age1b", pos: "%p"},
		{name: "WALVAULT_CONFIG assigned", args: []string{"%p"}, assign: map[string]string{"WALVAULT_CONFIG": cfgFile}, env: map[string]string{},
			store: "s3://bucket/from-file", from: "config file " + cfgFile, known: true, endpoint: "http://minio:9000", recips: "age1a,age1b", pos: "%p"},
		{name: "WALVAULT_CONFIG in the environment", args: []string{"%p"}, env: map[string]string{"WALVAULT_CONFIG": cfgFile},
			store: "s3://bucket/from-file", from: "config file " + cfgFile, known: true, endpoint: "http://minio:9000", recips: "age1a,age1b", pos: "%p"},
		{name: "env beats config file", args: []string{"--config=" + cfgFile, "%p"}, env: srvEnv, store: "file:///srv/env-store", from: "WALVAULT_STORE in the server's environment", known: true, recips: "age1env", pos: "%p"},
		{name: "unreadable config", args: []string{"--config", "/etc/secret.yaml", "%p"}, env: map[string]string{}, known: false, why: "/etc/secret.yaml (--config in archive_command) cannot be read here", pos: "%p"},
		{name: "config not YAML", args: []string{"--config", badYAML, "%p"}, env: map[string]string{}, known: false, why: "not valid YAML", pos: "%p"},
		{name: "relative config path", args: []string{"--config", "wv.yaml", "%p"}, env: map[string]string{}, known: false, why: "relative", pos: "%p"},
		{name: "env not visible", args: []string{"%p"}, env: nil, known: false, why: "WALVAULT_STORE or WALVAULT_CONFIG), which check cannot see: not visible in this test", pos: "%p"},
		{name: "config seen, env not", args: []string{"--config", cfgFile, "%p"}, env: nil, store: "s3://bucket/from-file",
			from: "(unless the server's environment sets WALVAULT_STORE, which check cannot see)", known: true, recips: "age1a,age1b", endpoint: "http://minio:9000", pos: "%p"},
		{name: "nowhere", args: []string{"%p"}, env: map[string]string{}, store: "", from: "nowhere", known: true, pos: "%p"},
		{name: "s3 endpoint from env", args: []string{"--store", "s3://b/p", "%p"}, env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, store: "s3://b/p", known: true,
			endpoint: "http://127.0.0.1:9", epFrom: "AWS_ENDPOINT_URL in the server's environment", pos: "%p"},
		{name: "AWS_ENDPOINT_URL_S3 first", args: []string{"--store", "s3://b/p", "%p"}, assign: map[string]string{"AWS_ENDPOINT_URL_S3": "http://s3only:1"},
			env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, store: "s3://b/p", known: true, endpoint: "http://s3only:1", epFrom: "AWS_ENDPOINT_URL_S3 in archive_command", pos: "%p"},
		{name: "s3 endpoint flag beats env", args: []string{"--store", "s3://b/p", "--s3-endpoint", "http://flag:1", "%p"}, env: map[string]string{"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"},
			store: "s3://b/p", known: true, endpoint: "http://flag:1", epFrom: "--s3-endpoint in archive_command", pos: "%p"},
		{name: "WALVAULT_S3_ENDPOINT beats AWS_ENDPOINT_URL_S3", args: []string{"--store", "s3://b/p", "%p"}, env: map[string]string{"WALVAULT_S3_ENDPOINT": "http://wv:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"},
			store: "s3://b/p", known: true, endpoint: "http://wv:1", epFrom: "WALVAULT_S3_ENDPOINT", pos: "%p"},
		{name: "gcs emulator", args: []string{"--store", "gs://b/p", "%p"}, env: map[string]string{"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}, store: "gs://b/p", known: true, endpoint: "127.0.0.1:4443", epFrom: "STORAGE_EMULATOR_HOST", pos: "%p"},
		{name: "azure connection string", args: []string{"--store", "azure://c/p", "%p"}, env: map[string]string{"AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=SECRET;BlobEndpoint=http://h:1/a;"},
			store: "azure://c/p", known: true, endpoint: "http://h:1/a", epFrom: "AZURE_STORAGE_CONNECTION_STRING", pos: "%p"},
		{name: "repeated recipient", args: []string{"--recipient", "age1x", "--recipient=age1y", "%p"}, env: srvEnv, store: "file:///srv/env-store", known: true, recips: "age1x,age1y", pos: "%p"},
		{name: "a bool flag takes no value", args: []string{"--s3-path-style", "%p", "--allow-insecure-identity", "-h"}, env: srvEnv, store: "file:///srv/env-store", known: true, recips: "age1env", pos: "%p"},
		{name: "a value flag takes the next word", args: []string{"--store", "%p"}, env: srvEnv, store: "%p", known: true, recips: "age1env", pos: ""},
		{name: "after --", args: []string{"--store=file:///x", "--", "--config", "%p"}, env: srvEnv, store: "file:///x", known: true, recips: "age1env", pos: "--config %p"},
	}
	resolve := walPushResolver()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := resolve(tt.args, tt.assign, tt.env, "not visible in this test")
			st := res.Store
			if st.Known != tt.known || tt.known && (st.Value != tt.store || !strings.Contains(st.From, tt.from)) {
				t.Fatalf("store %+v, want %q from %q (known %v)", st, tt.store, tt.from, tt.known)
			}
			if !tt.known {
				if !strings.Contains(st.Why, tt.why) || st.Why == "" {
					t.Fatalf("store %+v, want a reason with %q", st, tt.why)
				}
				return
			}
			if ep := res.Endpoint; ep.Value != tt.endpoint || !strings.Contains(ep.From, tt.epFrom) {
				t.Fatalf("endpoint %+v, want %q from %q", ep, tt.endpoint, tt.epFrom)
			}
			if !res.Recipients.Known || strings.Join(res.Recipients.Values, ",") != tt.recips {
				t.Fatalf("recipients %+v, want %s", res.Recipients, tt.recips)
			}
			if strings.Join(res.Args, " ") != tt.pos {
				t.Fatalf("positional %q, want %q", res.Args, tt.pos)
			}
		})
	}
	// With neither --config nor WALVAULT_CONFIG, the default file, which
	// wal-push reads too.
	def := writeDefaultConfig(t, "store: file:///srv/default-store\n")
	res := resolve([]string{"%p"}, nil, map[string]string{}, "")
	if res.Store.Value != "file:///srv/default-store" || !strings.Contains(res.Store.From, "config file "+def) {
		t.Fatalf("store with the default config file: %+v", res.Store)
	}
	if res := resolve([]string{"%p"}, map[string]string{"WALVAULT_CONFIG": ""}, map[string]string{}, ""); res.Store.Value != "" || res.Store.From != "nowhere" {
		t.Fatalf("WALVAULT_CONFIG=\"\" reads no file: %+v", res.Store)
	}
	if err := os.Remove(def); err != nil {
		t.Fatal(err)
	}
	// A store in the config file with the environment unseen: its endpoint
	// may come from the SDK's variables, which check cannot see either.
	res = resolve([]string{"--store", "s3://b/p", "%p"}, nil, nil, "hidden")
	if res.Endpoint.Known || !strings.Contains(res.Endpoint.Why, "WALVAULT_S3_ENDPOINT") || !strings.Contains(res.Endpoint.Why, "hidden") {
		t.Fatalf("endpoint with the environment unseen: %+v", res.Endpoint)
	}
	if res.Recipients.Known || res.Recipients.Why == "" {
		t.Fatalf("recipients with the environment unseen: %+v", res.Recipients)
	}
	var _ check.Resolver = walPushResolver()
}

// TestNamedFlags: every flag that carries its names carries the ones
// urfave/cli would compute, so looking flags up by name finds the same.
func TestNamedFlags(t *testing.T) {
	n := 0
	for _, mk := range commandMakers {
		for _, c := range mk() {
			for _, f := range c.Flags {
				var name string
				var aliases []string
				switch f := f.(type) {
				case *namedString:
					name, aliases = f.Name, f.Aliases
				case *namedInt:
					name, aliases = f.Name, f.Aliases
				case *namedBool:
					name, aliases = f.Name, f.Aliases
				case *namedSlice:
					name, aliases = f.Name, f.Aliases
				case *namedCLIString:
					name, aliases = f.Name, f.Aliases
				default:
					continue
				}
				n++
				if got, want := f.Names(), cli.FlagNames(name, aliases); !slices.Equal(got, want) {
					t.Errorf("%s --%s: names %q, urfave/cli says %q", c.Name, name, got, want)
				}
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d named flags checked", n)
	}
}
