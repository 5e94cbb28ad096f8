// Package check is walvault check: the set-up checks a DBA wants after
// configuring archiving, each reported with its fix, none stopping the
// others.
package check

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Options tune check.
type Options struct {
	// DSN is a libpq connection string; empty uses PGHOST, PGPORT, ...
	DSN string
	// Timeout bounds the wait for the switched segment to reach the store.
	Timeout time.Duration
	// NoSwitch skips forcing a segment switch.
	NoSwitch bool
	// StoreURL is the store this check uses; Endpoint its effective
	// endpoint (s3, gs and azure; "" for the default).
	StoreURL string
	Endpoint string
	// StoreErr is why the store could not be opened (then the Repo's Store
	// is nil).
	StoreErr error
	// Recipients are check's own --recipient, tried when archive_command's
	// cannot be seen.
	Recipients []age.Recipient
	// ParseRecipients turns recipient specs (age1..., files) into
	// recipients.
	ParseRecipients func([]string) ([]age.Recipient, error)
	// Lock is what walvault asks of every object written to the store
	// (lock-days, lock-mode): check verifies the store can.
	Lock cloud.Lock
	// CopyStores are the second stores kept in step (copy-store).
	CopyStores []CopyStore
	// Resolve says which settings the walvault wal-push archive_command
	// runs would use. The CLI owns that knowledge (flags, environment
	// names, config file, precedence); nil: check cannot tell.
	Resolve Resolver
}

// Statuses of a check.
const (
	OK   = "ok"
	Fail = "FAIL"
	Warn = "warn"
	Skip = "skip"
)

// Result is one check's outcome.
type Result struct {
	Name   string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is every check, in order.
type Report struct {
	Results []Result `json:"results"`
	Failed  int      `json:"failed"`
	OK      bool     `json:"ok"`
}

// has says whether a check named name was reported.
func (r *Report) has(name string) bool {
	for _, res := range r.Results {
		if res.Name == name {
			return true
		}
	}
	return false
}

func (r *Report) add(name, status, detail, fix string) {
	r.Results = append(r.Results, Result{Name: name, Status: status, Detail: detail, Fix: fix})
	if status == Fail {
		r.Failed++
	}
}

// checksOfServer are the checks that need a connection to PostgreSQL,
// skipped without one.
var checksOfServer = []string{"wal_level", "incremental", "archive_mode", "archive_command", "cluster", "pg_stat_archiver", "segment switch", "signing"}

// ownRecipient names check's own recipient in the encryption check.
const ownRecipient = "check's recipient (--recipient, WALVAULT_RECIPIENT or its config file)"

// Run runs the set-up checks a DBA wants after configuring archiving:
// the store (write, read, delete a probe object), the server's WAL
// settings, that archive_command runs walvault and reaches this store, the
// archiver's state, that the identity decrypts what the recipient
// encrypts, and, the proof of it all, that a segment PostgreSQL is made to
// finish arrives in the store. It never stops at the first failure.
func Run(ctx context.Context, r *repo.Repo, opts Options) *Report {
	rep := &Report{}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	storeOK := checkStore(ctx, rep, r, opts)
	if storeOK {
		checkLock(ctx, rep, "store lock", r.Store, opts.Lock)
	}
	checkCopyStores(ctx, rep, opts.CopyStores)
	srv, err := pg.Connect(ctx, opts.DSN, "walvault check", 15*time.Second)
	if err != nil {
		reportNoServer(rep, r, opts, err)
		rep.OK = rep.Failed == 0
		return rep
	}
	defer srv.Close()
	reportServer(rep, srv)
	checkWALLevel(ctx, rep, srv)
	checkIncremental(ctx, rep, srv)
	archiving := checkArchiveMode(rep, srv)
	ac := checkArchiveCommandOf(ctx, rep, srv, opts)
	if ac.client {
		checkAgent(ctx, rep, srv, ac, opts)
	}
	if storeOK {
		checkCluster(ctx, rep, r, srv)
	} else {
		rep.add("cluster", Skip, "the store is not usable", "")
	}
	checkArchiver(ctx, rep, srv, archiving)
	checkEncryption(rep, r, ac, opts)
	checkSegmentSwitch(ctx, rep, r, srv, opts, storeOK, archiving)
	rep.OK = rep.Failed == 0
	return rep
}

// checkStore reports a store that did not open, or probes it.
func checkStore(ctx context.Context, rep *Report, r *repo.Repo, opts Options) bool {
	if r.Store == nil {
		rep.add("store", Fail, fmt.Sprintf("cannot open %s: %v", cloud.Redact(opts.StoreURL), opts.StoreErr),
			"check --store and the store's credentials (see README: Stores)")
		return false
	}
	return checkProbe(ctx, r.Store, rep)
}

// reportNoServer fails postgres, skips what needs the server, and still
// checks check's own keys.
func reportNoServer(rep *Report, r *repo.Repo, opts Options, err error) {
	rep.add("postgres", Fail, connectDetail(err), "set PGHOST, PGPORT, PGUSER, PGDATABASE (or --dbname) to reach the server; check needs a superuser, or pg_read_all_settings, pg_monitor and EXECUTE on pg_switch_wal")
	for _, n := range checksOfServer {
		rep.add(n, Skip, "no connection to PostgreSQL", "")
	}
	checkCrypto(rep, r, opts.Recipients, len(opts.Recipients) > 0, ownRecipient)
}

// connectDetail is why the connection failed, on one line and without the
// exit-code tag: the check's name already says it is PostgreSQL.
func connectDetail(err error) string {
	msg := archive.OneLine(err.Error())
	for _, tag := range []error{archive.ErrPostgres, archive.ErrBadInput} {
		if errors.Is(err, tag) {
			msg = strings.TrimPrefix(msg, tag.Error()+": ")
		}
	}
	return msg
}

// reportServer says what check connected to.
func reportServer(rep *Report, srv *pg.Server) {
	role := "primary"
	if srv.InRecovery {
		role = "standby"
	}
	rep.add("postgres", OK, fmt.Sprintf("connected: PostgreSQL %s (%s), system identifier %d, %s WAL segments", srv.VersionString, role, srv.SystemID, archive.HumanBytes(srv.SegSize)), "")
}
