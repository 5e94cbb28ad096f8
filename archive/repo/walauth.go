package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// A listing says what names the bucket holds, not who wrote them: a name
// planted there (an empty object, one without a proof, one signed for
// another cluster) would fill a gap in a PITR window, or pass for the
// newest archived segment. Commands whose verdict rests on WAL objects
// authenticate them first, from their metadata (a Stat each: the proof
// covers the key, the content's digest and size, and the cluster); their
// bodies are checked when they are read (wal-fetch, verify --full).

// BadObject is an object that fails authentication, and why.
type BadObject struct {
	Key string `json:"key"`
	Err string `json:"error"`
}

// walAuthConcurrency is how many Stats AuthenticateWAL has in flight.
const walAuthConcurrency = 16

// AuthenticateWAL checks the proofs of the listed WAL objects (segments,
// .partial and .backup files) whose keys want accepts (nil: all), and
// takes the ones that fail out of the catalog's listing, so that every
// later inventory sees them as absent: a gap where they were. It returns
// them, sorted by key, and adds them to c.BadWAL. Objects already checked
// by this catalog are not checked again. The store's failures stop it.
func (c *Catalog) AuthenticateWAL(ctx context.Context, want func(key string) bool) ([]BadObject, error) {
	if c.walChecked == nil {
		c.walChecked = map[string]bool{}
	}
	var keys []string
	for _, o := range c.wal {
		if o.Key >= HistoryPrefix && o.Key < HistoryPrefix+"\xff" || c.walChecked[o.Key] {
			continue // history files are read, and authenticated, whole
		}
		if want == nil || want(o.Key) {
			keys = append(keys, o.Key)
		}
	}
	var mu sync.Mutex
	bad := map[string]string{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(walAuthConcurrency)
	for _, k := range keys {
		g.Go(func() error {
			err := c.r.authenticateMeta(gctx, k)
			switch {
			case err == nil:
			case errors.Is(err, archive.ErrStore), archive.IsContextErr(err):
				return err
			default:
				mu.Lock()
				bad[k] = archive.OneLine(err.Error())
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, k := range keys {
		c.walChecked[k] = true
	}
	out := make([]BadObject, 0, len(bad))
	for k, e := range bad {
		out = append(out, BadObject{Key: k, Err: e})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	c.DropWAL(out)
	return out, nil
}

// DropWAL takes bad out of the catalog's WAL listing, so that every later
// inventory sees them as absent, and adds them to c.BadWAL.
func (c *Catalog) DropWAL(bad []BadObject) {
	if len(bad) == 0 {
		return
	}
	drop := make(map[string]bool, len(bad))
	for _, b := range bad {
		drop[b.Key] = true
	}
	kept := c.wal[:0]
	for _, o := range c.wal {
		if !drop[o.Key] {
			kept = append(kept, o)
		}
	}
	c.wal, c.inv = kept, nil
	c.BadWAL = append(c.BadWAL, bad...)
}

// authenticateMeta checks the proof of the object at key from its
// metadata: a store failure is tagged archive.ErrStore, an object gone
// since the listing is ErrNotInArchive, anything else fails
// authentication.
func (r *Repo) authenticateMeta(ctx context.Context, key string) error {
	info, err := r.Store.Stat(ctx, key)
	switch {
	case errors.Is(err, cloud.ErrNotFound):
		return fmt.Errorf("%s: %w", key, archive.ErrNotInArchive)
	case err != nil:
		return archive.StoreErr(fmt.Errorf("%s: reading %s: %w", r.Store, key, err))
	}
	if r.AllowUnsigned {
		// Reading without proofs (an archive from before them): nothing to
		// check but that the object could be what it says.
		if info.Size == 0 {
			return fmt.Errorf("%w: it is empty", archive.ErrIntegrity)
		}
		return nil
	}
	if _, err = r.checkProof(key, info.Metadata); err == nil {
		return nil
	}
	// Damaged in the primary: a fallback's copy may hold.
	others, note := cloud.FallbackStores(r.Store)
	for _, o := range others {
		if oi, oerr := o.Stat(ctx, key); oerr == nil {
			if _, perr := r.checkProof(key, oi.Metadata); perr == nil {
				note(key, o, err)
				return nil
			}
		}
	}
	return err
}
