package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// DefaultMaxChain is incremental-max-chain's default: the incrementals a
// chain may hold after its full backup.
const DefaultMaxChain = 6

// parentRef is the backup an incremental builds on.
type parentRef struct {
	m     *repo.Manifest
	sum   string // SHA-256 of its manifest.json
	files repo.FileIndex
	// blocks: pages whose LSN is before the parent's start are taken from
	// the parent one by one. Without it (hint-bit writes might not have
	// been WAL-logged all along), a relation file is taken from the
	// parent only when none of its pages changed.
	blocks bool
}

// noParent is why a backup cannot build on a parent: for --incremental a
// reason to take a full backup instead, for --parent an error.
type noParent struct {
	kind error // archive.ErrBadInput or archive.ErrIntegrity
	why  string
	err  error
}

func (e *noParent) Error() string {
	if e.err != nil {
		return e.why + ": " + e.err.Error()
	}
	return e.why
}

func (e *noParent) Unwrap() []error { return []error{e.kind, e.err} }

func refuse(format string, a ...any) *noParent {
	return &noParent{kind: archive.ErrBadInput, why: fmt.Sprintf(format, a...)}
}

// chooseParent picks the parent of an incremental (or checks --parent)
// before the backup starts. Without a usable parent --incremental takes a
// full backup and says why in one line; --parent fails.
func (b *pusher) chooseParent(ctx context.Context) error {
	if !b.opts.Incremental && b.opts.Parent == "" {
		return nil
	}
	p, err := b.findParent(ctx)
	var np *noParent
	switch {
	case err == nil:
		b.parent = p
		slog.Info("taking an incremental backup", "parent", p.m.Name, "chain", len(p.m.Chain)+1, "block_level", p.blocks)
		return nil
	case !errors.As(err, &np):
		return err
	case b.opts.Parent != "":
		return fmt.Errorf("%w: --parent %s cannot be used: %s", np.kind, b.opts.Parent, np.Error())
	}
	slog.Info("taking a full backup instead of an incremental: " + np.Error())
	return nil
}

// findParent returns the parent, or a *noParent saying why there is none.
func (b *pusher) findParent(ctx context.Context) (*parentRef, error) {
	f := b.facts
	if f.WALLevel != "replica" && f.WALLevel != "logical" {
		return nil, refuse("wal_level is %s", f.WALLevel)
	}
	if !f.FullPageWrites {
		return nil, refuse("full_page_writes is off")
	}
	cat, err := b.r.LoadCatalog(ctx, repo.CatalogOptions{WAL: repo.WALOfBackups})
	if err != nil {
		return nil, err
	}
	sysid := strconv.FormatUint(b.srv.SystemID, 10)
	inv := cat.WAL(b.srv.SegSize)
	var cand *repo.Manifest
	if b.opts.Parent != "" {
		for _, fo := range cat.Folders {
			if fo.Name != b.opts.Parent {
				continue
			}
			if fo.Err != nil {
				return nil, &noParent{kind: archive.ErrIntegrity, why: "its manifest cannot be used", err: fo.Err}
			}
			cand = fo.Manifest
		}
		if cand == nil {
			return nil, refuse("no complete backup has that name")
		}
	} else {
		list := cat.Backups()
		for i := len(list) - 1; i >= 0; i-- {
			m := list[i]
			if m.SystemIdentifier == sysid && m.Timeline == b.tli && m.SegmentSize == b.srv.SegSize && inv.Range(m).Restorable {
				cand = m
				break
			}
		}
		if cand == nil {
			return nil, refuse("no restorable backup of this cluster on timeline %d", b.tli)
		}
	}
	if err := b.checkParent(ctx, cand, inv); err != nil {
		return nil, err
	}
	// Its ancestors must all be there: a chain missing a link restores
	// nothing.
	have := map[string]bool{}
	for _, m := range cat.Backups() {
		have[m.Name] = true
	}
	for _, a := range cand.Chain {
		if !have[a] {
			return nil, refuse("%s builds on %s, which is missing or damaged", cand.Name, a)
		}
	}
	m, sum, err := b.r.ReadManifestSum(ctx, cand.Name, false)
	if err != nil {
		if errors.Is(err, archive.ErrStore) || archive.IsContextErr(err) {
			return nil, err
		}
		return nil, &noParent{kind: archive.ErrIntegrity, why: fmt.Sprintf("the manifest of %s cannot be used", cand.Name), err: err}
	}
	if err := b.checkParent(ctx, m, inv); err != nil {
		return nil, err
	}
	// Hint bits are WAL-logged (with a full page image) when data
	// checksums or wal_log_hints are on; both need a restart to change,
	// so with no restart since the parent began they held all along.
	blocks := (f.DataChecksums == "on" || f.WALLogHints) && f.Started.Before(m.StartTime)
	return &parentRef{m: m, sum: sum, files: m.Index(), blocks: blocks}, nil
}

// checkParent says why m cannot be this backup's parent.
func (b *pusher) checkParent(ctx context.Context, m *repo.Manifest, inv *repo.WALInventory) error {
	f := b.facts
	switch {
	case m.SystemIdentifier != strconv.FormatUint(b.srv.SystemID, 10):
		return refuse("%s is of another cluster (system identifier %s)", m.Name, m.SystemIdentifier)
	case m.Timeline != b.tli:
		return refuse("%s is on timeline %d, the server on %d", m.Name, m.Timeline, b.tli)
	case m.PGVersion/10000 != b.srv.Version/10000:
		return refuse("%s is of PostgreSQL %d, the server is %d", m.Name, m.PGVersion/10000, b.srv.Version/10000)
	case m.SegmentSize != b.srv.SegSize:
		return refuse("%s has %d-byte WAL segments, the server %d", m.Name, m.SegmentSize, b.srv.SegSize)
	case m.BlockSize != 0 && m.BlockSize != f.BlockSize:
		return refuse("%s has %d-byte blocks, the server %d", m.Name, m.BlockSize, f.BlockSize)
	case m.DataChecksums != "" && m.DataChecksums != f.DataChecksums:
		return refuse("%s was taken with data_checksums %s, the server has %s", m.Name, m.DataChecksums, f.DataChecksums)
	case m.DataChecksums == "" && !f.Started.Before(m.StartTime):
		// pg_checksums may have rewritten every page since.
		return refuse("%s does not record data_checksums and the server restarted since", m.Name)
	case len(m.Chain) >= min(b.opts.MaxChain, repo.MaxChain):
		return refuse("the chain of %s already holds %d incremental backups (incremental-max-chain %d)", m.Name, len(m.Chain), b.opts.MaxChain)
	}
	rng := inv.Range(m)
	if !rng.Restorable {
		return refuse("%s cannot be restored: its WAL is not all archived", m.Name)
	}
	// Every segment from the parent's start to the newest archived one.
	first, _ := archive.ParseWALName(m.StartWAL)
	newest, ok := inv.Newest(b.tli)
	if !ok {
		return refuse("no WAL of timeline %d is archived", b.tli)
	}
	if gaps := inv.GapsIn(b.tli, first.SegNo(m.SegmentSize), newest); len(gaps) > 0 && !b.archiverCatchesUp(ctx, m, newest) {
		return refuse("the WAL archive has a gap since %s: %s", m.Name, gaps[0])
	}
	return nil
}

// archiverCatchesUp says whether the segments missing from the archive
// between m's start and segment newest are all ones the server still has
// ready to archive (pushed out of order, or the archiver is behind), and
// reach the store within the archive timeout: then there is no gap.
func (b *pusher) archiverCatchesUp(ctx context.Context, m *repo.Manifest, newest uint64) bool {
	first, _ := archive.ParseWALName(m.StartWAL)
	missing, err := b.r.MissingSegments(ctx, b.tli, first.SegNo(m.SegmentSize), newest, m.SegmentSize)
	if err != nil {
		return false
	}
	for _, name := range missing {
		if _, err := os.Stat(filepath.Join(b.pgdata, "pg_wal", "archive_status", name+".ready")); err != nil {
			return false // not waiting to be archived: never will be
		}
	}
	if len(missing) > 0 {
		slog.Info("waiting for the archiver: WAL since the parent is still being archived", "missing", len(missing), "first", missing[0])
	}
	span := *m
	span.Timeline, span.StopWAL = b.tli, archive.SegmentName(b.tli, newest, m.SegmentSize)
	return waitArchived(ctx, b.r, b.srv, &span, b.opts.ArchiveTimeout) == nil
}

// checkWALSinceParent runs once the backup's own WAL is archived: the
// archive must hold every segment from the parent's start to this
// backup's stop, so no period the server ran unarchived (wal_level =
// minimal needs archive_mode off) lies between them.
func (b *pusher) checkWALSinceParent(ctx context.Context) error {
	if b.parent == nil {
		return nil
	}
	span := *b.m
	span.StartWAL = b.parent.m.StartWAL
	if err := waitArchived(ctx, b.r, b.srv, &span, b.opts.ArchiveTimeout); err != nil {
		return fmt.Errorf("the WAL from the parent %s to this backup is not all archived, so this incremental is not trusted: take a full backup (--full): %w", b.parent.m.Name, err)
	}
	return nil
}
