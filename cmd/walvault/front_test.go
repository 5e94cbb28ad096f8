package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The front (front.go) is this package built with -tags walvault_front:
// what archive_command and restore_command start. These tests build it and
// walvault-full as make build does and hold the front to its promise: it
// runs wal-push and wal-fetch itself, and every command line gives what
// walvault-full gives.

var frontTags = "walvault_front,urfave_cli_no_docs"

// logNoise is what differs between two runs' log lines: the time and the
// duration.
var logNoise = regexp.MustCompile(`time=\S+ | ms=[0-9.]+`)

// buildPrograms builds the front as DIR/walvault and, when full is set,
// the whole command as DIR/walvault-full.
func buildPrograms(t *testing.T, full bool) string {
	t.Helper()
	dir := t.TempDir()
	builds := [][]string{{"build", "-tags", frontTags, "-o", filepath.Join(dir, "walvault"), "."}}
	if full {
		builds = append(builds, []string{"build", "-o", filepath.Join(dir, fullName), "."})
	}
	for i, b := range builds {
		cmd := exec.Command("go", b...) // #nosec G204 -- builds this package
		if i == 0 {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(b, " "), err, out)
		}
	}
	return dir
}

type programRun struct {
	code           int
	stdout, stderr string
}

func runProgram(t *testing.T, exe string, env []string, args ...string) programRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...) // #nosec G204 -- the binary under test
	// Only what the test sets: no WALVAULT_* of the developer's shell, no
	// /etc/walvault config, and no walvault-full in PATH.
	// The keys TestMain made are kept.
	base := []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), testDefaultConfigEnv + "="}
	for _, k := range []string{"WALVAULT_SIGNING_KEY", "WALVAULT_VERIFY_KEY"} {
		base = append(base, k+"="+os.Getenv(k))
	}
	cmd.Env = append(base, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", exe, args, err)
	}
	return programRun{code, out.String(), errb.String()}
}

// TestFrontDependencies: the front exists to leave out the heavy packages;
// it must still link every backend it claims to run.
func TestFrontDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", frontTags, ".").Output()
	if err != nil {
		t.Fatalf("go list -deps -tags %s: %v", frontTags, err)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	for _, p := range []string{
		"cloud.google.com/go/storage", "google.golang.org/grpc", // ~8 ms of init: why the front exists
		"github.com/prometheus/client_golang/prometheus", "github.com/russross/blackfriday/v2",
		"github.com/walvault/walvault/archive/backup", "github.com/walvault/walvault/archive/restore",
		"github.com/walvault/walvault/archive/agent",
		"github.com/walvault/walvault/cloud/azure", "github.com/apache/arrow-go/v18/arrow", // ~2 ms
	} {
		if deps[p] {
			t.Errorf("the front links %s", p)
		}
	}
	for _, p := range []string{"github.com/walvault/walvault/cloud/s3", "github.com/walvault/walvault/archive/wal"} {
		if !deps[p] {
			t.Errorf("the front does not link %s", p)
		}
	}
}

// TestFrontAsFull: the same command lines through the front and through
// walvault-full give the same exit code and output. Most are handed over
// (other commands, help, unknown flags, variables and config keys, a gs://
// store); wal-push and wal-fetch over file:// run in the front.
func TestFrontAsFull(t *testing.T) {
	bin := buildPrograms(t, true)
	dir := t.TempDir()
	wal := filepath.Join(dir, "pg_wal")
	if err := os.Mkdir(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	seg := fakeSegment(t, wal, "000000010000000000000001", 42, 7)
	foreign := filepath.Join(dir, "foreign.yaml") // a key of restore's, unknown to the front
	if err := os.WriteFile(foreign, []byte("target-timeline: latest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		args []string // STORE is each program's own file:// store
		code int
	}{
		{"push", nil, []string{"wal-push", "--store", "STORE", seg}, exitOK},
		{"push again, same content", nil, []string{"wal-push", seg, "--store=STORE"}, exitOK},
		{"fetch", nil, []string{"wal-fetch", "--store", "STORE", "000000010000000000000001", filepath.Join(dir, "fetched")}, exitOK},
		{"fetch, not archived", nil, []string{"wal-fetch", "--store", "STORE", "000000010000000000000009", filepath.Join(dir, "none")}, exitNotFound},
		{"fetch, no verify key", []string{"WALVAULT_VERIFY_KEY="}, []string{"wal-fetch", "--store", "STORE", "000000010000000000000001", filepath.Join(dir, "x")}, exitStopRecovery},
		{"push, config key of another command", []string{"WALVAULT_CONFIG=" + foreign}, []string{"wal-push", "--store", "STORE", seg}, exitOK},
		{"push, unknown variable", []string{"WALVAULT_STORAGE=x"}, []string{"wal-push", "--store", "STORE", seg}, exitUsage},
		{"push, misspelt flag", nil, []string{"wal-push", "--stor", "STORE", seg}, exitUsage},
		{"push, a GCS setting", nil, []string{"wal-push", "--gcs-endpoint", "http://127.0.0.1:9", "--store", "STORE", filepath.Join(dir, "missing")}, exitUsage},
		{"fetch from gs://, no verify key", []string{"WALVAULT_VERIFY_KEY="}, []string{"wal-fetch", "--store", "gs://bucket/db", "000000010000000000000001", filepath.Join(dir, "x")}, exitStopRecovery},
		{"push help", nil, []string{"wal-push", "--help"}, exitOK},
		{"another command", nil, []string{"backup-list", "--store", "STORE"}, exitOK},
		{"unknown command", nil, []string{"wal-psuh", seg}, exitUsage},
		{"no command", nil, nil, exitUsage},
		{"version", nil, []string{"version"}, exitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [2]programRun
			for i, exe := range []string{filepath.Join(bin, "walvault"), filepath.Join(bin, fullName)} {
				store := "file://" + filepath.Join(dir, "store-"+filepath.Base(exe))
				args := make([]string, len(tt.args))
				for j, a := range tt.args {
					args[j] = strings.ReplaceAll(a, "STORE", store)
				}
				got[i] = runProgram(t, exe, tt.env, args...)
				got[i].stderr = logNoise.ReplaceAllString(strings.ReplaceAll(got[i].stderr, store, "STORE"), "")
				got[i].stdout = strings.ReplaceAll(got[i].stdout, store, "STORE")
			}
			front, full := got[0], got[1]
			if full.code != tt.code {
				t.Fatalf("walvault-full exits %d, want %d: %s", full.code, tt.code, full.stderr)
			}
			if front != full {
				t.Errorf("the front gives\n%+v\nwalvault-full gives\n%+v", front, full)
			}
		})
	}
	want, _ := os.ReadFile(seg)
	if got, err := os.ReadFile(filepath.Join(dir, "fetched")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("fetched segment differs from the archived one (%v)", err)
	}
}

// TestFrontAlone: without walvault-full, the front still archives and
// restores WAL over file://; what it cannot run fails with the usage code
// (255 for wal-fetch, so that recovery stops instead of ending) and a line
// naming the missing program.
func TestFrontAlone(t *testing.T) {
	front := filepath.Join(buildPrograms(t, false), "walvault")
	dir := t.TempDir()
	wal := filepath.Join(dir, "pg_wal")
	if err := os.Mkdir(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	seg := fakeSegment(t, wal, "000000010000000000000002", 42, 3)
	store := "file://" + filepath.Join(dir, "store")
	if r := runProgram(t, front, nil, "wal-push", "--store", store, seg); r.code != exitOK {
		t.Fatalf("wal-push: exit %d: %s", r.code, r.stderr)
	}
	dest := filepath.Join(dir, "RECOVERYXLOG")
	if r := runProgram(t, front, nil, "wal-fetch", "--store", store, "000000010000000000000002", dest); r.code != exitOK {
		t.Fatalf("wal-fetch: exit %d: %s", r.code, r.stderr)
	}
	want, _ := os.ReadFile(seg)
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("the segment fetched by the front differs from the one it archived")
	}
	// An S3 store, and its settings, stay in the front: the command goes
	// as far as its own check of the file name.
	notWAL := filepath.Join(dir, "postgresql.conf")
	s3 := []string{"wal-push", "--store", "s3://bucket/db", "--s3-endpoint", "http://127.0.0.1:9", "--s3-region", "us-east-1", notWAL}
	if r := runProgram(t, front, []string{"AWS_EC2_METADATA_DISABLED=true"}, s3...); r.code == exitOK || !strings.Contains(r.stderr, "not a WAL file name") {
		t.Errorf("wal-push %v: exit %d, stderr %q; want the front's own refusal of the file name", s3, r.code, r.stderr)
	}
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"backup-list", "--store", store}, exitUsage},
		{[]string{"wal-push", "--store", "gs://bucket/db", seg}, exitUsage},
		{[]string{"wal-push", "--store", "azure://account/container/db", seg}, exitUsage},
		{[]string{"wal-push", "--azure-endpoint", "http://127.0.0.1:9", "--store", store, seg}, exitUsage},
		{[]string{"wal-fetch", "--azure-endpoint", "http://127.0.0.1:9", "--store", store, "000000010000000000000002", dest + "2"}, exitStopRecovery},
		{[]string{"wal-fetch", "--help"}, exitStopRecovery},
		{[]string{"wal-fetch", "--store", "gs://bucket/db", "000000010000000000000002", dest + "2"}, exitStopRecovery},
	} {
		r := runProgram(t, front, nil, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, fullName) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line naming %s", tt.args, r.code, r.stderr, tt.code, fullName)
		}
	}
	if _, err := os.Stat(dest + "2"); err == nil {
		t.Error("a wal-fetch handed over wrote its destination")
	}
}

// TestFrontNamedInUnits: walvault-full names the front, not itself, in the
// command lines it writes for others (here the systemd units).
func TestFrontNamedInUnits(t *testing.T) {
	bin := buildPrograms(t, true)
	cfg := filepath.Join(t.TempDir(), "walvault.yaml")
	if err := os.WriteFile(cfg, []byte("store: file:///srv/walvault\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runProgram(t, filepath.Join(bin, "walvault"), nil, "systemd-units", "--print", "--config", cfg)
	if r.code != exitOK {
		t.Fatalf("systemd-units: exit %d: %s", r.code, r.stderr)
	}
	front := filepath.Join(bin, "walvault")
	if !strings.Contains(r.stdout, `ExecStart="`+front+`" backup-push`) || strings.Contains(r.stdout, fullName) {
		t.Errorf("units do not run the front %s:\n%s", front, r.stdout)
	}
}
