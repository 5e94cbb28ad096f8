package archive

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// ListBackups returns the summary of every complete backup (one with a
// manifest), oldest first by finish time. It reads only manifests, and of
// those only the part before the file list.
func ListBackups(ctx context.Context, cfg *Config) ([]*Manifest, error) {
	var names []string
	err := cfg.Store.List(ctx, BackupPrefix, cloud.ListOptions{Delimiter: "/"}, func(o cloud.ObjectInfo) error {
		if o.IsPrefix {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(o.Key, BackupPrefix), "/"))
		}
		return nil
	})
	if err != nil {
		return nil, asStoreErr(fmt.Errorf("%s: listing backups: %w", cfg.Store, err))
	}
	out := make([]*Manifest, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, name := range names {
		g.Go(func() error {
			m, err := ReadManifest(gctx, cfg, name, true)
			switch {
			case errors.Is(err, ErrNotInArchive):
				slog.Debug("ignoring an incomplete backup (no manifest: interrupted, failed or still running)", "backup", name)
			case errors.Is(err, ErrIntegrity):
				slog.Warn("ignoring a backup whose manifest is damaged", "backup", name, "err", err)
			case err != nil:
				return err
			default:
				out[i] = m
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var list []*Manifest
	for _, m := range out {
		if m != nil {
			list = append(list, m)
		}
	}
	sortBackups(list)
	return list, nil
}

func sortBackups(list []*Manifest) {
	sort.SliceStable(list, func(i, j int) bool {
		if !list[i].StopTime.Equal(list[j].StopTime) {
			return list[i].StopTime.Before(list[j].StopTime)
		}
		return list[i].Name < list[j].Name
	})
}

// WALRange is the archived WAL a backup can replay: from its first
// segment to the newest one reachable without a gap, on its timeline.
type WALRange struct {
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
	// Restorable: the range reaches the backup's stop segment, so the backup
	// can be made consistent.
	Restorable bool `json:"restorable"`
}

// WALRanges computes each backup's WAL range. It lists the WAL directories
// once, then only the directories the backups need, each once.
func WALRanges(ctx context.Context, st cloud.Store, backups []*Manifest) (map[string]WALRange, error) {
	var dirs []string
	err := st.List(ctx, WALPrefix, cloud.ListOptions{Delimiter: "/"}, func(o cloud.ObjectInfo) error {
		if o.IsPrefix && len(o.Key) == len(WALPrefix)+17 {
			dirs = append(dirs, o.Key)
		}
		return nil
	})
	if err != nil {
		return nil, asStoreErr(fmt.Errorf("%s: listing %s: %w", st, WALPrefix, err))
	}
	need := map[string]bool{}
	for _, m := range backups {
		start, err := ParseWALName(m.StartWAL)
		if err != nil {
			continue
		}
		for _, d := range dirs {
			name := d[len(WALPrefix) : len(d)-1]
			if name[:8] == m.StartWAL[:8] && name[8:] >= m.StartWAL[8:16] && start.Kind == KindSegment {
				need[d] = true
			}
		}
	}
	have := map[string]bool{} // segment names present
	for _, d := range dirs {
		if !need[d] {
			continue
		}
		err := st.List(ctx, d, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
			if name := o.Key[len(d):]; len(name) == 24 {
				have[name] = true
			}
			return nil
		})
		if err != nil {
			return nil, asStoreErr(fmt.Errorf("%s: listing %s: %w", st, d, err))
		}
	}
	out := map[string]WALRange{}
	for _, m := range backups {
		start, err1 := ParseWALName(m.StartWAL)
		stop, err2 := ParseWALName(m.StopWAL)
		if err1 != nil || err2 != nil {
			continue
		}
		seg := start.SegNo(m.SegmentSize)
		var r WALRange
		for have[SegmentName(m.Timeline, seg, m.SegmentSize)] {
			if r.First == "" {
				r.First = m.StartWAL
			}
			r.Last = SegmentName(m.Timeline, seg, m.SegmentSize)
			seg++
		}
		r.Restorable = r.Last != "" && seg > stop.SegNo(m.SegmentSize)
		out[m.Name] = r
	}
	return out, nil
}

// historyEntry is one line of a timeline history file: timeline TLI ended
// at End, where the next one branched off.
type historyEntry struct {
	TLI uint32
	End LSN
}

// parseHistory reads a PostgreSQL timeline history file.
func parseHistory(text string) ([]historyEntry, error) {
	var out []historyEntry
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("history line %q", line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || tli == 0 {
			return nil, fmt.Errorf("history line %q: bad timeline", line)
		}
		end, err := ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("history line %q: %w", line, err)
		}
		out = append(out, historyEntry{TLI: uint32(tli), End: end})
	}
	return out, sc.Err()
}

// readHistory fetches and parses the history file of timeline tli.
func readHistory(ctx context.Context, cfg *Config, tli uint32) ([]historyEntry, error) {
	if tli <= 1 {
		return nil, nil
	}
	name := HistoryName(tli)
	rc, _, err := cfg.Store.Get(ctx, HistoryPrefix+name)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return nil, fmt.Errorf("%w: timeline %d has no history file %s in %s", ErrBadInput, tli, name, cfg.Store)
		}
		return nil, asStoreErr(fmt.Errorf("%s: reading %s: %w", cfg.Store, name, err))
	}
	defer rc.Close()
	dec, err := codec.NewReader(rc, cfg.Identities)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", name, cfg.Store, err)
	}
	defer dec.Close()
	b, err := io.ReadAll(io.LimitReader(dec, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: %s in %s: %w", ErrIntegrity, name, cfg.Store, err)
	}
	h, err := parseHistory(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %s in %s: %w", ErrIntegrity, name, cfg.Store, err)
	}
	return h, nil
}

// latestTimeline is the highest timeline with a history file in the store,
// or 0 when there is none (everything is on one timeline).
func latestTimeline(ctx context.Context, st cloud.Store) (uint32, error) {
	var latest uint32
	err := st.List(ctx, HistoryPrefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		if wf, err := ParseWALName(o.Key[len(HistoryPrefix):]); err == nil && wf.Kind == KindHistory && wf.Timeline > latest {
			latest = wf.Timeline
		}
		return nil
	})
	if err != nil {
		return 0, asStoreErr(fmt.Errorf("%s: listing %s: %w", st, HistoryPrefix, err))
	}
	return latest, nil
}

// Selection says which backup a restore wants.
type Selection struct {
	Backup string // a name, or "" / "LATEST" for the newest that fits
	Time   *time.Time
	LSN    *LSN
	XID    uint64
	// TargetTLI, when not 0, keeps only backups on that timeline's history
	// (History is its history file).
	TargetTLI uint32
	History   []historyEntry
}

// onHistory says whether recovery along timeline target (whose history is
// hist) can start from backup m.
func onHistory(m *Manifest, target uint32, hist []historyEntry) bool {
	if target == 0 || m.Timeline == target {
		return true
	}
	for _, h := range hist {
		if h.TLI == m.Timeline {
			return m.Stop() <= h.End
		}
	}
	return false
}

// selectBackup picks the backup to restore from backups (oldest first).
func selectBackup(backups []*Manifest, sel Selection) (*Manifest, error) {
	if len(backups) == 0 {
		return nil, fmt.Errorf("%w: the store has no complete backup: run walvault backup-push first", ErrBadInput)
	}
	fits := func(m *Manifest) error {
		if !onHistory(m, sel.TargetTLI, sel.History) {
			return fmt.Errorf("backup %s (timeline %d, stop %s) is not on the history of timeline %d", m.Name, m.Timeline, m.StopLSN, sel.TargetTLI)
		}
		if sel.Time != nil && !m.StopTime.Before(*sel.Time) {
			return fmt.Errorf("backup %s finished at %s, not before the target time %s", m.Name, fmtTime(m.StopTime), fmtTime(*sel.Time))
		}
		if sel.LSN != nil && m.Stop() > *sel.LSN {
			return fmt.Errorf("backup %s stops at %s, after the target LSN %s", m.Name, m.StopLSN, *sel.LSN)
		}
		if sel.XID != 0 && (m.StopNextXID == 0 || m.StopNextXID > sel.XID) {
			return fmt.Errorf("backup %s ended after transaction %d began", m.Name, sel.XID)
		}
		return nil
	}
	if sel.Backup != "" && !strings.EqualFold(sel.Backup, "LATEST") {
		for _, m := range backups {
			if m.Name == sel.Backup {
				if err := fits(m); err != nil {
					return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
				}
				return m, nil
			}
		}
		return nil, fmt.Errorf("%w: no complete backup named %q in the store: walvault backup-list shows them", ErrBadInput, sel.Backup)
	}
	var last error
	for i := len(backups) - 1; i >= 0; i-- {
		err := fits(backups[i])
		if err == nil {
			return backups[i], nil
		}
		last = err
	}
	oldest := backups[0]
	switch {
	case sel.Time != nil:
		return nil, fmt.Errorf("%w: no backup finished before the target time %s: the oldest, %s, finished at %s", ErrBadInput, fmtTime(*sel.Time), oldest.Name, fmtTime(oldest.StopTime))
	case sel.LSN != nil:
		return nil, fmt.Errorf("%w: no backup stops at or before the target LSN %s: the oldest, %s, stops at %s", ErrBadInput, *sel.LSN, oldest.Name, oldest.StopLSN)
	case sel.XID != 0:
		return nil, fmt.Errorf("%w: no backup ended before transaction %d began: pick one with --backup", ErrBadInput, sel.XID)
	}
	return nil, fmt.Errorf("%w: no backup fits: %v", ErrBadInput, last)
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999Z07:00") }
