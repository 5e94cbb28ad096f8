// Package agent is walvault agent: one resident archiver per data
// directory. It watches pg_wal/archive_status (inotify, and a rescan every
// second and after an overflow) and pushes every .ready file as soon as it
// appears, as many at once as the backlog needs up to the upload
// concurrency, with wal.Push: the same checks, encoding, proof and
// write-once upload as walvault wal-push. It records in its own spool what
// is durable and answers walvault-wal (archive_command, restore_command)
// on a unix socket. It never writes PostgreSQL's files: archive_status is
// only read; the one file it writes in pg_wal is restore_command's DEST,
// as wal-fetch would.
//
// # Spool
//
// SPOOL (default pg_wal/.walvault, shared with wal-push and wal-fetch)
// holds agent/lock (an flock: one agent per data directory; a second one
// exits 5), agent/instance (a random id bound to pg_wal's device and
// inode), agent/durable/NAME markers ("size mtime instance store": a
// marker vouches only for that version of the file, that store and that
// instance; it is written only after the upload returned), agent/state.json
// (the counters, for walvault status) and agent/prefetch/ (segments
// downloaded, decoded and verified ahead of replay; see prefetch.go).
//
// # Socket
//
// The agent listens on pg_wal/.walvault/agent.sock unless --socket says
// otherwise: pg_wal is the directory of every %p, so the client finds the
// socket from its own arguments. A path longer than sun_path's 107 bytes is
// bound and reached through its directory (/proc/self/fd/N/agent.sock). The
// socket is created under a temporary name, given mode 0600 (0660 and the
// group with a socket group) and renamed into place; the agent refuses a
// socket directory others can write to. The client trusts only a socket
// owned by its own user or root.
//
// # Protocol
//
// See package proto: one line each way per connection. "push PATH"
// answers 0 only once the agent holds a marker for the file as it is now on
// disk (name, size, mtime, checked by the agent with its own stat of
// pg_wal/NAME, never taken from the client); a file not yet durable jumps
// the queue and the answer waits for its upload. A failed attempt answers
// with walvault's exit code for the error while the agent keeps retrying.
// "fetch NAME DEST" writes DEST (in the agent's pg_wal only) atomically,
// from the prefetch directory when it can, and answers 1 when the file is
// not in the archive, 255 when it is there but cannot be used (PostgreSQL
// then stops recovery). "status" answers the counters as JSON. Code 100
// tells the client to run walvault wal-push or wal-fetch itself.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/archive/wal"
	"github.com/walvault/walvault/cloud"
)

// Config sets up an agent.
type Config struct {
	PGData string
	// SpoolDir defaults to pg_wal/.walvault.
	SpoolDir string
	// Socket defaults to proto.DefaultSocket(pg_wal).
	Socket string
	// SocketGID, when >= 0, makes the socket 0660 and owned by this group.
	SocketGID int
	// Concurrency bounds parallel uploads (upload-concurrency).
	Concurrency int
	// NoArchive serves fetch only: nothing is pushed, push requests are
	// sent back to walvault wal-push.
	NoArchive bool
	// Prefetch is how many segments to keep ahead of replay; 0: none.
	Prefetch            int
	DownloadConcurrency int
	// PollInterval is the rescan period (default 1s).
	PollInterval time.Duration
	// MaxBackoff caps the delay between retries of one file (default 30s).
	MaxBackoff time.Duration
	// StoreIdentity names the store in markers (default: StoreIdentity of
	// the store alone); give the endpoints it is reached through.
	StoreIdentity string
	// SecondStores are kept in step with the primary (copy-store).
	SecondStores []SecondStore
	// CopyWait answers a push only once every second store has the file
	// too (copy-store-wait); else the primary store alone decides.
	CopyWait bool
	// ExitCode maps an error to walvault's exit code for the client.
	ExitCode func(error) int
	Log      *slog.Logger
}

// Agent is one running agent.
type Agent struct {
	cfg      Config
	r        *repo.Repo
	counted  *countingStore
	log      *slog.Logger
	walDir   string
	walReal  string
	status   string
	spool    string
	agentDir string
	marks    markers
	lock     *os.File
	ln       net.Listener
	sock     string
	started  time.Time

	wake   chan struct{}
	rescan atomic.Bool // archive_status must be read again

	// arrived are the .ready files inotify saw created since they were
	// last taken: each is queued by itself, without reading the whole
	// archive_status (hundreds of .done files on a busy primary) again.
	arrMu   sync.Mutex
	arrived []string
	pf      *prefetchState

	seconds []*second

	mu       sync.Mutex
	durable  map[string]fileID
	jobs     map[string]*job // queued or running, by name
	queue    []*job          // queued, in order
	running  int
	failures map[string]*failure
	lastErr  string
	lastErrT time.Time
	lastArch string
	lastArT  time.Time
	// ready are the .ready files of the last scan and the arrivals since,
	// for the backlog figures (those durable meanwhile are left out).
	ready map[string]readyFile

	st struct {
		segments, bytes, stored, already, uploadErrs, retries      atomic.Int64
		pushReqs, fetchReqs, prefetchHits, notInArchive, uploading atomic.Int64
		fetchMicros                                                atomic.Int64
	}
}

type readyFile struct {
	id      fileID
	readyAt time.Time
}

// job is one upload of one version of a file.
type job struct {
	name   string
	id     fileID
	urgent bool
	done   chan struct{}
	err    error // set before done closes
}

type failure struct {
	id       fileID
	attempts int
	next     time.Time
	err      error
}

// Open checks the data directory, takes the lock and binds the socket.
// r's store is wrapped to count requests.
func Open(r *repo.Repo, cfg Config) (*Agent, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.ExitCode == nil {
		cfg.ExitCode = func(error) int { return 9 }
	}
	pgdata, err := filepath.Abs(cfg.PGData)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Log, started: time.Now(),
		wake:    make(chan struct{}, 1),
		durable: map[string]fileID{}, jobs: map[string]*job{}, failures: map[string]*failure{}, ready: map[string]readyFile{}}
	a.cfg.PGData = pgdata
	a.walDir = filepath.Join(pgdata, "pg_wal")
	a.status = filepath.Join(a.walDir, "archive_status")
	if fi, err := os.Stat(a.status); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a PostgreSQL data directory (no pg_wal/archive_status)", archive.ErrBadInput, pgdata)
	}
	if a.walReal, err = filepath.EvalSymlinks(a.walDir); err != nil {
		return nil, err
	}
	if err := sameOwner(pgdata); err != nil {
		return nil, err
	}
	a.spool = cfg.SpoolDir
	if a.spool == "" {
		a.spool = filepath.Join(a.walDir, ".walvault")
	}
	if a.spool, err = filepath.Abs(a.spool); err != nil {
		return nil, err
	}
	a.agentDir = filepath.Join(a.spool, "agent")
	if err := os.MkdirAll(filepath.Join(a.agentDir, "durable"), 0o700); err != nil {
		return nil, fmt.Errorf("%w: spool directory: %w", archive.ErrBadInput, err)
	}
	if a.lock, err = lockSpool(a.agentDir, pgdata); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = a.lock.Close()
		}
	}()
	instance, err := instanceID(a.agentDir, a.walDir)
	if err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	_ = os.MkdirAll(filepath.Join(a.agentDir, "durable"), 0o700)

	c := *r
	if c.Cluster == "" {
		// Bound once, before files are pushed and fetched side by side:
		// every proof names the cluster of this data directory.
		if sysid, err := pg.ControlSystemID(pgdata); err == nil {
			c.Cluster = strconv.FormatUint(sysid, 10)
		}
	}
	a.counted = &countingStore{Store: r.Store}
	c.Store = a.counted
	if cfg.Concurrency > 1 {
		// Parallelism comes from the files; one compressor goroutine per
		// file keeps memory in proportion.
		c.Codec.Concurrency = 1
	}
	a.r = &c
	if err := a.initPrefetch(); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	if err := a.openSeconds(); err != nil {
		return nil, err
	}
	storeID := cfg.StoreIdentity
	if storeID == "" {
		storeID = StoreIdentity(cloud.Identity(r.Store, ""))
	}
	a.marks = markers{dir: filepath.Join(a.agentDir, "durable"), store: storeID, instance: instance}
	a.loadMarkers()

	a.sock = cfg.Socket
	if a.sock == "" {
		a.sock = proto.DefaultSocket(a.walDir)
	}
	if a.sock, err = filepath.Abs(a.sock); err != nil {
		return nil, err
	}
	if a.ln, err = listen(a.sock, cfg.SocketGID); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// Close gives up an agent that was opened but will not Run: the socket
// and the lock.
func (a *Agent) Close() {
	_ = a.ln.Close()
	_ = os.Remove(a.sock)
	_ = a.lock.Close()
}

// Socket is the path the agent listens on.
func (a *Agent) Socket() string { return a.sock }

// loadMarkers trusts the markers of files still in pg_wal as they were.
func (a *Agent) loadMarkers() {
	for _, name := range a.marks.list() {
		id, err := statID(filepath.Join(a.walDir, name))
		if err == nil && a.marks.valid(name, id) {
			a.durable[name] = id
			continue
		}
		a.marks.remove(name)
	}
}

// Run archives and serves until ctx ends, then stops taking requests,
// cancels the uploads in flight (what they had not finished is pushed
// again by the next agent or wal-push) and releases the lock.
func (a *Agent) Run(ctx context.Context) error {
	defer func() { _ = a.lock.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	watcher, err := fsnotify.NewWatcher()
	if err == nil {
		err = watcher.Add(a.status)
	}
	if err != nil {
		a.log.Warn("no inotify on archive_status, polling only", "err", err)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = watcher.Close() }()
			a.watch(ctx, watcher)
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); a.serve(ctx) }()
	go func() { defer wg.Done(); a.prefetcher(ctx) }()
	for _, sc := range a.seconds {
		wg.Add(1)
		go func() { defer wg.Done(); sc.run(ctx) }()
	}

	a.log.Info("agent started", "pgdata", a.cfg.PGData, "socket", a.sock, "store", a.r.Store.String(), "upload_concurrency", a.cfg.Concurrency)
	tick := time.NewTicker(a.cfg.PollInterval)
	defer tick.Stop()
	lastState, lastSweep := time.Time{}, time.Now()
	a.rescan.Store(true)
	for {
		// Taken whether or not this agent archives, so they never pile up.
		arrived := a.takeArrived()
		if !a.cfg.NoArchive {
			// A finished upload only needs the next one started; reading
			// archive_status again is for new files and the rescan period.
			if a.rescan.Swap(false) {
				a.scan()
			} else if len(arrived) > 0 {
				a.enqueueArrived(arrived)
			}
			a.dispatch(ctx, &wg)
		}
		if time.Since(lastSweep) > 10*time.Second {
			a.sweep()
			lastSweep = time.Now()
		}
		if time.Since(lastState) >= 2*time.Second {
			a.writeState()
			lastState = time.Now()
		}
		select {
		case <-ctx.Done():
			_ = a.ln.Close()
			_ = os.Remove(a.sock)
			a.failPending(ctx.Err())
			cancel()
			wg.Wait()
			a.writeState()
			a.log.Info("agent stopped")
			return nil
		case <-a.wake:
		case <-tick.C:
			a.rescan.Store(true)
		}
	}
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// watch turns inotify events into wake-ups; an overflow is one too (the
// scan that follows reads the whole directory).
func (a *Agent) watch(ctx context.Context, w *fsnotify.Watcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			// A .ready created (or renamed into place) is queued by
			// name; one renamed away (to .done) or removed needs nothing.
			if name, ok := strings.CutSuffix(filepath.Base(ev.Name), ".ready"); ok && ev.Has(fsnotify.Create) {
				a.arrMu.Lock()
				a.arrived = append(a.arrived, name)
				a.arrMu.Unlock()
				a.poke()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				a.rescan.Store(true)
				a.poke()
				continue
			}
			a.log.Warn("inotify", "err", err)
		}
	}
}

// scan reads archive_status and queues every .ready file that is neither
// durable, queued nor waiting for a retry, oldest first (history files
// before segments: a new timeline is useless without its history).
func (a *Agent) scan() {
	ents, err := os.ReadDir(a.status)
	if err != nil {
		a.log.Warn("cannot read archive_status", "err", err)
		return
	}
	now := time.Now()
	var ready []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok {
			continue
		}
		if _, err := archive.ParseWALName(name); err != nil {
			continue
		}
		ready = append(ready, name)
	}
	sortReady(ready)
	// The stats run without the lock, which push requests need.
	type seen struct {
		name    string
		id      fileID
		readyAt time.Time
	}
	files := make([]seen, 0, len(ready))
	for _, name := range ready {
		id, err := statID(filepath.Join(a.walDir, name))
		if err != nil {
			continue // archived and removed meanwhile
		}
		var at time.Time
		if fi, err := os.Stat(filepath.Join(a.status, name+".ready")); err == nil {
			at = fi.ModTime()
		}
		files = append(files, seen{name, id, at})
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ready = make(map[string]readyFile, len(files))
	for _, f := range files {
		a.readyLocked(f.name, readyFile{f.id, f.readyAt}, now)
	}
}

// readyLocked takes note of a .ready file, for the backlog, and queues it
// unless it is durable in this version, queued, or waiting for a retry.
func (a *Agent) readyLocked(name string, f readyFile, now time.Time) {
	if d, ok := a.durable[name]; ok && d == f.id {
		return
	}
	a.ready[name] = f
	if _, ok := a.jobs[name]; ok {
		return
	}
	if fl := a.failures[name]; fl != nil && fl.id == f.id && now.Before(fl.next) {
		return
	}
	a.enqueueLocked(name, f.id, false)
}

// takeArrived returns the names inotify reported since the last call.
func (a *Agent) takeArrived() []string {
	a.arrMu.Lock()
	defer a.arrMu.Unlock()
	names := a.arrived
	a.arrived = nil
	return names
}

// enqueueArrived queues the files whose .ready inotify saw created, as a
// scan would have.
func (a *Agent) enqueueArrived(names []string) {
	sortReady(names)
	now := time.Now()
	for _, name := range names {
		if _, err := archive.ParseWALName(name); err != nil {
			continue
		}
		st, err := os.Lstat(filepath.Join(a.status, name+".ready"))
		if err != nil {
			continue // archived meanwhile
		}
		id, err := statID(filepath.Join(a.walDir, name))
		if err != nil {
			continue
		}
		a.mu.Lock()
		a.readyLocked(name, readyFile{id, st.ModTime()}, now)
		a.mu.Unlock()
	}
}

func sortReady(ready []string) {
	sort.Slice(ready, func(i, j int) bool {
		hi, hj := strings.HasSuffix(ready[i], ".history"), strings.HasSuffix(ready[j], ".history")
		if hi != hj {
			return hi
		}
		return ready[i] < ready[j]
	})
}

func (a *Agent) enqueueLocked(name string, id fileID, urgent bool) *job {
	j := &job{name: name, id: id, urgent: urgent, done: make(chan struct{})}
	a.jobs[name] = j
	if urgent {
		a.queue = append([]*job{j}, a.queue...)
	} else {
		a.queue = append(a.queue, j)
	}
	return j
}

// dispatch starts queued uploads up to the concurrency; an urgent one (a
// client waits for it) starts at once.
func (a *Agent) dispatch(ctx context.Context, wg *sync.WaitGroup) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.queue) > 0 && (a.running < a.cfg.Concurrency || a.queue[0].urgent) {
		j := a.queue[0]
		a.queue = a.queue[1:]
		a.running++
		if a.failures[j.name] != nil {
			a.st.retries.Add(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.upload(ctx, j)
		}()
	}
}

// upload pushes one file with wal.Push and records the outcome.
func (a *Agent) upload(ctx context.Context, j *job) {
	p := filepath.Join(a.walDir, j.name)
	a.st.uploading.Add(1)
	start := time.Now()
	res, err := wal.Push(ctx, a.r, p, wal.PushOptions{Concurrency: 1, SpoolDir: a.spool, KeepBody: len(a.seconds) > 0})
	a.st.uploading.Add(-1)
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err == nil {
		// The file must still be the version that was read.
		if id, serr := statID(p); serr != nil || id != j.id {
			err = fmt.Errorf("%w: %s changed while it was archived", archive.ErrBadInput, j.name)
		}
	}
	if err == nil {
		// Recorded for the second stores before it counts as durable.
		err = a.stored(ctx, res.Object)
	}
	if err == nil {
		if merr := a.marks.write(j.name, j.id); merr != nil {
			a.log.Warn("cannot record a durable file", "file", j.name, "err", merr)
		}
	}
	a.mu.Lock()
	a.running--
	delete(a.jobs, j.name)
	if err == nil {
		a.durable[j.name] = j.id
		delete(a.failures, j.name)
		a.lastArch, a.lastArT = j.name, time.Now()
	} else if ctx.Err() == nil {
		f := a.failures[j.name]
		if f == nil || f.id != j.id {
			f = &failure{id: j.id}
			a.failures[j.name] = f
		}
		f.attempts++
		f.err = err
		f.next = time.Now().Add(min(a.cfg.MaxBackoff, time.Second<<min(f.attempts-1, 10)))
		a.lastErr, a.lastErrT = archive.OneLine(err.Error()), time.Now()
	}
	a.mu.Unlock()
	// The counters first: a client told the answer may read them.
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil:
		a.st.uploadErrs.Add(1)
		a.log.Warn("upload failed, will retry", "file", j.name, "err", archive.OneLine(err.Error()), "ms", ms)
	case res.Already || res.Ahead:
		a.st.already.Add(1)
		a.log.Info("already archived", "file", j.name, "ms", ms)
	default:
		a.st.segments.Add(1)
		a.st.bytes.Add(res.RawBytes)
		a.st.stored.Add(res.StoredBytes)
		a.log.Info("archived", "file", j.name, "bytes", res.RawBytes, "stored", res.StoredBytes, "ms", ms, "urgent", j.urgent)
	}
	j.err = err
	close(j.done)
	a.poke()
}

// failPending ends the queued jobs at shutdown, so waiting clients answer.
func (a *Agent) failPending(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, j := range a.queue {
		delete(a.jobs, j.name)
		j.err = err
		close(j.done)
	}
	a.queue = nil
}

// sweep forgets durable files PostgreSQL has since removed or recycled.
func (a *Agent) sweep() {
	a.mu.Lock()
	names := make([]string, 0, len(a.durable))
	for n := range a.durable {
		names = append(names, n)
	}
	a.mu.Unlock()
	for _, n := range names {
		id, err := statID(filepath.Join(a.walDir, n))
		a.mu.Lock()
		if d, ok := a.durable[n]; ok && (err != nil || d != id) {
			delete(a.durable, n)
			a.marks.remove(n)
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	for n := range a.failures {
		if _, err := os.Stat(filepath.Join(a.walDir, n)); errors.Is(err, os.ErrNotExist) {
			delete(a.failures, n)
		}
	}
	a.mu.Unlock()
}

// Stats is a snapshot of the counters.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	// The backlog: ready files not durable (as of the last scan and the
	// arrivals since; one archived by another process stays until the
	// next scan, within the poll interval).
	var count, bytes int64
	var oldest time.Time
	for name, f := range a.ready {
		if d, ok := a.durable[name]; ok && d == f.id {
			continue
		}
		count++
		bytes += f.id.size
		if !f.readyAt.IsZero() && (oldest.IsZero() || f.readyAt.Before(oldest)) {
			oldest = f.readyAt
		}
	}
	s := Stats{PID: os.Getpid(), PGData: a.cfg.PGData, Store: a.r.Store.String(), Started: a.started, Updated: time.Now(),
		LastArchived: a.lastArch, LastArchivedTime: a.lastArT, LastError: a.lastErr, LastErrorTime: a.lastErrT}
	a.mu.Unlock()
	s.SegmentsArchived = a.st.segments.Load()
	s.BytesArchived = a.st.bytes.Load()
	s.BytesStored = a.st.stored.Load()
	s.AlreadyArchived = a.st.already.Load()
	s.UploadErrors = a.st.uploadErrs.Load()
	s.Retries = a.st.retries.Load()
	s.PushRequests = a.st.pushReqs.Load()
	s.FetchRequests = a.st.fetchReqs.Load()
	s.PrefetchHits = a.st.prefetchHits.Load()
	s.NotInArchive = a.st.notInArchive.Load()
	s.FetchSeconds = float64(a.st.fetchMicros.Load()) / 1e6
	s.Uploading = a.st.uploading.Load()
	s.ReadyCount, s.ReadyBytes = count, bytes
	if !oldest.IsZero() {
		s.OldestReadyAgeSec = time.Since(oldest).Seconds()
	}
	s.StoreRequests = a.counted.counts()
	for _, sc := range a.seconds {
		s.CopyStores = append(s.CopyStores, sc.stats(s.Updated))
	}
	return s
}
