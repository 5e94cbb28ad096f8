package retention

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// Delete plans around object locks (lock-days): it never asks the store
// to delete an object before its retain-until date. In a store that can
// lock objects, each object a plan would delete is stated first (its
// retain-until date is not in listings): a backup by its manifest, the
// last object it writes and so the last to be unlocked; each WAL object
// and each object of a folder without a manifest by itself. A locked
// backup is kept, with its chain and the WAL it needs, saying until when;
// locked WAL stays, each run saying until when; delete NAME of a locked
// backup is refused with the date. The cost is one HEAD request per object
// the plan would delete, as many as the deletes themselves, and none in a
// store that cannot lock (file://, or a bucket without Object Lock).

// statConcurrency is how many objects are stated at once.
const statConcurrency = 8

// locks are the retain-until dates of the objects a plan looked at.
type locks struct {
	kind  string // "S3 Object Lock"...; "" when the store cannot lock
	st    cloud.Store
	now   time.Time
	mu    sync.Mutex
	until map[string]time.Time // key -> a retain-until date after now
}

// newLocks asks the store whether it can lock objects. When it cannot
// tell (its lock settings cannot be read), the plan states objects as if
// it could.
func newLocks(ctx context.Context, st cloud.Store, now time.Time) *locks {
	l := &locks{st: st, now: now, until: map[string]time.Time{}}
	li, err := cloud.LockSupport(ctx, st)
	switch {
	case err != nil:
		l.kind = "object lock"
	case li.Supported:
		l.kind = li.Kind
	}
	return l
}

// on says whether objects may be locked.
func (l *locks) on() bool { return l != nil && l.kind != "" }

// stat reads the retain-until date of each key; a key gone since the
// listing is not locked.
func (l *locks) stat(ctx context.Context, keys []string) error {
	if !l.on() || len(keys) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statConcurrency)
	for _, k := range keys {
		g.Go(func() error {
			info, err := l.st.Stat(gctx, k)
			if errors.Is(err, cloud.ErrNotFound) {
				return nil
			}
			if err != nil {
				return archive.StoreErr(fmt.Errorf("%s: reading the retain-until date of %s: %w", l.st, k, err))
			}
			if info.RetainUntil.After(l.now) {
				l.mu.Lock()
				l.until[k] = info.RetainUntil
				l.mu.Unlock()
			}
			return nil
		})
	}
	return g.Wait()
}

// lockedUntil is key's retain-until date when it is after now.
func (l *locks) lockedUntil(key string) (time.Time, bool) {
	if l == nil {
		return time.Time{}, false
	}
	t, ok := l.until[key]
	return t, ok
}

// reason says why an object locked until t is kept.
func (l *locks) reason(t time.Time) string {
	return fmt.Sprintf("locked until %s (%s): the store refuses its deletion before then", t.UTC().Format("2006-01-02 15:04:05 UTC"), l.kind)
}

// walReason is the reason of a run of locked WAL objects, the latest
// date of the run to be filled in.
const walLockedPrefix = "locked ("

func (l *locks) walReason() string {
	return walLockedPrefix + l.kind + "): the store refuses their deletion before their retain-until date"
}

// keepLockedFolders keeps the folders without a manifest that the plan
// deletes and that hold a locked object.
func keepLockedFolders(ctx context.Context, lk *locks, ds []FolderDecision, orphans []*repo.BackupFolder) error {
	if !lk.on() {
		return nil
	}
	byName := map[string]*repo.BackupFolder{}
	for _, f := range orphans {
		byName[f.Name] = f
	}
	var keys []string
	for _, d := range ds {
		if f := byName[d.Name]; d.Delete && f != nil {
			for file := range f.Objects {
				keys = append(keys, repo.BackupKey(f.Name, file))
			}
		}
	}
	if err := lk.stat(ctx, keys); err != nil {
		return err
	}
	for i, d := range ds {
		f := byName[d.Name]
		if !d.Delete || f == nil {
			continue
		}
		var latest time.Time
		for file := range f.Objects {
			if t, ok := lk.lockedUntil(repo.BackupKey(f.Name, file)); ok {
				latest = maxTime(latest, t)
			}
		}
		if !latest.IsZero() {
			ds[i].Delete, ds[i].Reason = false, d.Reason+"; kept: "+lk.reason(latest)
		}
	}
	return nil
}
