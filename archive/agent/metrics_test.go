package agent

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

// The agent's /metrics: the documented names, each walvault_agent_* one
// labelled with the data directory, walvault_build_info, and nothing
// Prometheus' own lint objects to.
func TestMetrics(t *testing.T) {
	st := Stats{SegmentsArchived: 3, BytesArchived: 48 << 20, ReadyCount: 2, OldestReadyAgeSec: 1.5,
		StoreRequests: map[string]int64{"put": 3, "stat": 1}}
	reg := newRegistry(func() Stats { return st }, "/var/lib/postgresql/15/main", "v1.2.3")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	var names []string
	values := map[string]float64{}
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case mf.GetName() == "walvault_build_info":
				if labels["version"] != "v1.2.3" || labels["goversion"] != runtime.Version() || m.GetGauge().GetValue() != 1 {
					t.Errorf("walvault_build_info %v = %v", labels, m.GetGauge().GetValue())
				}
			case labels["pgdata"] != "/var/lib/postgresql/15/main":
				t.Errorf("%s %v: no pgdata label naming the data directory", mf.GetName(), labels)
			}
			values[mf.GetName()] += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	want := []string{"walvault_build_info"}
	for _, m := range metrics {
		want = append(want, "walvault_agent_"+m.name)
	}
	want = append(want, "walvault_agent_store_requests_total")
	slices.Sort(want)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("metrics %s, want %s", strings.Join(names, " "), strings.Join(want, " "))
	}
	for name, v := range map[string]float64{"walvault_agent_segments_archived_total": 3, "walvault_agent_bytes_archived_total": 48 << 20,
		"walvault_agent_archive_ready_files": 2, "walvault_agent_archive_lag_seconds": 1.5, "walvault_agent_store_requests_total": 4} {
		if values[name] != v {
			t.Errorf("%s = %v, want %v", name, values[name], v)
		}
	}
}

// TestCountingStoreConformance: the agent's counting decorator is a store
// like any other, its Load the retrying one of the store it wraps.
func TestCountingStoreConformance(t *testing.T) {
	open := func(t *testing.T, url string) cloud.Store {
		st, err := cloud.Open(context.Background(), url, cloud.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return &countingStore{Store: st}
	}
	storetest.Run(t, func(t *testing.T) cloud.Store { return open(t, "file://"+t.TempDir()+"/store") },
		storetest.Hooks{Open: open, MultipartSize: 2 << 20, LargeSize: 4<<20 + 3})
}
