package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/archive/wal"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/ratelimit"
)

// The stores besides `store`: second stores kept in step (copy-store),
// copy's destination (--to) and restore's fallback (--fallback-store).
//
// A store named by its URL alone is reached with the same backend settings
// as `store` (its endpoint, region, credentials...). One that needs its
// own (another account, region or endpoint) is written in the config file
// as a map, whose keys are `store` and any backend setting (and
// lock-days, lock-mode): its backend settings are then only those it
// lists, none inherited from the top level, since a second store usually
// lives elsewhere and the primary's endpoint would send its objects to the
// wrong place. lock-days and lock-mode are inherited unless the map sets
// them.
//
//	copy-store:
//	  - s3://dr-bucket/prod-db                      # same settings as store
//	  - store: gs://acme-dr/prod-db                 # its own
//	    gcs-credentials-file: /etc/walvault/dr-gcs.json
//	    lock-days: 35

// copyStoreKey is the config file key of the second stores; its values
// may be maps, so it is read here rather than by altsrc.
const copyStoreKey = "copy-store"

// extraConfigKeys are config file keys that are not altsrc flags.
var extraConfigKeys = []string{copyStoreKey}

// storeSpec is one store with everything needed to open it.
type storeSpec struct {
	URL      string
	Settings cloud.Values
	Lock     cloud.Lock
	// Own: a config file entry with backend settings of its own.
	Own bool
}

// copyStoreFlags name the second stores; a command that writes, keeps
// them in step or reads from them takes them.
func copyStoreFlags() []cli.Flag {
	return []cli.Flag{
		// Not an altsrc flag: the config file's entries may be maps.
		&cli.StringSliceFlag{Name: copyStoreKey, Usage: "a second store kept in step (URL; repeatable): the agent copies what it archives, backup-push and dump-push their backup and dump; with its own settings, a map in the config file (README: A second store)", EnvVars: envName(copyStoreKey)},
		boolFlag("copy-store-wait", "report success only once every copy-store has the object too (archive_command through the agent, backup-push, dump-push); default: the primary store alone decides"),
	}
}

// lockFlags are the immutability settings of a store's writes.
func lockFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("lock-days", "keep every object written undeletable for this long under the store's own immutability (S3 Object Lock, GCS object retention, Azure immutability): days (30) or a duration (36h); 0: no lock", "0"),
		stringFlag("lock-mode", "compliance (nobody can shorten a lock) or governance (principals allowed to bypass it can)", "compliance"),
	}
}

// lockOf reads the command's lock settings (none for a command without
// them).
func lockOf(c *cli.Context) (cloud.Lock, error) {
	if !hasFlag(c.Command.Flags, "lock-days") {
		return cloud.Lock{}, nil
	}
	return parseLock(c.String("lock-days"), c.String("lock-mode"))
}

func parseLock(days, mode string) (cloud.Lock, error) {
	d, err := cloud.ParseLockPeriod(days)
	if err != nil {
		return cloud.Lock{}, usageError("%v", err)
	}
	m, err := cloud.ParseLockMode(mode)
	if err != nil {
		return cloud.Lock{}, usageError("--lock-mode: %v", err)
	}
	return cloud.Lock{Period: d, Mode: m}, nil
}

// mainSpec is the `store` setting with its settings.
func mainSpec(c *cli.Context) (storeSpec, error) {
	l, err := lockOf(c)
	return storeSpec{URL: c.String("store"), Settings: backendValues(c), Lock: l}, err
}

// open opens the store; mustExist as in cloud.Options.
// --max-upload-rate and --max-download-rate are the process's: a second
// store shares them with the store.
func (s storeSpec) open(c *cli.Context, mustExist bool) (cloud.Store, error) {
	so := storeOptions(c)
	so.Settings, so.Lock, so.MustExist = s.Settings, s.Lock, mustExist
	limits, err := rateLimits(c)
	if err != nil {
		return nil, err
	}
	st, err := cloud.Open(c.Context, s.URL, so)
	if err != nil {
		return nil, err
	}
	return ratelimit.Wrap(st, limits), nil
}

// configEntries reads the copy-store entries of the command's config file.
func configEntries(c *cli.Context, main storeSpec) ([]storeSpec, error) {
	path := configPath(c)
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the config file the user named
	if err != nil {
		return nil, usageError("config file %s cannot be read: %v", path, errors.Unwrap(err))
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, usageError("config file %s is not valid YAML with flag names as keys: %s", path, oneLine(err.Error()))
	}
	raw, ok := doc[copyStoreKey]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		list = []any{raw}
	}
	var out []storeSpec
	for i, e := range list {
		spec, err := parseEntry(e, main)
		if err != nil {
			return nil, usageError("config file %s: %s entry %d: %v", path, copyStoreKey, i+1, err)
		}
		out = append(out, spec)
	}
	return out, nil
}

// parseEntry reads one copy-store entry: a URL, or a map with `store`.
func parseEntry(e any, main storeSpec) (storeSpec, error) {
	switch v := e.(type) {
	case string:
		return storeSpec{URL: v, Settings: main.Settings, Lock: main.Lock}, checkURL(v)
	case map[string]any:
		return parseMapEntry(v, main)
	}
	return storeSpec{}, fmt.Errorf("expected a store URL or a map with a %q key, got %v", "store", e)
}

func parseMapEntry(v map[string]any, main storeSpec) (storeSpec, error) {
	spec := storeSpec{Settings: cloud.Values{}, Own: true}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	allowed := []string{"store", "lock-days", "lock-mode"}
	for _, s := range cloud.Settings() {
		allowed = append(allowed, s.Name)
	}
	days, mode := "", ""
	for _, k := range keys {
		val, err := scalar(v[k])
		if err != nil {
			return spec, fmt.Errorf("%s: %v", k, err)
		}
		switch {
		case k == "store":
			spec.URL = val
		case k == "lock-days":
			days = val
		case k == "lock-mode":
			mode = val
		case slices.Contains(allowed, k):
			spec.Settings[k] = val
		default:
			return spec, fmt.Errorf("%q is no setting of a store%s: an entry has store, lock-days, lock-mode and the backend settings of its store", k,
				didYouMean(k, allowed, func(s string) string { return fmt.Sprintf("%q", s) }))
		}
	}
	if spec.URL == "" {
		return spec, errors.New(`it has no "store" key with the store's URL`)
	}
	if err := checkURL(spec.URL); err != nil {
		return spec, err
	}
	loc, _ := cloud.ParseURL(spec.URL)
	b, _ := cloud.BackendOf(loc.Scheme)
	for k := range spec.Settings {
		if !slices.ContainsFunc(b.Settings, func(s cloud.Setting) bool { return s.Name == k }) {
			return spec, fmt.Errorf("%s does not apply to a %s:// store", k, loc.Scheme)
		}
	}
	spec.Lock = main.Lock
	if days != "" || mode != "" {
		if days == "" {
			days = cloud.FormatPeriod(main.Lock.Period)
		}
		l, err := parseLock(days, mode)
		if err != nil {
			return spec, err
		}
		spec.Lock = l
	}
	return spec, nil
}

// scalar is a YAML scalar as the text a flag would take.
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool, int, int64, float64:
		return fmt.Sprint(x), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("expected a single value, got %v", v)
}

func checkURL(raw string) error {
	loc, err := cloud.ParseURL(raw)
	if err != nil {
		return err
	}
	if _, ok := cloud.BackendOf(loc.Scheme); !ok {
		return fmt.Errorf("%w: unknown scheme %q in %q", cloud.ErrBadURL, loc.Scheme+"://", cloud.Redact(raw))
	}
	return nil
}

// copyStores are the second stores: the URLs --copy-store (or
// WALVAULT_COPY_STORE) names, each with its config file entry's settings
// when it has one, else the config file's entries.
func copyStores(c *cli.Context) ([]storeSpec, error) {
	if !hasFlag(c.Command.Flags, copyStoreKey) {
		return nil, nil
	}
	main, err := mainSpec(c)
	if err != nil {
		return nil, err
	}
	entries, err := configEntries(c, main)
	if err != nil {
		return nil, err
	}
	var out []storeSpec
	if urls := c.StringSlice(copyStoreKey); len(urls) > 0 {
		for _, u := range urls {
			s, err := specIn(entries, main, u)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	} else {
		out = entries
	}
	seen := map[string]bool{strings.TrimSuffix(main.URL, "/"): true}
	for _, s := range out {
		u := strings.TrimSuffix(s.URL, "/")
		if seen[u] {
			return nil, usageError("copy-store %s is named twice, or is the store itself: each second store once, none the same as store", cloud.Redact(s.URL))
		}
		seen[u] = true
	}
	return out, nil
}

// specFor resolves a store URL given on the command line (--to,
// --fallback-store): its config file entry's settings when it has one,
// else those of `store`.
func specFor(c *cli.Context, raw string) (storeSpec, error) {
	main, err := mainSpec(c)
	if err != nil {
		return storeSpec{}, err
	}
	entries, err := configEntries(c, main)
	if err != nil {
		return storeSpec{}, err
	}
	return specIn(entries, main, raw)
}

func specIn(entries []storeSpec, main storeSpec, raw string) (storeSpec, error) {
	if err := checkURL(raw); err != nil {
		return storeSpec{}, usageError("%v", err)
	}
	for _, e := range entries {
		if strings.TrimSuffix(e.URL, "/") == strings.TrimSuffix(raw, "/") {
			return e, nil
		}
	}
	return storeSpec{URL: raw, Settings: main.Settings, Lock: main.Lock}, nil
}

// secondRepo is a copy-store opened beside the primary: its repository
// (the primary's keys and codec over its store) and its spool id.
type secondRepo struct {
	spec storeSpec
	r    *repo.Repo
	id   string
}

// openCopyStores opens every copy-store for a command whose primary
// repository is r. Nothing is contacted.
func openCopyStores(c *cli.Context, r *repo.Repo) ([]secondRepo, func(), error) {
	specs, err := copyStores(c)
	if err != nil {
		return nil, func() {}, err
	}
	var out []secondRepo
	closeAll := func() {
		for _, s := range out {
			_ = cloud.Close(s.r.Store)
		}
	}
	for _, s := range specs {
		st, err := s.open(c, false)
		if err != nil {
			closeAll()
			return nil, func() {}, fmt.Errorf("copy-store %s: %w", cloud.Redact(s.URL), err)
		}
		sr := *r
		sr.Store = st
		id := wal.CopyStoreID(cloud.Identity(st, cloud.Endpoint(s.URL, s.Settings, os.Getenv)))
		out = append(out, secondRepo{spec: s, r: &sr, id: id})
	}
	return out, closeAll, nil
}

// spoolOf is the spool directory of the pg_wal file at path.
func spoolOf(spool, path string) string {
	if spool != "" {
		return spool
	}
	return filepath.Join(filepath.Dir(path), ".walvault")
}

// recordCopy records so for the copy-store s in the spool of path's
// pg_wal (the agent copies it; so does the next wal-push with
// copy-store-wait).
func recordCopy(s secondRepo, spool, path string, so wal.StoredObject) (wal.CopyRecord, error) {
	q, err := wal.OpenCopyQueue(spoolOf(spool, path), s.id)
	if err != nil {
		return wal.CopyRecord{}, err
	}
	return q.Record(so, time.Now())
}

// copyNow copies the file wal-push just stored to every copy-store
// (copy-store-wait), and removes its records: archive_command succeeds only
// once every store has it.
func copyNow(c *cli.Context, r *repo.Repo, seconds []secondRepo, recorded map[string][]wal.CopyRecord, so *wal.StoredObject, spool, path string) error {
	for _, s := range seconds {
		recs := recorded[s.id]
		var rec *wal.CopyRecord
		for i := range recs {
			if recs[i].Name == so.Name {
				rec = &recs[i]
			}
		}
		if rec == nil {
			return fmt.Errorf("copy-store %s: %s was not recorded", cloud.Redact(s.spec.URL), so.Name)
		}
		if _, err := r.CopyCluster(c.Context, s.r); err != nil {
			return fmt.Errorf("copy-store %s: %w", cloud.Redact(s.spec.URL), err)
		}
		if _, err := wal.CopyStored(c.Context, r, s.r, *rec, so.Body, spoolOf(spool, path)); err != nil {
			return fmt.Errorf("copy-store %s: %w", cloud.Redact(s.spec.URL), err)
		}
		if q, err := wal.OpenCopyQueue(spoolOf(spool, path), s.id); err == nil {
			_ = q.Done(so.Name)
		}
	}
	return nil
}

// copyToSeconds copies what a command just made complete in the primary
// store (what) to every copy-store, with fn. A copy that fails is a
// warning, the primary's success standing, unless copy-store-wait asks
// for every store: then it is the command's failure.
//
// With --json the lines go to stderr and each copy into the result's
// copy_stores.
func copyToSeconds(c *cli.Context, r *repo.Repo, seconds []secondRepo, what string, fn func(dst *repo.Repo, opts repo.CopyOptions) error) error {
	var failed []error
	w, out := c.App.Writer, resultOf(c)
	if out != nil {
		w = c.App.ErrWriter
	}
	record := func(store string, objects, bytes int64, err error) {
		if out == nil {
			return
		}
		list, _ := out["copy_stores"].([]map[string]any)
		e := map[string]any{"store": store, "what": what, "objects": objects, "bytes": bytes, "error": nil}
		if err != nil {
			e["error"] = scrubURLs(oneLine(err.Error()))
		}
		out.set("copy_stores", append(list, e))
	}
	for _, s := range seconds {
		start := time.Now()
		var objects, bytes atomic.Int64
		opts := repo.CopyOptions{Concurrency: max(c.Int("upload-concurrency"), 1),
			OnStored: func(n int64) { bytes.Add(n) },
			OnObject: func(res repo.CopyResult) {
				if !res.Already {
					objects.Add(1)
				}
			}}
		err := fn(s.r, opts)
		name := cloud.Redact(s.spec.URL)
		record(name, objects.Load(), bytes.Load(), err)
		if err != nil {
			err = fmt.Errorf("%s is not in copy-store %s: %w", what, name, err)
			if c.Bool("copy-store-wait") {
				failed = append(failed, err)
				continue
			}
			fmt.Fprintf(c.App.ErrWriter, "warning: %s (walvault copy --to %s catches it up)\n", oneLine(err.Error()), name)
			continue
		}
		fmt.Fprintf(w, "copied %s to %s: %d object(s), %s in %.2f s\n", what, name, objects.Load(), archive.HumanBytes(bytes.Load()), time.Since(start).Seconds())
	}
	if len(failed) > 0 {
		return errors.Join(failed...)
	}
	return nil
}

// fallbackStoreFlag names stores restore and wal-fetch read an object from
// when the store lacks it or holds it damaged.
func fallbackStoreFlag() cli.Flag {
	return sliceFlag("fallback-store", "a store holding a copy of the archive (a copy-store) to read an object from when --store lacks it or holds it damaged; each is authenticated as from --store; repeatable")
}

var (
	fallbackMu   sync.Mutex
	fallbackList []string
	// fallbackHook, when set, is told each read from a fallback store too
	// (wal-prefetch, whose log nobody sees, hands it to wal-fetch).
	fallbackHook func(key, line string)
)

// fallbackReads are the objects read from a fallback store so far, each
// with where it came from and why.
func fallbackReads() []string {
	fallbackMu.Lock()
	defer fallbackMu.Unlock()
	return slices.Clone(fallbackList)
}

// withFallbacks puts the command's --fallback-store stores behind st.
// Each object read from one is logged (and listed by restore).
func withFallbacks(c *cli.Context, st cloud.Store) (cloud.Store, error) {
	if !hasFlag(c.Command.Flags, "fallback-store") || len(c.StringSlice("fallback-store")) == 0 {
		return st, nil
	}
	var others []cloud.Store
	for _, u := range c.StringSlice("fallback-store") {
		spec, err := specFor(c, u)
		if err == nil && strings.TrimSuffix(spec.URL, "/") == strings.TrimSuffix(c.String("store"), "/") {
			err = usageError("--fallback-store %s is --store itself", cloud.Redact(u))
		}
		var o cloud.Store
		if err == nil {
			spec.Lock = cloud.Lock{} // read only
			o, err = spec.open(c, true)
		}
		if err != nil {
			for _, x := range others {
				_ = cloud.Close(x)
			}
			return nil, fmt.Errorf("--fallback-store %s: %w", cloud.Redact(u), err)
		}
		others = append(others, o)
	}
	note := func(key string, from cloud.Store, why error) {
		reason := "missing in " + st.String()
		if !errors.Is(why, cloud.ErrNotFound) && !errors.Is(why, archive.ErrNotInArchive) {
			reason = "damaged in " + st.String() + ": " + archive.OneLine(why.Error())
		}
		slog.Warn("read from the fallback store", "object", key, "from", from.String(), "because", reason)
		line := fmt.Sprintf("%s from %s (%s)", key, from, reason)
		fallbackMu.Lock()
		fallbackList = append(fallbackList, line)
		hook := fallbackHook
		fallbackMu.Unlock()
		if hook != nil {
			hook(key, line)
		}
	}
	return cloud.WithFallback(st, others, note), nil
}

// A segment the prefetcher read from a fallback store is served later by
// wal-fetch from the spool: the prefetcher leaves a note beside it
// (prefetch/.fallback-NAME), which wal-fetch logs, as its own read would
// have been, when it serves the segment, and removes.
const fallbackNotePrefix = ".fallback-"

// noteFallbackPrefetch makes the prefetcher leave those notes in spool.
func noteFallbackPrefetch(spool string) {
	fallbackMu.Lock()
	defer fallbackMu.Unlock()
	fallbackHook = func(key, line string) {
		name := filepath.Base(key)
		if _, err := archive.ParseWALName(name); err != nil {
			return
		}
		p := filepath.Join(spool, "prefetch", fallbackNotePrefix+name)
		if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
			slog.Debug("fallback note not written", "file", p, "err", err)
		}
	}
}

// logPrefetchedFallback logs (and removes) the note of a prefetched
// segment read from a fallback store.
func logPrefetchedFallback(spool, name string) {
	p := filepath.Join(spool, "prefetch", fallbackNotePrefix+name)
	b, err := os.ReadFile(p) // #nosec G304 -- our spool
	if err != nil {
		return
	}
	_ = os.Remove(p)
	slog.Warn("read from the fallback store (prefetched)", "object", shown(archive.OneLine(string(b))))
}
