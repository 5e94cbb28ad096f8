// Package drillrecord keeps the outcome of restore drills on the host that
// ran them, where status reads it: the last drill and the last successful
// one, per store, in a small JSON file, and the same figures as Prometheus
// gauges. It is shared by the drill and status commands, which must agree
// on it; it writes nothing to the store (a drill never touches the
// archive, and the host that runs it holds no signing key).
package drillrecord

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walvault/walvault/archive/internal/fsutil"
)

// Check results.
const (
	OK   = "ok"
	Fail = "FAIL"
	Skip = "skip"
)

// Check is one thing a drill proved (or failed to), and how long it took.
type Check struct {
	Name string `json:"name"`
	// Database is set for the checks made in one database.
	Database string  `json:"database,omitempty"`
	Result   string  `json:"result"` // OK, Fail or Skip
	Seconds  float64 `json:"seconds"`
	Detail   string  `json:"detail"`
}

// Outcome is one drill as it is remembered.
type Outcome struct {
	Backup          string    `json:"backup"`
	BackupType      string    `json:"backup_type"`
	Target          string    `json:"target"`
	Started         time.Time `json:"started"`
	Finished        time.Time `json:"finished"`
	DurationSeconds float64   `json:"duration_seconds"`
	RestoredBytes   int64     `json:"restored_bytes"`
	Success         bool      `json:"success"`
	// Reason is the first failure, in words ("" on success).
	Reason string  `json:"reason,omitempty"`
	Checks []Check `json:"checks"`
}

// Store is what the file holds for one store.
type Store struct {
	Last        *Outcome `json:"last"`
	LastSuccess *Outcome `json:"last_success"`
}

type file struct {
	Format int               `json:"format"`
	Stores map[string]*Store `json:"stores"`
}

const (
	format = 1
	// maxBytes bounds what is read of the file.
	maxBytes = 4 << 20
	// maxChecks bounds the checks kept per outcome (a cluster with
	// thousands of databases has four checks for each).
	maxChecks = 200
)

// DefaultFile is where drills are remembered unless told:
// $XDG_STATE_HOME/walvault/drill.json, else /var/lib/walvault/drill.json
// for root, else ~/.local/state/walvault/drill.json (status keeps its own
// state beside it).
func DefaultFile() string { return fsutil.StateFile("drill.json") }

// Load returns what path records for store: nil, nil when the file or the
// store's entry does not exist.
func Load(path, store string) (*Store, error) {
	f, err := read(path)
	if err != nil || f == nil {
		return nil, err
	}
	return f.Stores[store], nil
}

func read(path string) (*file, error) {
	b, err := fsutil.ReadSmall(path, maxBytes)
	if errors.Is(err, fsutil.ErrTooLarge) {
		return nil, fmt.Errorf("%s is %w: not a walvault drill record", path, err)
	}
	if err != nil || b == nil {
		return nil, err
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil || f.Format != format || f.Stores == nil {
		return nil, fmt.Errorf("%s is not a walvault drill record (move it away; the next drill writes a new one)", path)
	}
	return &f, nil
}

// Save records o as the last drill of store (and as its last success when
// it succeeded), keeping the other stores' records. The file is replaced
// atomically under a lock, so drills of two stores on one host do not
// lose each other's record. It returns the store's record as saved.
func Save(path, store string, o Outcome) (*Store, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- beside the operator's state file
	if err != nil {
		return nil, err
	}
	defer func() { _ = lock.Close() }()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil { // #nosec G115 -- a file descriptor
		return nil, err
	}
	f, err := read(path)
	if err != nil || f == nil {
		// An unreadable record is replaced: the drill that just ran is
		// what matters now.
		f = &file{Format: format, Stores: map[string]*Store{}}
	}
	o.Checks = trimChecks(o.Checks)
	st := f.Stores[store]
	if st == nil {
		st = &Store{}
		f.Stores[store] = st
	}
	st.Last = &o
	if o.Success {
		st.LastSuccess = &o
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(path, b, true); err != nil {
		return nil, err
	}
	return st, nil
}

// trimChecks keeps at most maxChecks, the failed ones first.
func trimChecks(cs []Check) []Check {
	if len(cs) <= maxChecks {
		return cs
	}
	out := make([]Check, len(cs))
	copy(out, cs)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Result == Fail && out[j].Result != Fail })
	return out[:maxChecks]
}

// Register adds the drill's gauges for store to reg: the last drill's
// outcome, time, duration and restored bytes, and when the last successful
// one finished, each labelled with the backup it used. Nothing is added
// for a store without a record.
func Register(reg prometheus.Registerer, store string, st *Store) {
	if st == nil {
		return
	}
	gauge := func(name, help, backup string, v float64) {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "walvault_drill_" + name, Help: help}, []string{"store", "backup"})
		g.With(prometheus.Labels{"store": store, "backup": backup}).Set(v)
		reg.MustRegister(g)
	}
	if s := st.LastSuccess; s != nil {
		gauge("last_success_timestamp_seconds", "When the last successful restore drill finished (Unix time).", s.Backup, unix(s.Finished))
	}
	if l := st.Last; l != nil {
		ok := 0.0
		if l.Success {
			ok = 1
		}
		gauge("last_timestamp_seconds", "When the last restore drill finished, successful or not (Unix time).", l.Backup, unix(l.Finished))
		gauge("success", "1 when every check of the last restore drill passed, else 0.", l.Backup, ok)
		gauge("duration_seconds", "How long the last restore drill took, restore and checks included.", l.Backup, l.DurationSeconds)
		if l.RestoredBytes > 0 {
			gauge("restored_bytes", "Bytes the last restore drill restored (the backup's files).", l.Backup, float64(l.RestoredBytes))
		}
	}
}

// WriteTextfile writes store's drill gauges to path for node_exporter's
// textfile collector (atomically, mode 0644).
func WriteTextfile(path, store string, st *Store) error {
	reg := prometheus.NewRegistry()
	Register(reg, store, st)
	return prometheus.WriteToTextfile(path, reg)
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
