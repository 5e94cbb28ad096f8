package backuptest

import (
	"strings"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

// NewFlakyStore wraps st so that the first download of every part (not
// of its sums object) is cut short, as a connection reset would, after
// 80% of its bytes; the retry decorator above it retries fast.
func NewFlakyStore(st cloud.Store) cloud.Store {
	f := storetest.NewFaults(st)
	f.Set(storetest.Rule{Op: storetest.Get, Keys: "/part-", PerKey: true, Times: 1, Cut: 0.8,
		Match: func(key string) bool { return !strings.HasSuffix(key, repo.SumsSuffix) }})
	return cloud.WithRetry(f, cloud.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond})
}

// BrokenDownloads says how many downloads st (a NewFlakyStore) cut short.
func BrokenDownloads(st cloud.Store) int {
	return st.(interface{ Unwrap() cloud.Store }).Unwrap().(*storetest.Faults).Injected()
}
