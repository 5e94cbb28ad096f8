package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// What one copy of a backup, a dump, a WAL file or cluster.json is made
// of, in the order that keeps the destination an archive at every step: a
// backup's parts and sums objects first, then its mark records, its
// manifest last (a backup exists once its manifest does, in the copy as
// in the source); a dump's object and sums, then its manifest.

// CopyOptions tune the copy of a set of objects.
type CopyOptions struct {
	// Concurrency bounds the objects copied at once (at least 1).
	Concurrency int
	// Have lists what the destination holds already, by key: an object
	// there with the size the source lists is not copied again (a resumed
	// or repeated copy). nil: nothing is known, every object is sent (the
	// destination's write-once check settles each).
	Have map[string]cloud.ObjectInfo
	// OnStored is told the bytes sent, as they go; OnObject each object
	// copied or found there. Both are called by the copies running at
	// once: they must be safe for concurrent use.
	OnStored func(n int64)
	OnObject func(CopyResult)
}

func (o CopyOptions) has(key string, size int64) bool {
	got, ok := o.Have[key]
	return ok && got.Size == size
}

func (o CopyOptions) done(res CopyResult) {
	if o.OnObject != nil {
		o.OnObject(res)
	}
}

// copyOne is CopyObject with the options' callbacks.
func (r *Repo) copyOne(ctx context.Context, dst cloud.Store, key string, check CopyCheck, opts CopyOptions) (CopyResult, error) {
	res, err := r.CopyObject(ctx, dst, key, check, opts.OnStored)
	if err == nil {
		opts.done(res)
	}
	return res, err
}

// CopyCluster copies cluster.json to dst unless dst has one, which must
// then name the same cluster. It comes first: every reader of dst binds
// to it.
func (r *Repo) CopyCluster(ctx context.Context, dst *Repo) (bool, error) {
	src, ok, err := r.ReadCluster(ctx)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%w: %s has no %s: nothing was ever archived there", archive.ErrNotInArchive, r.Store, ClusterKey)
	}
	got, ok, err := dst.ReadCluster(ctx)
	if err != nil {
		return false, fmt.Errorf("the destination's %s: %w", ClusterKey, err)
	}
	if ok {
		if got.SystemIdentifier != src.SystemIdentifier {
			return false, fmt.Errorf("%w: %s belongs to the cluster with system identifier %s, %s to %s: copy into an empty prefix", archive.ErrOtherCluster, dst.Store, got.SystemIdentifier, r.Store, src.SystemIdentifier)
		}
		return false, nil
	}
	strict := *r
	strict.Cluster = "" // cluster.json names its cluster itself
	_, err = strict.CopyObject(ctx, dst.Store, ClusterKey, CopyCheck{Proof: &Want{Proof: true, MaxSize: MaxClusterBytes}}, nil)
	return err == nil, err
}

// WALWant is how a WAL or history object is authenticated when copied:
// as wal-fetch reads it (with segCap, the most a segment may decode to).
func WALWant(key string, segCap int64) *Want {
	w := &Want{Proof: true, ContentFromMeta: true, Encrypted: true, MaxSize: segCap}
	if strings.HasPrefix(key, HistoryPrefix) {
		w.MaxSize = MaxHistoryBytes
	}
	return w
}

// CopyWAL copies one WAL or history object.
func (r *Repo) CopyWAL(ctx context.Context, dst cloud.Store, key string, segCap int64, opts CopyOptions) (CopyResult, error) {
	return r.copyOne(ctx, dst, key, CopyCheck{Proof: WALWant(key, segCap)}, opts)
}

// CopyBackup copies backup m, whose folder in r's store is f, to dst: its
// parts, their sums objects and block indexes (Concurrency at a time), then its mark
// records, then its manifest, whose SHA-256 must be the one read (sum).
// Objects opts.Have shows are left. An incremental's ancestors are the
// caller's to copy first.
func (r *Repo) CopyBackup(ctx context.Context, dst cloud.Store, m *Manifest, f *Folder, sum string, opts CopyOptions) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(opts.Concurrency, 1))
	for _, p := range m.Parts {
		g.Go(func() error {
			key := BackupKey(m.Name, p.Name)
			if err := r.copyChunked(gctx, dst, key, p.SHA256, p.StoredSize, p.Sums, opts); err != nil {
				return err
			}
			if p.Index == "" || opts.has(IndexKey(key), p.IndexSize) {
				return nil
			}
			_, err := r.copyOne(gctx, dst, IndexKey(key), CopyCheck{SHA256: p.Index, Size: p.IndexSize}, opts)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var marks []string
	for file, o := range f.Objects {
		if strings.HasPrefix(file, MarkPrefix) && !opts.has(BackupKey(m.Name, file), o.Size) {
			marks = append(marks, file)
		}
	}
	sort.Strings(marks)
	for _, file := range marks {
		_, err := r.copyOne(ctx, dst, BackupKey(m.Name, file), CopyCheck{Proof: &Want{Proof: true, MaxSize: maxMarkBytes}}, opts)
		if err != nil && !errors.Is(err, archive.ErrNotInArchive) {
			return err
		}
	}
	key := BackupKey(m.Name, ManifestFile)
	if o, ok := f.Objects[ManifestFile]; ok && opts.has(key, o.Size) {
		return nil
	}
	size := f.Objects[ManifestFile].Size
	_, err := r.copyOne(ctx, dst, key, CopyCheck{SHA256: sum, Size: size, Proof: &Want{Proof: true, MaxSize: MaxManifestBytes}}, opts)
	return err
}

// CopyDump copies dump m to dst: its object and sums object, then its
// manifest, last.
func (r *Repo) CopyDump(ctx context.Context, dst cloud.Store, m *DumpManifest, f *Folder, opts CopyOptions) error {
	if err := r.copyChunked(ctx, dst, DumpKey(m.Name, "dump"), m.SHA256, m.StoredSize, m.Sums, opts); err != nil {
		return err
	}
	key := DumpKey(m.Name, ManifestFile)
	if o, ok := f.Objects[ManifestFile]; ok && opts.has(key, o.Size) {
		return nil
	}
	_, err := r.copyOne(ctx, dst, key, CopyCheck{Proof: &Want{Proof: true, MaxSize: MaxDumpManifestBytes}}, opts)
	return err
}

// copyChunked copies a part or a dump (key: stored bytes hashing to sha
// over size) and its sums object (of SHA-256 sumsSHA; "" for an object
// stored before walvault recorded sums, which is then checked whole, at
// its end, before the destination keeps it). The sums object goes first:
// its bytes, read once, are the part's check.
func (r *Repo) copyChunked(ctx context.Context, dst cloud.Store, key, sha string, size int64, sumsSHA string, opts CopyOptions) error {
	skey := SumsKey(key)
	needPart := !opts.has(key, size)
	var sums *Sums
	if sumsSHA != "" && !opts.has(skey, SumsLen(size)) {
		res, err := r.copyOne(ctx, dst, skey, CopyCheck{SHA256: sumsSHA, Size: SumsLen(size), Keep: needPart}, opts)
		if err != nil {
			return err
		}
		if needPart && res.Bytes != nil {
			if sums, err = ParseSums(res.Bytes, size); err != nil {
				return fmt.Errorf("%w: %s in %s: %w", archive.ErrIntegrity, skey, r.Store, err)
			}
		}
	}
	if !needPart {
		return nil
	}
	if sumsSHA != "" && sums == nil {
		var err error
		if sums, err = r.LoadSums(ctx, key, sumsSHA, size); err != nil {
			return err
		}
	}
	_, err := r.copyOne(ctx, dst, key, CopyCheck{SHA256: sha, Size: size, Sums: sums}, opts)
	return err
}

// ListWAL lists every object under wal/ (history files included).
func (r *Repo) ListWAL(ctx context.Context) ([]cloud.ObjectInfo, error) {
	return r.listWAL(ctx, nil)
}

// ListAll lists every object of the store under prefix, by key.
func ListAll(ctx context.Context, st cloud.Store, prefix string) (map[string]cloud.ObjectInfo, error) {
	out := map[string]cloud.ObjectInfo{}
	var mu sync.Mutex
	err := st.List(ctx, prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		mu.Lock()
		defer mu.Unlock()
		out[o.Key] = o
		return nil
	})
	if err != nil {
		return nil, archive.StoreErr(fmt.Errorf("%s: listing %s: %w", st, prefix, err))
	}
	return out, nil
}

// CopyBackupChain copies backup name, with every ancestor dst lacks,
// parents first, to dst (cluster.json first): what backup-push does for a
// second store once the primary holds the backup.
func (r *Repo) CopyBackupChain(ctx context.Context, dst *Repo, name string, opts CopyOptions) error {
	if _, err := r.CopyCluster(ctx, dst); err != nil {
		return err
	}
	cat, err := r.LoadCatalog(ctx, CatalogOptions{})
	if err != nil {
		return err
	}
	f := cat.Folder(name)
	if f == nil || f.Manifest == nil {
		if f != nil && f.Err != nil {
			return f.Err
		}
		return fmt.Errorf("backup %s: %w", name, archive.ErrNotInArchive)
	}
	if opts.Have, err = ListAll(ctx, dst.Store, BackupPrefix); err != nil {
		return err
	}
	chain := cat.Ancestors(f.Manifest)
	for i := len(chain) - 1; i >= 0; i-- {
		af := cat.Folder(chain[i].Name)
		if err := r.CopyBackup(ctx, dst.Store, chain[i], &af.Folder, af.ManifestSHA256, opts); err != nil {
			return err
		}
	}
	return r.CopyBackup(ctx, dst.Store, f.Manifest, &f.Folder, f.ManifestSHA256, opts)
}

// CopyDumpNamed copies dump name to dst (cluster.json first): what
// dump-push does for a second store once the primary holds the dump.
func (r *Repo) CopyDumpNamed(ctx context.Context, dst *Repo, name string, opts CopyOptions) error {
	if _, err := r.CopyCluster(ctx, dst); err != nil {
		return err
	}
	m, err := r.ReadDumpManifest(ctx, name)
	if err != nil {
		return err
	}
	f := &Folder{Name: name, Objects: map[string]cloud.ObjectInfo{}}
	err = r.Store.List(ctx, DumpPrefix+name+"/", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		f.Objects[o.Key[len(DumpPrefix+name+"/"):]] = o
		return nil
	})
	if err != nil {
		return archive.StoreErr(fmt.Errorf("%s: listing %s: %w", r.Store, DumpPrefix+name+"/", err))
	}
	return r.CopyDump(ctx, dst.Store, m, f, opts)
}
