package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// BackupOptions tune backup-push.
type BackupOptions struct {
	// DSN is a libpq connection string; empty uses PGHOST, PGPORT, ...
	DSN string
	// PGData is the data directory; empty asks the server.
	PGData string
	// PartSize is the most raw bytes one part holds (a larger file gets a
	// part of its own).
	PartSize int64
	// Concurrency is how many parts are read, compressed and uploaded at
	// once.
	Concurrency    int
	FastCheckpoint bool
	Permanent      bool
	Annotations    map[string]string
	// ArchiveTimeout bounds the wait for the backup's WAL to be archived.
	ArchiveTimeout time.Duration
	// Software names the program in the manifest ("walvault 1.2.3").
	Software string
	// Bar, when set (a terminal), gets a progress bar; otherwise progress
	// is logged every ProgressInterval.
	Bar              io.Writer
	ProgressInterval time.Duration
}

// DefaultPartSize is --part-size's default.
const DefaultPartSize = 1 << 30

// BackupResult is what backup-push reports.
type BackupResult struct {
	Manifest *Manifest
	Duration time.Duration
}

// errPartAborted ends a part's tar producer when its upload gave up.
var errPartAborted = errors.New("part upload ended")

// PushBackup takes a base backup of the server opts.DSN reaches and stores
// it under backups/<name>/. It returns only once every part, the WAL from
// the backup's start to its stop, and finally the manifest are durable in
// the store; until the manifest is written the backup does not exist.
func PushBackup(ctx context.Context, cfg *Config, opts BackupOptions) (*BackupResult, error) {
	began := time.Now()
	if opts.PartSize <= 0 {
		opts.PartSize = DefaultPartSize
	}
	opts.Concurrency = max1(opts.Concurrency)
	if opts.ArchiveTimeout <= 0 {
		opts.ArchiveTimeout = 5 * time.Minute
	}
	srv, err := connectPG(ctx, opts.DSN)
	if err != nil {
		return nil, err
	}
	defer srv.Close() // also aborts backup mode if we fail half-way
	if err := srv.checkArchiving(); err != nil {
		return nil, err
	}
	if err := ensureCluster(ctx, cfg.Store, srv.SystemID, ""); err != nil {
		return nil, err
	}
	pgdata := opts.PGData
	if pgdata == "" {
		if pgdata, err = srv.dataDirectory(ctx); err != nil {
			return nil, err
		}
	}
	if pgdata, err = filepath.Abs(pgdata); err != nil {
		return nil, err
	}
	if err := checkControlFile(pgdata, srv.SystemID); err != nil {
		return nil, err
	}
	spcNames, err := srv.tablespaces(ctx)
	if err != nil {
		return nil, err
	}
	tli, err := srv.currentTimeline(ctx)
	if err != nil {
		return nil, err
	}

	if opts.FastCheckpoint {
		slog.Info("starting the backup with an immediate checkpoint")
	} else {
		slog.Info("starting the backup: waiting for a spread checkpoint (up to checkpoint_timeout × checkpoint_completion_target; --fast-checkpoint does not wait)")
	}
	startTime := time.Now().UTC()
	startLSN, err := srv.startBackup(ctx, "walvault "+startTime.Format(time.RFC3339), opts.FastCheckpoint)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		Format: ManifestFormat, Software: opts.Software, PGVersion: srv.Version, PGVersionString: srv.VersionString,
		SystemIdentifier: strconv.FormatUint(srv.SystemID, 10), Timeline: tli,
		StartLSN: startLSN.String(), StartWAL: SegmentOf(tli, startLSN, srv.SegSize), StartTime: startTime,
		SegmentSize: srv.SegSize, Compression: string(orLZ4(cfg.Codec.Compression)), Encrypted: len(cfg.Codec.Recipients) > 0,
		Permanent: opts.Permanent, Annotations: opts.Annotations, PGData: pgdata, Owner: ownerOf(pgdata),
	}
	m.Hostname, _ = os.Hostname()
	m.Name = fmt.Sprintf("base_%s_%s", startTime.Format("20060102T150405Z"), m.StartWAL)
	if err := checkNameFree(ctx, cfg.Store, m.Name); err != nil {
		return nil, err
	}
	slog.Info("backup started", "backup", m.Name, "start_lsn", m.StartLSN, "pgdata", pgdata, "ms", sinceMs(began))

	run := &backupRun{cfg: cfg, name: m.Name}
	defer func() {
		if !run.ok {
			run.cleanup(ctx)
		}
	}()

	spcDir := fmt.Sprintf("PG_%d_%d", srv.Version/10000, srv.CatVersion)
	walk, err := walkDataDir(pgdata, spcDir, spcNames)
	if err != nil {
		return nil, err
	}
	m.Tablespaces = walk.Tablespaces
	slog.Debug("data directory listed", "files", len(walk.Base), "bytes", walk.Total, "ms", sinceMs(began))
	plans := planParts(walk, partTarget(walk.Total, opts.PartSize, opts.Concurrency))
	run.prog = newProgress("backup", walk.Total, opts.Bar, opts.ProgressInterval)
	parts, files, err := run.uploadParts(ctx, plans, opts.Concurrency)
	run.prog.done()
	if err != nil {
		return nil, err
	}

	slog.Debug("parts stored", "parts", len(parts), "ms", sinceMs(began))
	stop, err := srv.stopBackup(ctx)
	if err != nil {
		return nil, err
	}
	slog.Debug("backup stopped", "stop_lsn", stop.LSN, "ms", sinceMs(began))
	m.StopTime = time.Now().UTC()
	if ltli, err := timelineOfLabel(stop.Label); err != nil {
		return nil, err
	} else if ltli != tli {
		return nil, fmt.Errorf("%w: the server switched from timeline %d to %d during the backup: take it again", ErrPostgres, tli, ltli)
	}
	m.StopLSN, m.StopWAL, m.StopNextXID = stop.LSN.String(), stopSegment(tli, stop.LSN, srv.SegSize), stop.NextXID
	m.BackupLabel, m.TablespaceMap = stop.Label, stop.TablespaceMap

	// The last part holds what only the stop call can give: backup_label,
	// and PostgreSQL's own manifest of every file.
	last := len(parts)
	label := memFile{Path: "backup_label", Data: []byte(stop.Label)}
	labelFile, _ := writeMemTar(io.Discard, []memFile{label}, last, m.StopTime)
	files = append(files, labelFile...)
	pgm, err := pgManifest(files, tli, startLSN, stop.LSN)
	if err != nil {
		return nil, err
	}
	final, finalFiles, err := run.uploadPart(ctx, last, 0, int64(len(stop.Label)+len(pgm)), func(w io.Writer) ([]File, error) {
		return writeMemTar(w, []memFile{label, {Path: pgManifestName, Data: pgm}}, last, m.StopTime)
	})
	if err != nil {
		return nil, err
	}
	parts = append(parts, final)
	files = append(files[:len(files)-1], finalFiles...)

	if err := waitArchived(ctx, cfg.Store, srv, m, opts.ArchiveTimeout); err != nil {
		return nil, err
	}
	slog.Debug("WAL archived", "through", m.StopWAL, "ms", sinceMs(began))

	m.Parts, m.Files, m.FileCount = parts, files, len(files)
	for _, p := range parts {
		m.StoredSize += p.StoredSize
	}
	for _, f := range files {
		m.DataSize += f.Size
	}
	body, err := encodeManifest(m)
	if err != nil {
		return nil, err
	}
	key := BackupKey(m.Name, ManifestFile)
	if err := cfg.Store.Put(ctx, key, bytes.NewReader(body), cloud.PutOptions{IfAbsent: true, SizeHint: int64(len(body))}); err != nil {
		return nil, asStoreErr(fmt.Errorf("%s: writing %s: %w", cfg.Store, key, err))
	}
	run.ok = true
	return &BackupResult{Manifest: m, Duration: time.Since(began)}, nil
}

func orLZ4(c codec.Compression) codec.Compression {
	if c == "" {
		return codec.LZ4
	}
	return c
}

// stopSegment is the last segment a backup needs: the one holding the byte
// before the stop LSN (the stop LSN is where the next record would start).
func stopSegment(tli uint32, stop LSN, segSize int64) string {
	if stop > 0 {
		stop--
	}
	return SegmentOf(tli, stop, segSize)
}

// checkControlFile makes sure pgdata is the directory of the server we are
// connected to: a wrong --pgdata would otherwise back up another cluster
// under this one's name.
func checkControlFile(pgdata string, sysid uint64) error {
	f, err := os.Open(filepath.Join(pgdata, "global", "pg_control")) // #nosec G304 -- the data directory we back up
	if err != nil {
		return fmt.Errorf("%w: %s is not a readable PostgreSQL data directory: %w", ErrBadInput, pgdata, err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return fmt.Errorf("%w: %s/global/pg_control: %w", ErrBadInput, pgdata, err)
	}
	if got := binary.LittleEndian.Uint64(b[:]); got != sysid {
		return fmt.Errorf("%w: %s belongs to the cluster with system identifier %d, but the server we are connected to is %d: check --pgdata and the connection settings", ErrBadInput, pgdata, got, sysid)
	}
	return nil
}

func ownerOf(dir string) FileOwner {
	var o FileOwner
	st, err := os.Stat(dir)
	if err != nil {
		return o
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		o.UID, o.GID = int(sys.Uid), int(sys.Gid)
	}
	if u, err := user.LookupId(strconv.Itoa(o.UID)); err == nil {
		o.User = u.Username
	}
	if g, err := user.LookupGroupId(strconv.Itoa(o.GID)); err == nil {
		o.Group = g.Name
	}
	return o
}

var errFound = errors.New("found")

// checkNameFree refuses to write into a backup directory that has objects:
// names are unique by construction, so this only trips on a clock gone
// backwards or two backups started in the same second.
func checkNameFree(ctx context.Context, st cloud.Store, name string) error {
	err := st.List(ctx, BackupPrefix+name+"/", cloud.ListOptions{}, func(cloud.ObjectInfo) error { return errFound })
	if errors.Is(err, errFound) {
		return fmt.Errorf("%w: %s already has objects under %s%s/: is another backup running?", ErrConflict, st, BackupPrefix, name)
	}
	return asStoreErr(err)
}

// backupRun is the state of one backup's uploads.
type backupRun struct {
	cfg  *Config
	name string
	prog *progress
	ok   bool

	mu      sync.Mutex
	written []string
}

// uploadParts stores the planned parts, concurrency at a time. Each part is
// one stream: files -> tar -> compress -> encrypt -> store, through pipes,
// so memory does not grow with the part size.
func (r *backupRun) uploadParts(ctx context.Context, plans []partPlan, concurrency int) ([]Part, []File, error) {
	parts := make([]Part, len(plans))
	files := make([][]File, len(plans))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	// Largest first, so one big part does not start last and run alone.
	order := make([]int, len(plans))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return plans[order[a]].Size > plans[order[b]].Size })
	for _, i := range order {
		g.Go(func() error {
			buf := make([]byte, copyBufSize)
			p, f, err := r.uploadPart(gctx, i, plans[i].Tablespace, plans[i].Size, func(w io.Writer) ([]File, error) {
				return writeTar(gctx, w, plans[i].Entries, i, buf, r.prog.addRead)
			})
			parts[i], files[i] = p, f
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	var all []File
	for _, f := range files {
		all = append(all, f...)
	}
	return parts, all, nil
}

// uploadPart stores part idx, produced by produce; a transient store error
// retries the whole part, re-reading its files.
func (r *backupRun) uploadPart(ctx context.Context, idx int, spc uint32, sizeHint int64, produce func(io.Writer) ([]File, error)) (Part, []File, error) {
	key := BackupKey(r.name, partName(idx))
	var part Part
	var files []File
	r.mu.Lock()
	r.written = append(r.written, key)
	r.mu.Unlock()
	err := cloud.Retry(ctx, cloud.DefaultRetry, "upload "+key, func() error {
		pr, pw := io.Pipe()
		raw := &countWriter{w: pw}
		done := make(chan error, 1)
		go func() {
			f, err := produce(raw)
			files = f
			pw.CloseWithError(err)
			done <- err
		}()
		c := *r.cfg
		c.Store = &teeStore{Store: r.cfg.Store, h: sha256.New(), prog: r.prog}
		c.Codec.Concurrency = codecConcurrency()
		stored, err := putEncoded(ctx, &c, key, pr, cloud.PutOptions{IfAbsent: true, SizeHint: sizeHint})
		_ = pr.CloseWithError(errPartAborted)
		perr := <-done
		if perr != nil && !errors.Is(perr, errPartAborted) {
			return perr // the cause, e.g. a file that cannot be read
		}
		if err != nil {
			return asStoreErr(fmt.Errorf("%s: uploading %s: %w", r.cfg.Store, key, err))
		}
		if perr != nil {
			return perr
		}
		n := 0
		for _, f := range files {
			if f.Type == TypeFile {
				n++
			}
		}
		part = Part{Name: partName(idx), Tablespace: spc, Files: n, Size: raw.n, StoredSize: stored,
			SHA256: hex.EncodeToString(c.Store.(*teeStore).h.Sum(nil))}
		return nil
	})
	return part, files, err
}

// codecConcurrency is the compressor's goroutines per part. Parts already
// run in parallel; a little more lets one big part (a 1 GiB table segment)
// use the spare cores, while capping memory (each lz4 goroutine holds two
// 4 MiB blocks).
func codecConcurrency() int { return min(runtime.GOMAXPROCS(0), 2) }

// cleanup removes the parts of a backup that failed, so they do not wait
// for retention. A killed walvault leaves them; they are never read
// without a manifest.
func (r *backupRun) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	r.mu.Lock()
	keys := append([]string(nil), r.written...)
	r.mu.Unlock()
	for _, k := range keys {
		if err := r.cfg.Store.Delete(ctx, k); err != nil {
			slog.Warn("could not remove a part of the failed backup", "key", k, "err", err)
		}
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// teeStore hashes and counts what a Put sends, i.e. the stored object.
type teeStore struct {
	cloud.Store
	h    hash.Hash
	prog *progress
}

func (t *teeStore) Put(ctx context.Context, key string, r io.Reader, opts cloud.PutOptions) error {
	return t.Store.Put(ctx, key, &teeReader{r: r, t: t}, opts)
}

type teeReader struct {
	r io.Reader
	t *teeStore
}

func (tr *teeReader) Read(p []byte) (int, error) {
	n, err := tr.r.Read(p)
	if n > 0 {
		tr.t.h.Write(p[:n])
		if tr.t.prog != nil {
			tr.t.prog.addStored(int64(n))
		}
	}
	return n, err
}

// waitArchived waits until every WAL segment from the backup's start to its
// stop is in the store, as pg_backup_stop(wait_for_archive) would, but
// bounded, checking the store itself, and naming the archiver's failure
// when it gives up.
func waitArchived(ctx context.Context, st cloud.Store, srv *pgServer, m *Manifest, timeout time.Duration) error {
	first, _ := ParseWALName(m.StartWAL)
	last, _ := ParseWALName(m.StopWAL)
	deadline := time.Now().Add(timeout)
	delay := 50 * time.Millisecond
	warned := false
	for {
		missing, err := missingSegments(ctx, st, m.Timeline, first.SegNo(m.SegmentSize), last.SegNo(m.SegmentSize), m.SegmentSize)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			return nil
		}
		a, aerr := srv.archiver(ctx)
		if aerr == nil && a.failing() && !warned {
			slog.Warn("WAL archiving is failing; still waiting", "archiver", a.String())
			warned = true
		}
		if time.Now().After(deadline) {
			why := "pg_stat_archiver unavailable"
			if aerr == nil {
				why = a.String()
			}
			return fmt.Errorf("%w: the backup's WAL %s (and %d more) did not reach %s within %s: %s; is archive_command 'walvault wal-push %%p' with this store?",
				ErrPostgres, missing[0], len(missing)-1, st, timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 2*time.Second)
	}
}

// missingSegments lists the segments first..last of timeline tli that are
// not in the store, listing each WAL directory once.
func missingSegments(ctx context.Context, st cloud.Store, tli uint32, first, last uint64, segSize int64) ([]string, error) {
	have := map[string]bool{}
	listed := map[string]bool{}
	var missing []string
	for s := first; s <= last; s++ {
		name := SegmentName(tli, s, segSize)
		dir := WALPrefix + name[:16] + "/"
		if !listed[dir] {
			listed[dir] = true
			err := st.List(ctx, dir, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
				have[o.Key[len(dir):]] = true
				return nil
			})
			if err != nil {
				return nil, asStoreErr(fmt.Errorf("%s: listing %s: %w", st, dir, err))
			}
		}
		if !have[name] {
			missing = append(missing, name)
		}
	}
	return missing, nil
}
