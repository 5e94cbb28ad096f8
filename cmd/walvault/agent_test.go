package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/agent"
)

func TestPrintAgent(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		s    *agent.Stats
		want []string
	}{
		{"none", nil, nil},
		{"running", &agent.Stats{PID: 42, Started: now.Add(-time.Hour), Updated: now, SegmentsArchived: 7, BytesArchived: 7 << 24, ReadyCount: 2, ReadyBytes: 2 << 24, OldestReadyAgeSec: 3.4, UploadErrors: 1, LastError: "store down\nsecond line", LastErrorTime: now},
			[]string{"agent             running (pid 42", "7 file(s) archived (112.0 MiB)", "2 waiting (32.0 MiB, oldest waiting 3s)", "1 upload error(s)", "last error", "store down"}},
		{"stale", &agent.Stats{PID: 42, Updated: now.Add(-time.Minute)}, []string{"agent             NOT RUNNING: last seen 1m0s ago (pid 42)"}},
	} {
		var b bytes.Buffer
		printAgent(&b, c.s)
		out := b.String()
		if c.want == nil && out != "" {
			t.Errorf("%s: printed %q", c.name, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %q missing from\n%s", c.name, w, out)
			}
		}
		if strings.Count(out, "\n") > 2 {
			t.Errorf("%s: too many lines:\n%s", c.name, out)
		}
	}
}
