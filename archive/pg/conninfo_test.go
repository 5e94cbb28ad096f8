package pg

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// What ToolConn leaves is the same connection as what it was given, for
// libpq (pgx parses both the same way), without the password in it.
func TestToolConn(t *testing.T) {
	tests := []struct {
		dsn, pw string
	}{
		{"", ""},
		{"host=db1 port=5433 dbname=shop user=app", ""},
		{"host=db1 password=s3cret dbname=shop", "s3cret"},
		{"host = db1  password = 'it''s' dbname=shop", ""}, // '' is not an escape in libpq: two values
		{`host=db1 password='it\'s a \\ secret' dbname='my shop'`, `it's a \ secret`},
		{"password=top dbname=x sslmode=require application_name='a b'", "top"},
		{"postgres://app:s%40cret@db1:5433/shop?sslmode=disable", "s@cret"},
		{"postgresql://app@db1/shop?password=p%26w&sslmode=disable", "p&w"},
		{"postgresql://db1,db2:5433/shop?target_session_attrs=read-write", ""},
		{"postgresql://app:pw@db1:5432,db2:5433/shop", "pw"},
		{"postgresql:///shop?host=/var/run/postgresql", ""},
	}
	for _, tt := range tests {
		conn, env, err := ToolConn(tt.dsn)
		if tt.dsn == "host = db1  password = 'it''s' dbname=shop" {
			// libpq reads 'it' then 's' as a bare word that is no keyword.
			if err == nil {
				t.Errorf("%q: accepted", tt.dsn)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.dsn, err)
		}
		if tt.pw != "" && (strings.Contains(conn, tt.pw) || len(env) != 1 || env[0] != "PGPASSWORD="+tt.pw) {
			t.Errorf("%q: conn %q env %q", tt.dsn, conn, env)
		}
		if tt.pw == "" && len(env) != 0 {
			t.Errorf("%q: env %q for no password", tt.dsn, env)
		}
		if tt.dsn == "" {
			continue
		}
		t.Setenv("PGPASSWORD", "")
		want, err := pgconn.ParseConfig(tt.dsn)
		if err != nil {
			t.Fatalf("%q: pgx: %v", tt.dsn, err)
		}
		t.Setenv("PGPASSWORD", tt.pw)
		got, err := pgconn.ParseConfig(conn)
		if err != nil {
			t.Fatalf("%q -> %q: pgx: %v", tt.dsn, conn, err)
		}
		if got.Host != want.Host || got.Port != want.Port || got.User != want.User || got.Database != want.Database || got.Password != want.Password ||
			len(got.Fallbacks) != len(want.Fallbacks) || got.RuntimeParams["application_name"] != want.RuntimeParams["application_name"] {
			t.Errorf("%q -> %q: %+v, want %+v", tt.dsn, conn, got, want)
		}
	}
}

func TestToolConnErrorsHoldNoText(t *testing.T) {
	for _, dsn := range []string{"host=x hunter2", "host=x password='hunter2", "postgresql://u:hunter2%zz@h/db"} {
		_, _, err := ToolConn(dsn)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: %v", dsn, err)
		}
	}
}

func FuzzToolConn(f *testing.F) {
	f.Add("host=db1 password='a\\'b' dbname=x")
	f.Add("postgresql://u:p@h/db?password=q")
	f.Fuzz(func(t *testing.T, dsn string) {
		conn, env, err := ToolConn(dsn)
		if err != nil || len(env) == 0 {
			return
		}
		pw := strings.TrimPrefix(env[0], "PGPASSWORD=")
		if len(pw) >= 4 && strings.Contains(conn, pw) && !strings.Contains(dsn, pw+pw) {
			// The password may appear as some other value too; only
			// flag it when the rest of the text did not hold it.
			rest := strings.Replace(dsn, pw, "", 1)
			if !strings.Contains(rest, pw) {
				t.Fatalf("%q: password %q left in %q", dsn, pw, conn)
			}
		}
	})
}
