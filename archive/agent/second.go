package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/archive/wal"
	"github.com/walvault/walvault/cloud"
)

// Second stores (copy-store) are kept in step in the background: once a
// file is durable in the primary store (and PostgreSQL may be told so), a
// record of it is in the spool (see wal.CopyQueue), and one copier per
// second store copies the records' objects, history files first then in
// order of their names, up to the upload concurrency at once, with its
// own retries and back-off. The bytes just uploaded are handed to it while
// they fit in a small budget, so that an object usually goes to the
// second store without being read back; otherwise it is read back from
// the primary store and checked against the digest the record holds. A
// second store that is down never holds up archiving (unless copy-store-
// wait asks for it): its backlog grows, and so does its lag, which status
// and /metrics show.

// SecondStore is one store kept in step.
type SecondStore struct {
	// Repo is the second store's repository: its store, with the primary's
	// keys and codec.
	Repo *repo.Repo
	// ID names it in the spool (wal.CopyStoreID).
	ID string
}

// bodyBudget bounds the bytes copiers hold for objects not yet copied.
const bodyBudget = 32 << 20

type second struct {
	a    *Agent
	r    *repo.Repo
	name string
	q    *wal.CopyQueue
	log  *slog.Logger
	wake chan struct{}

	mu        sync.Mutex
	pending   map[string]*pendingCopy
	cluster   bool // cluster.json is there
	fails     int
	next      time.Time
	lastErr   string
	lastErrT  time.Time
	lastCopy  string
	lastCopyT time.Time

	copied, copiedBytes, errs, dropped, fromPrimary atomic.Int64
	inflight                                        atomic.Int64
}

type pendingCopy struct {
	rec    wal.CopyRecord
	body   []byte
	active bool
}

// bodies counts the bytes all copiers hold.
var bodies atomic.Int64

func (a *Agent) openSeconds() error {
	for _, s := range a.cfg.SecondStores {
		q, err := wal.OpenCopyQueue(a.spool, s.ID)
		if err != nil {
			return err
		}
		c := *s.Repo
		if a.cfg.Concurrency > 1 {
			c.Codec.Concurrency = 1
		}
		sc := &second{a: a, r: &c, name: s.Repo.Store.String(), q: q, log: a.log.With("copy_store", s.Repo.Store.String()),
			wake: make(chan struct{}, 1), pending: map[string]*pendingCopy{}}
		recs, err := q.List()
		if err != nil {
			return fmt.Errorf("spool directory: %w", err)
		}
		for _, rec := range recs {
			sc.pending[rec.Name] = &pendingCopy{rec: rec}
		}
		a.seconds = append(a.seconds, sc)
	}
	return nil
}

// stored is told of a file made durable in the primary store: with
// copy-store-wait it is copied to every second store now (an error fails
// the push, which PostgreSQL retries), else recorded for the copiers.
func (a *Agent) stored(ctx context.Context, so *wal.StoredObject) error {
	if so == nil || len(a.seconds) == 0 {
		return nil
	}
	for _, sc := range a.seconds {
		rec, err := sc.q.Record(*so, time.Now())
		if err != nil {
			sc.dropped.Add(1)
			sc.fail(err)
			if a.cfg.CopyWait {
				return err
			}
			continue
		}
		if a.cfg.CopyWait {
			if err := sc.copyOne(ctx, &pendingCopy{rec: rec, body: so.Body}); err != nil {
				return fmt.Errorf("copy-store %s: %w", sc.name, err)
			}
			continue
		}
		p := &pendingCopy{rec: rec}
		if so.Body != nil && bodies.Load()+int64(len(so.Body)) <= bodyBudget {
			p.body = so.Body
			bodies.Add(int64(len(so.Body)))
		}
		sc.mu.Lock()
		if old := sc.pending[rec.Name]; old != nil && old.body != nil && !old.active {
			bodies.Add(-int64(len(old.body)))
		}
		sc.pending[rec.Name] = p
		sc.mu.Unlock()
		sc.poke()
	}
	return nil
}

func (sc *second) poke() {
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

func (sc *second) fail(err error) {
	sc.errs.Add(1)
	sc.mu.Lock()
	sc.lastErr, sc.lastErrT = archive.OneLine(err.Error()), time.Now()
	sc.mu.Unlock()
}

// run copies the backlog until ctx ends.
func (sc *second) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		for _, p := range sc.take() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc.finish(ctx, p, sc.copyOne(ctx, p))
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-sc.wake:
		case <-tick.C:
		}
	}
}

// take picks what to start: the oldest records not in flight, up to the
// concurrency, unless the store is backing off after a failure.
func (sc *second) take() []*pendingCopy {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if time.Now().Before(sc.next) || len(sc.pending) == 0 {
		return nil
	}
	room := int64(sc.a.cfg.Concurrency) - sc.inflight.Load()
	if room <= 0 {
		return nil
	}
	recs := make([]wal.CopyRecord, 0, len(sc.pending))
	for _, p := range sc.pending {
		if !p.active {
			recs = append(recs, p.rec)
		}
	}
	wal.SortRecords(recs)
	var out []*pendingCopy
	for _, rec := range recs {
		if int64(len(out)) >= room {
			break
		}
		p := sc.pending[rec.Name]
		p.active = true
		out = append(out, p)
	}
	sc.inflight.Add(int64(len(out)))
	return out
}

// copyOne copies one object, cluster.json first if the second store has
// none yet.
func (sc *second) copyOne(ctx context.Context, p *pendingCopy) error {
	sc.mu.Lock()
	cluster := sc.cluster
	sc.mu.Unlock()
	if !cluster {
		if _, err := sc.a.r.CopyCluster(ctx, sc.r); err != nil {
			return err
		}
		sc.mu.Lock()
		sc.cluster = true
		sc.mu.Unlock()
	}
	start := time.Now()
	from, err := wal.CopyStored(ctx, sc.a.r, sc.r, p.rec, p.body, sc.a.spool)
	if err != nil {
		return err
	}
	if from != wal.FromMemory {
		sc.fromPrimary.Add(1)
	}
	sc.copied.Add(1)
	sc.copiedBytes.Add(p.rec.Size)
	sc.log.Info("copied", "file", p.rec.Name, "from", string(from), "ms", time.Since(start).Milliseconds())
	return nil
}

// finish records a copy's outcome: the record goes, or the store backs off
// (1 s doubling to the agent's back-off cap).
func (sc *second) finish(ctx context.Context, p *pendingCopy, err error) {
	sc.inflight.Add(-1)
	sc.mu.Lock()
	defer sc.mu.Unlock()
	p.active = false
	if err == nil {
		if qerr := sc.q.Done(p.rec.Name); qerr != nil {
			sc.log.Warn("cannot remove a copy record", "file", p.rec.Name, "err", qerr)
		}
		if cur := sc.pending[p.rec.Name]; cur == p {
			delete(sc.pending, p.rec.Name)
		}
		if p.body != nil {
			bodies.Add(-int64(len(p.body)))
			p.body = nil
		}
		sc.fails, sc.next = 0, time.Time{}
		sc.lastCopy, sc.lastCopyT = p.rec.Name, time.Now()
		sc.poke()
		return
	}
	if ctx.Err() != nil {
		return
	}
	if p.body != nil && errors.Is(err, archive.ErrConflict) {
		// Kept in memory for nothing: a conflict needs a person.
		bodies.Add(-int64(len(p.body)))
		p.body = nil
	}
	sc.fails++
	sc.next = time.Now().Add(min(sc.a.cfg.MaxBackoff, time.Second<<min(sc.fails-1, 10)))
	sc.errs.Add(1)
	sc.lastErr, sc.lastErrT = archive.OneLine(err.Error()), time.Now()
	sc.log.Warn("copy failed, will retry", "file", p.rec.Name, "err", sc.lastErr, "attempts", sc.fails)
}

// CopyStoreStats are one second store's figures.
type CopyStoreStats struct {
	Store          string    `json:"store"`
	Backlog        int64     `json:"backlog"`
	BacklogBytes   int64     `json:"backlog_bytes"`
	LagSeconds     float64   `json:"lag_seconds"`
	Oldest         string    `json:"oldest,omitempty"`
	Copied         int64     `json:"copied"`
	CopiedBytes    int64     `json:"copied_bytes"`
	ReadBack       int64     `json:"read_back"`
	Errors         int64     `json:"errors"`
	NotRecorded    int64     `json:"not_recorded"`
	LastCopied     string    `json:"last_copied,omitempty"`
	LastCopiedTime time.Time `json:"last_copied_time,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorTime  time.Time `json:"last_error_time,omitzero"`
}

func (sc *second) stats(now time.Time) CopyStoreStats {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s := CopyStoreStats{Store: cloud.Redact(sc.name), LastCopied: sc.lastCopy, LastCopiedTime: sc.lastCopyT, LastError: sc.lastErr, LastErrorTime: sc.lastErrT,
		Copied: sc.copied.Load(), CopiedBytes: sc.copiedBytes.Load(), ReadBack: sc.fromPrimary.Load(), Errors: sc.errs.Load(), NotRecorded: sc.dropped.Load()}
	var oldest time.Time
	for _, p := range sc.pending {
		s.Backlog++
		s.BacklogBytes += p.rec.Size
		if oldest.IsZero() || p.rec.Time.Before(oldest) {
			oldest, s.Oldest = p.rec.Time, p.rec.Name
		}
	}
	if !oldest.IsZero() {
		s.LagSeconds = max(0, now.Sub(oldest).Seconds())
	}
	return s
}
