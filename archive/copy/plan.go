package copy

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// MakePlan reads what src holds (every manifest authenticated) and lists
// dst, and decides what to copy.
func MakePlan(ctx context.Context, src, dst *repo.Repo, opts Options) (*Plan, error) {
	plan := &Plan{Source: src.Store.String(), Dest: dst.Store.String()}
	if src.Store.String() == dst.Store.String() {
		return nil, fmt.Errorf("%w: the source and the destination are the same store (%s)", archive.ErrBadInput, src.Store)
	}
	ci, ok, err := src.ReadCluster(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s has no %s: nothing was ever archived there, so there is nothing to copy (check --store)", archive.ErrBadInput, src.Store, repo.ClusterKey)
	}
	src.Cluster = ci.SystemIdentifier
	got, ok, err := dst.ReadCluster(ctx)
	if err != nil {
		return nil, fmt.Errorf("the destination's %s: %w", repo.ClusterKey, err)
	}
	if ok && got.SystemIdentifier != ci.SystemIdentifier {
		return nil, fmt.Errorf("%w: %s belongs to the cluster with system identifier %s, the source %s to %s: copy into an empty prefix", archive.ErrOtherCluster, dst.Store, got.SystemIdentifier, src.Store, ci.SystemIdentifier)
	}
	plan.Cluster = !ok
	if ok {
		plan.Present++
	}
	dst.Cluster = ci.SystemIdentifier
	have, err := repo.ListAll(ctx, dst.Store, "")
	if err != nil {
		return nil, err
	}
	var starts []string // start segments of the backups copied, for their WAL
	if !opts.WALOnly {
		if starts, err = planBackups(ctx, src, plan, have, opts); err != nil {
			return nil, err
		}
		if opts.Backup == "" {
			if err := planDumps(ctx, src, plan, have, opts); err != nil {
				return nil, err
			}
		}
	}
	if err := planWAL(ctx, src, plan, have, opts, starts); err != nil {
		return nil, err
	}
	if plan.Cluster {
		plan.Objects++
	}
	return plan, nil
}

// planBackups picks the backups to copy, each with its whole chain, and
// returns the range of WAL they need: their start segments (with --backup,
// also the stop segment).
func planBackups(ctx context.Context, src *repo.Repo, plan *Plan, have map[string]cloud.ObjectInfo, opts Options) ([]string, error) {
	cat, err := src.LoadCatalog(ctx, repo.CatalogOptions{})
	if err != nil {
		return nil, err
	}
	want := map[string]*repo.Manifest{}
	var walFrom []string
	pick := func(m *repo.Manifest) {
		want[m.Name] = m
		for _, a := range cat.Ancestors(m) {
			want[a.Name] = a
		}
	}
	switch {
	case opts.Backup != "":
		f := cat.Folder(opts.Backup)
		if f == nil || f.Backup() == nil && f.Err == nil {
			return nil, fmt.Errorf("%w: backup %s is not in %s (walvault backup-list shows the backups)", archive.ErrBadInput, opts.Backup, src.Store)
		}
		if f.Manifest == nil {
			return nil, f.Err
		}
		pick(f.Manifest)
		walFrom = append(walFrom, f.Manifest.StartWAL, "-"+f.Manifest.StopWAL)
	default:
		for _, m := range cat.Backups() {
			if opts.Since.IsZero() || !m.StopTime.Before(opts.Since) {
				pick(m)
			}
		}
		for _, f := range cat.Folders {
			if f.Err != nil && (opts.Since.IsZero() || f.Newest.IsZero() || !f.Newest.Before(opts.Since)) {
				plan.Skipped = append(plan.Skipped, "backup "+f.Name+": "+archive.OneLine(f.Err.Error()))
			}
		}
	}
	list := make([]*repo.Manifest, 0, len(want))
	for _, m := range want {
		list = append(list, m)
	}
	// Parents first: a child's chain is its parent's and one more.
	sort.SliceStable(list, func(i, j int) bool {
		if len(list[i].Chain) != len(list[j].Chain) {
			return len(list[i].Chain) < len(list[j].Chain)
		}
		if !list[i].StopTime.Equal(list[j].StopTime) {
			return list[i].StopTime.Before(list[j].StopTime)
		}
		return list[i].Name < list[j].Name
	})
	for _, m := range list {
		f := cat.Folder(m.Name)
		b := &Backup{Manifest: m, Folder: &f.Folder, Sum: f.ManifestSHA256}
		for file, o := range f.Objects {
			if !backupObject(m, file) {
				continue
			}
			if h, ok := have[repo.BackupKey(m.Name, file)]; ok && h.Size == o.Size {
				plan.Present++
				continue
			}
			b.Objects++
			b.Bytes += o.Size
		}
		if opts.Backup == "" {
			walFrom = append(walFrom, m.StartWAL)
		}
		if b.Objects > 0 {
			plan.Backups = append(plan.Backups, b)
			plan.Objects += b.Objects
			plan.Bytes += b.Bytes
		}
	}
	return walFrom, nil
}

// backupObject says whether file of backup m's folder is part of its copy:
// its parts, their sums and block indexes, its mark records and its manifest (never a
// deleting.json, nor what walvault does not write).
func backupObject(m *repo.Manifest, file string) bool {
	if file == repo.ManifestFile || strings.HasPrefix(file, repo.MarkPrefix) {
		return true
	}
	for _, p := range m.Parts {
		if file == p.Name || p.Sums != "" && file == p.Name+repo.SumsSuffix || p.Index != "" && file == p.Name+repo.IndexSuffix {
			return true
		}
	}
	return false
}

func planDumps(ctx context.Context, src *repo.Repo, plan *Plan, have map[string]cloud.ObjectInfo, opts Options) error {
	folders, err := src.ListDumps(ctx)
	if err != nil {
		return err
	}
	for _, f := range folders {
		if f.Err != nil {
			plan.Skipped = append(plan.Skipped, "dump "+f.Name+": "+archive.OneLine(f.Err.Error()))
			continue
		}
		m := f.Manifest
		if m == nil || !opts.Since.IsZero() && m.StopTime.Before(opts.Since) {
			continue
		}
		d := &Dump{Manifest: m, Folder: &f.Folder}
		for _, file := range []string{"dump", "dump" + repo.SumsSuffix, repo.ManifestFile} {
			o, ok := f.Objects[file]
			if !ok {
				continue
			}
			if h, ok := have[repo.DumpKey(m.Name, file)]; ok && h.Size == o.Size {
				plan.Present++
				continue
			}
			d.Objects++
			d.Bytes += o.Size
		}
		if d.Objects > 0 {
			plan.Dumps = append(plan.Dumps, d)
			plan.Objects += d.Objects
			plan.Bytes += d.Bytes
		}
	}
	return nil
}

// planWAL picks the WAL and history files to copy: with --backup, the
// segments from its start to its stop (and every history file); with
// --since, what was stored since and everything from the oldest copied
// backup's start; else everything.
func planWAL(ctx context.Context, src *repo.Repo, plan *Plan, have map[string]cloud.ObjectInfo, opts Options, walFrom []string) error {
	list, err := src.ListWAL(ctx)
	if err != nil {
		return err
	}
	from, to := ^uint64(0), ^uint64(0)
	for _, name := range walFrom {
		if stop, ok := strings.CutPrefix(name, "-"); ok {
			to, _ = walPos(stop)
			continue
		}
		if p, ok := walPos(name); ok && p < from {
			from = p
		}
	}
	for _, o := range list {
		name := o.Key[strings.LastIndexByte(o.Key, '/')+1:]
		wf, err := archive.ParseWALName(name)
		if err != nil || repo.WALKey(wf) != o.Key {
			continue // not walvault's: never copied
		}
		if !walWanted(o, wf, opts, from, to) {
			continue
		}
		if h, ok := have[o.Key]; ok && h.Size == o.Size {
			plan.Present++
			continue
		}
		plan.WAL = append(plan.WAL, o)
		plan.Objects++
		plan.Bytes += o.Size
	}
	sortWAL(plan.WAL)
	return nil
}

func walWanted(o cloud.ObjectInfo, wf archive.WALFile, opts Options, from, to uint64) bool {
	if wf.Kind == archive.KindHistory {
		return true
	}
	pos, _ := walPos(wf.Name)
	switch {
	case opts.Backup != "":
		return pos >= from && pos <= to
	case opts.Since.IsZero():
		return true
	}
	return !o.ModTime.Before(opts.Since) || from != ^uint64(0) && pos >= from
}
