// Package restore restores a base backup into a data directory and writes
// the recovery settings that make PostgreSQL replay the archived WAL to a
// target. It checks up front that the archive can get there.
package restore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Options tune restore.
type Options struct {
	Dest string
	// Backup is a backup name, or "" / "LATEST" to pick by the target.
	Backup string
	Target Target
	// Standby writes standby.signal (a replica following the archive)
	// instead of recovery.signal.
	Standby bool
	// TablespaceMap moves tablespaces: OID or name -> directory.
	TablespaceMap map[string]string
	Concurrency   int
	// Force allows a non-empty DEST, and non-empty directories named in
	// TablespaceMap: files of the backup overwrite what is there; nothing
	// else is deleted. A tablespace location taken from the manifest is
	// never forced: it must be absent or empty.
	Force bool
	// Owner is USER[:GROUP] to give the restored files to when restore
	// runs as root; "" takes the owner of an existing DEST. The owner the
	// manifest records is never used.
	Owner string
	// FetchArgv is restore_command without %f %p: this binary, "wal-fetch"
	// and the settings that reach the same store and key.
	FetchArgv []string
	// Progress reports the bytes written (nil: no report).
	Progress archive.NewProgress
	// ServerReads are the files FetchArgv makes restore_command read; run
	// as root for another owner, restore refuses them up front when that
	// owner cannot read them.
	ServerReads []ServerFile
	// Chosen, when set, is told which backup restore picked, with the
	// catalog it was picked from, once the archive is known to reach the
	// target and before anything is written. An error stops the restore;
	// the directories it returns are added to TablespaceMap. The drill uses
	// it to refuse a restore larger than its disk and to keep every
	// tablespace inside its own directory.
	Chosen func(m *repo.Manifest, cat *repo.Catalog) (map[string]string, error)
	// Delta rebuilds an existing, stopped data directory of the same
	// cluster: files that match the backup stay, the others are written,
	// what the backup does not have goes (see delta.go). DeltaByTime
	// matches by size and modification time instead of content.
	Delta, DeltaByTime bool
}

// Result says what restore did.
type Result struct {
	began       time.Time // of Run, for the debug log's phases
	Manifest    *repo.Manifest
	Dest        string
	Tablespaces []repo.Tablespace // where they were restored
	Settings    recoverySettings
	Bytes       int64
	Duration    time.Duration
	// Delta is what a delta restore kept, fetched and removed (nil for
	// a restore that is not one).
	Delta *DeltaStats
	// PartsRead and StoredRead are the parts downloaded whole (of every
	// link) and the stored bytes read (those of the parts a delta restore
	// read by ranges, PartsRanged, included: their block indexes and the
	// ranges fetched); PartsTotal and StoredTotal all there are.
	PartsRead, PartsTotal   int
	PartsRanged             int
	StoredRead, StoredTotal int64
}

// SettingsFile is where the recovery settings went.
func (r *Result) SettingsFile() string { return r.Settings.File }

// SignalFile is the signal file written, if any.
func (r *Result) SignalFile() string { return r.Settings.Signal }

// SettingLines are the recovery settings written.
func (r *Result) SettingLines() []string { return r.Settings.Lines }

// Files restore writes under a temporary name and puts in place only once
// every part of every backup of the chain has been read and authenticated:
// what makes a directory startable (pg_control), what tells PostgreSQL how
// to start (backup_label, tablespace_map) and the settings file restore
// appends to. Without pg_control a half-restored directory cannot be
// started by mistake; pg_control goes last of all.
const controlFile = "global/pg_control"

var deferredFiles = map[string]bool{
	controlFile: true, "backup_label": true, "tablespace_map": true,
	"postgresql.auto.conf": true, "recovery.conf": true,
}

// tempSuffix marks a file restore has written but not yet put in place.
const tempSuffix = ".walvault-restore"

// tempName is where the file at rel is written before it takes its name:
// beside it, in the same directory, so the rename is atomic. A name too
// long for a suffix gets a short one of its own.
func tempName(rel string) string {
	if len(path.Base(rel))+len(tempSuffix) <= 255 {
		return rel + tempSuffix
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(rel))
	return path.Join(path.Dir(rel), fmt.Sprintf(".walvault-restore-%016x", h.Sum64()))
}

// isTempName says whether rel is a name tempName gives.
func isTempName(rel string) bool {
	base := path.Base(rel)
	return strings.HasSuffix(base, tempSuffix) || strings.HasPrefix(base, ".walvault-restore-")
}

// Run restores a base backup into opts.Dest and writes the recovery
// settings. Bad input (a non-empty DEST, no fitting backup, a key that
// cannot decrypt) is reported before anything is written. A part or file
// that fails its checksum stops the restore with ErrIntegrity naming it;
// DEST then has no global/pg_control and cannot be started.
func Run(ctx context.Context, r *repo.Repo, opts Options) (*Result, error) {
	began := time.Now()
	if err := opts.Target.Validate(); err != nil {
		return nil, err
	}
	dest, err := filepath.Abs(opts.Dest)
	if err != nil {
		return nil, err
	}
	if err := checkDestMode(dest); err != nil {
		return nil, err
	}
	opts.Delta = opts.Delta || opts.DeltaByTime
	if !opts.Delta {
		if err := checkEmptyDir(dest, "DEST", opts.Force, "restore into an empty or new directory, pass --delta to rebuild it from the backup (files that match are kept, files the backup does not have are removed), or --force to write over it (files of the backup are overwritten, nothing else is removed)"); err != nil {
			return nil, err
		}
	}
	_, serr := os.Stat(dest)
	own, rootOwned, err := chooseOwner(opts.Owner, dest, serr == nil)
	if err != nil {
		return nil, err
	}
	if err := checkServerReads(own, opts.ServerReads); err != nil {
		return nil, err
	}
	m, cat, err := pickBackup(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	slog.Debug("restore: backup chosen, its WAL authenticated", "backup", m.Name, "seconds", time.Since(began).Seconds())
	if opts.Chosen != nil {
		more, err := opts.Chosen(m, cat)
		if err != nil {
			return nil, err
		}
		if len(more) > 0 {
			tmap := make(map[string]string, len(opts.TablespaceMap)+len(more))
			maps.Copy(tmap, opts.TablespaceMap)
			maps.Copy(tmap, more)
			opts.TablespaceMap = tmap
		}
	}
	if opts.Delta {
		if err := checkDeltaDest(dest, m); err != nil {
			return nil, err
		}
	}
	// A proof was checked on every object read, the manifest included,
	// unless the user allowed unsigned ones.
	authenticated := !r.AllowUnsigned
	spcs, err := mapTablespaces(m, opts.TablespaceMap, dest, opts.Force, authenticated, opts.Delta)
	if err != nil {
		return nil, err
	}
	if err := checkEntries(m, authenticated); err != nil {
		return nil, err
	}
	if err := preflightDecrypt(ctx, r, m); err != nil {
		return nil, err
	}
	var links []link
	var plan *chainPlan
	if m.Incremental() {
		if links, err = loadChain(ctx, r, m); err != nil {
			return nil, err
		}
		// A delta restore plans the chain once it knows what it keeps.
		if !opts.Delta {
			if plan, err = planChain(ctx, r, links, nil); err != nil {
				return nil, err
			}
		}
	}
	settings := renderRecovery(m.PGVersion, opts.FetchArgv, opts.Target, opts.Standby)
	// From here on we write.
	res := &Result{began: began, Manifest: m, Dest: dest, Tablespaces: spcs, Settings: settings, Bytes: m.DataSize}
	if err := write(ctx, r, m, links, plan, dest, spcs, settings, own, opts, res); err != nil {
		return nil, err
	}
	if rootOwned {
		slog.Warn("restore ran as root and the restored files belong to root, which PostgreSQL refuses to run as: chown -R them (DEST and the tablespace directories) to the server's user, or restore with --owner USER (or into a DEST that user owns)", "dest", dest)
	}
	res.Duration = time.Since(began)
	return res, nil
}

// pickBackup reads the bucket once (backups, WAL listing, histories),
// chooses the backup for the target, reads its whole manifest and checks
// that the archived WAL can bring it to the target.
func pickBackup(ctx context.Context, r *repo.Repo, opts Options) (*repo.Manifest, *repo.Catalog, error) {
	cat, err := r.LoadCatalog(ctx, repo.CatalogOptions{WAL: repo.WALOfBackups, History: true})
	if err != nil {
		return nil, nil, err
	}
	m, err := chooseBackup(cat, opts)
	if err != nil {
		return nil, nil, err
	}
	if m, err = r.ReadManifest(ctx, m.Name, false); err != nil {
		return nil, nil, err
	}
	if err := checkWAL(r, cat, m, opts.Target); err != nil {
		return nil, nil, err
	}
	// The listing said the WAL is there; its proofs say it is this
	// cluster's, written by the database host. One that fails is a gap.
	bad, err := cat.AuthenticateWAL(ctx, walToTarget(cat, m, opts.Target))
	if err != nil {
		return nil, nil, err
	}
	if len(bad) > 0 {
		for _, b := range bad {
			slog.Warn("WAL object fails authentication: taken as missing", "key", b.Key, "err", b.Err)
		}
		if err := checkWAL(r, cat, m, opts.Target); err != nil {
			return nil, nil, fmt.Errorf("%w (%d WAL object(s) fail authentication, the first %s: %s)", err, len(bad), bad[0].Key, bad[0].Err)
		}
	}
	return m, cat, nil
}

// write restores m into dest: the parts, then links, modes and owner, then
// the recovery settings, and global/pg_control last.
// An incremental backup is assembled from its chain as plan says.
func write(ctx context.Context, r *repo.Repo, m *repo.Manifest, links []link, plan *chainPlan, dest string, spcs []repo.Tablespace, settings recoverySettings, own *owner, opts Options, res *Result) error {
	x := &extractor{r: r, m: m, force: opts.Force || opts.Delta, roots: map[uint32]*os.Root{}, newRoots: map[uint32]bool{}, files: m.Index(), seen: map[string]bool{}, deferred: map[string]bool{}}
	defer x.closeRoots()
	if err := x.openRoots(dest, spcs); err != nil {
		return err
	}
	total := m.DataSize
	if opts.Delta {
		d, err := x.planDelta(ctx, opts.DeltaByTime, opts.Concurrency)
		if err != nil {
			return err
		}
		if plan == nil && links != nil {
			if plan, err = planChain(ctx, r, links, d.kept); err != nil {
				return err
			}
		}
		defer func() { _ = d.waitRemoved() }()
		if err := x.startDelta(d); err != nil {
			return err
		}
		total = d.stats.FetchedBytes
		res.Delta = &d.stats
	} else if opts.Force {
		if err := removeControl(dest); err != nil {
			return err
		}
	}
	slog.Debug("restore: ready to write", "seconds", time.Since(res.began).Seconds())
	res.PartsRead, res.PartsTotal, res.StoredRead, res.StoredTotal = x.partsRead(links, plan)
	x.prog = opts.Progress.Start("restore", total)
	var err error
	if plan != nil {
		err = x.assembleChain(ctx, plan, max(1, opts.Concurrency))
	} else {
		// The parts read by ranges and those read whole hold different
		// files: both at once.
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return x.fetchRanged(gctx, max(1, opts.Concurrency)) })
		g.Go(func() error { return x.extractAll(gctx, max(1, opts.Concurrency)) })
		err = g.Wait()
		if x.delta != nil {
			res.StoredRead += x.delta.fetched.Load()
			res.PartsRanged = len(x.delta.ranged)
		}
	}
	x.prog.Done()
	if err != nil {
		return err
	}
	slog.Debug("restore: parts written", "seconds", time.Since(res.began).Seconds())
	if err := x.delta.waitRemoved(); err != nil {
		return err
	}
	if err := x.finish(spcs, own); err != nil {
		return err
	}
	slog.Debug("restore: links, modes, owner and directories done", "seconds", time.Since(res.began).Seconds())
	// Every part of every link is authenticated: what makes the directory
	// a server's to start goes in place now, pg_control last.
	if err := x.placeDeferred(false); err != nil {
		return err
	}
	if err := writeRecovery(x.roots[0], settings, own); err != nil {
		return err
	}
	if err := x.placeDeferred(true); err != nil {
		return err
	}
	if err := fsutil.SyncDir(filepath.Join(dest, "global")); err != nil {
		return err
	}
	if opts.Delta {
		if err := endDelta(dest); err != nil {
			return err
		}
	}
	return fsutil.SyncDir(dest)
}

// partsRead counts the parts a restore downloads, of every link, and
// their stored bytes, against all the parts of the chain.
func (x *extractor) partsRead(links []link, plan *chainPlan) (read, total int, readBytes, totalBytes int64) {
	if plan != nil {
		for _, l := range plan.links {
			for _, p := range l.m.Parts {
				total++
				totalBytes += p.StoredSize
			}
		}
		for k := range plan.jobs {
			read++
			readBytes += plan.links[k[0]].m.Parts[k[1]].StoredSize
		}
		return read, total, readBytes, totalBytes
	}
	for i, p := range x.m.Parts {
		total++
		totalBytes += p.StoredSize
		if x.readsPart(i) {
			read++
			readBytes += p.StoredSize
		}
	}
	return read, total, readBytes, totalBytes
}

// removeControl takes an old global/pg_control out of a directory restored
// over (--force) before anything else is written, so a restore that fails
// midway never leaves a directory that starts, with old and new files
// mixed.
func removeControl(dest string) error {
	p := filepath.Join(dest, "global", "pg_control")
	switch err := os.Remove(p); {
	case err == nil:
		return fsutil.SyncDir(filepath.Dir(p))
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("removing the old %s before restoring over it: %w", p, err)
	}
}

// checkEmptyDir refuses a directory with anything in it, unless force;
// a running server's directory is refused even then.
// checkDestMode refuses an existing DEST PostgreSQL would not start on:
// restore never changes the mode of a directory that was there before, so
// the fix is the user's, and it is cheaper before the download than after.
func checkDestMode(dest string) error {
	st, err := os.Stat(dest)
	if err != nil || !st.IsDir() {
		return nil // absent: restore creates it 0700; other problems come next
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%w: DEST %s has mode %04o, and PostgreSQL starts only on a data directory of mode 0700 or 0750: run 'chmod 700 %s' (restore does not change a directory that existed), or restore into a new directory", archive.ErrBadInput, dest, perm, dest)
	}
	return nil
}

func checkEmptyDir(dir, what string, force bool, hint string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", archive.ErrBadInput, what, dir, err)
	}
	if len(ents) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		return fmt.Errorf("%w: %s %s has a postmaster.pid: a server may be running there; stop it and move the directory away", archive.ErrBadInput, what, dir)
	}
	if !force {
		return fmt.Errorf("%w: %s %s is not empty (%s, ...): %s", archive.ErrBadInput, what, dir, ents[0].Name(), hint)
	}
	slog.Warn("restoring into a non-empty directory (--force): files not in the backup are left as they are", "dir", dir)
	return nil
}

// preflightDecrypt opens the smallest part, so a missing or wrong key (or
// an archive that is not encrypted although an identity is configured) is
// reported before anything is written.
func preflightDecrypt(ctx context.Context, r *repo.Repo, m *repo.Manifest) error {
	small := 0
	for i, p := range m.Parts {
		if p.StoredSize < m.Parts[small].StoredSize {
			small = i
		}
	}
	key := repo.BackupKey(m.Name, m.Parts[small].Name)
	err := r.Load(ctx, key, repo.Want{Encrypted: repo.PartsMustBeEncrypted(r, m)}, func(io.Reader, cloud.ObjectInfo) error { return nil })
	if errors.Is(err, archive.ErrNotInArchive) {
		return fmt.Errorf("%w: %s in %s is missing: backup %s cannot be restored", archive.ErrIntegrity, key, r.Store, m.Name)
	}
	return err
}
