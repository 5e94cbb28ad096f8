package drill

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/drillrecord"
	"github.com/walvault/walvault/archive/pg"
)

// Amcheck modes.
const (
	AmcheckOff   = ""
	AmcheckBtree = "btree"
	AmcheckHeap  = "heap"
)

// connect opens a session on the drill's server, on its private socket
// and nowhere else.
func (d *drill) connect(ctx context.Context, db string) (*pg.Server, error) {
	return pg.ConnectLocal(ctx, d.sock, serverPort, d.role, db)
}

// findRole finds the role and database the drill connects with: the given
// role, else the server's user and then postgres; the database postgres,
// else template1.
func (d *drill) findRole(ctx context.Context, want string) error {
	roles := []string{want}
	if want == "" {
		roles = []string{d.acct.Name}
		if d.acct.Name != "postgres" {
			roles = append(roles, "postgres")
		}
	}
	var last error
	for _, role := range roles {
		for _, db := range []string{"postgres", "template1"} {
			d.role = role
			s, err := d.connect(ctx, db)
			if err == nil {
				s.Close()
				d.maintDB = db
				return nil
			}
			last = err
			if ctx.Err() != nil {
				return ctx.Err()
			}
			switch pg.SQLState(err) {
			case "3D000": // no such database: try the next
				continue
			case "28000", "28P01": // no such role: try the next
			default:
				return fmt.Errorf("connecting as %s to database %s: %s", role, db, pg.Message(err))
			}
			break
		}
	}
	return fmt.Errorf("no role to connect as (tried %s): %s; give --db-user with the cluster's superuser", strings.Join(roles, ", "), pg.Message(last))
}

// withServer runs f in a session on database db of the drill's server.
func (d *drill) withServer(ctx context.Context, db string, f func(*pg.Server) error) error {
	s, err := d.connect(ctx, db)
	if err != nil {
		return err
	}
	defer s.Close()
	return f(s)
}

func (d *drill) databases(ctx context.Context) (dbs []pg.Database, err error) {
	err = d.withServer(ctx, d.maintDB, func(s *pg.Server) error {
		dbs, err = s.ListDatabases(ctx)
		return err
	})
	return dbs, err
}

func (d *drill) replayState(ctx context.Context) (r pg.Replay, err error) {
	err = d.withServer(ctx, d.maintDB, func(s *pg.Server) error {
		r, err = s.ReplayState(ctx)
		return err
	})
	return r, err
}

// amcheckIn turns amcheck's findings in one database into a check.
func (d *drill) amcheckIn(ctx context.Context, s *pg.Server) Check {
	c := Check{Name: "amcheck"}
	res, err := s.Amcheck(ctx, d.amcheck == AmcheckHeap, !d.paused)
	switch {
	case err != nil:
		return fail(c, pg.Message(err))
	case res.Skipped != "":
		c.Result, c.Detail = drillrecord.Skip, res.Skipped
		return c
	}
	what := fmt.Sprintf("%d B-tree indexes", res.Indexes)
	switch {
	case d.amcheck != AmcheckHeap:
	case res.Tables < 0:
		what += " (no verify_heapam: amcheck is older than PostgreSQL 14's)"
	default:
		what += fmt.Sprintf(" and %d tables (verify_heapam)", res.Tables)
	}
	if res.Damaged > 0 {
		return fail(c, fmt.Sprintf("%d of %s are damaged: %s", res.Damaged, what, res.First))
	}
	c.Result, c.Detail = drillrecord.OK, what+" checked, no corruption"
	return c
}

func fail(c Check, detail string) Check {
	c.Result, c.Detail = drillrecord.Fail, detail
	return c
}

// psqlEnv is the environment psql runs with: none of the caller's PG*
// settings (a PGHOSTADDR or PGSERVICE could point elsewhere), only the
// drill's socket, role and database.
func (d *drill) psqlEnv(db string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGHOST="+d.sock, "PGPORT="+strconv.Itoa(serverPort), "PGUSER="+d.role, "PGDATABASE="+db,
		"PGSSLMODE=disable", "PGAPPNAME=walvault drill", "PGCONNECT_TIMEOUT=30",
		"PGOPTIONS=-c session_preload_libraries= -c local_preload_libraries=")
}

// maxSQLOutput bounds what is kept of psql's output.
const maxSQLOutput = 64 << 10

// runSQL runs the user's SQL file in db with psql, stopping at the first
// error. psql runs as the server's user and reads the file from its
// standard input, opened by the drill.
func (d *drill) runSQL(ctx context.Context, db string) drillrecord.Check {
	c := drillrecord.Check{Name: "sql", Database: db}
	f, err := os.Open(d.opts.SQLFile)
	if err != nil {
		return fail(c, fmt.Sprintf("--sql %s: %v", d.opts.SQLFile, err))
	}
	defer func() { _ = f.Close() }()
	cmd := exec.CommandContext(ctx, d.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-") // #nosec G204 -- psql, with the operator's SQL file on stdin
	cmd.Env = d.psqlEnv(db)
	cmd.Stdin = f
	var out bytes.Buffer
	cmd.Stdout = &capped{w: &out, n: maxSQLOutput}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = d.childAttr()
	err = cmd.Run()
	text := strings.ReplaceAll(out.String(), "<stdin>", filepath.Base(d.opts.SQLFile))
	if ctx.Err() != nil {
		return fail(c, "stopped")
	}
	if err != nil {
		return fail(c, fmt.Sprintf("%s failed (%v): %s", filepath.Base(d.opts.SQLFile), err, errorLines(text)))
	}
	c.Result, c.Detail = drillrecord.OK, filepath.Base(d.opts.SQLFile)+" ran without error"
	return c
}

// errorLines picks psql's error lines from its output.
func errorLines(text string) string {
	var keep []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "ERROR:") || strings.Contains(l, "FATAL:") || strings.Contains(l, "error:") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		lines := strings.Split(strings.TrimSpace(text), "\n")
		keep = lines[max(0, len(lines)-3):]
	}
	return archive.OneLine(strings.Join(keep, " / "))
}

// capped keeps the first n bytes written to it and drops the rest.
type capped struct {
	w io.Writer
	n int
}

func (c *capped) Write(p []byte) (int, error) {
	if c.n > 0 {
		k := min(len(p), c.n)
		_, _ = c.w.Write(p[:k])
		c.n -= k
	}
	return len(p), nil
}

// timed runs f and fills in how long it took.
func timed(f func() drillrecord.Check) drillrecord.Check {
	began := time.Now()
	c := f()
	c.Seconds = time.Since(began).Seconds()
	return c
}
