package pg

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/walvault/walvault/archive"
)

// The drill's connection goes to its socket whatever the libpq
// environment says: no host, address, port, password, TLS, service or
// options from there.
func TestLocalConfig(t *testing.T) {
	svc := filepath.Join(t.TempDir(), "pg_service.conf")
	if err := os.WriteFile(svc, []byte("[prod]\nhost=db.example.com\nport=6543\nuser=app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"PGHOST": "db.example.com", "PGPORT": "6543", "PGPASSWORD": "secret", "PGSSLMODE": "require",
		"PGSERVICEFILE": svc, "PGSERVICE": "prod", "PGOPTIONS": "-c shared_preload_libraries=x", "PGTARGETSESSIONATTRS": "read-write"} {
		t.Setenv(k, v)
	}
	cc, err := localConfig("/tmp/drill/run", 5432, "postgres", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if cc.Host != "/tmp/drill/run" || cc.Port != 5432 || cc.User != "postgres" || cc.Database != "shop" || cc.Password != "" || cc.TLSConfig != nil || len(cc.Fallbacks) != 0 {
		t.Errorf("config: host %q port %d user %q db %q password %q tls %v fallbacks %d", cc.Host, cc.Port, cc.User, cc.Database, cc.Password, cc.TLSConfig != nil, len(cc.Fallbacks))
	}
	if cc.RuntimeParams["session_preload_libraries"] != "" || cc.RuntimeParams["options"] != "" || cc.RuntimeParams["search_path"] != "pg_catalog, pg_temp" {
		t.Errorf("session settings %v", cc.RuntimeParams)
	}
	for _, bad := range []struct {
		dir  string
		port int
	}{{"localhost", 5432}, {"", 5432}, {"/tmp/x", 0}, {"/tmp/x", 70000}} {
		if _, err := localConfig(bad.dir, bad.port, "u", "d"); !errors.Is(err, archive.ErrBadInput) {
			t.Errorf("localConfig(%q, %d): %v", bad.dir, bad.port, err)
		}
	}
}
