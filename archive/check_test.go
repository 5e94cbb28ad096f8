package archive

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestShellSplit(t *testing.T) {
	got := shellSplit(`test ! -f /a/'b c'/%f && FOO="x \"y\"" /usr/bin/walvault wal-push --store=s3://b/p\ q %p; echo ';'`)
	var words []string
	for _, tk := range got {
		if tk.op {
			words = append(words, "<"+tk.text+">")
		} else {
			words = append(words, "["+tk.text+"]")
		}
	}
	want := `[test] [!] [-f] [/a/b c/%f] <&&> [FOO=x "y"] [/usr/bin/walvault] [wal-push] [--store=s3://b/p q] [%p] <;> [echo] [;]`
	if strings.Join(words, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(words, " "), want)
	}
}

func TestResolveArchiveCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "walvault")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil { // #nosec G306 -- a test executable
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "wv.yaml")
	configs := map[string]map[string][]string{
		cfgFile: {"store": {"s3://bucket/from-file"}, "recipient": {"age1a", "age1b"}, "s3-endpoint": {"http://minio:9000"}},
	}
	read := func(p string) (map[string][]string, error) {
		if c, ok := configs[p]; ok {
			return c, nil
		}
		return nil, errors.New("permission denied")
	}
	srvEnv := map[string]string{"PATH": dir + ":/usr/bin", "WALVAULT_STORE": "file:///srv/env-store", "WALVAULT_RECIPIENT": "age1env",
		"AWS_SECRET_ACCESS_KEY": "hush"}
	tests := []struct {
		name      string
		cmd       string
		env       map[string]string
		calls     bool
		store     string
		from      string
		known     bool
		endpoint  string
		recips    string
		binaryBad bool
	}{
		{name: "env store", cmd: "walvault wal-push %p", env: srvEnv, calls: true, store: "file:///srv/env-store", from: "WALVAULT_STORE in the server's environment", known: true, recips: "age1env"},
		{name: "flag beats env", cmd: bin + " wal-push --store file:///x %p", env: srvEnv, calls: true, store: "file:///x", from: "--store in archive_command", known: true, recips: "age1env"},
		{name: "assignment beats env", cmd: "WALVAULT_STORE=file:///y " + bin + " wal-push %p", env: srvEnv, calls: true, store: "file:///y", from: "WALVAULT_STORE in archive_command", known: true, recips: "age1env"},
		{name: "config file", cmd: bin + " wal-push --config " + cfgFile + " %p", env: map[string]string{"PATH": "/usr/bin"}, calls: true,
			store: "s3://bucket/from-file", from: "config file " + cfgFile, known: true, endpoint: "http://minio:9000", recips: "age1a,age1b"},
		{name: "env beats config file", cmd: bin + " wal-push --config=" + cfgFile + " %p", env: srvEnv, calls: true, store: "file:///srv/env-store", known: true, recips: "age1env"},
		{name: "unreadable config", cmd: bin + " wal-push --config /etc/secret.yaml %p", env: map[string]string{}, calls: true, known: false},
		{name: "env not visible", cmd: bin + " wal-push %p", env: nil, calls: true, known: false},
		{name: "config seen, env not", cmd: bin + " wal-push --config " + cfgFile + " %p", env: nil, calls: true, store: "s3://bucket/from-file", known: true, recips: "age1a,age1b", endpoint: "http://minio:9000"},
		{name: "s3 endpoint from env", cmd: bin + " wal-push --store s3://b/p %p", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, calls: true, store: "s3://b/p", known: true, endpoint: "http://127.0.0.1:9"},
		{name: "not walvault", cmd: "cp %p /mnt/archive/%f", env: srvEnv},
		{name: "walvault but wal-fetch", cmd: "walvault wal-fetch %f %p", env: srvEnv},
		{name: "library", cmd: "library:basic_archive", env: srvEnv},
		{name: "missing binary", cmd: "/nowhere/walvault wal-push %p", env: srvEnv, calls: true, store: "file:///srv/env-store", known: true, recips: "age1env", binaryBad: true},
		{name: "not in PATH", cmd: "walvault wal-push %p", env: map[string]string{"PATH": "/usr/bin", "WALVAULT_STORE": "file:///a"}, calls: true, store: "file:///a", known: true, binaryBad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ac := resolveArchiveCommand(tt.cmd, tt.env, "not visible in this test", read)
			if ac.calls != tt.calls {
				t.Fatalf("calls=%v (%s)", ac.calls, ac.why)
			}
			if !tt.calls {
				if ac.why == "" {
					t.Fatal("no reason given")
				}
				return
			}
			if !ac.hasP {
				t.Fatalf("no %s found", "%p")
			}
			if ac.store.known != tt.known || tt.known && (ac.store.value != tt.store || tt.from != "" && ac.store.from != tt.from) {
				t.Fatalf("store %+v, want %q from %q (known %v)", ac.store, tt.store, tt.from, tt.known)
			}
			if !tt.known && ac.store.why == "" {
				t.Fatal("an unknown store without a reason")
			}
			if tt.known && ac.endpoint.value != tt.endpoint {
				t.Fatalf("endpoint %+v, want %q", ac.endpoint, tt.endpoint)
			}
			if tt.known && strings.Join(ac.recipients, ",") != tt.recips {
				t.Fatalf("recipients %v, want %s", ac.recipients, tt.recips)
			}
			if (ac.binaryProblem != "") != tt.binaryBad {
				t.Fatalf("binary problem %q, want %v", ac.binaryProblem, tt.binaryBad)
			}
		})
	}
	if ac := resolveArchiveCommand(bin+" wal-push --store=file:///x", nil, "", read); ac.hasP {
		t.Fatalf("found a %s that is not there", "%p")
	}
}

func TestCheckArchiveCommandReport(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "walvault"), []byte("#!/bin/sh\n"), 0o755); err != nil { // #nosec G306 -- a test executable
		t.Fatal(err)
	}
	env := map[string]string{"WALVAULT_STORE": "file:///srv/a/", "PATH": dir}
	run := func(cmd, store, endpoint string, env map[string]string) CheckResult {
		rep := &CheckReport{}
		checkArchiveCommand(rep, resolveArchiveCommand(cmd, env, "hidden", nil), CheckOptions{StoreURL: store, Endpoint: endpoint})
		return rep.Results[0]
	}
	if r := run("walvault wal-push %p", "file:///srv/a", "", env); r.Status != CheckOK {
		t.Fatalf("same store: %+v", r)
	}
	if r := run("walvault wal-push --store=file:///srv/b %p", "file:///srv/a", "", env); r.Status != CheckFail || !strings.Contains(r.Detail, "file:///srv/b") || r.Fix == "" {
		t.Fatalf("other store: %+v", r)
	}
	if r := run("walvault wal-push %p", "file:///srv/a", "", nil); r.Status != CheckWarn || !strings.Contains(r.Detail, "hidden") {
		t.Fatalf("unseen environment: %+v", r)
	}
	if r := run("/bin/true", "file:///srv/a", "", env); r.Status != CheckFail {
		t.Fatalf("not walvault: %+v", r)
	}
	if r := run("walvault wal-push", "file:///srv/a", "", env); r.Status != CheckFail || !strings.Contains(r.Detail, "%p") {
		t.Fatalf("no %%p: %+v", r)
	}
	s3env := map[string]string{"PATH": dir, "WALVAULT_STORE": "s3://bkt/p", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000/", "AWS_SECRET_ACCESS_KEY": "topsecret"}
	if r := run("walvault wal-push %p", "s3://bkt/p/", "http://127.0.0.1:9000", s3env); r.Status != CheckOK || strings.Contains(r.Detail, "topsecret") {
		t.Fatalf("same s3 store and endpoint: %+v", r)
	}
	if r := run("walvault wal-push %p", "s3://bkt/p", "http://127.0.0.1:9001", s3env); r.Status != CheckFail || !strings.Contains(r.Detail, "endpoint") {
		t.Fatalf("other endpoint: %+v", r)
	}
	if r := run("walvault wal-push --store 's3://key:secret@bkt/p?sig=zzz' %p", "s3://bkt/q", "", s3env); strings.Contains(r.Detail, "secret@") || strings.Contains(r.Detail, "zzz") {
		t.Fatalf("a secret in the output: %+v", r)
	}
}

func TestCheckCryptoAndProbe(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	s := newSynth(t)
	for _, tt := range []struct {
		ids    []age.Identity
		recips []age.Recipient
		want   string
	}{
		{[]age.Identity{id}, []age.Recipient{id.Recipient()}, CheckOK},
		{[]age.Identity{other}, []age.Recipient{id.Recipient()}, CheckFail},
		{nil, []age.Recipient{id.Recipient()}, CheckWarn},
		{[]age.Identity{id}, nil, CheckOK},
	} {
		rep := &CheckReport{}
		checkCrypto(rep, &Config{Identities: tt.ids}, tt.recips, true, "x")
		if r := rep.Results[0]; r.Status != tt.want {
			t.Errorf("ids %d recips %d: %+v, want %s", len(tt.ids), len(tt.recips), r, tt.want)
		}
	}
	rep := &CheckReport{}
	if !checkProbe(s.ctx, s.cfg.Store, rep) || rep.Results[0].Status != CheckOK {
		t.Fatalf("%+v", rep.Results)
	}
	if len(s.keys()) != 0 {
		t.Fatalf("the probe left %v", s.keys())
	}
	if os.Geteuid() != 0 {
		ro := newSynth(t)
		_ = os.Chmod(ro.root, 0o500)
		defer os.Chmod(ro.root, 0o700)
		rep := &CheckReport{}
		if checkProbe(ro.ctx, ro.cfg.Store, rep) || rep.Results[0].Status != CheckFail || rep.Results[0].Fix == "" {
			t.Fatalf("read-only store: %+v", rep.Results)
		}
	}
	if !sameStore("file:///a/b/", "file:///a//b") || sameStore("s3://b/p", "s3://b/q") || !sameStore("s3://b/p/", "s3://b/p") || sameStore("s3://b/p", "gs://b/p") {
		t.Fatal("sameStore")
	}
	if endpointHost("http://127.0.0.1:4443/storage/v1/") != "127.0.0.1:4443" || endpointHost("127.0.0.1:4443") != "127.0.0.1:4443" {
		t.Fatal("endpointHost")
	}
	if blobEndpoint("DefaultEndpointsProtocol=http;AccountKey=SECRET;BlobEndpoint=http://h:1/acc;") != "http://h:1/acc" {
		t.Fatal("blobEndpoint")
	}
}
