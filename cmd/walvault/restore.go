//go:build !walvault_front

package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive"
	restorepkg "github.com/walvault/walvault/archive/restore" // func restore is the restore command
	"github.com/walvault/walvault/cloud"
)

func restore(c *cli.Context) error {
	if err := wantArgs(c, 1, "the directory to restore into (DEST)"); err != nil {
		return err
	}
	out := resultOf(c)
	out.set("dest", c.Args().First())
	t := restorepkg.Target{XID: c.String("target-xid"), Name: c.String("target-name"), Immediate: c.Bool("target-immediate"),
		Timeline: c.String("target-timeline"), Action: c.String("target-action"), BeyondArchive: c.Bool("allow-target-beyond-archive")}
	if err := targetPoint(c, &t); err != nil {
		return err
	}
	if s := c.String("target-inclusive"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return usageError("--target-inclusive %q: use true or false", s)
		}
		t.Inclusive = &b
	}
	if err := t.Validate(); err != nil {
		return err
	}
	tmap := map[string]string{}
	for _, m := range c.StringSlice("tablespace-map") {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" || v == "" || !filepath.IsAbs(v) {
			return usageError("--tablespace-map %q: expected OID=/absolute/dir or NAME=/absolute/dir", m)
		}
		tmap[k] = v
	}
	if c.Bool("force") && (c.Bool("delta") || c.Bool("delta-by-time")) {
		return usageError("--force and --delta: give one (--delta rebuilds DEST from the backup and removes what it does not have; --force only writes the backup's files over it)")
	}
	n, err := downloadConcurrency(c)
	if err != nil {
		return err
	}
	interval, err := durationValue(c, "progress-interval")
	if err != nil {
		return err
	}
	argv, err := fetchArgv(c)
	if err != nil {
		return err
	}
	cfg, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(cfg.Store)
	res, err := restorepkg.Run(c.Context, cfg, restorepkg.Options{
		Dest: c.Args().First(), Backup: c.String("backup"), Target: t, Standby: c.Bool("standby"),
		TablespaceMap: tmap, Concurrency: n, Force: c.Bool("force"), Owner: c.String("owner"), FetchArgv: argv,
		Progress: progressReporter(progressBar(c), interval), ServerReads: serverReads(argv),
		Delta: c.Bool("delta"), DeltaByTime: c.Bool("delta-by-time"),
	})
	if err != nil {
		return err
	}
	m := res.Manifest
	if out != nil {
		restoreResult(out, res)
		return nil
	}
	w := c.App.Writer
	secs := res.Duration.Seconds()
	fmt.Fprintf(w, "restored backup %s (PostgreSQL %s, %s in %d files, %d parts; finished %s, timeline %d) into %s in %.2f s (%s/s)\n",
		shown(m.Name), pgVersion(m.PGVersion), archive.HumanBytes(m.DataSize), m.FileCount, len(m.Parts), m.StopTime.UTC().Format("2006-01-02 15:04:05 UTC"),
		m.Timeline, shown(res.Dest), secs, archive.HumanBytes(int64(float64(m.DataSize)/max(secs, 0.001))))
	if d := res.Delta; d != nil {
		by := "size and CRC-32C"
		if d.ByTime {
			by = "size and mtime"
		}
		fmt.Fprintf(w, "delta: %d files kept (%s, matched by %s), %d written (%s; %d patched in place), %d removed; read %d of %d parts whole and %d by ranges (%s of %s stored)\n",
			d.KeptFiles, archive.HumanBytes(d.KeptBytes), by, d.FetchedFiles, archive.HumanBytes(d.FetchedBytes), d.PatchedFiles, d.Removed,
			res.PartsRead, res.PartsTotal, res.PartsRanged, archive.HumanBytes(res.StoredRead), archive.HumanBytes(res.StoredTotal))
	}
	for _, ts := range res.Tablespaces {
		name := ""
		if ts.Name != "" {
			name = shown(ts.Name) + " "
		}
		fmt.Fprintf(w, "tablespace %s(OID %d) restored at %s\n", name, ts.OID, shown(ts.Location))
	}
	what := "appended to " + res.SettingsFile()
	if res.SignalFile() != "" {
		what = "wrote " + res.SignalFile() + " and " + what
	}
	fmt.Fprintf(w, "%s:\n", what)
	for _, l := range res.SettingLines() {
		fmt.Fprintf(w, "  %s\n", shown(l))
	}
	if c.Bool("agent") {
		fmt.Fprintf(w, "first, as the data directory's owner, start the agent that serves restore_command (prefetching ahead of replay):\n  %s\n", shown(agentCommandLine(argv, res.Dest)))
	}
	fetcher := "walvault wal-fetch"
	if c.Bool("agent") {
		fetcher = "walvault-wal fetch"
	}
	fmt.Fprintf(w, "next: pg_ctl -D %s start   (as the data directory's owner; PostgreSQL fetches WAL with %s and replays it", shown(res.Dest), fetcher)
	switch {
	case c.Bool("standby"):
		fmt.Fprintln(w, ", then keeps following the archive as a standby)")
	case t.Time != nil || t.LSN != nil || t.XID != "" || t.Name != "" || t.Immediate:
		fmt.Fprintf(w, " to the target, then %s)\n", map[string]string{"promote": "promotes", "pause": "pauses", "shutdown": "shuts down"}[t.Action])
	default:
		fmt.Fprintln(w, " to the end of the archive, then promotes)")
	}
	if !c.Bool("standby") {
		fmt.Fprintln(w, "note: once promoted, the server archives a new timeline with its archive_command; for a trial restore, set archive_mode = off first")
	}
	for _, f := range fallbackReads() {
		fmt.Fprintf(w, "from the fallback store: %s\n", shown(f))
	}
	if u, err := url.Parse(c.String("store")); err == nil && u.Scheme != "file" {
		fmt.Fprintln(w, "note: the server needs the store's credentials in its environment (as for archive_command)")
	}
	return nil
}

// restoreResult is restore --json's object.
func restoreResult(out result, res *restorepkg.Result) {
	m := res.Manifest
	spcs := []map[string]any{}
	for _, ts := range res.Tablespaces {
		spcs = append(spcs, map[string]any{"oid": ts.OID, "name": ts.Name, "location": ts.Location})
	}
	for k, v := range map[string]any{
		"backup": m.Name, "dest": res.Dest, "pg_version": m.PGVersion, "timeline": m.Timeline, "system_identifier": m.SystemIdentifier,
		"start_wal": m.StartWAL, "stop_wal": m.StopWAL, "stop_lsn": m.StopLSN.String(), "stop_time": m.StopTime,
		"data_size": m.DataSize, "file_count": m.FileCount, "duration_seconds": res.Duration.Seconds(),
		"parts_read": res.PartsRead, "parts_read_by_ranges": res.PartsRanged, "parts_total": res.PartsTotal, "stored_bytes_read": res.StoredRead, "stored_bytes_total": res.StoredTotal,
		"delta": res.Delta, "tablespaces": spcs, "settings_file": res.SettingsFile(), "signal_file": res.SignalFile(),
		"settings": res.SettingLines(),
	} {
		out.set(k, v)
	}
}

// fetchArgv is restore_command without %f %p: this very binary, by its
// absolute path, and the settings that reach the same store with the same
// keys and authenticate what it reads as restore did. Secrets never go
// there (postgresql.auto.conf is readable by anyone who can read the data
// directory, and backed up): credentials come from the server's
// environment, and a store URL or endpoint that carries them must be given
// in the --config file, which restore_command names instead.
func fetchArgv(c *cli.Context) ([]string, error) {
	exe, err := commandPath()
	if err != nil {
		return nil, fmt.Errorf("locating the walvault binary for restore_command: %w", err)
	}
	argv := []string{exe, "wal-fetch"}
	abs := func(p string) (string, error) {
		a, err := filepath.Abs(p)
		if err != nil {
			return "", usageError("%s: %v", p, err)
		}
		return a, nil
	}
	if cf := c.String("config"); cf != "" {
		a, err := abs(cf)
		if err != nil {
			return nil, err
		}
		argv = append(argv, "--config="+a)
	}
	// Given on the command line or in the environment, a setting is
	// repeated (flag beats file, so wal-fetch sees what restore saw); one
	// that carries credentials only the config file may hold.
	repeat := func(name string) error {
		switch v := c.String(name); {
		case v == "":
		case secretSetting(name) && carriesSecret(v):
			return secretFromConfig(c, name, v)
		default:
			argv = append(argv, "--"+name+"="+v)
		}
		return nil
	}
	if err := repeat("store"); err != nil {
		return nil, err
	}
	if id := c.String("identity-file"); id != "" {
		a, err := abs(id)
		if err != nil {
			return nil, err
		}
		argv = append(argv, "--identity-file="+a)
	}
	if c.Bool("allow-insecure-identity") {
		argv = append(argv, "--allow-insecure-identity")
	}
	// What wal-fetch needs to reach and read the store: each backend's
	// Reading settings, the switches first.
	for _, s := range cloud.Settings() {
		if s.Reading && s.Switch && c.Bool(s.Name) {
			argv = append(argv, "--"+s.Name)
		}
	}
	for _, s := range cloud.Settings() {
		if s.Reading && !s.Switch {
			if err := repeat(s.Name); err != nil {
				return nil, err
			}
		}
	}
	for _, fb := range c.StringSlice("fallback-store") {
		if carriesSecret(fb) {
			return nil, usageError("--fallback-store %s carries credentials, which restore_command must not: give them in the environment or a copy-store entry of the config file", cloud.Redact(fb))
		}
		argv = append(argv, "--fallback-store="+fb)
	}
	// wal-fetch authenticates what it hands PostgreSQL as restore did.
	// Never --signing-key: wal-fetch only reads, and that key is a secret.
	keys, err := verifyKeyArgs(c.StringSlice("verify-key"), abs)
	if err != nil {
		return nil, err
	}
	argv = append(argv, keys...)
	for _, n := range []string{"allow-unsigned", "allow-unencrypted"} {
		if c.Bool(n) {
			argv = append(argv, "--"+n)
		}
	}
	if c.Bool("agent") {
		// The client passes the flags on to wal-fetch when no agent answers.
		argv[0], argv[1] = walvaultWalPath(exe), "fetch"
	}
	return argv, nil
}

// walvaultWalPath is the client installed beside this binary, else the
// name for PATH to find.
func walvaultWalPath(exe string) string {
	p := filepath.Join(filepath.Dir(exe), "walvault-wal")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p
	}
	return "walvault-wal"
}

// agentCommandLine is how to start a fetch-only agent for the restored
// directory, with restore_command's settings.
func agentCommandLine(fetchArgv []string, dest string) string {
	exe := filepath.Join(filepath.Dir(fetchArgv[0]), "walvault")
	if !filepath.IsAbs(fetchArgv[0]) {
		exe = "walvault"
	}
	words := []string{shellQuote(exe), "agent", "--no-archive", "--pgdata", shellQuote(dest)}
	for _, a := range fetchArgv[2:] {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// serverReads are the files restore_command (argv) reads: the config file,
// the identity file, verify-key files.
func serverReads(argv []string) []restorepkg.ServerFile {
	var out []restorepkg.ServerFile
	for _, a := range argv {
		for flag, what := range map[string]string{"--config=": "config file", "--identity-file=": "identity file", "--verify-key=": "verify-key file"} {
			if v, ok := strings.CutPrefix(a, flag); ok && filepath.IsAbs(v) {
				out = append(out, restorepkg.ServerFile{What: what, Path: v})
			}
		}
	}
	return out
}

// targetPoint fills t's --target-time and --target-lsn, as restore and
// drill take them.
func targetPoint(c *cli.Context, t *restorepkg.Target) error {
	if s := c.String("target-time"); s != "" {
		tt, err := restorepkg.ParseTargetTime(s)
		if err != nil {
			return err
		}
		t.Time = &tt
	}
	if s := c.String("target-lsn"); s != "" {
		l, err := archive.ParseLSN(s)
		if err != nil {
			return usageError("--target-lsn: %v", err)
		}
		t.LSN = &l
	}
	return nil
}
