package status

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// CopyStore is how far a second store (copy-store) is behind the primary,
// from the two listings: the WAL files, backups and dumps the primary holds
// that it lacks (by key and size), and how long the oldest of those WAL
// files has been in the primary. The agent that keeps it in step reports
// its own backlog and last error (status shows both).
type CopyStore struct {
	Store string `json:"store"`
	// Error says why the store could not be listed; the figures are then
	// zero.
	Error          string  `json:"error,omitempty"`
	MissingWAL     int     `json:"missing_wal"`
	MissingBackups int     `json:"missing_backups"`
	MissingDumps   int     `json:"missing_dumps"`
	OldestMissing  string  `json:"oldest_missing_wal,omitempty"`
	LagSeconds     float64 `json:"lag_seconds"`
	// NewestWAL is the newest WAL segment it holds.
	NewestWAL string `json:"newest_wal,omitempty"`
}

// InStep says whether the store holds everything the primary does.
func (c CopyStore) InStep() bool {
	return c.Error == "" && c.MissingWAL == 0 && c.MissingBackups == 0 && c.MissingDumps == 0
}

// CollectCopyStores compares each second store with the primary r.
func CollectCopyStores(ctx context.Context, r *repo.Repo, seconds []cloud.Store, now time.Time) ([]CopyStore, error) {
	if len(seconds) == 0 {
		return nil, nil
	}
	src, err := repo.ListAll(ctx, r.Store, "")
	if err != nil {
		return nil, err
	}
	var out []CopyStore
	for _, st := range seconds {
		cs := CopyStore{Store: cloud.Redact(st.String())}
		have, err := repo.ListAll(ctx, st, "")
		if err != nil {
			cs.Error = archive.OneLine(err.Error())
			out = append(out, cs)
			continue
		}
		compareListings(&cs, src, have, now)
		out = append(out, cs)
	}
	return out, nil
}

// compareListings fills cs from what the primary (src) and the second
// store (have) list.
func compareListings(cs *CopyStore, src, have map[string]cloud.ObjectInfo, now time.Time) {
	var oldest time.Time
	for key, o := range src {
		h, ok := have[key]
		present := ok && h.Size == o.Size
		switch {
		case strings.HasPrefix(key, repo.WALPrefix):
			name := key[strings.LastIndexByte(key, '/')+1:]
			if wf, err := archive.ParseWALName(name); err != nil || repo.WALKey(wf) != key {
				continue
			}
			if present {
				if !strings.HasPrefix(key, repo.HistoryPrefix) && name > cs.NewestWAL {
					cs.NewestWAL = name
				}
				continue
			}
			cs.MissingWAL++
			if oldest.IsZero() || o.ModTime.Before(oldest) {
				oldest, cs.OldestMissing = o.ModTime, name
			}
		case strings.HasPrefix(key, repo.BackupPrefix) && strings.HasSuffix(key, "/"+repo.ManifestFile) && !present:
			cs.MissingBackups++
		case strings.HasPrefix(key, repo.DumpPrefix) && strings.HasSuffix(key, "/"+repo.ManifestFile) && !present:
			cs.MissingDumps++
		}
	}
	if !oldest.IsZero() {
		cs.LagSeconds = max(0, now.Sub(oldest).Seconds())
	}
}

// CopyProblems lists the second stores that are past maxLag (0: none is
// checked) or cannot be read.
func CopyProblems(stores []CopyStore, maxLag time.Duration) []string {
	var out []string
	for _, c := range stores {
		switch {
		case c.Error != "":
			out = append(out, fmt.Sprintf("copy-store %s cannot be read: %s", c.Store, c.Error))
		case maxLag > 0 && c.LagSeconds > maxLag.Seconds():
			out = append(out, fmt.Sprintf("copy-store %s lacks %d WAL file(s), the oldest (%s) archived %s ago, more than --max-copy-lag %s",
				c.Store, c.MissingWAL, c.OldestMissing, roundAge(c.LagSeconds), maxLag))
		}
	}
	return out
}

// RegisterCopyStores adds the second stores' figures to a status registry.
func RegisterCopyStores(reg *prometheus.Registry, store string, stores []CopyStore) {
	if len(stores) == 0 {
		return
	}
	vec := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "walvault_copy_store_" + name, Help: help}, []string{"store", "copy_store"})
		reg.MustRegister(g)
		return g
	}
	up := vec("up", "1 when the second store (copy-store) could be listed, else 0.")
	lag := vec("lag_seconds", "How long the oldest WAL file the second store lacks has been in the primary store (0 when it lacks none).")
	wal := vec("missing_wal_files", "WAL and history files of the primary store the second store lacks.")
	backups := vec("missing_backups", "Complete backups of the primary store whose manifest the second store lacks.")
	dumps := vec("missing_dumps", "Dumps of the primary store whose manifest the second store lacks.")
	for _, c := range stores {
		l := prometheus.Labels{"store": store, "copy_store": c.Store}
		if c.Error != "" {
			up.With(l).Set(0)
			continue
		}
		up.With(l).Set(1)
		lag.With(l).Set(c.LagSeconds)
		wal.With(l).Set(float64(c.MissingWAL))
		backups.With(l).Set(float64(c.MissingBackups))
		dumps.With(l).Set(float64(c.MissingDumps))
	}
}
