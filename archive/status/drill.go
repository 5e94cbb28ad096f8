package status

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/internal/drillrecord"
)

// Drill is what this host remembers of restore drills (walvault drill)
// of the store: the last one, and the last that passed.
type Drill struct {
	// StateFile is where it was read from.
	StateFile string `json:"state_file"`
	// Last and LastSuccess are nil when none is recorded.
	Last        *DrillOutcome `json:"last"`
	LastSuccess *DrillOutcome `json:"last_success"`
	// Error says why the file could not be read.
	Error string `json:"error,omitempty"`

	rec *drillrecord.Store
}

// DrillOutcome is one drill.
type DrillOutcome struct {
	Backup          string    `json:"backup"`
	BackupType      string    `json:"backup_type"`
	Target          string    `json:"target"`
	Finished        time.Time `json:"finished"`
	AgeSeconds      float64   `json:"age_seconds"`
	DurationSeconds float64   `json:"duration_seconds"`
	RestoredBytes   int64     `json:"restored_bytes"`
	Success         bool      `json:"success"`
	Reason          string    `json:"reason,omitempty"`
}

// readDrill reads what path remembers of the store's drills; nothing when
// path is "" (no state kept).
func (rep *Report) readDrill(path string, now time.Time) {
	if path == "" {
		return
	}
	d := &Drill{StateFile: path}
	rep.Drill = d
	rec, err := drillrecord.Load(path, rep.Store)
	if err != nil {
		d.Error = archive.OneLine(err.Error())
		return
	}
	if rec == nil {
		return
	}
	d.rec = rec
	d.Last, d.LastSuccess = outcome(rec.Last, now), outcome(rec.LastSuccess, now)
}

func outcome(o *drillrecord.Outcome, now time.Time) *DrillOutcome {
	if o == nil {
		return nil
	}
	return &DrillOutcome{Backup: o.Backup, BackupType: o.BackupType, Target: o.Target, Finished: o.Finished,
		AgeSeconds: now.Sub(o.Finished).Seconds(), DurationSeconds: o.DurationSeconds, RestoredBytes: o.RestoredBytes,
		Success: o.Success, Reason: o.Reason}
}

// drillExceeded is the --max-drill-age check: the last drill that passed
// is older than max, or there is none.
func (rep *Report) drillExceeded(max time.Duration) []string {
	d := rep.Drill
	switch {
	case d == nil:
		return []string{fmt.Sprintf("no drill state file to read (--drill-state-file none) for --max-drill-age %s", max)}
	case d.Error != "":
		return []string{fmt.Sprintf("the drill record %s cannot be read (--max-drill-age %s): %s", d.StateFile, max, d.Error)}
	}
	last := ""
	if d.Last != nil && !d.Last.Success {
		last = fmt.Sprintf("; the last drill, %s ago, FAILED: %s", roundAge(d.Last.AgeSeconds), d.Last.Reason)
	}
	switch s := d.LastSuccess; {
	case s == nil:
		return []string{fmt.Sprintf("no successful restore drill recorded in %s (--max-drill-age %s)%s", d.StateFile, max, last)}
	case s.AgeSeconds > max.Seconds():
		return []string{fmt.Sprintf("the last successful restore drill (backup %s) finished %s ago, more than --max-drill-age %s%s", s.Backup, roundAge(s.AgeSeconds), max, last)}
	}
	return nil
}

// registerDrill adds the walvault_drill_* gauges, the same a drill's own
// --prometheus file holds.
func (rep *Report) registerDrill(reg prometheus.Registerer) {
	if rep.Drill != nil {
		drillrecord.Register(reg, rep.Store, rep.Drill.rec)
	}
}
