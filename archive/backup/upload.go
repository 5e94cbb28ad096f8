package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// uploader stores the parts of one backup and remembers their keys, so a
// backup that fails can remove them.
type uploader struct {
	r    *repo.Repo
	name string
	prog archive.Progress // set before the first upload
	inc  *incremental     // nil: a full backup

	mu      sync.Mutex
	written []string
}

// uploadParts stores the planned parts, concurrency at a time. Each part is
// one stream: files -> tar -> compress -> encrypt -> store, through pipes,
// so memory does not grow with the part size.
func (u *uploader) uploadParts(ctx context.Context, plans []partPlan, concurrency int) ([]repo.Part, []repo.File, error) {
	parts := make([]repo.Part, len(plans))
	files := make([][]repo.File, len(plans))
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
			p, f, err := u.uploadPart(gctx, i, plans[i].Tablespace, plans[i].Size, func(w io.Writer) ([]repo.File, error) {
				return writeTar(gctx, w, plans[i].Entries, i, buf, u.prog.AddRead, u.inc)
			})
			parts[i], files[i] = p, f
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	var all []repo.File
	for _, f := range files {
		all = append(all, f...)
	}
	return parts, all, nil
}

// uploadPart stores part idx, the tar stream produce writes. When the
// store fails transiently, its retry decorator starts the part over and
// produce runs again, re-reading the files; a failure of produce itself
// (a file that cannot be read) ends the part at once.
func (u *uploader) uploadPart(ctx context.Context, idx int, spc uint32, sizeHint int64, produce func(io.Writer) ([]repo.File, error)) (repo.Part, []repo.File, error) {
	key := repo.BackupKey(u.name, repo.PartName(idx))
	u.mu.Lock()
	u.written = append(u.written, key, repo.SumsKey(key), repo.IndexKey(key))
	u.mu.Unlock()
	src := &partSource{produce: produce}
	stored, sums, err := u.r.PutChunked(ctx, key, src.open, repo.PutOptions{
		PutOptions:  cloud.PutOptions{IfAbsent: true, SizeHint: sizeHint},
		Concurrency: codecConcurrency(),
		OnStored:    u.prog.AddStored,
		// A full backup's parts are indexed block by block, for delta
		// restore; an incremental's are read whole.
		Indexed: u.inc == nil,
	})
	if err != nil {
		if cause := src.cause(); cause != nil {
			return repo.Part{}, nil, cause // e.g. a file that cannot be read
		}
		if errors.Is(err, archive.ErrStore) {
			err = archive.StoreErr(fmt.Errorf("%s: uploading %s: %w", u.r.Store, key, err))
		}
		return repo.Part{}, nil, err
	}
	files := src.files()
	var index string
	var indexSize int64
	if stored.Index != nil {
		if index, indexSize, err = u.r.PutBlockIndex(ctx, key, stored.Index); err != nil {
			return repo.Part{}, nil, err
		}
	}
	n := 0
	for i, f := range files {
		if f.Type == repo.TypeFile && f.Stored != repo.StoredParent {
			n++
		}
		if index == "" {
			files[i].TarOffset = 0 // nothing to find it with
		}
	}
	part := repo.Part{Name: repo.PartName(idx), Tablespace: spc, Files: n, Size: stored.Size,
		StoredSize: stored.StoredSize, SHA256: stored.SHA256, Sums: sums, Index: index, IndexSize: indexSize}
	return part, files, nil
}

// errPartAborted ends a part's tar producer when its upload attempt ended.
var errPartAborted = errors.New("part upload ended")

// partSource opens a part's tar stream for r.Put, anew for each attempt:
// produce runs in a goroutine that writes into a pipe.
type partSource struct {
	produce func(io.Writer) ([]repo.File, error)
	last    *tarStream // the latest attempt's
}

func (s *partSource) open() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	t := &tarStream{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.list, t.err = s.produce(pw)
		pw.CloseWithError(t.err)
	}()
	s.last = t
	return t, nil
}

// files is what the latest attempt wrote: after a successful Put, the
// part's file list.
func (s *partSource) files() []repo.File {
	if s.last == nil {
		return nil
	}
	_ = s.last.Close()
	return s.last.list
}

// cause is the latest attempt's own failure, nil when it only stopped
// because its upload ended.
func (s *partSource) cause() error {
	if s.last == nil {
		return nil
	}
	return s.last.Close()
}

// tarStream is one attempt's tar stream. Close stops the producer and
// waits for it.
type tarStream struct {
	pr   *io.PipeReader
	done chan struct{}
	list []repo.File // set when done
	err  error       // set when done
}

func (t *tarStream) Read(p []byte) (int, error) { return t.pr.Read(p) }

// Close returns the producer's own error, if it failed.
func (t *tarStream) Close() error {
	_ = t.pr.CloseWithError(errPartAborted)
	<-t.done
	if t.err != nil && !errors.Is(t.err, errPartAborted) {
		return t.err
	}
	return nil
}

// codecConcurrency is the compressor's goroutines per part. Parts already
// run in parallel; a little more lets one big part (a 1 GiB table segment)
// use the spare cores, while capping memory (each lz4 goroutine holds two
// 4 MiB blocks).
func codecConcurrency() int { return min(runtime.GOMAXPROCS(0), 2) }

// cleanup removes the parts of a backup that failed, so they do not wait
// for retention. A killed walvault leaves them; they are never read
// without a manifest.
func (u *uploader) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	u.mu.Lock()
	keys := append([]string(nil), u.written...)
	u.mu.Unlock()
	for _, k := range keys {
		if err := u.r.Store.Delete(ctx, k); err != nil {
			slog.Warn("could not remove a part of the failed backup", "key", k, "err", err)
		}
	}
}
