package storetest

import (
	"context"
	"io"
	"strings"
	"sync"
	"syscall"

	"github.com/walvault/walvault/cloud"
)

// Faults is a store that misbehaves on request, for tests of what walvault
// does when a store fails: calls that fail, downloads cut short, a store's
// own checksum that does not match. It wraps a store (usually under the
// retry decorator, as cloud.Open's stores are) and passes on every call no
// rule matches. It is safe for concurrent use, and passes the conformance
// suite itself when no rule is set.
type Faults struct {
	cloud.Store
	// IgnoreIfAbsent makes Put write over an existing key although asked
	// not to (PutOptions.IfAbsent), as some S3-compatible servers do. Set
	// it before the store is used.
	IgnoreIfAbsent bool
	mu             sync.Mutex
	rules          []*rule
	calls          map[Op]int
}

// Op is a store operation.
type Op string

// The operations a Rule applies to. Load goes through Get.
const (
	Put    Op = "put"
	Get    Op = "get"
	Stat   Op = "stat"
	List   Op = "list"
	Delete Op = "delete"
)

// Rule says which calls misbehave and how.
type Rule struct {
	Op Op
	// Keys limits the rule to keys (List: prefixes) containing this text,
	// and Match (when set) to those it accepts.
	Keys  string
	Match func(key string) bool
	// Skip lets this many matching calls through first; then Times calls
	// misbehave (0: every one from then on). With PerKey, both count each
	// key apart.
	Skip, Times int
	PerKey      bool
	// Err is the error of a call that fails. A failing Put reads part of
	// its body first, as a connection that breaks midway would; a failing
	// List fails after delivering its first entry (a listing of one entry
	// does not fail).
	Err error
	// Cut makes a Get succeed with a body that breaks after this fraction
	// of the object, with Err, or a connection reset when Err is nil.
	Cut float64
	// AtEnd makes a Get succeed with a body that fails with Err at its end,
	// as a store does whose own checksum of the object does not match.
	AtEnd bool
}

type rule struct {
	Rule
	seen   map[string]int // matching calls, by key ("" without PerKey)
	misbeh int            // calls it made misbehave
}

// NewFaults wraps st, misbehaving on nothing yet.
func NewFaults(st cloud.Store) *Faults {
	return &Faults{Store: st, calls: map[Op]int{}}
}

// Set replaces the rules and starts the call counts afresh.
func (f *Faults) Set(rules ...Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
	for _, r := range rules {
		f.rules = append(f.rules, &rule{Rule: r, seen: map[string]int{}})
	}
	f.calls = map[Op]int{}
}

// Calls is how many calls of op the store had since the rules were set.
func (f *Faults) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Injected is how many calls the rules made misbehave since they were set.
func (f *Faults) Injected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.rules {
		n += r.misbeh
	}
	return n
}

// match counts a call of op on key and returns the rule that makes it
// misbehave, or nil.
func (f *Faults) match(op Op, key string) *Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for _, r := range f.rules {
		if r.Op != op || !strings.Contains(key, r.Keys) || r.Match != nil && !r.Match(key) {
			continue
		}
		k := ""
		if r.PerKey {
			k = key
		}
		r.seen[k]++
		n := r.seen[k] - r.Skip
		if n >= 1 && (r.Times == 0 || n <= r.Times) {
			r.misbeh++
			return &r.Rule
		}
	}
	return nil
}

func (f *Faults) Put(ctx context.Context, key string, body cloud.Body, opts cloud.PutOptions) error {
	if r := f.match(Put, key); r != nil {
		_, _ = io.CopyN(io.Discard, body, 100)
		return r.Err
	}
	if f.IgnoreIfAbsent {
		opts.IfAbsent = false
	}
	return f.Store.Put(ctx, key, body, opts)
}

func (f *Faults) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	r := f.match(Get, key)
	if r != nil && r.Cut == 0 && !r.AtEnd {
		return nil, cloud.ObjectInfo{}, r.Err
	}
	rc, info, err := f.Store.Get(ctx, key)
	if err != nil || r == nil {
		return rc, info, err
	}
	b := &faultyBody{rc: rc, left: -1, err: r.Err}
	if r.Cut > 0 {
		b.left = int64(float64(info.Size) * r.Cut)
		if b.err == nil {
			b.err = syscall.ECONNRESET
		}
	}
	return b, info, nil
}

// GetRange follows the rules for Get (Cut: a fraction of the range).
func (f *Faults) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	r := f.match(Get, key)
	if r != nil && r.Cut == 0 && !r.AtEnd {
		return nil, r.Err
	}
	rc, err := f.Store.GetRange(ctx, key, off, n)
	if err != nil || r == nil {
		return rc, err
	}
	b := &faultyBody{rc: rc, left: -1, err: r.Err}
	if r.Cut > 0 {
		b.left = int64(float64(n) * r.Cut)
		if b.err == nil {
			b.err = syscall.ECONNRESET
		}
	}
	return b, nil
}

// Load goes through Get, so that the rules apply to it.
func (f *Faults) Load(ctx context.Context, key string, fn func(io.Reader, cloud.ObjectInfo) error) error {
	return cloud.LoadOnce(ctx, f, key, fn)
}

func (f *Faults) Stat(ctx context.Context, key string) (cloud.ObjectInfo, error) {
	if r := f.match(Stat, key); r != nil {
		return cloud.ObjectInfo{}, r.Err
	}
	return f.Store.Stat(ctx, key)
}

func (f *Faults) List(ctx context.Context, prefix string, opts cloud.ListOptions, fn func(cloud.ObjectInfo) error) error {
	r := f.match(List, prefix)
	n := 0
	return f.Store.List(ctx, prefix, opts, func(o cloud.ObjectInfo) error {
		if n++; r != nil && n == 2 {
			return r.Err
		}
		return fn(o)
	})
}

func (f *Faults) Delete(ctx context.Context, key string) error {
	if r := f.match(Delete, key); r != nil {
		return r.Err
	}
	return f.Store.Delete(ctx, key)
}

// Close closes the wrapped store.
func (f *Faults) Close() error { return cloud.Close(f.Store) }

// Unwrap gives the wrapped store.
func (f *Faults) Unwrap() cloud.Store { return f.Store }

// faultyBody breaks after left bytes (never when left < 0) with err, or,
// when it does not break, ends with err instead of io.EOF (when err is
// set).
type faultyBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (b *faultyBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, b.err
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if err == io.EOF && b.err != nil {
		err = b.err
	}
	return n, err
}

func (b *faultyBody) Close() error { return b.rc.Close() }
