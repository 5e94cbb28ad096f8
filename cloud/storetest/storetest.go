// Package storetest is the conformance suite every cloud.Store backend must
// pass: one set of tests for the contract in cloud/store.go, run against
// file:// and each real server.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
)

// Hooks adapt the suite to a backend. All fields are optional.
type Hooks struct {
	// Open opens another store on the same server and credentials from a
	// URL; the suite uses it to check that stores with neighbouring
	// prefixes do not see each other's keys.
	Open func(t *testing.T, url string) cloud.Store
	// MultipartSize is a size the backend uploads in more than one request
	// (parts, chunks, blocks). Default 18 MiB.
	MultipartSize int64
	// LargeSize is the size of the big streamed object. Default 100 MiB + 3.
	LargeSize int64
	// Leftovers lists what a failed upload left behind the store's back
	// (S3 multipart uploads, ...): the suite expects none.
	Leftovers func(t *testing.T, s cloud.Store) []string
	// Unavailable opens a store of the backend reached at endpoint (the
	// http:// URL of the suite's server on 127.0.0.1, which answers every
	// request 503 Service Unavailable and counts them), to check the retry
	// budget. nil for a backend without an SDK (file://): its attempts are
	// single requests.
	Unavailable func(t *testing.T, endpoint string) cloud.Store
}

func (h *Hooks) defaults() {
	if h.MultipartSize == 0 {
		h.MultipartSize = 18 << 20
	}
	if h.LargeSize == 0 {
		h.LargeSize = 100<<20 + 3
	}
}

// Run runs the suite. newStore must return a fresh, empty store (its own
// bucket or prefix) on every call, cleaned up by the test; subtests run in
// parallel.
func Run(t *testing.T, newStore func(t *testing.T) cloud.Store, hooks Hooks) {
	hooks.defaults()
	tests := []struct {
		name string
		fn   func(t *testing.T, s cloud.Store, h Hooks)
	}{
		{"RoundTripSmall", testRoundTripSmall},
		{"RoundTripLarge", testRoundTripLarge},
		{"Overwrite", testOverwrite},
		{"Metadata", testMetadata},
		{"BadMetadata", testBadMetadata},
		{"NotFound", testNotFound},
		{"KeyCharacters", testKeyCharacters},
		{"ListMany", testListMany},
		{"ListDelimiter", testListDelimiter},
		{"ListStop", testListStop},
		{"PrefixIsolation", testPrefixIsolation},
		{"Delete", testDelete},
		{"IfAbsent", testIfAbsent},
		{"IfAbsentMultipart", testIfAbsentMultipart},
		{"IfAbsentRace", testIfAbsentRace},
		{"GetCancel", testGetCancel},
		{"PutReaderFails", testPutReaderFails},
		{"PutCancelled", testPutCancelled},
		{"Retry", testRetry},
		{"Load", testLoad},
		{"LoadRetry", testLoadRetry},
		{"RetryBudget", testRetryBudget},
		{"GetRange", testGetRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t), hooks)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// pattern returns a deterministic stream of n bytes for seed.
func pattern(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8) // #nosec G115 -- truncation intended: a test pattern
	return io.LimitReader(rand.NewChaCha8(s), n)
}

func patternBytes(seed uint64, n int64) []byte {
	b, _ := io.ReadAll(pattern(seed, n))
	return b
}

func put(t *testing.T, s cloud.Store, key string, data []byte, opts cloud.PutOptions) {
	t.Helper()
	if err := s.Put(ctxT(t), key, cloud.Bytes(data), opts); err != nil {
		t.Fatalf("%s: Put(%q): %v", s, key, err)
	}
}

func get(t *testing.T, s cloud.Store, key string) ([]byte, cloud.ObjectInfo) {
	t.Helper()
	rc, info, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("%s: Get(%q): %v", s, key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("%s: reading %q: %v", s, key, err)
	}
	return b, info
}

func mustNotExist(t *testing.T, s cloud.Store, key string) {
	t.Helper()
	if info, err := s.Stat(ctxT(t), key); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("Stat(%q) = size %d, %v; want ErrNotFound", key, info.Size, err)
	}
	if rc, _, err := s.Get(ctxT(t), key); !errors.Is(err, cloud.ErrNotFound) {
		if rc != nil {
			_ = rc.Close()
		}
		t.Fatalf("Get(%q) error = %v; want ErrNotFound", key, err)
	}
}

func checkModTime(t *testing.T, what string, m time.Time) {
	t.Helper()
	if d := time.Since(m); d < -time.Hour || d > time.Hour {
		t.Errorf("%s: ModTime %v is not about now", what, m)
	}
}

func testRoundTripSmall(t *testing.T, s cloud.Store, h Hooks) {
	for _, n := range []int64{0, 1, 4097, 1 << 20} {
		key := fmt.Sprintf("small/%d", n)
		want := patternBytes(uint64(n), n) // #nosec G115 -- n is a small positive size
		put(t, s, key, want, cloud.PutOptions{})
		got, info := get(t, s, key)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: Get returned %d different bytes", n, len(got))
		}
		if info.Size != n || info.Key != key {
			t.Errorf("Get info = %+v; want key %q size %d", info, key, n)
		}
		st, err := s.Stat(ctxT(t), key)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != n || st.Key != key || st.IsPrefix {
			t.Errorf("Stat = %+v; want key %q size %d", st, key, n)
		}
		checkModTime(t, "Stat", st.ModTime)
	}
	// SizeHint is a hint: a wrong one must not matter.
	want := patternBytes(7, 3000)
	if err := s.Put(ctxT(t), "hinted", cloud.Bytes(want), cloud.PutOptions{SizeHint: 10}); err != nil {
		t.Fatal(err)
	}
	if got, _ := get(t, s, "hinted"); !bytes.Equal(got, want) {
		t.Fatal("wrong SizeHint changed the content")
	}
}

// hashingReader hashes what passes through it.
type hashingReader struct {
	r io.Reader
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	_, _ = hr.h.Write(p[:n]) // hash.Hash.Write never fails
	hr.n += int64(n)
	return n, err
}

func testRoundTripLarge(t *testing.T, s cloud.Store, h Hooks) {
	ctx := ctxT(t)
	src := &hashingReader{r: pattern(42, h.LargeSize), h: sha256.New()}
	start := time.Now()
	// No SizeHint and no Seeker: the backend must stream an unknown length.
	if err := s.Put(ctx, "large", cloud.Once(src), cloud.PutOptions{Metadata: map[string]string{"kind": "large"}}); err != nil {
		t.Fatalf("Put of %d bytes: %v", h.LargeSize, err)
	}
	up := time.Since(start)
	rc, info, err := s.Get(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	dst := sha256.New()
	n, err := io.Copy(dst, rc)
	if err != nil {
		t.Fatalf("reading back after %d bytes: %v", n, err)
	}
	t.Logf("%s: %d MiB up in %s, down in %s", s, h.LargeSize>>20, up.Round(time.Millisecond), (time.Since(start) - up).Round(time.Millisecond))
	if n != h.LargeSize || info.Size != h.LargeSize || src.n != h.LargeSize {
		t.Fatalf("sizes: sent %d, read %d, Get info %d; want %d", src.n, n, info.Size, h.LargeSize)
	}
	if !bytes.Equal(dst.Sum(nil), src.h.Sum(nil)) {
		t.Fatal("large object came back with different content")
	}
	if info.Metadata["kind"] != "large" {
		t.Errorf("metadata of a multipart object = %v", info.Metadata)
	}
}

func testOverwrite(t *testing.T, s cloud.Store, h Hooks) {
	put(t, s, "k", []byte("first"), cloud.PutOptions{Metadata: map[string]string{"a": "1"}})
	put(t, s, "k", []byte("second, longer"), cloud.PutOptions{Metadata: map[string]string{"b": "2"}})
	got, info := get(t, s, "k")
	if string(got) != "second, longer" || !maps.Equal(info.Metadata, map[string]string{"b": "2"}) {
		t.Fatalf("after overwrite: %q %v", got, info.Metadata)
	}
}

func testMetadata(t *testing.T, s cloud.Store, h Hooks) {
	meta := map[string]string{
		"walvault-format": "1",
		"compression":     "lz4",
		"sha256":          strings.Repeat("ab", 32),
		"x":               "a value: with spaces, punctuation & (symbols)!",
		"d-i-g-i-t-5":     "0",
	}
	for _, tc := range []struct {
		key  string
		size int64
	}{{"meta/single", 10}, {"meta/multi", h.MultipartSize}} {
		if err := s.Put(ctxT(t), tc.key, cloud.Once(pattern(1, tc.size)), cloud.PutOptions{Metadata: meta}); err != nil {
			t.Fatal(err)
		}
		st, err := s.Stat(ctxT(t), tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(st.Metadata, meta) {
			t.Errorf("%s: Stat metadata = %v; want %v", tc.key, st.Metadata, meta)
		}
		rc, info, err := s.Get(ctxT(t), tc.key)
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Close()
		if !maps.Equal(info.Metadata, meta) {
			t.Errorf("%s: Get metadata = %v; want %v", tc.key, info.Metadata, meta)
		}
		if info.Size != tc.size {
			t.Errorf("%s: Get size = %d; want %d", tc.key, info.Size, tc.size)
		}
	}
	// No metadata comes back as none, not as something invented.
	put(t, s, "meta/none", []byte("x"), cloud.PutOptions{})
	if st, err := s.Stat(ctxT(t), "meta/none"); err != nil || len(st.Metadata) != 0 {
		t.Errorf("Stat of an object without metadata = %v, %v", st.Metadata, err)
	}
}

func testBadMetadata(t *testing.T, s cloud.Store, h Hooks) {
	for _, m := range []map[string]string{
		{"Upper": "x"},
		{"under_score": "x"},
		{"1digit": "x"},
		{"": "x"},
		{"ok": "new\nline"},
		{"ok": " padded"},
		{"ok": "nön-ascii"},
		{"big": strings.Repeat("x", 4096)},
	} {
		err := s.Put(ctxT(t), "bad", cloud.Bytes([]byte("data")), cloud.PutOptions{Metadata: m})
		if err == nil {
			t.Errorf("Put with metadata %.60q succeeded; want an error", m)
			continue
		}
		if cloud.IsTransient(err) {
			t.Errorf("bad metadata error is transient (would be retried): %v", err)
		}
	}
	mustNotExist(t, s, "bad")
}

func testNotFound(t *testing.T, s cloud.Store, h Hooks) {
	_, err := s.Stat(ctxT(t), "no/such/key")
	if !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("Stat of a missing key: %v; want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "no/such/key") {
		t.Errorf("error does not name the key: %v", err)
	}
	if cloud.IsTransient(err) {
		t.Errorf("ErrNotFound is transient: %v", err)
	}
	rc, _, err := s.Get(ctxT(t), "no/such/key")
	if !errors.Is(err, cloud.ErrNotFound) {
		if rc != nil {
			_ = rc.Close()
		}
		t.Fatalf("Get of a missing key: %v; want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "no/such/key") {
		t.Errorf("error does not name the key: %v", err)
	}
}

func testKeyCharacters(t *testing.T, s cloud.Store, h Hooks) {
	keys := []string{
		"wal/000000010000000000000001",
		"wal/00000002.history",
		"base/20260101T000000Z/manifest.json",
		"odd/a b+c=d:e@f,g;h~i(j)k'l!m$n&o.txt",
		"odd/ünïcødé",
	}
	for i, k := range keys {
		put(t, s, k, []byte(k), cloud.PutOptions{Metadata: map[string]string{"n": fmt.Sprint(i)}})
	}
	for _, k := range keys {
		if got, info := get(t, s, k); string(got) != k || info.Key != k {
			t.Errorf("Get(%q) = %q, key %q", k, got, info.Key)
		}
	}
	var listed []string
	if err := s.List(ctxT(t), "", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		listed = append(listed, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(listed, want) {
		t.Errorf("List = %q; want %q", listed, want)
	}
}

// putMany creates n objects prefix%05d with 16 writers at once.
func putMany(t *testing.T, s cloud.Store, prefix string, n int) {
	t.Helper()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				key := fmt.Sprintf("%s%05d", prefix, i)
				if err := s.Put(ctx, key, cloud.Bytes([]byte(key)), cloud.PutOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, s cloud.Store, prefix, delim string) []cloud.ObjectInfo {
	t.Helper()
	var out []cloud.ObjectInfo
	err := s.List(ctxT(t), prefix, cloud.ListOptions{Delimiter: delim}, func(o cloud.ObjectInfo) error {
		out = append(out, o)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q, %q): %v", prefix, delim, err)
	}
	return out
}

func testListMany(t *testing.T, s cloud.Store, h Hooks) {
	const n = 1234 // more than one page of 1000
	start := time.Now()
	putMany(t, s, "many/", n)
	put(t, s, "manyother", []byte("x"), cloud.PutOptions{})
	put(t, s, "many-not/x", []byte("x"), cloud.PutOptions{})
	t.Logf("created %d objects in %s", n+2, time.Since(start).Round(time.Millisecond))
	got := list(t, s, "many/", "")
	if len(got) != n {
		t.Fatalf("List(many/) returned %d entries; want %d", len(got), n)
	}
	for i, o := range got {
		want := fmt.Sprintf("many/%05d", i)
		if o.Key != want || o.IsPrefix || o.Size != int64(len(want)) {
			t.Fatalf("entry %d = %+v; want key %q size %d", i, o, want, len(want))
		}
		checkModTime(t, o.Key, o.ModTime)
	}
	// A prefix that is not a "directory" matches names too.
	if got := list(t, s, "many", ""); len(got) != n+2 {
		t.Errorf("List(many) returned %d entries; want %d", len(got), n+2)
	}
	if got := list(t, s, "many/0110", ""); len(got) != 10 || got[0].Key != "many/01100" {
		t.Errorf("List(many/0110) = %d entries from %v", len(got), got[:min(1, len(got))])
	}
	if got := list(t, s, "nothing/", ""); len(got) != 0 {
		t.Errorf("List of an empty prefix = %v", got)
	}
}

func testListDelimiter(t *testing.T, s cloud.Store, h Hooks) {
	for _, k := range []string{"d/a", "d/b/1", "d/b/2", "d/c/x/y", "d/e", "d.txt", "e/1", "top"} {
		put(t, s, k, []byte(k), cloud.PutOptions{})
	}
	type entry struct {
		Key      string
		IsPrefix bool
	}
	flat := func(in []cloud.ObjectInfo) []entry {
		var out []entry
		for _, o := range in {
			out = append(out, entry{o.Key, o.IsPrefix})
			if o.IsPrefix && o.Size != 0 {
				t.Errorf("prefix entry %q has size %d", o.Key, o.Size)
			}
		}
		return out
	}
	for _, tc := range []struct {
		prefix string
		want   []entry
	}{
		{"d/", []entry{{"d/a", false}, {"d/b/", true}, {"d/c/", true}, {"d/e", false}}},
		{"", []entry{{"d.txt", false}, {"d/", true}, {"e/", true}, {"top", false}}},
		{"d/b", []entry{{"d/b/", true}}},
		{"d/c/", []entry{{"d/c/x/", true}}},
		{"zzz/", nil},
	} {
		if got := flat(list(t, s, tc.prefix, "/")); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, \"/\") = %v; want %v", tc.prefix, got, tc.want)
		}
	}
}

func testListStop(t *testing.T, s cloud.Store, h Hooks) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("s/%d", i), nil, cloud.PutOptions{})
	}
	stop := errors.New("enough")
	n := 0
	err := s.List(ctxT(t), "s/", cloud.ListOptions{}, func(cloud.ObjectInfo) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("List stopped by fn: err %v after %d calls; want %v after 2", err, n, stop)
	}
}

func testPrefixIsolation(t *testing.T, s cloud.Store, h Hooks) {
	if h.Open == nil {
		t.Log("no Open hook: prefix isolation not checked")
		return
	}
	sib := h.Open(t, s.String()+"-sibling")
	put(t, s, "mine", []byte("a"), cloud.PutOptions{})
	put(t, sib, "theirs", []byte("b"), cloud.PutOptions{})
	if got := list(t, s, "", ""); len(got) != 1 || got[0].Key != "mine" {
		t.Errorf("store lists %v; want only \"mine\"", got)
	}
	if got := list(t, sib, "", ""); len(got) != 1 || got[0].Key != "theirs" {
		t.Errorf("sibling lists %v; want only \"theirs\"", got)
	}
	mustNotExist(t, s, "theirs")
}

func testDelete(t *testing.T, s cloud.Store, h Hooks) {
	if err := s.Delete(ctxT(t), "never/was"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	put(t, s, "gone", []byte("x"), cloud.PutOptions{})
	put(t, s, "gone2", []byte("y"), cloud.PutOptions{})
	for range 2 {
		if err := s.Delete(ctxT(t), "gone"); err != nil {
			t.Fatal(err)
		}
	}
	mustNotExist(t, s, "gone")
	if got := list(t, s, "", ""); len(got) != 1 || got[0].Key != "gone2" {
		t.Errorf("after Delete, List = %v", got)
	}
}

func testIfAbsent(t *testing.T, s cloud.Store, h Hooks) {
	first := cloud.PutOptions{IfAbsent: true, Metadata: map[string]string{"who": "first"}}
	put(t, s, "once", []byte("first"), first)
	err := s.Put(ctxT(t), "once", cloud.Bytes([]byte("second")), cloud.PutOptions{IfAbsent: true, Metadata: map[string]string{"who": "second"}})
	if !errors.Is(err, cloud.ErrExists) {
		t.Fatalf("second IfAbsent Put: %v; want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "once") {
		t.Errorf("error does not name the key: %v", err)
	}
	if got, info := get(t, s, "once"); string(got) != "first" || info.Metadata["who"] != "first" {
		t.Fatalf("after refused Put: %q %v; want the first content", got, info.Metadata)
	}
	// A plain Put still replaces it.
	put(t, s, "once", []byte("third"), cloud.PutOptions{})
	if got, _ := get(t, s, "once"); string(got) != "third" {
		t.Fatalf("plain Put after IfAbsent: %q", got)
	}
}

func testIfAbsentMultipart(t *testing.T, s cloud.Store, h Hooks) {
	want := patternBytes(3, 1000)
	put(t, s, "big-once", want, cloud.PutOptions{IfAbsent: true})
	err := s.Put(ctxT(t), "big-once", cloud.Once(pattern(4, h.MultipartSize)), cloud.PutOptions{IfAbsent: true})
	if !errors.Is(err, cloud.ErrExists) {
		t.Fatalf("multipart IfAbsent Put over an existing key: %v; want ErrExists", err)
	}
	if got, _ := get(t, s, "big-once"); !bytes.Equal(got, want) {
		t.Fatal("multipart IfAbsent Put changed the existing object")
	}
	// And on a free key it writes.
	if err := s.Put(ctxT(t), "big-new", cloud.Once(pattern(4, h.MultipartSize)), cloud.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stat(ctxT(t), "big-new"); err != nil || st.Size != h.MultipartSize {
		t.Fatalf("Stat(big-new) = %+v, %v", st, err)
	}
	checkLeftovers(t, s, h)
}

func testIfAbsentRace(t *testing.T, s cloud.Store, h Hooks) {
	const writers = 8
	for round := range 3 {
		key := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		errs := make([]error, writers)
		start := make(chan struct{})
		for i := range writers {
			wg.Go(func() {
				<-start
				body := fmt.Sprintf("writer %d %s", i, strings.Repeat("x", i*1000))
				errs[i] = s.Put(ctxT(t), key, cloud.Bytes([]byte(body)), cloud.PutOptions{IfAbsent: true})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both won", round, winner, i)
				}
				winner = i
			case !errors.Is(err, cloud.ErrExists):
				t.Fatalf("round %d: writer %d: %v; want nil or ErrExists", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		want := fmt.Sprintf("writer %d %s", winner, strings.Repeat("x", winner*1000))
		if got, _ := get(t, s, key); string(got) != want {
			t.Fatalf("round %d: stored %.20q...; want the winner's (%d) content", round, got, winner)
		}
	}
}

func testGetCancel(t *testing.T, s cloud.Store, h Hooks) {
	const size = 32 << 20
	if err := s.Put(ctxT(t), "cancel-me", cloud.Once(pattern(9, size)), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	rc, _, err := s.Get(ctx, "cancel-me")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	start := time.Now()
	var n int64
	for {
		m, err := rc.Read(buf)
		n += int64(m)
		if err == io.EOF {
			t.Fatalf("Read after cancel reached EOF after %d more bytes; want an error", n)
		}
		if err != nil {
			t.Logf("Read after cancel: %v after %d bytes, %s", err, n, time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("Read still returns data 5 s after cancel (%d bytes)", n)
		}
	}
}

var errBoom = errors.New("boom: the source failed")

// failingReader yields n bytes of pattern, then fails.
type failingReader struct {
	r io.Reader
}

func newFailingReader(n int64) *failingReader { return &failingReader{r: pattern(5, n)} }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBoom
	}
	return n, err
}

func testPutReaderFails(t *testing.T, s cloud.Store, h Hooks) {
	for _, n := range []int64{0, 100 << 10, h.MultipartSize + 3<<20} {
		key := fmt.Sprintf("fail-%d", n)
		err := s.Put(ctxT(t), key, cloud.Once(newFailingReader(n)), cloud.PutOptions{})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put with a reader failing after %d bytes: %v; want the reader's error", n, err)
		}
		mustNotExist(t, s, key)
		// A failed Put over an existing object keeps the old one.
		put(t, s, key, []byte("old"), cloud.PutOptions{})
		if err := s.Put(ctxT(t), key, cloud.Once(newFailingReader(n)), cloud.PutOptions{}); !errors.Is(err, errBoom) {
			t.Fatalf("Put over an existing key with a failing reader: %v", err)
		}
		if got, _ := get(t, s, key); string(got) != "old" {
			t.Fatalf("failed Put replaced the old object with %d bytes", len(got))
		}
	}
	if got := list(t, s, "", ""); len(got) != 3 {
		t.Errorf("List after failed Puts = %v; want the 3 old objects", got)
	}
	checkLeftovers(t, s, h)
}

// cancellingReader cancels the Put's context after n bytes and goes on.
type cancellingReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	m, err := c.r.Read(p)
	c.n -= int64(m)
	return m, err
}

func testPutCancelled(t *testing.T, s cloud.Store, h Hooks) {
	for _, n := range []int64{1 << 10, h.MultipartSize + 1<<20} {
		key := fmt.Sprintf("cancelled-%d", n)
		ctx, cancel := context.WithCancel(ctxT(t))
		err := s.Put(ctx, key, cloud.Once(&cancellingReader{r: pattern(6, 2*h.MultipartSize), n: n, cancel: cancel}), cloud.PutOptions{})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put cancelled after %d bytes: %v; want context.Canceled", n, err)
		}
		mustNotExist(t, s, key)
	}
	checkLeftovers(t, s, h)
}

func checkLeftovers(t *testing.T, s cloud.Store, h Hooks) {
	t.Helper()
	if h.Leftovers == nil {
		return
	}
	if l := h.Leftovers(t, s); len(l) > 0 {
		t.Errorf("failed uploads left %v behind", l)
	}
}

// testGetRange reads ranges of a small object and of one the backend
// uploaded in several requests: at its start, middle and end, past its
// end, of no byte, and of a missing key.
func testGetRange(t *testing.T, s cloud.Store, h Hooks) {
	small := patternBytes(21, 1000)
	put(t, s, "range/small", small, cloud.PutOptions{})
	big := patternBytes(22, h.MultipartSize+12345)
	put(t, s, "range/big", big, cloud.PutOptions{})
	size := int64(len(big))
	cases := []struct {
		key    string
		data   []byte
		off, n int64
	}{
		{"range/small", small, 0, 10},
		{"range/small", small, 0, 1000},
		{"range/small", small, 500, 100},
		{"range/small", small, 999, 1},
		{"range/small", small, 990, 100},          // past the end: what there is
		{"range/small", small, 1000, 10},          // at the end
		{"range/small", small, 5000, 10},          // beyond it
		{"range/small", small, 10, 0},             // no byte
		{"range/big", big, 0, 1 << 20},            // its start
		{"range/big", big, size/2 - 7, 3<<20 + 1}, // its middle (across its upload's parts)
		{"range/big", big, size - 100, 1 << 20},   // its end
	}
	for _, c := range cases {
		rc, err := s.GetRange(ctxT(t), c.key, c.off, c.n)
		if err != nil {
			t.Fatalf("GetRange(%s, %d, %d): %v", c.key, c.off, c.n, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("reading GetRange(%s, %d, %d): %v", c.key, c.off, c.n, err)
		}
		var want []byte
		if end := min(c.off+c.n, int64(len(c.data))); c.off < end {
			want = c.data[c.off:end]
		}
		if !bytes.Equal(got, want) {
			t.Errorf("GetRange(%s, %d, %d): %d bytes (sha %x), want %d (sha %x)", c.key, c.off, c.n, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
		}
	}
	for _, n := range []int64{0, 10} {
		rc, err := s.GetRange(ctxT(t), "range/missing", 0, n)
		if !errors.Is(err, cloud.ErrNotFound) {
			if rc != nil {
				_ = rc.Close()
			}
			t.Errorf("GetRange of a missing key (n=%d): %v; want ErrNotFound", n, err)
		}
	}
	if rc, err := s.GetRange(ctxT(t), "range/small", -1, 10); err == nil {
		_ = rc.Close()
		t.Errorf("GetRange at offset -1: no error")
	}
}
