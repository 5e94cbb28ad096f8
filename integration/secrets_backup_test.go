package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/walvault/walvault/integration/pgtest"
	"github.com/walvault/walvault/integration/testenv"
)

// TestSecretsNeverPrintedMaintenance runs delete, backup-mark, verify and
// check at debug log level with good and wrong S3 credentials, store URLs
// carrying a password and a token, a database password, and good and
// wrong identities. No secret may appear in any output.
func TestSecretsNeverPrintedMaintenance(t *testing.T) {
	tg := newTarget(t, "s3")
	c, identity, recipient := archivingCluster(t, tg)
	c.Psql("ALTER USER postgres PASSWORD 'PGPASS-r8Tq1zXw'")
	c.Run("pgbench", "-i", "-s", "1", "-q")
	b := backupName(t, mustWalvault(t, tg, backupEnv(c, recipient), "backup-push", "--fast-checkpoint"))
	idText, err := os.ReadFile(identity)
	if err != nil {
		t.Fatal(err)
	}
	ageKey := string(idText[strings.Index(string(idText), "AGE-SECRET-KEY-"):])
	ageKey = strings.TrimSpace(ageKey)
	wrongID, _ := keygen(t, pgtest.WorkDir(t))
	wrongText, _ := os.ReadFile(wrongID)
	wrongKey := strings.TrimSpace(string(wrongText[strings.Index(string(wrongText), "AGE-SECRET-KEY-"):]))

	const (
		badSecret = "wv-WRONG-maint-Hq27xP"
		urlPass   = "URLPASS-c81Kd0"
		token     = "TOKEN-vq72Lm0"
		pgPass    = "PGPASS-r8Tq1zXw"
	)
	secrets := []string{testenv.S3SecretKey, badSecret, urlPass, token, pgPass, ageKey, wrongKey, ageKey[15:40]}
	debug := "WALVAULT_LOG_LEVEL=debug"
	id := "WALVAULT_IDENTITY_FILE=" + identity
	wrong := "AWS_SECRET_ACCESS_KEY=" + badSecret
	withUser := "WALVAULT_STORE=" + strings.Replace(tg.URL, "s3://", "s3://walvault-test:"+urlPass+"@", 1)
	withToken := "WALVAULT_STORE=" + tg.URL + "?sig=" + token
	dsn := fmt.Sprintf("--dbname=postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", pgPass, c.Port)
	badDSN := fmt.Sprintf("--dbname=postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", pgPass, pgtest.FreePort(t))
	wrongPG := fmt.Sprintf("--dbname=postgres://postgres:%s-nope@127.0.0.1:%d/postgres?sslmode=disable", pgPass, c.Port)
	c.AppendConf("password_encryption = 'scram-sha-256'")
	hba := c.Data + "/pg_hba.conf"
	if err := os.WriteFile(hba, []byte("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, _ := pgtest.ServerOwner()
	_ = o.Chown(hba)
	c.Psql("SELECT pg_reload_conf()")

	runs := []struct {
		env  []string
		args []string
		code int // -1: any non-zero, -2: any
	}{
		{[]string{debug, id}, []string{"verify", "--full"}, 0},
		{[]string{debug, id, wrong}, []string{"verify"}, 3},
		{[]string{debug, "WALVAULT_IDENTITY_FILE=" + wrongID}, []string{"verify", "--full"}, 4},
		{[]string{debug, id, withUser}, []string{"verify"}, -2},
		{[]string{debug, id, withToken}, []string{"verify"}, -2},
		{[]string{debug, id}, []string{"delete", "--retain-full", "1"}, 0},
		{[]string{debug, id, wrong}, []string{"delete", "--retain-full", "1", "--confirm"}, 3},
		{[]string{debug, id, withUser}, []string{"delete", "--retain-full", "1"}, -2},
		{[]string{debug, id, wrong}, []string{"backup-mark", b, "--permanent"}, 3},
		{[]string{debug, id, withToken}, []string{"backup-mark", b, "--permanent"}, -2},
		{[]string{debug, id}, []string{"backup-mark", b, "--permanent"}, 0},
		{[]string{debug, id}, []string{"check", dsn}, 0},
		{[]string{debug, id}, []string{"check", badDSN, "--no-switch"}, 7},
		{[]string{debug, id}, []string{"check", wrongPG, "--no-switch"}, 7},
		{[]string{debug, id, wrong}, []string{"check", dsn, "--timeout", "3s"}, 7},
		{[]string{debug, id, withUser}, []string{"check", dsn, "--no-switch"}, -2},
		{[]string{debug, id, withToken}, []string{"check", dsn, "--no-switch", "--json"}, -2},
	}
	for _, r := range runs {
		code, stdout, stderr := tg.walvault(t, r.env, r.args...)
		if r.code != 0 && r.code != -2 {
			badBackupInputs.Add(1)
		}
		if r.code >= 0 && code != r.code || r.code == -1 && code == 0 {
			t.Errorf("%v: exit %d, want %d\n%s\n%s", r.args, code, r.code, stdout, stderr)
		}
		for _, s := range secrets {
			if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
				t.Fatalf("%v with %v printed a secret:\n%s\n%s", r.args, r.env, stdout, stderr)
			}
		}
	}
	t.Logf("%d maintenance runs searched for secrets", len(runs))
}
