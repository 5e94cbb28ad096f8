// Package backup is backup-push: it takes a base backup of a running
// server through PostgreSQL's non-exclusive backup API, streams the data
// directory and its tablespaces as tar parts into the repository, waits
// for the backup's WAL to be archived, and writes the manifest last.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Options tune backup-push.
type Options struct {
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
	// Progress reports the upload; nil reports nothing.
	Progress archive.NewProgress
	// Incremental builds on the newest restorable backup of this cluster
	// and timeline, or takes a full backup, saying why, when none is
	// usable. Parent names the parent instead (an unusable one is an
	// error). MaxChain is the most incrementals a chain holds after its
	// full backup (0: DefaultMaxChain).
	Incremental bool
	Parent      string
	MaxChain    int
}

// DefaultPartSize is --part-size's default.
const DefaultPartSize = 1 << 30

func (o Options) withDefaults() Options {
	if o.PartSize <= 0 {
		o.PartSize = DefaultPartSize
	}
	o.Concurrency = max(o.Concurrency, 1)
	if o.ArchiveTimeout <= 0 {
		o.ArchiveTimeout = 5 * time.Minute
	}
	if o.MaxChain <= 0 {
		o.MaxChain = DefaultMaxChain
	}
	return o
}

// Result is what backup-push reports.
type Result struct {
	Manifest *repo.Manifest
	Duration time.Duration
	// The parts of Duration a DBA tells apart: waiting for the starting
	// checkpoint (spread unless FastCheckpoint), reading and storing the
	// files, and waiting for the backup's WAL to reach the store.
	Checkpoint, Copy, WALWait time.Duration
}

// Push takes a base backup of the server opts.DSN reaches and stores it
// under backups/<name>/. It returns only once every part, the WAL from the
// backup's start to its stop, and finally the manifest are durable in the
// store; until the manifest is written the backup does not exist.
func Push(ctx context.Context, r *repo.Repo, opts Options) (*Result, error) {
	b := &pusher{r: r, opts: opts.withDefaults(), began: time.Now()}
	defer b.end(ctx)
	steps := []func(context.Context) error{
		b.connect, b.chooseParent, b.start, b.uploadParts, b.stop, b.uploadFinalPart, b.waitWAL,
		b.checkWALSinceParent, b.writeManifest,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return &Result{Manifest: b.m, Duration: time.Since(b.began), Checkpoint: b.checkpoint, Copy: b.copy, WALWait: b.walWait}, nil
}

// pusher is the state of one backup-push, step to step.
type pusher struct {
	r     *repo.Repo
	opts  Options
	began time.Time
	// checkpoint, copy, walWait: see Result.
	checkpoint, copy, walWait time.Duration

	srv      *pg.Server
	pgdata   string
	spcNames map[uint32]string
	dbNames  map[uint32]string
	tli      uint32
	facts    pg.Facts
	parent   *parentRef // nil: a full backup

	m     *repo.Manifest
	up    *uploader
	parts []repo.Part
	files []repo.File
	ok    bool
}

// end removes the parts of a backup that failed, then closes the session,
// which also aborts backup mode if we fail half-way.
func (b *pusher) end(ctx context.Context) {
	if !b.ok && b.up != nil {
		b.up.cleanup(ctx)
	}
	if b.srv != nil {
		b.srv.Close()
	}
}

// connect reaches the server and checks that it can be backed up into this
// repository: archiving is on, the bucket is this cluster's, and the data
// directory is the server's.
func (b *pusher) connect(ctx context.Context) error {
	srv, err := pg.Connect(ctx, b.opts.DSN, "walvault backup-push", 0)
	if err != nil {
		return err
	}
	b.srv = srv
	if err := srv.CheckArchiving(); err != nil {
		return err
	}
	if err := b.r.EnsureCluster(ctx, srv.SystemID, srv.SegSize, ""); err != nil {
		return err
	}
	pgdata := b.opts.PGData
	if pgdata == "" {
		if pgdata, err = srv.DataDirectory(ctx); err != nil {
			return err
		}
	}
	if b.pgdata, err = filepath.Abs(pgdata); err != nil {
		return err
	}
	if err := pg.CheckControlFile(b.pgdata, srv.SystemID); err != nil {
		return err
	}
	if b.spcNames, err = srv.Tablespaces(ctx); err != nil {
		return err
	}
	if b.dbNames, err = srv.Databases(ctx); err != nil {
		return err
	}
	if b.tli, err = srv.CurrentTimeline(ctx); err != nil {
		return err
	}
	b.facts, err = srv.Facts(ctx)
	return err
}

// start enters backup mode and names the backup after its start.
func (b *pusher) start(ctx context.Context) error {
	if b.opts.FastCheckpoint {
		slog.Info("starting the backup with an immediate checkpoint")
	} else {
		slog.Info("starting the backup: waiting for a spread checkpoint (up to checkpoint_timeout × checkpoint_completion_target; --fast-checkpoint does not wait)")
	}
	startTime := time.Now().UTC()
	startLSN, err := b.srv.StartBackup(ctx, "walvault "+startTime.Format(time.RFC3339), b.opts.FastCheckpoint)
	if err != nil {
		return err
	}
	b.checkpoint = time.Since(startTime)
	b.m = b.newManifest(startTime, startLSN)
	if err := checkNameFree(ctx, b.r.Store, b.m.Name); err != nil {
		return err
	}
	slog.Info("backup started", "backup", b.m.Name, "start_lsn", b.m.StartLSN.String(), "pgdata", b.pgdata, "ms", sinceMs(b.began))
	b.up = &uploader{r: b.r, name: b.m.Name}
	return nil
}

// newManifest is what is known of the backup once it has started.
func (b *pusher) newManifest(startTime time.Time, startLSN archive.LSN) *repo.Manifest {
	srv := b.srv
	m := &repo.Manifest{
		Format: repo.ManifestFormat, Software: b.opts.Software, PGVersion: srv.Version, PGVersionString: srv.VersionString,
		SystemIdentifier: strconv.FormatUint(srv.SystemID, 10), Timeline: b.tli,
		StartLSN: startLSN, StartWAL: archive.SegmentOf(b.tli, startLSN, srv.SegSize), StartTime: startTime,
		SegmentSize: srv.SegSize, Compression: string(orLZ4(b.r.Codec.Compression)), Encrypted: len(b.r.Codec.Recipients) > 0,
		Permanent: b.opts.Permanent, Annotations: b.opts.Annotations, PGData: b.pgdata, Owner: ownerOf(b.pgdata),
		BlockSize: b.facts.BlockSize, DataChecksums: b.facts.DataChecksums, FromStandby: srv.InRecovery,
	}
	if p := b.parent; p != nil {
		m.Type, m.Parent, m.ParentManifestSHA256 = repo.BackupIncremental, p.m.Name, p.sum
		m.Chain = append([]string{p.m.Name}, p.m.Chain...)
	}
	for oid, name := range b.dbNames {
		m.Databases = append(m.Databases, repo.Database{OID: oid, Name: name})
	}
	sort.Slice(m.Databases, func(i, j int) bool { return m.Databases[i].OID < m.Databases[j].OID })
	m.Hostname, _ = os.Hostname()
	m.Name = fmt.Sprintf("base_%s_%s", startTime.Format("20060102T150405Z"), m.StartWAL)
	return m
}

// uploadParts lists the data directory and stores it as parts.
func (b *pusher) uploadParts(ctx context.Context) error {
	spcDir := fmt.Sprintf("PG_%d_%d", b.srv.Version/10000, b.srv.CatVersion)
	walk, err := walkDataDir(b.pgdata, spcDir, b.spcNames)
	if err != nil {
		return err
	}
	b.m.Tablespaces = walk.Tablespaces
	slog.Debug("data directory listed", "files", len(walk.Base), "bytes", walk.Total, "ms", sinceMs(b.began))
	if b.parent != nil {
		b.up.inc = newIncremental(b.parent, b.facts.BlockSize)
		if err := b.up.inc.markNewDatabases(walk.all()); err != nil {
			return err
		}
	}
	began := time.Now()
	defer func() { b.copy = time.Since(began) }()
	plans := planParts(walk, partTarget(walk.Total, b.opts.PartSize, b.opts.Concurrency))
	b.up.prog = b.opts.Progress.Start("backup", walk.Total)
	b.parts, b.files, err = b.up.uploadParts(ctx, plans, b.opts.Concurrency)
	b.up.prog.Done()
	if err != nil {
		return err
	}
	slog.Debug("parts stored", "parts", len(b.parts), "ms", sinceMs(b.began))
	if b.parent != nil {
		logSummary(b.files)
		b.up.inc.logWhole()
	}
	return nil
}

// stop leaves backup mode and records where the backup ends.
func (b *pusher) stop(ctx context.Context) error {
	stop, err := b.srv.StopBackup(ctx)
	if err != nil {
		return err
	}
	slog.Debug("backup stopped", "stop_lsn", stop.LSN, "ms", sinceMs(b.began))
	m := b.m
	m.StopTime = time.Now().UTC()
	if ltli, err := pg.TimelineOfLabel(stop.Label); err != nil {
		return err
	} else if ltli != b.tli {
		return fmt.Errorf("%w: the server switched from timeline %d to %d during the backup: take it again", archive.ErrPostgres, b.tli, ltli)
	}
	m.StopLSN, m.StopWAL, m.StopNextXID = stop.LSN, stopSegment(b.tli, stop.LSN, m.SegmentSize), stop.NextXID
	m.BackupLabel, m.TablespaceMap = stop.Label, stop.TablespaceMap
	return nil
}

// uploadFinalPart stores the last part, which holds what only the stop
// call can give: backup_label, and PostgreSQL's own manifest of every file.
func (b *pusher) uploadFinalPart(ctx context.Context) error {
	m := b.m
	last := len(b.parts)
	label := memFile{Path: "backup_label", Data: []byte(m.BackupLabel)}
	labelFile, _ := writeMemTar(io.Discard, []memFile{label}, last, m.StopTime)
	files := append(b.files, labelFile...)
	pgm, err := pgManifest(files, b.tli, m.StartLSN, m.StopLSN)
	if err != nil {
		return err
	}
	final, finalFiles, err := b.up.uploadPart(ctx, last, 0, int64(len(label.Data)+len(pgm)), func(w io.Writer) ([]repo.File, error) {
		return writeMemTar(w, []memFile{label, {Path: pgManifestName, Data: pgm}}, last, m.StopTime)
	})
	if err != nil {
		return err
	}
	b.parts = append(b.parts, final)
	b.files = append(files[:len(files)-1], finalFiles...)
	return nil
}

// waitWAL waits for the WAL the backup needs to be in the store.
func (b *pusher) waitWAL(ctx context.Context) error {
	began := time.Now()
	defer func() { b.walWait = time.Since(began) }()
	if err := waitArchived(ctx, b.r, b.srv, b.m, b.opts.ArchiveTimeout); err != nil {
		return err
	}
	slog.Debug("WAL archived", "through", b.m.StopWAL, "ms", sinceMs(b.began))
	return nil
}

// writeManifest completes the manifest and writes it, create-if-absent:
// from then on the backup exists.
func (b *pusher) writeManifest(ctx context.Context) error {
	m := b.m
	m.Parts, m.Files, m.FileCount = b.parts, b.files, len(b.files)
	for _, p := range b.parts {
		m.StoredSize += p.StoredSize
	}
	for _, f := range b.files {
		m.DataSize += f.Size
	}
	if err := b.r.WriteManifest(ctx, m, true); err != nil {
		return err
	}
	b.ok = true
	return nil
}

func orLZ4(c codec.Compression) codec.Compression {
	if c == "" {
		return codec.LZ4
	}
	return c
}

// stopSegment is the last segment a backup needs: the one holding the byte
// before the stop LSN (the stop LSN is where the next record would start).
func stopSegment(tli uint32, stop archive.LSN, segSize int64) string {
	if stop > 0 {
		stop--
	}
	return archive.SegmentOf(tli, stop, segSize)
}

// ownerOf is who owns the data directory, for restore to hand the files
// back to.
func ownerOf(dir string) repo.FileOwner {
	var o repo.FileOwner
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
	err := st.List(ctx, repo.BackupPrefix+name+"/", cloud.ListOptions{}, func(cloud.ObjectInfo) error { return errFound })
	if errors.Is(err, errFound) {
		return fmt.Errorf("%w: %s already has objects under %s%s/: is another backup running?", archive.ErrConflict, st, repo.BackupPrefix, name)
	}
	return archive.StoreErr(err)
}

// sinceMs is a duration in milliseconds for logs.
func sinceMs(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
