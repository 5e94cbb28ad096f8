package status

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/walvault/walvault/archive/internal/fsutil"
	"github.com/walvault/walvault/archive/repo"
)

// state is what one run of status leaves for the next, per store: how far
// each timeline's WAL was checked for gaps, and the gaps found (checked
// again every run until they are filled, or retention removes them).
type state struct {
	Store   string            `json:"store"`
	SegSize int64             `json:"segment_size"`
	Checked map[uint32]uint64 `json:"checked_through"` // timeline: segment number
	Gaps    []repo.WALGap     `json:"gaps"`
}

// stateFile is the file: one state per store, so one file serves every
// store a host watches.
type stateFile struct {
	Format int               `json:"format"`
	Stores map[string]*state `json:"stores"`
}

const (
	stateFormat = 1
	// maxStateBytes bounds what is read of the file.
	maxStateBytes = 4 << 20
	// maxStoredGaps bounds the gaps remembered per store.
	maxStoredGaps = 1000
)

// DefaultStateFile is where status keeps its state unless told:
// $XDG_STATE_HOME/walvault/status.json, else /var/lib/walvault/status.json
// for root, else ~/.local/state/walvault/status.json.
func DefaultStateFile() string { return fsutil.StateFile("status.json") }

// readStateFile reads path; a missing file is an empty state.
func readStateFile(path string) (*stateFile, error) {
	sf := &stateFile{Format: stateFormat, Stores: map[string]*state{}}
	b, err := fsutil.ReadSmall(path, maxStateBytes)
	if err != nil || b == nil {
		return sf, err
	}
	var got stateFile
	if err := json.Unmarshal(b, &got); err != nil || got.Format != stateFormat || got.Stores == nil {
		return sf, fmt.Errorf("not a walvault status state file")
	}
	return &got, nil
}

// loadState is the state of store for segments of segSize; empty when
// there is none, or it was made for another segment size. note says why
// it was not used, when it exists but is unusable.
func loadState(path, store string, segSize int64) (*state, string) {
	empty := &state{Store: store, SegSize: segSize, Checked: map[uint32]uint64{}}
	if path == "" {
		return empty, ""
	}
	sf, err := readStateFile(path)
	if err != nil {
		return empty, fmt.Sprintf("the state file %s was not used (%v): the WAL is checked from the newest backup's start", path, err)
	}
	st := sf.Stores[store]
	if st == nil || st.SegSize != segSize || st.Checked == nil {
		return empty, ""
	}
	return st, ""
}

// saveState writes next into path for its store, keeping the other
// stores' states, atomically (a temporary file renamed over it).
func saveState(path string, next *state) error {
	sf, err := readStateFile(path)
	if err != nil {
		sf = &stateFile{Format: stateFormat, Stores: map[string]*state{}}
	}
	if len(next.Gaps) > maxStoredGaps {
		next.Gaps = next.Gaps[:maxStoredGaps]
	}
	sf.Stores[next.Store] = next
	b, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, true)
}
