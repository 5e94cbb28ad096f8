package status

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Registry holds the report's figures as Prometheus gauges, labelled with
// the (redacted) store. A figure that is unknown (no backup, server not
// reachable) is left out rather than reported as a number.
func (r *Report) Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"store": r.Store}
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "walvault_" + name, Help: help}, []string{"store"})
		g.With(labels).Set(v)
		reg.MustRegister(g)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge("status_timestamp_seconds", "When walvault status gathered these figures (Unix time).", unix(r.Time))
	gauge("backups", "Complete backups in the store.", float64(r.Backups))
	gauge("damaged_backups", "Backup folders whose manifest is damaged or fails authentication.", float64(len(r.BadBackups)))
	gauge("incomplete_backups", "Backup folders without a manifest (interrupted or running backups).", float64(r.Incomplete))
	if b := r.NewestBackup; b != nil {
		gauge("last_backup_timestamp_seconds", "When the newest complete backup finished (Unix time).", unix(b.FinishTime))
		gauge("last_backup_age_seconds", "Seconds since the newest complete backup finished.", b.AgeSeconds)
	}
	gauge("dumps", "Logical dumps (database and globals) whose manifest authenticates.", float64(r.Dumps))
	if d := r.NewestDump; d != nil {
		gauge("last_dump_timestamp_seconds", "When the newest database dump finished (Unix time).", unix(d.FinishTime))
		gauge("last_dump_age_seconds", "Seconds since the newest database dump finished.", d.AgeSeconds)
	}
	if s := r.LastSegment; s != nil {
		gauge("last_archived_wal_timestamp_seconds", "When the newest WAL segment in the store was stored (Unix time).", unix(s.Time))
		gauge("last_archived_wal_age_seconds", "Seconds since the newest WAL segment in the store was stored.", s.AgeSeconds)
	}
	gauge("server_up", "1 when the server was reached to read pg_stat_archiver, else 0.", b2f(r.Server != nil))
	if s := r.Server; s != nil {
		gauge("archiver_failing", "1 when the archiver's latest attempt failed (pg_stat_archiver).", b2f(s.Failing))
		gauge("archiver_failures", "Failed archive_command runs pg_stat_archiver counted (failed_count) since its statistics were reset.", float64(s.FailedCount))
		if s.LastArchivedAgeSeconds != nil {
			gauge("archiver_last_archived_age_seconds", "Seconds since pg_stat_archiver's last successful archiving.", *s.LastArchivedAgeSeconds)
		}
		if s.ArchiveLagSeconds != nil {
			gauge("archive_lag_seconds", "Seconds WAL has waited for archiving (0 when nothing waits).", *s.ArchiveLagSeconds)
		}
		if s.ReadyFiles != nil {
			gauge("ready_wal_files", "WAL files waiting for archive_command (.ready files in pg_wal/archive_status).", float64(*s.ReadyFiles))
		}
	}
	if w := r.PITR; w != nil {
		gauge("pitr_window_start_timestamp_seconds", "The oldest point the archive can restore to (Unix time).", unix(w.Start))
		gauge("pitr_window_end_timestamp_seconds", "The newest point the archive can restore to, without a WAL gap (Unix time).", unix(w.End))
		gauge("pitr_window_seconds", "Length of the point-in-time recovery window.", w.Seconds)
	}
	gauge("wal_gaps", "Gaps (runs of missing WAL segments) known in the newest part of the archive.", float64(len(r.WAL.Gaps)))
	gauge("wal_gap_segments", "Missing WAL segments in those gaps.", float64(r.WAL.Segments))
	gauge("archive_bytes", "Bytes stored in the archive (backups, WAL and the rest).", float64(r.Size.Bytes))
	gauge("archive_backup_bytes", "Bytes stored under backups/.", float64(r.Size.BackupBytes))
	gauge("archive_wal_bytes", "Bytes stored under wal/.", float64(r.Size.WALBytes))
	gauge("archive_dump_bytes", "Bytes stored under dumps/.", float64(r.Size.DumpBytes))
	gauge("archive_objects", "Objects in the archive.", float64(r.Size.Objects))
	r.registerDrill(reg)
	RegisterCopyStores(reg, r.Store, r.CopyStores)
	return reg
}

// WriteTextfile writes the figures to path for node_exporter's textfile
// collector: the client library's text encoder, into a temporary file in
// the same directory renamed over path (mode 0644: node_exporter reads it
// as another user; the store label is redacted).
func (r *Report) WriteTextfile(path string) error {
	return prometheus.WriteToTextfile(path, r.Registry())
}
