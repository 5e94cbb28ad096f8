package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// CheckOptions tune check.
type CheckOptions struct {
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
	// StoreErr is why the store could not be opened (then Config.Store is
	// nil).
	StoreErr error
	// Recipients are check's own --recipient, tried when archive_command's
	// cannot be seen.
	Recipients []age.Recipient
	// ParseRecipients turns recipient specs (age1..., files) into
	// recipients.
	ParseRecipients func([]string) ([]age.Recipient, error)
	// ReadConfig reads a walvault config file and returns the values of the
	// keys it sets (lists for repeatable settings).
	ReadConfig func(path string) (map[string][]string, error)
}

// Check statuses.
const (
	CheckOK   = "ok"
	CheckFail = "FAIL"
	CheckWarn = "warn"
	CheckSkip = "skip"
)

// CheckResult is one check's outcome.
type CheckResult struct {
	Name   string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// CheckReport is every check, in order.
type CheckReport struct {
	Results []CheckResult `json:"results"`
	Failed  int           `json:"failed"`
	OK      bool          `json:"ok"`
}

func (r *CheckReport) add(name, status, detail, fix string) {
	r.Results = append(r.Results, CheckResult{Name: name, Status: status, Detail: detail, Fix: fix})
	if status == CheckFail {
		r.Failed++
	}
}

// Check runs the set-up checks a DBA wants after configuring archiving:
// the store (write, read, delete a probe object), the server's WAL
// settings, that archive_command runs walvault and reaches this store, the
// archiver's state, that the identity decrypts what the recipient
// encrypts, and, the proof of it all, that a segment PostgreSQL is made to
// finish arrives in the store. It never stops at the first failure.
func Check(ctx context.Context, cfg *Config, opts CheckOptions) *CheckReport {
	rep := &CheckReport{}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	storeOK := cfg.Store != nil
	if !storeOK {
		rep.add("store", CheckFail, fmt.Sprintf("cannot open %s: %v", cloud.Redact(opts.StoreURL), opts.StoreErr),
			"check --store and the store's credentials (see README: Stores)")
	} else {
		storeOK = checkProbe(ctx, cfg.Store, rep)
	}

	srv, err := connectCheck(ctx, opts.DSN)
	if err != nil {
		rep.add("postgres", CheckFail, err.Error(), "set PGHOST, PGPORT, PGUSER, PGDATABASE (or --dbname) to reach the server; check needs a superuser, or pg_read_all_settings, pg_monitor and EXECUTE on pg_switch_wal")
		for _, n := range []string{"wal_level", "archive_mode", "archive_command", "cluster", "pg_stat_archiver", "segment switch"} {
			rep.add(n, CheckSkip, "no connection to PostgreSQL", "")
		}
		checkCrypto(rep, cfg, opts.Recipients, len(opts.Recipients) > 0, "check's recipient (--recipient, WALVAULT_RECIPIENT or its config file)")
		rep.OK = rep.Failed == 0
		return rep
	}
	defer srv.Close()
	role := "primary"
	if srv.InRecovery {
		role = "standby"
	}
	rep.add("postgres", CheckOK, fmt.Sprintf("connected: PostgreSQL %s (%s), system identifier %d, %s WAL segments", srv.VersionString, role, srv.SystemID, HumanBytes(srv.SegSize)), "")

	var walLevel string
	if err := srv.conn.QueryRow(ctx, `SELECT current_setting('wal_level')`).Scan(&walLevel); err != nil {
		rep.add("wal_level", CheckFail, pgErr("reading wal_level", err).Error(), "")
	} else if walLevel == "minimal" {
		rep.add("wal_level", CheckFail, "wal_level = minimal: WAL cannot rebuild the database from a base backup", "set wal_level = replica in postgresql.conf and restart PostgreSQL")
	} else {
		rep.add("wal_level", CheckOK, "wal_level = "+walLevel, "")
	}

	archiving := true
	switch {
	case srv.ArchiveMode == "off":
		archiving = false
		rep.add("archive_mode", CheckFail, "archive_mode = off: no WAL is archived, so no backup can be restored past its end", "set archive_mode = on in postgresql.conf and restart PostgreSQL (a reload is not enough)")
	case srv.InRecovery && srv.ArchiveMode != "always":
		archiving = false
		rep.add("archive_mode", CheckWarn, "archive_mode = "+srv.ArchiveMode+" on a standby: this server archives nothing until it is promoted (the primary archives)", "set archive_mode = always if this standby must archive too")
	default:
		rep.add("archive_mode", CheckOK, "archive_mode = "+srv.ArchiveMode, "")
	}

	env, envWhy := serverEnvironment(ctx, srv)
	cmd, note := srv.ArchiveCmd, ""
	if cmd == "(disabled)" {
		// PostgreSQL hides archive_command while archive_mode is off: read
		// what the configuration files say.
		err := srv.conn.QueryRow(ctx, `SELECT setting FROM pg_file_settings WHERE name = 'archive_command' AND error IS NULL ORDER BY seqno DESC LIMIT 1`).Scan(&cmd)
		if err != nil {
			cmd = ""
		}
		note = " (read from the configuration files: not in effect while archive_mode is off)"
	}
	ac := resolveArchiveCommand(cmd, env, envWhy, opts.ReadConfig)
	if cmd == "" && note != "" {
		rep.add("archive_command", CheckSkip, "not in effect while archive_mode is off, and not readable from the configuration files", "")
	} else {
		checkArchiveCommand(rep, ac, opts)
		rep.Results[len(rep.Results)-1].Detail += note
	}

	if storeOK {
		ci, ok, err := readCluster(ctx, cfg.Store)
		want := strconv.FormatUint(srv.SystemID, 10)
		switch {
		case err != nil:
			rep.add("cluster", CheckFail, "reading "+ClusterKey+": "+err.Error(), "")
		case !ok:
			rep.add("cluster", CheckOK, "the store is not claimed yet: the first wal-push records this cluster ("+want+") in "+ClusterKey, "")
		case ci.SystemIdentifier != want:
			rep.add("cluster", CheckFail, fmt.Sprintf("%s belongs to the cluster with system identifier %s; this server is %s", cfg.Store, ci.SystemIdentifier, want),
				"give this cluster its own store prefix (a store prefix holds one cluster's WAL and backups)")
		default:
			rep.add("cluster", CheckOK, "the store belongs to this cluster ("+want+")", "")
		}
	} else {
		rep.add("cluster", CheckSkip, "the store is not usable", "")
	}

	checkArchiver(ctx, rep, srv, archiving)

	switch {
	case ac.calls && ac.recipientsKnown:
		what := "archive_command's recipient (" + ac.recipientsFrom + ")"
		var recips []age.Recipient
		var err error
		if len(ac.recipients) > 0 && opts.ParseRecipients != nil {
			recips, err = opts.ParseRecipients(ac.recipients)
		}
		switch {
		case err != nil:
			rep.add("encryption", CheckFail, "archive_command's recipient does not parse: "+err.Error(), "fix the recipient archive_command uses")
		case len(ac.recipients) == 0:
			rep.add("encryption", CheckOK, "archive_command encrypts nothing (no --recipient, WALVAULT_RECIPIENT or 'recipient:' in a config file): objects are stored unencrypted", "")
		default:
			checkCrypto(rep, cfg, recips, true, what)
		}
	case len(opts.Recipients) > 0:
		checkCrypto(rep, cfg, opts.Recipients, true, "check's recipient (--recipient, WALVAULT_RECIPIENT or its config file)")
	case ac.calls:
		rep.add("encryption", CheckWarn, "cannot see archive_command's recipient: "+ac.unknown,
			"run check with --recipient set to what archive_command uses, and --identity-file to the key restores will use")
	default:
		rep.add("encryption", CheckSkip, "no recipient known", "")
	}

	switch {
	case opts.NoSwitch:
		rep.add("segment switch", CheckSkip, "--no-switch", "")
	case !storeOK:
		rep.add("segment switch", CheckSkip, "the store is not usable", "")
	case srv.InRecovery:
		rep.add("segment switch", CheckSkip, "a standby cannot switch segments; run check on the primary", "")
	case !archiving:
		rep.add("segment switch", CheckSkip, "archiving is off", "")
	default:
		checkSwitch(ctx, rep, cfg, srv, opts.Timeout)
	}
	rep.OK = rep.Failed == 0
	return rep
}

// connectCheck connects like psql and reads the server's settings.
func connectCheck(ctx context.Context, dsn string) (*pgServer, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("connection settings: %w", err)
	}
	cc.RuntimeParams["application_name"] = "walvault check"
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = 15 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s:%d as %s: %v", cc.Host, cc.Port, cc.User, oneLineErr(err))
	}
	s := &pgServer{conn: conn}
	if err := s.load(ctx); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return s, nil
}

func oneLineErr(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// checkProbe writes, reads back, and deletes an object.
func checkProbe(ctx context.Context, st cloud.Store, rep *CheckReport) bool {
	var b [16]byte
	_, _ = rand.Read(b[:])
	key := "walvault-check/probe-" + hex.EncodeToString(b[:8])
	body := []byte("walvault check probe " + hex.EncodeToString(b[:]))
	fix := "walvault needs to list, read, write and delete objects under the store's prefix: check the credentials and the bucket's permissions"
	began := time.Now()
	if err := st.Put(ctx, key, bytes.NewReader(body), cloud.PutOptions{IfAbsent: true, SizeHint: int64(len(body))}); err != nil {
		rep.add("store", CheckFail, fmt.Sprintf("%s: writing a probe object %s: %v", st, key, err), fix)
		return false
	}
	defer func() { _ = st.Delete(context.WithoutCancel(ctx), key) }()
	rc, _, err := st.Get(ctx, key)
	if err != nil {
		rep.add("store", CheckFail, fmt.Sprintf("%s: reading back the probe object %s: %v", st, key, err), fix)
		return false
	}
	got, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	_ = rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		rep.add("store", CheckFail, fmt.Sprintf("%s: the probe object %s read back differs from what was written (%v)", st, key, err), "the store (or a proxy before it) alters objects: walvault cannot be used with it")
		return false
	}
	if err := st.Delete(ctx, key); err != nil {
		rep.add("store", CheckFail, fmt.Sprintf("%s: deleting the probe object %s: %v", st, key, err), fix+" (delete is needed by walvault delete)")
		return false
	}
	if _, err := st.Stat(ctx, key); !errors.Is(err, cloud.ErrNotFound) {
		rep.add("store", CheckFail, fmt.Sprintf("%s: the probe object %s is still there after delete (%v)", st, key, err), fix)
		return false
	}
	rep.add("store", CheckOK, fmt.Sprintf("%s: wrote, read back and deleted a probe object (%d ms)", st, time.Since(began).Milliseconds()), "")
	return true
}

// checkArchiver reads pg_stat_archiver.
func checkArchiver(ctx context.Context, rep *CheckReport, srv *pgServer, archiving bool) {
	a, err := srv.archiver(ctx)
	if err != nil {
		rep.add("pg_stat_archiver", CheckFail, err.Error(), "")
		return
	}
	ago := func(t time.Time) string { return time.Since(t).Round(time.Second).String() + " ago" }
	last := "nothing archived yet"
	if a.LastArchived != "" {
		last = fmt.Sprintf("last archived %s at %s (%s)", a.LastArchived, fmtTime(a.LastArchivedTime), ago(a.LastArchivedTime))
	}
	switch {
	case a.failing():
		rep.add("pg_stat_archiver", CheckFail, fmt.Sprintf("archiving is failing: %d failures, the last for %s at %s (%s); %s", a.Failed, a.LastFailed, fmtTime(a.LastFailedTime), ago(a.LastFailedTime), last),
			"read archive_command's error in the PostgreSQL log; until it succeeds PostgreSQL keeps the WAL (pg_wal grows) and nothing newer reaches the store")
	case a.LastArchived == "" && archiving:
		rep.add("pg_stat_archiver", CheckWarn, last+" since the statistics were reset", "the segment switch below shows whether archiving works")
	case a.Failed > 0:
		rep.add("pg_stat_archiver", CheckOK, fmt.Sprintf("%s; %d earlier failures, the last for %s %s, before the last success", last, a.Failed, a.LastFailed, ago(a.LastFailedTime)), "")
	default:
		rep.add("pg_stat_archiver", CheckOK, last+", no failures", "")
	}
}

// checkCrypto encrypts a probe to recips and decrypts it with the
// identities.
func checkCrypto(rep *CheckReport, cfg *Config, recips []age.Recipient, known bool, what string) {
	switch {
	case len(recips) == 0 && known:
		rep.add("encryption", CheckOK, "objects are not encrypted ("+what+": none)", "")
		return
	case len(recips) == 0:
		rep.add("encryption", CheckSkip, "no recipient given", "")
		return
	case len(cfg.Identities) == 0:
		rep.add("encryption", CheckWarn, "objects are encrypted ("+what+"), but no --identity-file was given: cannot check that restores can decrypt them",
			"run check with --identity-file set to the key restores will use")
		return
	}
	probe := make([]byte, 256)
	_, _ = rand.Read(probe)
	var buf bytes.Buffer
	w, err := codec.NewWriter(&buf, codec.Settings{Compression: codec.None, Recipients: recips})
	if err == nil {
		_, err = w.Write(probe)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		rep.add("encryption", CheckFail, "encrypting a probe to "+what+": "+err.Error(), "")
		return
	}
	r, err := codec.NewReader(&buf, cfg.Identities)
	var got []byte
	if err == nil {
		got, err = io.ReadAll(r)
	}
	if err != nil || !bytes.Equal(got, probe) {
		rep.add("encryption", CheckFail, fmt.Sprintf("the identity file cannot decrypt what %s encrypts (%v): restores would fail", what, err),
			"use the identity that belongs to the recipient (walvault keygen prints it), or encrypt to the identity's recipient")
		return
	}
	rep.add("encryption", CheckOK, "the identity file decrypts what "+what+" encrypts", "")
}

// checkSwitch makes PostgreSQL finish a segment and waits for it to reach
// the store, then (with an identity) fetches it back and checks it.
func checkSwitch(ctx context.Context, rep *CheckReport, cfg *Config, srv *pgServer, timeout time.Duration) {
	// A record first, so the switch has something to finish: otherwise it
	// may return a segment archived long ago, which proves nothing.
	_, _ = srv.conn.Exec(ctx, `SELECT pg_create_restore_point('walvault_check')`)
	var seg string
	if err := srv.conn.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&seg); err != nil {
		rep.add("segment switch", CheckFail, pgErr("pg_switch_wal()", err).Error(), "run check as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() to the role")
		return
	}
	wf, err := ParseWALName(seg)
	if err != nil {
		rep.add("segment switch", CheckFail, "the server named segment "+seg+": "+err.Error(), "")
		return
	}
	key := WALKey(wf)
	began := time.Now()
	deadline := began.Add(timeout)
	delay := 100 * time.Millisecond
	for {
		_, err := cfg.Store.Stat(ctx, key)
		if err == nil {
			break
		}
		if !errors.Is(err, cloud.ErrNotFound) {
			rep.add("segment switch", CheckFail, fmt.Sprintf("%s: looking for %s: %v", cfg.Store, key, err), "")
			return
		}
		if time.Now().After(deadline) {
			why := "pg_stat_archiver unavailable"
			if a, err := srv.archiver(ctx); err == nil {
				why = a.String()
			}
			rep.add("segment switch", CheckFail, fmt.Sprintf("forced a switch; segment %s did not reach %s within %s (%s)", seg, cfg.Store, timeout, why),
				"archive_command must be 'walvault wal-push %p' with settings that reach this store (same --store or WALVAULT_STORE, endpoint and credentials in the server's environment or a --config file)")
			return
		}
		select {
		case <-ctx.Done():
			rep.add("segment switch", CheckFail, ctx.Err().Error(), "")
			return
		case <-time.After(delay):
		}
		delay = min(delay*3/2, time.Second)
	}
	took := time.Since(began).Round(10 * time.Millisecond)
	if len(cfg.Identities) == 0 {
		rep.add("segment switch", CheckOK, fmt.Sprintf("forced a switch; segment %s reached the store in %s", seg, took), "")
		return
	}
	dir, err := os.MkdirTemp("", "walvault-check-")
	if err != nil {
		rep.add("segment switch", CheckFail, err.Error(), "")
		return
	}
	defer os.RemoveAll(dir)
	if _, size, err := download(ctx, cfg, key, seg, filepath.Join(dir, seg)); err != nil {
		rep.add("segment switch", CheckFail, fmt.Sprintf("segment %s reached the store in %s, but fetching it back failed: %v", seg, took, err),
			"use the identity that belongs to archive_command's recipient")
	} else {
		rep.add("segment switch", CheckOK, fmt.Sprintf("forced a switch; segment %s reached the store in %s, and fetched back with the identity it is whole (%s, checksum matches)", seg, took, HumanBytes(size)), "")
	}
}

// serverEnvironment reads the postmaster's environment from /proc when the
// server runs on this machine and we may read it: archive_command inherits
// it. why says what prevented it otherwise.
func serverEnvironment(ctx context.Context, srv *pgServer) (env map[string]string, why string) {
	var dataDir, port string
	var started int64
	err := srv.conn.QueryRow(ctx, `SELECT current_setting('data_directory'), current_setting('port'),
		extract(epoch FROM pg_postmaster_start_time())::bigint`).Scan(&dataDir, &port, &started)
	if err != nil {
		return nil, "the server's data_directory is not visible to this role"
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid")) // #nosec G304 -- the server's own pid file
	if err != nil {
		return nil, "the server's postmaster.pid cannot be read here (another machine, or no permission)"
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 || strings.TrimSpace(lines[1]) != dataDir || strings.TrimSpace(lines[3]) != port {
		return nil, "postmaster.pid here is not the connected server's (another machine?)"
	}
	if st, err := strconv.ParseInt(strings.TrimSpace(lines[2]), 10, 64); err != nil || st < started-2 || st > started+2 {
		return nil, "postmaster.pid here is not the connected server's (another machine?)"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return nil, "postmaster.pid has no process id"
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, "the server's environment (/proc/PID/environ) is not readable by this user: run check as root or as the server's user"
	}
	env = map[string]string{}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env, ""
}
