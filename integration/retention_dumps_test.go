package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/integration/pgtest"
)

// delete --retain-dumps 1 on real dumps: per database and for the
// globals the newest stays, the older ones go; no backup rule needed.
func TestRetentionDumps(t *testing.T) {
	tg := newTarget(t, "file")
	c := pgtest.New(t, pgtest.Options{})
	c.Start()
	c.Psql("CREATE DATABASE shop")
	work := pgtest.WorkDir(t)
	_, recipient := keygen(t, work)
	env := append(c.PGEnv(), "WALVAULT_RECIPIENT="+recipient)

	var first []string
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // dump names carry the second
		}
		out := mustWalvault(t, tg, env, "dump-push", "--all")
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if i == 0 {
				first = append(first, dumpNameOf(t, l))
			}
		}
	}
	if n := len(listDumps(t, tg)); n != 2*len(first) {
		t.Fatalf("%d dumps, want %d", n, 2*len(first))
	}
	dry := mustWalvault(t, tg, nil, "delete", "--retain-dumps", "1")
	for _, n := range first {
		if !strings.Contains(dry, "DELETE  "+n) {
			t.Fatalf("dry run does not delete %s:\n%s", n, dry)
		}
	}
	if n := len(listDumps(t, tg)); n != 2*len(first) {
		t.Fatalf("the dry run deleted dumps: %d left", n)
	}
	mustWalvault(t, tg, nil, "delete", "--retain-dumps", "1", "--confirm")
	left := listDumps(t, tg)
	if len(left) != len(first) {
		t.Fatalf("after delete: %+v", left)
	}
	for _, d := range left {
		for _, n := range first {
			if d.Name == n {
				t.Fatalf("%s survived", n)
			}
		}
	}
}
