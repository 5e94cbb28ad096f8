package cloud

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Objects nobody can delete early: every object walvault writes to a store
// opened with a Lock gets a retain-until date under the store's own
// immutability (S3 Object Lock, GCS object retention, Azure version-level
// immutability). The store itself enforces it: not walvault, not the
// credentials on the database host, can delete or replace such an object
// before the date. The lock decorator (WithLock) asks for it on every Put;
// the backend turns Retention into its service's request.

// LockMode is how strict a lock is.
type LockMode string

// The lock modes. Compliance: nobody, the account's root included, can
// shorten or remove the lock (S3 COMPLIANCE, GCS and Azure "Locked").
// Governance: principals with a special permission can (S3 GOVERNANCE,
// GCS and Azure "Unlocked"), for trials.
const (
	LockCompliance LockMode = "compliance"
	LockGovernance LockMode = "governance"
)

// ParseLockMode reads a lock-mode setting ("" is compliance).
func ParseLockMode(s string) (LockMode, error) {
	switch strings.ToLower(s) {
	case "", string(LockCompliance):
		return LockCompliance, nil
	case string(LockGovernance):
		return LockGovernance, nil
	}
	return "", fmt.Errorf("lock mode %q: use compliance (nobody can shorten the lock) or governance (principals allowed to bypass it can)", s)
}

// Retention is the lock one object is written with.
type Retention struct {
	Until time.Time
	Mode  LockMode
}

// ErrLocked: the object cannot be deleted or replaced before its
// retain-until date.
var ErrLocked = errors.New("object is locked")

// Lock is the immutability a store's writes get: Period from the moment of
// each write, in Mode. The zero Lock locks nothing.
type Lock struct {
	Period time.Duration
	Mode   LockMode
}

// On says whether the lock locks anything.
func (l Lock) On() bool { return l.Period > 0 }

func (l Lock) String() string {
	if !l.On() {
		return "no lock"
	}
	return fmt.Sprintf("%s for %s", l.Mode, FormatPeriod(l.Period))
}

// FormatPeriod writes a lock period as a DBA would: whole days as "30d",
// anything else as a Go duration.
func FormatPeriod(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// ParseLockPeriod reads a lock-days setting: a number of days ("30"), or a
// duration ("36h", "2w", "90s"; d and w are days and weeks). "" and "0" are
// no lock.
func ParseLockPeriod(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 36500 {
			return 0, fmt.Errorf("lock-days %q: use 0 to 36500 days, or a duration such as 36h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	unit := time.Duration(0)
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		unit = 7 * 24 * time.Hour
	}
	if unit > 0 {
		n, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err == nil && n >= 0 && n <= 36500 {
			return time.Duration(n * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("lock-days %q: give a number of days (30) or a duration (36h, 2w)", s)
	}
	return d, nil
}

// LockInfo is what a store says of its immutability.
type LockInfo struct {
	// Kind names the service's feature: "S3 Object Lock".
	Kind string
	// Supported: the bucket or container accepts per-object retention.
	Supported bool
	// Detail says what was found, and when unsupported how to fix it.
	Detail string
}

// Locker is implemented by backends whose service has object immutability.
type Locker interface {
	// LockSupport asks the service whether the bucket (container) can keep
	// objects until a retain-until date.
	LockSupport(ctx context.Context) (LockInfo, error)
}

// LockSupport asks s (through its decorators) whether it can lock objects.
// A backend without immutability (file://) says so.
func LockSupport(ctx context.Context, s Store) (LockInfo, error) {
	for {
		if l, ok := s.(Locker); ok {
			return l.LockSupport(ctx)
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			return LockInfo{Kind: "object immutability", Detail: s.String() + " has none: lock-days needs an S3, GCS or Azure store"}, nil
		}
		s = u.Unwrap()
	}
}

type lockStore struct {
	Store
	lock Lock
	now  func() time.Time
}

// WithLock decorates s so that every Put asks for l's retention (from the
// moment of the Put), unless the write says NoLock. A Retention the caller
// gives already (a copy of a locked object) is kept when it ends later.
// The lock is outermost, around the retries: each attempt asks for the
// same date.
func WithLock(s Store, l Lock) Store {
	if !l.On() {
		return s
	}
	return &lockStore{Store: s, lock: l, now: time.Now}
}

// LockOf is the lock a store opened by Open was given (the zero Lock for
// none).
func LockOf(s Store) Lock {
	for {
		if l, ok := s.(*lockStore); ok {
			return l.lock
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			return Lock{}
		}
		s = u.Unwrap()
	}
}

func (l *lockStore) Unwrap() Store { return l.Store }

func (l *lockStore) Close() error { return Close(l.Store) }

func (l *lockStore) Put(ctx context.Context, key string, body Body, opts PutOptions) error {
	if opts.NoLock {
		return l.Store.Put(ctx, key, body, opts)
	}
	until := l.now().Add(l.lock.Period).UTC().Truncate(time.Second).Add(time.Second)
	r := &Retention{Until: until, Mode: l.lock.Mode}
	if opts.Retention != nil && opts.Retention.Until.After(until) {
		r.Until = opts.Retention.Until
	}
	opts.Retention = r
	return l.Store.Put(ctx, key, body, opts)
}

// NoRetention is a backend's answer to a Put that asks for a lock it
// cannot give.
func NoRetention(s Store) error {
	return Permanent(fmt.Errorf("%s cannot lock objects (it has no object immutability): lock-days needs an S3, GCS or Azure store; unset it for this store", s))
}
