package check

import (
	"context"
	"fmt"

	"github.com/walvault/walvault/cloud"
)

// CopyStore is a second store (copy-store) check probes as it probes the
// store, and whose immutability it checks when its lock is on.
type CopyStore struct {
	// URL names it (without credentials).
	URL string
	// Store is nil when it could not be opened; Err says why.
	Store cloud.Store
	Err   error
	// Lock is what walvault asks of every object written to it.
	Lock cloud.Lock
}

// checkCopyStores probes each second store and, when walvault locks what it
// writes there, that it can.
func checkCopyStores(ctx context.Context, rep *Report, stores []CopyStore) {
	for _, s := range stores {
		name := "copy-store" // its detail names it
		if s.Store == nil {
			rep.add(name, Fail, fmt.Sprintf("cannot open %s: %v", cloud.Redact(s.URL), s.Err),
				"check the copy-store entry's settings and credentials (see README: A second store)")
			continue
		}
		if checkProbeAs(ctx, s.Store, rep, name) {
			checkLock(ctx, rep, name+" lock", s.Store, s.Lock)
		}
	}
}

// checkLock: with lock-days set, the bucket or container must keep objects
// until a date, or every write would fail (S3) or lock nothing (a service
// that ignores what it does not support). Without, nothing is reported.
func checkLock(ctx context.Context, rep *Report, name string, st cloud.Store, l cloud.Lock) {
	if !l.On() {
		return
	}
	li, err := cloud.LockSupport(ctx, st)
	switch {
	case err != nil:
		rep.add(name, Warn, fmt.Sprintf("%s: could not read whether %s is on: %v", st, li.Kind, err),
			"grant the permission to read the bucket's (container's) immutability settings, or check them by hand (README: Immutable objects)")
	case !li.Supported:
		rep.add(name, Fail, fmt.Sprintf("%s: lock-days %s asks for %s, which it lacks: %s", st, cloud.FormatPeriod(l.Period), li.Kind, li.Detail),
			"enable it on the bucket or container (README: Immutable objects), or set lock-days 0")
	default:
		rep.add(name, OK, fmt.Sprintf("%s: %s is on; every object walvault writes is locked (%s)", st, li.Kind, l), "")
	}
}
