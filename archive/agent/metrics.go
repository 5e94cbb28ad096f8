package agent

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// The agent's Prometheus metrics, read from its counters at every scrape.
// Every walvault_agent_* metric carries the data directory the agent
// archives as the label pgdata; walvault_build_info says which walvault
// serves them.

type metric struct {
	name, help string
	kind       prometheus.ValueType
	value      func(s Stats) float64
}

var metrics = []metric{
	{"segments_archived_total", "WAL files the agent uploaded.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.SegmentsArchived) }},
	{"bytes_archived_total", "Bytes of WAL the agent uploaded (before compression).", prometheus.CounterValue, func(s Stats) float64 { return float64(s.BytesArchived) }},
	{"bytes_stored_total", "Bytes the agent's uploads occupy in the store.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.BytesStored) }},
	{"already_archived_total", "WAL files found already archived with identical content.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.AlreadyArchived) }},
	{"upload_errors_total", "Failed upload attempts.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.UploadErrors) }},
	{"upload_retries_total", "Upload attempts of a file after a failed one.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.Retries) }},
	{"push_requests_total", "push requests from walvault-wal.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.PushRequests) }},
	{"fetch_requests_total", "fetch requests from walvault-wal.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.FetchRequests) }},
	{"prefetch_hits_total", "fetch requests served from the prefetch directory.", prometheus.CounterValue, func(s Stats) float64 { return float64(s.PrefetchHits) }},
	{"fetch_seconds_total", "Time spent answering fetch requests (restore_command's wait, less the client's start).", prometheus.CounterValue, func(s Stats) float64 { return s.FetchSeconds }},
	{"uploads_in_flight", "Uploads running now.", prometheus.GaugeValue, func(s Stats) float64 { return float64(s.Uploading) }},
	{"archive_ready_files", "WAL files marked .ready that are not durable yet.", prometheus.GaugeValue, func(s Stats) float64 { return float64(s.ReadyCount) }},
	{"archive_ready_bytes", "Bytes of those files.", prometheus.GaugeValue, func(s Stats) float64 { return float64(s.ReadyBytes) }},
	{"archive_lag_seconds", "Age of the oldest .ready file not durable yet (0 when none waits).", prometheus.GaugeValue, func(s Stats) float64 { return s.OldestReadyAgeSec }},
}

// Metrics is a registry of the agent's metrics for a /metrics endpoint;
// version is walvault's, for walvault_build_info.
func (a *Agent) Metrics(version string) *prometheus.Registry {
	return newRegistry(a.Stats, a.cfg.PGData, version)
}

func newRegistry(stats func() Stats, pgdata, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{stats: stats, labels: prometheus.Labels{"pgdata": pgdata}})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "walvault_build_info",
		Help:        "Always 1; the labels say which walvault (and which Go) serves these metrics.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg
}

// collector reads the agent's counters at every scrape.
type collector struct {
	stats  func() Stats
	labels prometheus.Labels
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, m := range metrics {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("walvault_agent_"+m.name, m.help, nil, c.labels), m.kind, m.value(s))
	}
	d := prometheus.NewDesc("walvault_agent_store_requests_total", "Requests the agent made to the store, by kind.", []string{"op"}, c.labels)
	for op, n := range s.StoreRequests {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), op)
	}
	for _, m := range copyMetrics {
		d := prometheus.NewDesc("walvault_agent_copy_"+m.name, m.help, []string{"store"}, c.labels)
		for _, cs := range s.CopyStores {
			if v, ok := m.value(cs); ok {
				ch <- prometheus.MustNewConstMetric(d, m.kind, v, cs.Store)
			}
		}
	}
}

// copyMetrics are each second store's (copy-store), labelled by it.
var copyMetrics = []struct {
	name, help string
	kind       prometheus.ValueType
	value      func(CopyStoreStats) (float64, bool)
}{
	{"backlog_files", "WAL files durable in the primary store and not yet copied to this one.", prometheus.GaugeValue, func(c CopyStoreStats) (float64, bool) { return float64(c.Backlog), true }},
	{"backlog_bytes", "Stored bytes of those files.", prometheus.GaugeValue, func(c CopyStoreStats) (float64, bool) { return float64(c.BacklogBytes), true }},
	{"lag_seconds", "How long the oldest of them has been durable in the primary store (0 when none waits).", prometheus.GaugeValue, func(c CopyStoreStats) (float64, bool) { return c.LagSeconds, true }},
	{"files_total", "WAL files copied to this store.", prometheus.CounterValue, func(c CopyStoreStats) (float64, bool) { return float64(c.Copied), true }},
	{"bytes_total", "Stored bytes copied to this store.", prometheus.CounterValue, func(c CopyStoreStats) (float64, bool) { return float64(c.CopiedBytes), true }},
	{"read_back_total", "Copies that read the object back from the primary store (it no longer was in memory).", prometheus.CounterValue, func(c CopyStoreStats) (float64, bool) { return float64(c.ReadBack), true }},
	{"errors_total", "Failed copy attempts.", prometheus.CounterValue, func(c CopyStoreStats) (float64, bool) { return float64(c.Errors), true }},
	{"not_recorded_total", "Files not recorded for this store because its backlog was full (walvault copy catches it up).", prometheus.CounterValue, func(c CopyStoreStats) (float64, bool) { return float64(c.NotRecorded), true }},
	{"last_error_timestamp_seconds", "When the last copy attempt failed.", prometheus.GaugeValue, func(c CopyStoreStats) (float64, bool) {
		return float64(c.LastErrorTime.UnixNano()) / 1e9, !c.LastErrorTime.IsZero()
	}},
}
