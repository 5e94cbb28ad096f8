package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// secretRuns counts the walvault runs whose output was searched for
// secrets (bad inputs among them).
var secretRuns atomic.Int64

// TestSecretsNeverPrinted runs wal-push and wal-fetch with good and bad S3
// credentials, store URLs carrying user info and query tokens, good,
// wrong, unreadable and misplaced identities, at debug log level, and an
// archiving PostgreSQL whose server log collects wal-push's messages. No
// secret may appear in any stdout, stderr or the server log: not the S3
// secret keys, not the URL's password or token, not an age secret key.
func TestSecretsNeverPrinted(t *testing.T) {
	srv := testenv.StartT(t, testenv.S3)
	raw := srv.NewTarget(t)
	work := pgtest.WorkDir(t)
	identity, recipient := keygen(t, work)
	idText, err := os.ReadFile(identity)
	if err != nil {
		t.Fatal(err)
	}
	ageKey := ""
	for _, l := range strings.Split(string(idText), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			ageKey = l
		}
	}
	if ageKey == "" {
		t.Fatal("no AGE-SECRET-KEY in the identity file")
	}
	other, _ := keygen(t, pgtest.WorkDir(t))
	otherText, _ := os.ReadFile(other)
	otherKey := strings.TrimSpace(string(otherText[strings.Index(string(otherText), "AGE-SECRET-KEY-"):]))

	const (
		badSecret = "wv-WRONG-secret-Zq81xY2k"
		urlToken  = "sig=TOKEN-Mv31fq0Pz"
		urlPass   = "PASS-k7Pq29Lw"
	)
	// Each secret in the forms it could leak in: as is, URL-escaped.
	secrets := []string{testenv.S3SecretKey, badSecret, "TOKEN-Mv31fq0Pz", urlPass, ageKey, otherKey, strings.ToLower(ageKey)[15:40]}

	// Segments to push: real WAL.
	dir, names := realSegmentsT(t, 1, 16)
	seg := filepath.Join(dir, names[0])
	tg := &target{Kind: "s3", URL: raw.URL, Env: raw.Env, Server: srv}
	badKeyFile := filepath.Join(work, "bad.key")
	if err := os.WriteFile(badKeyFile, []byte("# a damaged key\n"+ageKey[:len(ageKey)-6]+"XXXXXX\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	openKey := filepath.Join(work, "open.key")
	if err := os.WriteFile(openKey, idText, 0o644); err != nil { // #nosec G306 -- deliberately too open
		t.Fatal(err)
	}
	fetchDest := func() string { return filepath.Join(pgtest.WorkDir(t), names[0]) }
	debug := "WALVAULT_LOG_LEVEL=debug"
	withQuery := raw.URL + "?" + urlToken
	withUser := strings.Replace(raw.URL, "s3://", "s3://walvault-test:"+urlPass+"@", 1)

	type run struct {
		name     string
		env      []string
		args     []string
		wantCode int // -1: any non-zero
	}
	runs := []run{
		{"push with a wrong secret key", []string{debug, "AWS_SECRET_ACCESS_KEY=" + badSecret, "WALVAULT_RECIPIENT=" + recipient}, []string{"wal-push", seg}, 3},
		{"push with a token in the URL's query", []string{debug, "WALVAULT_STORE=" + withQuery, "WALVAULT_RECIPIENT=" + recipient}, []string{"wal-push", seg}, 0},
		{"push again, user info in the URL", []string{debug, "WALVAULT_STORE=" + withUser, "WALVAULT_RECIPIENT=" + recipient}, []string{"wal-push", seg}, 0},
		{"store URL flag with a token, unreachable endpoint", []string{debug, "AWS_ENDPOINT_URL_S3=http://127.0.0.1:1"}, []string{"wal-push", "--store", withQuery, seg}, 3},
		{"unknown scheme with secrets", nil, []string{"wal-push", "--store", "ftp://u:" + urlPass + "@host/p?" + urlToken, seg}, 2},
		{"URL without a bucket, with secrets", nil, []string{"wal-push", "--store", "s3://u:" + urlPass + "@/p?" + urlToken, seg}, 2},
		{"URL that does not parse, with secrets", nil, []string{"wal-push", "--store", "s3://bucket/p%zz?" + urlToken + "&p=" + urlPass, seg}, -1},
		{"fetch with the right identity", []string{debug, "WALVAULT_IDENTITY_FILE=" + identity}, []string{"wal-fetch", "--prefetch", "0", names[0], fetchDest()}, 0},
		{"fetch with a token in the URL", []string{debug, "WALVAULT_STORE=" + withQuery, "WALVAULT_IDENTITY_FILE=" + identity}, []string{"wal-fetch", "--prefetch", "0", names[0], fetchDest()}, 0},
		{"fetch with a wrong secret key", []string{debug, "AWS_SECRET_ACCESS_KEY=" + badSecret, "WALVAULT_IDENTITY_FILE=" + identity}, []string{"wal-fetch", "--prefetch", "0", names[0], fetchDest()}, 255},
		{"fetch with another cluster's identity", []string{debug, "WALVAULT_IDENTITY_FILE=" + other}, []string{"wal-fetch", "--prefetch", "0", names[0], fetchDest()}, 255},
		{"fetch with a damaged identity file", []string{debug, "WALVAULT_IDENTITY_FILE=" + badKeyFile}, []string{"wal-fetch", "--prefetch", "0", names[0], fetchDest()}, 255},
		{"fetch with an identity file readable by all", []string{debug, "WALVAULT_IDENTITY_FILE=" + openKey}, []string{"wal-fetch", "--prefetch", "0", names[0], fetchDest()}, 255},
		{"fetch with the key itself given as the identity file", []string{debug, "WALVAULT_IDENTITY_FILE=" + ageKey}, []string{"wal-fetch", "--prefetch", "0", names[0], fetchDest()}, 255},
		{"push with the identity file given as the recipients file", []string{debug, "WALVAULT_RECIPIENT=" + identity}, []string{"wal-push", seg}, 2},
		{"push with the secret key given as the recipient", []string{debug, "WALVAULT_RECIPIENT=" + ageKey}, []string{"wal-push", seg}, 2},
		{"fetch of a missing file with a token in the URL", []string{debug, "WALVAULT_STORE=" + withQuery, "WALVAULT_IDENTITY_FILE=" + identity}, []string{"wal-fetch", "--prefetch", "0", "00000009.history", fetchDest()}, 1},
	}
	for _, r := range runs {
		code, stdout, stderr := tg.walvault(t, r.env, r.args...)
		secretRuns.Add(1)
		t.Logf("%s: exit %d: %s", r.name, code, strings.TrimSpace(stderr))
		if (r.wantCode == -1 && code == 0) || (r.wantCode >= 0 && code != r.wantCode) {
			t.Errorf("%s: exit %d, want %d: %s", r.name, code, r.wantCode, stderr)
		}
		for _, s := range secrets {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("%s: the output contains the secret %q:\n%s%s", r.name, s, stdout, stderr)
			}
		}
		if r.name == "push with a wrong secret key" && !strings.Contains(stderr, "AWS_SECRET_ACCESS_KEY") {
			t.Errorf("%s: the message should name the setting to fix: %s", r.name, stderr)
		}
	}

	// A server whose archive_command fails (wrong secret key), then, after
	// a restart with the right one, succeeds: its log collects wal-push's
	// messages of both kinds.
	own := srv.NewTarget(t) // the segments above belong to another cluster
	clusterEnv := func(secret string) []string {
		return append(append([]string{}, own.Env...), "AWS_SECRET_ACCESS_KEY="+secret, "WALVAULT_STORE="+own.URL+"?"+urlToken,
			"WALVAULT_RECIPIENT="+recipient, "WALVAULT_IDENTITY_FILE="+identity, debug)
	}
	c := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Env:        clusterEnv(badSecret),
		Conf: []string{"archive_mode = on", fmt.Sprintf("archive_command = '%s wal-push %%p'", pgtest.Walvault(t)),
			"wal_keep_size = '1GB'"},
	})
	c.Start()
	c.Psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g")
	last := c.SwitchWAL()
	deadline := time.Now().Add(30 * time.Second)
	for c.Psql("SELECT failed_count FROM pg_stat_archiver") == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("archiving did not fail with a wrong secret key:\n%s", c.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Stop()
	failing, err := os.ReadFile(c.Log) // Start truncates the log
	if err != nil {
		t.Fatal(err)
	}
	c.Env = clusterEnv(testenv.S3SecretKey)
	c.Start()
	c.WaitArchived(last, 60*time.Second)
	working, err := os.ReadFile(c.Log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(failing), "walvault wal-push: ") || !strings.Contains(string(working), "msg=archived") {
		t.Fatalf("the server log lacks wal-push's failure or success messages; nothing was checked:\n%s\n%s", failing, working)
	}
	log := append(failing, working...)
	secretRuns.Add(1)
	for _, s := range secrets {
		if strings.Contains(string(log), s) {
			t.Errorf("the PostgreSQL server log contains the secret %q", s)
		}
	}
	t.Logf("%d walvault runs and one server log (%d bytes) searched for %d secrets", len(runs), len(log), len(secrets))
}
