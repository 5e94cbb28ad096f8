// Package copy is walvault copy: it copies what one store holds (backups
// with their whole chains, WAL and history files, dumps) into another that
// lacks it, every object as stored and authenticated on its way (see
// repo.CopyObject), write-once, so that the destination is an archive that
// verifies with the same verify key. Interrupted, it is run again: what
// the destination holds is not copied twice, and a backup (a dump) exists
// there only once its manifest landed, last.
package copy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// Options say what to copy.
type Options struct {
	// Backup copies that backup (with its chain) and the WAL that makes
	// it consistent, nothing else.
	Backup string
	// Since, when set, copies the backups and dumps that finished then or
	// later (with their chains, and the WAL from the oldest one's start),
	// and the WAL stored then or later.
	Since time.Time
	// WALOnly copies WAL and history files only.
	WALOnly bool
	// DryRun plans and copies nothing.
	DryRun bool
	// Concurrency bounds the objects copied at once.
	Concurrency int
	// Progress reports the bytes copied.
	Progress archive.NewProgress
	Log      *slog.Logger
}

// Plan is what a copy does.
type Plan struct {
	Source, Dest string
	// Cluster: cluster.json goes first.
	Cluster bool
	Backups []*Backup
	WAL     []cloud.ObjectInfo // history files first, then by name
	Dumps   []*Dump
	// Objects and Bytes are what is to be copied; Present what the
	// destination holds already of what was asked for.
	Objects, Present int
	Bytes            int64
	// Skipped are backups and dumps of the source that cannot be copied
	// (their manifest fails authentication, their chain is broken), with
	// the reason.
	Skipped []string
}

// Backup is a backup to copy, with what of it the destination lacks.
type Backup struct {
	Manifest *repo.Manifest
	Folder   *repo.Folder
	Sum      string
	Objects  int
	Bytes    int64
}

// Dump is a dump to copy.
type Dump struct {
	Manifest *repo.DumpManifest
	Folder   *repo.Folder
	Objects  int
	Bytes    int64
}

// Result is what a copy did.
type Result struct {
	Plan            *Plan
	Objects, Bytes  int64
	Elapsed         time.Duration
	Failed          []string // objects (or backups, dumps) that failed their check, with the reason
	BackupsComplete []string
	DumpsComplete   []string
}

// ErrIncomplete: some objects could not be copied (they fail their check in
// the source); Result.Failed names them.
var ErrIncomplete = fmt.Errorf("%w: the copy is incomplete", archive.ErrIntegrity)

// Run copies what src holds and dst lacks, as opts says.
func Run(ctx context.Context, src, dst *repo.Repo, opts Options) (*Result, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	opts.Concurrency = max(opts.Concurrency, 1)
	start := time.Now()
	plan, err := MakePlan(ctx, src, dst, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: plan}
	if opts.DryRun {
		return res, nil
	}
	prog := opts.Progress.Start("copy", plan.Bytes)
	defer prog.Done()
	var objects, bytes atomic.Int64
	copts := repo.CopyOptions{Concurrency: opts.Concurrency,
		OnStored: func(n int64) { bytes.Add(n); prog.AddRead(n); prog.AddStored(n) },
		OnObject: func(r repo.CopyResult) {
			if !r.Already {
				objects.Add(1)
			}
		}}
	if plan.Cluster {
		if _, err := src.CopyCluster(ctx, dst); err != nil {
			return res, err
		}
		objects.Add(1)
	}
	if err := copyWAL(ctx, src, dst, plan, copts, res, opts.Log); err != nil {
		return res, err
	}
	if err := copyBackups(ctx, src, dst, plan, copts, res, opts.Log); err != nil {
		return res, err
	}
	if err := copyDumps(ctx, src, dst, plan, copts, res, opts.Log); err != nil {
		return res, err
	}
	res.Objects, res.Bytes, res.Elapsed = objects.Load(), bytes.Load(), time.Since(start)
	if len(res.Failed) > 0 || len(plan.Skipped) > 0 {
		return res, fmt.Errorf("%w: %d object(s) failed their check and %d backup(s) or dump(s) could not be copied (%s): the rest was copied", ErrIncomplete,
			len(res.Failed), len(plan.Skipped), strings.Join(append(append([]string{}, res.Failed...), plan.Skipped...), "; "))
	}
	return res, nil
}

// failed says whether err is an object's own fault (it fails its check, or
// vanished from the source since the listing), which the copy records and
// goes past; anything else (the store, a conflict, cancellation) stops it.
func failed(err error) bool {
	return errors.Is(err, archive.ErrIntegrity) || errors.Is(err, archive.ErrNotInArchive) ||
		errors.Is(err, crypto.ErrBadProof) || errors.Is(err, codec.ErrCorrupt)
}

// copyWAL copies the planned WAL, history files first, concurrency at a
// time, segments in order of their names within that.
func copyWAL(ctx context.Context, src, dst *repo.Repo, plan *Plan, opts repo.CopyOptions, res *Result, log *slog.Logger) error {
	segCap := src.SegmentSizeCap(ctx)
	var mu sync.Mutex
	run := func(list []cloud.ObjectInfo) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Concurrency)
		for _, o := range list {
			g.Go(func() error {
				_, err := src.CopyWAL(gctx, dst.Store, o.Key, segCap, opts)
				if errors.Is(err, archive.ErrNotInArchive) {
					log.Debug("not copied: gone from the source since it was listed", "object", o.Key)
					return nil
				}
				if err != nil && failed(err) {
					log.Warn("not copied: it fails its check", "object", o.Key, "err", archive.OneLine(err.Error()))
					mu.Lock()
					res.Failed = append(res.Failed, o.Key+": "+archive.OneLine(err.Error()))
					mu.Unlock()
					return nil
				}
				if repo.IsKeyErr(err) {
					return fmt.Errorf("%w (copy authenticates each WAL object by reading it as wal-fetch does: an encrypted archive needs --identity-file)", err)
				}
				return err
			})
		}
		return g.Wait()
	}
	var hist, segs []cloud.ObjectInfo
	for _, o := range plan.WAL {
		if strings.HasPrefix(o.Key, repo.HistoryPrefix) {
			hist = append(hist, o)
		} else {
			segs = append(segs, o)
		}
	}
	if err := run(hist); err != nil {
		return err
	}
	return run(segs)
}

// copyBackups copies the planned backups in chain order, parents first; a
// backup whose copy failed leaves its descendants out.
func copyBackups(ctx context.Context, src, dst *repo.Repo, plan *Plan, opts repo.CopyOptions, res *Result, log *slog.Logger) error {
	bad := map[string]bool{}
	for _, b := range plan.Backups {
		m := b.Manifest
		if m.Parent != "" && bad[m.Parent] {
			bad[m.Name] = true
			res.Failed = append(res.Failed, "backup "+m.Name+": its parent "+m.Parent+" could not be copied")
			continue
		}
		err := src.CopyBackup(ctx, dst.Store, m, b.Folder, b.Sum, opts)
		switch {
		case err == nil:
			res.BackupsComplete = append(res.BackupsComplete, m.Name)
			log.Info("backup copied", "backup", m.Name)
		case failed(err):
			bad[m.Name] = true
			log.Warn("backup not copied: an object fails its check", "backup", m.Name, "err", archive.OneLine(err.Error()))
			res.Failed = append(res.Failed, "backup "+m.Name+": "+archive.OneLine(err.Error()))
		default:
			return err
		}
	}
	return nil
}

func copyDumps(ctx context.Context, src, dst *repo.Repo, plan *Plan, opts repo.CopyOptions, res *Result, log *slog.Logger) error {
	for _, d := range plan.Dumps {
		err := src.CopyDump(ctx, dst.Store, d.Manifest, d.Folder, opts)
		switch {
		case err == nil:
			res.DumpsComplete = append(res.DumpsComplete, d.Manifest.Name)
			log.Info("dump copied", "dump", d.Manifest.Name)
		case failed(err):
			log.Warn("dump not copied: an object fails its check", "dump", d.Manifest.Name, "err", archive.OneLine(err.Error()))
			res.Failed = append(res.Failed, "dump "+d.Manifest.Name+": "+archive.OneLine(err.Error()))
		default:
			return err
		}
	}
	return nil
}

// walPos orders WAL names by position, whatever their timeline.
func walPos(name string) (uint64, bool) {
	wf, err := archive.ParseWALName(name)
	if err != nil || wf.Kind == archive.KindHistory {
		return 0, false
	}
	return uint64(wf.Log)<<32 | uint64(wf.Seg), true
}

func sortWAL(list []cloud.ObjectInfo) {
	sort.Slice(list, func(i, j int) bool {
		hi, hj := strings.HasPrefix(list[i].Key, repo.HistoryPrefix), strings.HasPrefix(list[j].Key, repo.HistoryPrefix)
		if hi != hj {
			return hi
		}
		return list[i].Key < list[j].Key
	})
}
