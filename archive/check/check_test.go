package check

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
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

// fakeResolver is a tiny stand-in for the CLI's settings table: --store
// and --config take a value, WALVAULT_STORE and WALVAULT_RECIPIENT come
// from the assignments or the environment, an s3 store's endpoint from
// AWS_ENDPOINT_URL_S3. The real resolution is tested in cmd/walvault.
func fakeResolver(args []string, assign, env map[string]string, envWhy string) Resolved {
	var res Resolved
	lookup := func(k string) (string, string, bool) {
		if v, ok := assign[k]; ok {
			return v, k + " in archive_command", true
		}
		if v, ok := env[k]; ok && v != "" {
			return v, k + " in the server's environment", true
		}
		return "", "", false
	}
	setting := func(flag, envKey string, flags map[string]string) Setting {
		if v, ok := flags[flag]; ok {
			return Setting{Value: v, Values: []string{v}, From: "--" + flag + " in archive_command", Known: true}
		}
		if v, from, ok := lookup(envKey); ok {
			return Setting{Value: v, Values: []string{v}, From: from, Known: true}
		}
		if env == nil {
			return Setting{Why: "it would come from the server's environment, which check cannot see: " + envWhy}
		}
		return Setting{From: "nowhere", Known: true}
	}
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, val, has := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch {
		case args[i] == "--":
			res.Args = append(res.Args, args[i+1:]...)
			i = len(args)
		case !strings.HasPrefix(args[i], "-"):
			res.Args = append(res.Args, args[i])
		case !has && i+1 < len(args):
			flags[name] = args[i+1]
			i++
		default:
			flags[name] = val
		}
	}
	res.Store = setting("store", "WALVAULT_STORE", flags)
	res.Recipients = setting("recipient", "WALVAULT_RECIPIENT", flags)
	if strings.HasPrefix(res.Store.Value, "s3://") {
		res.Endpoint = Setting{Known: true, From: "nowhere"}
		if v, from, ok := lookup("AWS_ENDPOINT_URL_S3"); ok {
			res.Endpoint = Setting{Value: v, From: from, Known: true}
		}
	}
	return res
}

// TestResolveArchiveCommand: check finds walvault wal-push in
// archive_command, hands its arguments, assignments and the server's
// environment to the resolver, finds %p among the arguments the resolver
// says are positional, and looks for the binary in the server's PATH.
func TestResolveArchiveCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "walvault")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil { // #nosec G306 -- a test executable
		t.Fatal(err)
	}
	srvEnv := map[string]string{"PATH": dir + ":/usr/bin", "WALVAULT_STORE": "file:///srv/env-store"}
	tests := []struct {
		name      string
		cmd       string
		env       map[string]string
		calls     bool
		args      string
		assign    string
		hasP      bool
		binaryBad bool
	}{
		{name: "in PATH", cmd: "walvault wal-push %p", env: srvEnv, calls: true, args: "%p", hasP: true},
		{name: "flags", cmd: bin + " wal-push --store file:///x %p", env: srvEnv, calls: true, args: "--store file:///x %p", hasP: true},
		{name: "assignment", cmd: "WALVAULT_STORE=file:///y " + bin + " wal-push %p", env: srvEnv, calls: true, args: "%p", assign: "WALVAULT_STORE=file:///y", hasP: true},
		{name: "env and exec", cmd: "test -f x && env A=1 exec B=2 " + bin + " wal-push %p; echo done", env: srvEnv, calls: true, args: "%p", assign: "A=1 B=2", hasP: true},
		{name: "after --", cmd: bin + " wal-push --store=file:///x -- %p", env: srvEnv, calls: true, args: "--store=file:///x -- %p", hasP: true},
		{name: "env not visible", cmd: bin + " wal-push %p", env: nil, calls: true, args: "%p", hasP: true},
		{name: "no %p", cmd: bin + " wal-push --store=file:///x", env: nil, calls: true, args: "--store=file:///x"},
		{name: "%p as a flag's value", cmd: bin + " wal-push --store %p", env: nil, calls: true, args: "--store %p"},
		{name: "the agent's client", cmd: "/usr/local/bin/walvault-wal push --socket /run/wv.sock --config=/etc/w.yaml %p", env: nil, calls: true, args: "--config=/etc/w.yaml %p", hasP: true},
		{name: "the client, socket=", cmd: "walvault-wal push --socket=/s %p", env: nil, calls: true, args: "%p", hasP: true},
		{name: "the client fetching", cmd: "walvault-wal fetch %f %p", env: srvEnv},
		{name: "not walvault", cmd: "cp %p /mnt/archive/%f", env: srvEnv},
		{name: "walvault but wal-fetch", cmd: "walvault wal-fetch %f %p", env: srvEnv},
		{name: "library", cmd: "library:basic_archive", env: srvEnv},
		{name: "empty", cmd: " ", env: srvEnv},
		{name: "missing binary", cmd: "/nowhere/walvault wal-push %p", env: srvEnv, calls: true, args: "%p", hasP: true, binaryBad: true},
		{name: "not in PATH", cmd: "walvault wal-push %p", env: map[string]string{"PATH": "/usr/bin", "WALVAULT_STORE": "file:///a"}, calls: true, args: "%p", hasP: true, binaryBad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotArgs, gotAssign []string
			var gotEnv map[string]string
			var gotWhy string
			resolve := func(args []string, assign, env map[string]string, envWhy string) Resolved {
				gotArgs, gotEnv, gotWhy = args, env, envWhy
				for k, v := range assign {
					gotAssign = append(gotAssign, k+"="+v)
				}
				return fakeResolver(args, assign, env, envWhy)
			}
			ac := resolveArchiveCommand(tt.cmd, tt.env, "not visible in this test", resolve)
			if ac.calls != tt.calls {
				t.Fatalf("calls=%v (%s)", ac.calls, ac.why)
			}
			if !tt.calls {
				if ac.why == "" {
					t.Fatal("no reason given")
				}
				return
			}
			if strings.Join(gotArgs, " ") != tt.args || strings.Join(sorted(gotAssign), " ") != tt.assign {
				t.Fatalf("resolver given args %q assignments %q, want %q %q", gotArgs, gotAssign, tt.args, tt.assign)
			}
			if (gotEnv == nil) != (tt.env == nil) || gotWhy != "not visible in this test" {
				t.Fatalf("resolver given env %v (%q)", gotEnv, gotWhy)
			}
			if ac.hasP != tt.hasP {
				t.Fatalf("hasP %v, want %v", ac.hasP, tt.hasP)
			}
			if (ac.binaryProblem != "") != tt.binaryBad {
				t.Fatalf("binary problem %q, want %v", ac.binaryProblem, tt.binaryBad)
			}
		})
	}
	if ac := resolveArchiveCommand(bin+" wal-push %p", nil, "", nil); !ac.calls || !ac.hasP || ac.set.Store.Known || ac.unknown() == "" {
		t.Fatalf("without a resolver: %+v", ac)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestCheckArchiveCommandReport(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "walvault"), []byte("#!/bin/sh\n"), 0o755); err != nil { // #nosec G306 -- a test executable
		t.Fatal(err)
	}
	env := map[string]string{"WALVAULT_STORE": "file:///srv/a/", "PATH": dir}
	run := func(cmd, store, endpoint string, env map[string]string) Result {
		rep := &Report{}
		checkArchiveCommand(rep, resolveArchiveCommand(cmd, env, "hidden", fakeResolver), Options{StoreURL: store, Endpoint: endpoint})
		return rep.Results[0]
	}
	if r := run("walvault wal-push %p", "file:///srv/a", "", env); r.Status != OK {
		t.Fatalf("same store: %+v", r)
	}
	if r := run("walvault wal-push --store=file:///srv/b %p", "file:///srv/a", "", env); r.Status != Fail || !strings.Contains(r.Detail, "file:///srv/b") || r.Fix == "" {
		t.Fatalf("other store: %+v", r)
	}
	if r := run("walvault wal-push %p", "file:///srv/a", "", nil); r.Status != Warn || !strings.Contains(r.Detail, "hidden") {
		t.Fatalf("unseen environment: %+v", r)
	}
	if r := run("/bin/true", "file:///srv/a", "", env); r.Status != Fail {
		t.Fatalf("not walvault: %+v", r)
	}
	if r := run("walvault wal-push", "file:///srv/a", "", env); r.Status != Fail || !strings.Contains(r.Detail, "%p") {
		t.Fatalf("no %%p: %+v", r)
	}
	if r := run("walvault wal-push %p", "file:///srv/a", "", map[string]string{"PATH": dir}); r.Status != Fail || !strings.Contains(r.Detail, "no store") {
		t.Fatalf("no store: %+v", r)
	}
	s3env := map[string]string{"PATH": dir, "WALVAULT_STORE": "s3://bkt/p", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000/", "AWS_SECRET_ACCESS_KEY": "topsecret"}
	if r := run("walvault wal-push %p", "s3://bkt/p/", "http://127.0.0.1:9000", s3env); r.Status != OK || strings.Contains(r.Detail, "topsecret") {
		t.Fatalf("same s3 store and endpoint: %+v", r)
	}
	if r := run("walvault wal-push %p", "s3://bkt/p", "http://127.0.0.1:9001", s3env); r.Status != Fail || !strings.Contains(r.Detail, "endpoint") {
		t.Fatalf("other endpoint: %+v", r)
	}
	if r := run("walvault wal-push --store 's3://key:secret@bkt/p?sig=zzz' %p", "s3://bkt/q", "", s3env); strings.Contains(r.Detail, "secret@") || strings.Contains(r.Detail, "zzz") {
		t.Fatalf("a secret in the output: %+v", r)
	}
}

// newFileStore is an empty file:// store and its directory.
func newFileStore(t *testing.T) (cloud.Store, string) {
	t.Helper()
	root := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+root, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st, root
}

func storeKeys(t *testing.T, st cloud.Store) []string {
	t.Helper()
	var keys []string
	err := st.List(context.Background(), "", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestCheckCryptoAndProbe(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	for _, tt := range []struct {
		ids    []age.Identity
		recips []age.Recipient
		want   string
	}{
		{[]age.Identity{id}, []age.Recipient{id.Recipient()}, OK},
		{[]age.Identity{other}, []age.Recipient{id.Recipient()}, Fail},
		{nil, []age.Recipient{id.Recipient()}, Warn},
		{[]age.Identity{id}, nil, OK},
	} {
		rep := &Report{}
		checkCrypto(rep, &repo.Repo{Identities: tt.ids}, tt.recips, true, "x")
		if r := rep.Results[0]; r.Status != tt.want {
			t.Errorf("ids %d recips %d: %+v, want %s", len(tt.ids), len(tt.recips), r, tt.want)
		}
	}
	st, _ := newFileStore(t)
	rep := &Report{}
	if !checkProbe(context.Background(), st, rep) || rep.Results[0].Status != OK {
		t.Fatalf("%+v", rep.Results)
	}
	if keys := storeKeys(t, st); len(keys) != 0 {
		t.Fatalf("the probe left %v", keys)
	}
	// A server that writes over a key it was asked to create only if
	// absent works, with a warning.
	ignoring := storetest.NewFaults(st)
	ignoring.IgnoreIfAbsent = true
	rep = &Report{}
	if !checkProbe(context.Background(), ignoring, rep) || len(rep.Results) != 2 || rep.Results[0].Status != Warn ||
		!strings.Contains(rep.Results[0].Detail, "only if absent") || rep.Results[1].Status != OK {
		t.Fatalf("a store ignoring If-None-Match: %+v", rep.Results)
	}
	if keys := storeKeys(t, st); len(keys) != 0 {
		t.Fatalf("the probe left %v", keys)
	}
	if os.Geteuid() != 0 {
		ro, root := newFileStore(t)
		_ = os.Chmod(root, 0o500)
		defer func() { _ = os.Chmod(root, 0o700) }()
		rep := &Report{}
		if checkProbe(context.Background(), ro, rep) || rep.Results[0].Status != Fail || rep.Results[0].Fix == "" {
			t.Fatalf("read-only store: %+v", rep.Results)
		}
	}
	if !sameStore("file:///a/b/", "file:///a//b") || sameStore("s3://b/p", "s3://b/q") || !sameStore("s3://b/p/", "s3://b/p") || sameStore("s3://b/p", "gs://b/p") {
		t.Fatal("sameStore")
	}
	if endpointHost("http://127.0.0.1:4443/storage/v1/") != "127.0.0.1:4443" || endpointHost("127.0.0.1:4443") != "127.0.0.1:4443" {
		t.Fatal("endpointHost")
	}
}

// TestCheckEncryption: whose recipient the encryption check tries.
func TestCheckEncryption(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	r := &repo.Repo{Identities: []age.Identity{id}}
	parse := func(s []string) ([]age.Recipient, error) {
		if s[0] == "bad" {
			return nil, errors.New("does not parse")
		}
		return []age.Recipient{id.Recipient()}, nil
	}
	known := func(v ...string) Setting { return Setting{Values: v, From: "WALVAULT_RECIPIENT in x", Known: true} }
	for _, tt := range []struct {
		name string
		ac   archiveCmd
		own  []age.Recipient
		want string
		in   string
	}{
		{"archive_command's", archiveCmd{calls: true, set: Resolved{Recipients: known("age1x")}}, nil, OK, "archive_command's recipient (WALVAULT_RECIPIENT in x)"},
		{"none", archiveCmd{calls: true, set: Resolved{Recipients: known()}}, nil, OK, "stored unencrypted"},
		{"unparsable", archiveCmd{calls: true, set: Resolved{Recipients: known("bad")}}, nil, Fail, "does not parse"},
		{"check's own", archiveCmd{calls: true, set: Resolved{Store: Setting{Why: "hidden"}}}, []age.Recipient{id.Recipient()}, OK, "check's recipient"},
		{"unknown", archiveCmd{calls: true, set: Resolved{Store: Setting{Why: "hidden"}}}, nil, Warn, "hidden"},
		{"no archive_command", archiveCmd{}, nil, Skip, "no recipient"},
	} {
		rep := &Report{}
		checkEncryption(rep, r, tt.ac, Options{Recipients: tt.own, ParseRecipients: parse})
		if res := rep.Results[0]; res.Status != tt.want || !strings.Contains(res.Detail, tt.in) {
			t.Errorf("%s: %+v, want %s with %q", tt.name, res, tt.want, tt.in)
		}
	}
}

// TestFetchBack: the switched segment is fetched back with the identity
// and checked against the checksum its object records.
func TestFetchBack(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	st, _ := newFileStore(t)
	// Unsigned objects: what is checked here is the checksum and the key.
	r := &repo.Repo{Store: st, Codec: codec.Settings{Compression: codec.LZ4, Recipients: []age.Recipient{id.Recipient()}}, Identities: []age.Identity{id}, AllowUnsigned: true}
	seg := bytes.Repeat([]byte("walvault"), 4096)
	sum := sha256.Sum256(seg)
	put := func(key, meta string) {
		t.Helper()
		src := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(seg)), nil }
		if _, err := r.Put(context.Background(), key, src, repo.PutOptions{PutOptions: cloud.PutOptions{Metadata: map[string]string{repo.MetaSHA256: meta}}}); err != nil {
			t.Fatal(err)
		}
	}
	put("wal/good", hex.EncodeToString(sum[:]))
	put("wal/bad", strings.Repeat("0", 64))
	if n, err := fetchBack(context.Background(), r, "wal/good", "000000010000000000000001"); err != nil || n != int64(len(seg)) {
		t.Fatalf("good: %d, %v", n, err)
	}
	if _, err := fetchBack(context.Background(), r, "wal/bad", "000000010000000000000001"); !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("bad checksum: %v", err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := fetchBack(context.Background(), &repo.Repo{Store: st, Identities: []age.Identity{other}, AllowUnsigned: true}, "wal/good", "000000010000000000000001"); err == nil {
		t.Fatal("fetched with the wrong identity")
	}
}

func TestPostmasterPid(t *testing.T) {
	pm := pg.Postmaster{DataDirectory: "/var/lib/pg", Port: "5432", Started: 1700000000}
	if pid, why := postmasterPid("4242\n/var/lib/pg\n1700000001\n5432\n/tmp\n", pm); pid != 4242 || why != "" {
		t.Fatalf("%d %q", pid, why)
	}
	for _, f := range []string{"4242\n/other\n1700000000\n5432\n", "4242\n/var/lib/pg\n1600000000\n5432\n", "4242\n/var/lib/pg\n1700000000\n5433\n", "x\n/var/lib/pg\n1700000000\n5432\n", "4242\n"} {
		if _, why := postmasterPid(f, pm); why == "" {
			t.Errorf("%q taken for the server's", f)
		}
	}
}

func TestConnectDetail(t *testing.T) {
	err := pg.Err("connecting to /tmp:5432 as me", errors.New("dial error:\n  refused"))
	if got := connectDetail(err); got != "connecting to /tmp:5432 as me: dial error: refused" {
		t.Fatalf("%q", got)
	}
}

func TestArchivedThrough(t *testing.T) {
	const seg = "000000010000000000000012"
	for _, c := range []struct {
		last string
		want bool
	}{
		{"", false},
		{"000000010000000000000011", false},
		{seg, true},
		{"000000010000000000000013", true},
		{"000000010000000000000012.partial", true},
		{"000000010000000000000012.00000028.backup", true},
		{"000000010000000000000011.00000028.backup", false},
		{"000000020000000000000005", true}, // a later timeline
		{"00000002.history", false},
		{"garbage", false},
	} {
		if got := archivedThrough(c.last, seg); got != c.want {
			t.Errorf("archivedThrough(%q, %s) = %v, want %v", c.last, seg, got, c.want)
		}
	}
}
