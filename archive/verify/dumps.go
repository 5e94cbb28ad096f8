package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Dump is verify's finding for one logical dump (dumps/<name>/).
type Dump struct {
	Name       string    `json:"name"`
	Database   string    `json:"database"` // "" for a globals dump
	Kind       string    `json:"kind"`     // repo.DumpKindDatabase or repo.DumpKindGlobals ("" when the manifest cannot be trusted)
	StopTime   time.Time `json:"stop_time"`
	Checked    string    `json:"checked"` // "sizes" or "full"
	StoredSize int64     `json:"stored_size"`
	OK         bool      `json:"ok"`
	Problems   []Problem `json:"problems"`
}

// verifyDumps checks every dump: its manifest authenticates, its object is
// there with the stored size the manifest records and, with full, reads
// back to the manifest's SHA-256 and plain size. Dump folders without a
// manifest (interrupted dumps) are noted, not checked.
func verifyDumps(ctx context.Context, r *repo.Repo, full bool, rep *Report) error {
	folders, err := r.ListDumps(ctx)
	if err != nil {
		return err
	}
	if full {
		for _, f := range folders {
			if f.Manifest != nil && f.Manifest.Encrypted && len(r.Identities) == 0 {
				return fmt.Errorf("%w: dump %s is encrypted: a full check needs --identity-file (or check sizes only, without --full)", archive.ErrBadInput, f.Manifest.Name)
			}
		}
	}
	for _, f := range folders {
		switch {
		case f.Err != nil:
			d := &Dump{Name: f.Name, Checked: "sizes", Problems: []Problem{}}
			d.Problems = append(d.Problems, Problem{Object: repo.DumpKey(f.Name, repo.ManifestFile), Problem: trimWhere(f.Err)})
			rep.Dumps = append(rep.Dumps, d)
		case f.Manifest == nil:
			rep.IncompleteDumps = append(rep.IncompleteDumps, f.Name)
		default:
			d, err := verifyDump(ctx, r, f.Manifest, full)
			if err != nil {
				return err
			}
			rep.Dumps = append(rep.Dumps, d)
		}
	}
	return nil
}

// verifyDump checks one dump whose manifest authenticated.
func verifyDump(ctx context.Context, r *repo.Repo, m *repo.DumpManifest, full bool) (*Dump, error) {
	d := &Dump{Name: m.Name, Database: m.Database, Kind: m.Kind, StopTime: m.StopTime, Checked: "sizes", StoredSize: m.StoredSize, Problems: []Problem{}}
	key := repo.DumpKey(m.Name, repo.DumpFile)
	info, err := r.Store.Stat(ctx, key)
	switch {
	case errors.Is(err, cloud.ErrNotFound):
		d.Problems = append(d.Problems, Problem{Object: key, Problem: "missing"})
		return d, nil
	case err != nil:
		return nil, archive.StoreErr(fmt.Errorf("%s: %s: %w", r.Store, key, err))
	case info.Size != m.StoredSize:
		d.Problems = append(d.Problems, Problem{Object: key, Problem: fmt.Sprintf("is %d bytes, the manifest says %d: the stored dump is truncated or altered", info.Size, m.StoredSize)})
		return d, nil
	}
	if !full {
		return d, nil
	}
	d.Checked = "full"
	c := &partCheck{key: key}
	want := repo.Want{StoredSHA256: m.SHA256, StoredSize: m.StoredSize, Encrypted: m.Encrypted, MaxSize: max(m.Size, 1)}
	var n int64
	err = r.Load(ctx, key, want, func(rd io.Reader, _ cloud.ObjectInfo) error {
		var err error
		n, err = io.Copy(io.Discard, rd) // #nosec G110 -- bounded by want.MaxSize
		return err
	})
	if err == nil && n != m.Size {
		err = fmt.Errorf("%w: decodes to %d bytes, its manifest says %d", archive.ErrIntegrity, n, m.Size)
	}
	if errors.Is(err, archive.ErrNotInArchive) {
		c.bad("missing") // deleted since the size check
		err = nil
	}
	if err := c.readEnded(ctx, err, fmt.Sprintf("%s in %s", key, r.Store)); err != nil {
		return nil, err
	}
	d.Problems = append(d.Problems, c.probs...)
	return d, nil
}
