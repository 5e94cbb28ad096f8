package repo

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// Folder is what the store holds under one folder of backups/ or dumps/:
// its objects by file name, their stored size, and when the newest of
// them was written.
type Folder struct {
	Name    string
	Objects map[string]cloud.ObjectInfo // by file name in the folder
	Size    int64
	Newest  time.Time // the newest object's modification time
}

// Has says whether the folder holds file.
func (f *Folder) Has(file string) bool { _, ok := f.Objects[file]; return ok }

// ListFolders is the one way the folders under prefix (BackupPrefix,
// DumpPrefix) are listed: one listing, grouped by folder, sorted by name.
// A key that is not PREFIX<name>/<file> belongs to no folder and is left
// out.
func ListFolders(ctx context.Context, st cloud.Store, prefix string) ([]*Folder, error) {
	byName := map[string]*Folder{}
	err := st.List(ctx, prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		name, file, ok := strings.Cut(o.Key[len(prefix):], "/")
		if !ok || name == "" || file == "" {
			return nil
		}
		f := byName[name]
		if f == nil {
			f = &Folder{Name: name, Objects: map[string]cloud.ObjectInfo{}}
			byName[name] = f
		}
		f.Objects[file] = o
		f.Size += o.Size
		if o.ModTime.After(f.Newest) {
			f.Newest = o.ModTime
		}
		return nil
	})
	if err != nil {
		return nil, archive.StoreErr(fmt.Errorf("%s: listing %s: %w", st, prefix, err))
	}
	folders := make([]*Folder, 0, len(byName))
	for _, f := range byName {
		folders = append(folders, f)
	}
	sort.Slice(folders, func(i, j int) bool { return folders[i].Name < folders[j].Name })
	return folders, nil
}

// manifestReaders is how many manifests are read at once.
const manifestReaders = 8

// eachFolder calls read for every folder, manifestReaders at a time, and
// returns the first error.
func eachFolder[F any](ctx context.Context, folders []F, read func(context.Context, F) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(manifestReaders)
	for _, f := range folders {
		g.Go(func() error { return read(gctx, f) })
	}
	return g.Wait()
}
