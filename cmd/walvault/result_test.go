package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// oneObject parses stdout, which must be exactly one JSON object.
func oneObject(t *testing.T, stdout string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON value:\n%s", stdout)
	}
	return obj
}

// TestJSONResult: with --json, the commands a script runs for their
// outcome end with one object on stdout, success or failure, whose
// exit_code is the process's, and keep their log lines on stderr.
func TestJSONResult(t *testing.T) {
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	if err := os.MkdirAll(filepath.Join(dir, "store"), 0o700); err != nil {
		t.Fatal(err)
	}
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(busy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		fields []string // besides command, ok, exit_code, error
		reason string   // in error
	}{
		{"delete, a dry run", []string{"delete", "--retain-full", "1", "--store", store, "--allow-unsigned", "--json"}, exitOK, []string{"dry_run", "plan"}, ""},
		{"delete with no rule", []string{"delete", "--confirm", "--store", store, "--allow-unsigned", "--json"}, exitUsage, nil, "retention rule"},
		{"restore with no backup", []string{"restore", filepath.Join(dir, "new"), "--store", store, "--allow-unsigned", "--json"}, exitUsage, []string{"dest"}, "no complete backup"},
		{"restore, a usage error", []string{"restore", "--json", "--store", store, "--download-concurrency", "0", filepath.Join(dir, "x")}, exitUsage, nil, "--download-concurrency"},
		{"restore --delta with --force", []string{"restore", busy, "--delta", "--force", "--store", store, "--allow-unsigned", "--json"}, exitUsage, []string{"dest"}, "--force and --delta"},
		// Refused before the store is opened: a store that is not there
		// (exit 3 when opened) does not hide the usage error.
		{"restore --delta with --force, no store", []string{"restore", busy, "--delta", "--force", "--store", "file://" + filepath.Join(dir, "absent"), "--allow-unsigned", "--json"}, exitUsage, []string{"dest"}, "--force and --delta"},
		{"backup-push with no server", []string{"backup-push", "--store", store, "--allow-unsigned", "--json", "--dbname", "host=" + filepath.Join(dir, "nosocket") + " connect_timeout=2"}, exitPostgres, nil, "connecting"},
		{"dump-push, a usage error", []string{"dump-push", "--json", "--store", store}, exitUsage, nil, "DBNAME"},
		{"dump-fetch with no dump", []string{"dump-fetch", "LATEST", filepath.Join(dir, "out.dump"), "--json", "--store", store, "--allow-unsigned"}, -1, nil, "dump"},
		{"dump-fetch, a usage error", []string{"dump-fetch", "LATEST", "--json", "--store", store}, exitUsage, nil, "FILE"},
		{"dump-restore with no dump", []string{"dump-restore", "LATEST", "--json", "--store", store, "--allow-unsigned", "--dbname", "dbname=shop"}, -1, nil, "dump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if tc.code >= 0 && code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			obj := oneObject(t, stdout)
			if obj["exit_code"] != float64(code) || obj["ok"] != (code == 0) || obj["command"] != tc.args[0] {
				t.Errorf("object says exit_code %v ok %v command %v; the process exited %d", obj["exit_code"], obj["ok"], obj["command"], code)
			}
			switch e := obj["error"].(type) {
			case nil:
				if code != 0 {
					t.Errorf("error is null on exit %d", code)
				}
			case string:
				if !strings.Contains(e, tc.reason) || !strings.Contains(stderr, e) {
					t.Errorf("error %q: want it to name %q, as stderr does: %s", e, tc.reason, stderr)
				}
			}
			for _, f := range tc.fields {
				if _, ok := obj[f]; !ok {
					t.Errorf("no %q in %v", f, obj)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "out.dump")); !os.IsNotExist(err) {
		t.Errorf("a failed dump-fetch left its FILE: %v", err)
	}
	// Without --json, no object.
	if _, stdout, _ := runCLI(t, "delete", "--retain-full", "1", "--store", store, "--allow-unsigned"); strings.HasPrefix(strings.TrimSpace(stdout), "{") {
		t.Errorf("delete without --json printed JSON:\n%s", stdout)
	}
}

// TestJSONFlags: every command that reports a result (those a branch adds
// later too) takes --json.
func TestJSONFlags(t *testing.T) {
	var buf bytes.Buffer
	seen := 0
	for _, c := range newApp(&buf, &buf).Commands {
		if !slices.Contains(resultCommands, c.Name) {
			continue
		}
		seen++
		if !hasFlag(c.Flags, "json") {
			t.Errorf("%s reports a result but has no --json", c.Name)
		}
	}
	if seen < 6 {
		t.Errorf("only %d of %v are commands", seen, resultCommands)
	}
}
