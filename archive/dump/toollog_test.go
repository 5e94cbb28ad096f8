package dump

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
)

// pg_restore's, psql's and pg_dump's own error lines are what a failure
// quotes, not the SQL they echo after them, with walvault's hint.
func TestToolErrorLines(t *testing.T) {
	tests := []struct {
		tool, stderr, want, hint string
	}{
		{"pg_restore", "pg_restore: while PROCESSING TOC:\npg_restore: from TOC entry 215; 1259 16386 TABLE pgbench_accounts postgres\n" +
			"pg_restore: error: could not execute query: ERROR:  relation \"pgbench_accounts\" already exists\nCommand was: CREATE TABLE public.pgbench_accounts (\n    aid integer NOT NULL\n);\n",
			`pg_restore: error: could not execute query: ERROR:  relation "pgbench_accounts" already exists`, "--clean"},
		{"pg_dump", "pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 18.4; pg_dump version: 15.14\n",
			"pg_dump: error: aborting because of server version mismatch pg_dump: detail: server version: 18.4; pg_dump version: 15.14", "--pg-bin-dir"},
		{"psql", "psql: error: connection to server at \"127.0.0.1\", port 5 failed: FATAL:  role \"x\" does not exist\n", `FATAL:  role "x" does not exist`, "globals"},
		{"pg_restore", "pg_restore: warning: something odd\nlast words\n", "last words", ""},
	}
	for _, tt := range tests {
		l := logLines(tt.tool, io.NopCloser(strings.NewReader(tt.stderr)))
		err := toolErr(tt.tool, errors.New("exit status 1"), l.lastLine())
		if !errors.Is(err, archive.ErrPostgres) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "Command was") ||
			strings.Contains(err.Error(), ");") || tt.hint != "" && !strings.Contains(err.Error(), tt.hint) {
			t.Errorf("%s: %v\nwant %q with hint %q", tt.tool, err, tt.want, tt.hint)
		}
	}
}
