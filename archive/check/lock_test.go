package check

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

// TestCheckLockAndCopyStores: a lock asked of a store without
// immutability fails with the fix; no lock, no check; each copy-store is
// probed, one that did not open fails. (A store that can lock is checked
// against versitygw: integration TestCheckLockCopyStores.)
func TestCheckLockAndCopyStores(t *testing.T) {
	st, _ := newFileStore(t)
	day := cloud.Lock{Period: 24 * time.Hour, Mode: cloud.LockCompliance}
	for _, tt := range []struct {
		name   string
		lock   cloud.Lock
		want   string
		detail string
	}{
		{"no lock", cloud.Lock{}, "", ""},
		{"lock on a file store", day, Fail, "lock-days 1d asks for object immutability, which it lacks"},
	} {
		rep := &Report{}
		checkLock(t.Context(), rep, "store lock", st, tt.lock)
		if tt.want == "" {
			if len(rep.Results) != 0 {
				t.Errorf("%s: %+v, want nothing reported", tt.name, rep.Results)
			}
			continue
		}
		if len(rep.Results) != 1 || rep.Results[0].Status != tt.want || !strings.Contains(rep.Results[0].Detail, tt.detail) || rep.Results[0].Fix == "" {
			t.Errorf("%s: %+v, want %s with %q and a fix", tt.name, rep.Results, tt.want, tt.detail)
		}
	}

	second, _ := newFileStore(t)
	rep := &Report{}
	checkCopyStores(t.Context(), rep, []CopyStore{
		{URL: "file:///dr", Store: second},
		{URL: "s3://gone/x", Err: errors.New("no such bucket")},
		{URL: "file:///locked", Store: second, Lock: day},
	})
	want := []struct{ name, status string }{
		{"copy-store", OK}, {"copy-store", Fail}, {"copy-store", OK}, {"copy-store lock", Fail},
	}
	if len(rep.Results) != len(want) {
		t.Fatalf("%+v", rep.Results)
	}
	for i, w := range want {
		if r := rep.Results[i]; r.Name != w.name || r.Status != w.status {
			t.Errorf("result %d: %+v, want %s %s", i, r, w.name, w.status)
		}
	}
	if rep.Failed != 2 || !strings.Contains(rep.Results[1].Detail, "cannot open s3://gone/x: no such bucket") {
		t.Errorf("failed %d: %+v", rep.Failed, rep.Results)
	}
	if keys := storeKeys(t, second); len(keys) != 0 {
		t.Errorf("the probes left %v", keys)
	}
}
