package ratelimit

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

// simulate runs workers that each read as fast as the bucket lets them,
// reads of the given sizes in turn, on a simulated clock: a worker waits
// for its tokens, then its bytes pass at the moment the wait ends. It
// returns when each read's bytes passed.
func simulate(b *Bucket, workers int, sizes []int, total time.Duration) []event {
	start := time.Unix(1_700_000_000, 0)
	now := start
	b.now = func() time.Time { return now }
	var slept time.Duration
	b.sleep = func(_ context.Context, d time.Duration) error { slept = d; return nil }
	ready := make([]time.Time, workers)
	left := make([]int, workers) // of the worker's current read
	for i := range ready {
		ready[i] = start
	}
	var out []event
	for k := 0; ; {
		// One wait at a time, by the worker whose turn comes first: the
		// clock only moves forward, as it does.
		w := 0
		for i := range ready {
			if ready[i].Before(ready[w]) {
				w = i
			}
		}
		now = ready[w]
		if now.Sub(start) >= total {
			return out
		}
		if left[w] == 0 {
			left[w] = sizes[k%len(sizes)]
			k++
		}
		// A reader cuts its read to the burst, as reader.Read does.
		part := min(left[w], b.Burst())
		slept = 0
		if err := b.Wait(context.Background(), part); err != nil {
			panic(err)
		}
		ready[w] = now.Add(slept)
		out = append(out, event{at: ready[w].Sub(start), n: part})
		left[w] -= part
	}
}

type event struct {
	at time.Duration
	n  int
}

// worstWindow is the most bytes that passed in any window of length w,
// and the least in any such window ending before the run's end.
func worstWindow(ev []event, w, total time.Duration) (most, least int64) {
	sort.Slice(ev, func(i, j int) bool { return ev[i].at < ev[j].at })
	least = -1
	// Windows start at every event (the most) and every 100 ms (the
	// least), over the run.
	j := 0
	var in int64
	for i := range ev {
		for j < len(ev) && ev[j].at < ev[i].at+w {
			in += int64(ev[j].n)
			j++
		}
		most = max(most, in)
		in -= int64(ev[i].n)
	}
	for s := time.Duration(0); s+w <= total; s += 100 * time.Millisecond {
		var sum int64
		for _, e := range ev {
			if e.at >= s && e.at < s+w {
				sum += int64(e.n)
			}
		}
		if least < 0 || sum < least {
			least = sum
		}
	}
	return most, least
}

// TestRateHeldOverAnyWindow: whatever the read sizes and however many
// workers share the bucket, the bytes let through in any 10 s window are
// within 10% of the rate, and the bucket lets readers that want more reach
// at least 90% of it.
func TestRateHeldOverAnyWindow(t *testing.T) {
	const window = 10 * time.Second
	for _, tc := range []struct {
		rate    int64
		workers int
		sizes   []int
	}{
		{20 << 20, 1, []int{32 << 10}},
		{20 << 20, 4, []int{1 << 20, 7, 256 << 10, 4 << 20}},
		{20 << 20, 16, []int{16 << 20}}, // each read larger than the burst
		{1 << 20, 3, []int{100, 64 << 10, 3000}},
		{100 << 10, 2, []int{1 << 20}}, // a small rate: the burst is MinBurst
		{1 << 30, 8, []int{8 << 20}},
	} {
		t.Run(fmt.Sprintf("%dB/s_%dworkers", tc.rate, tc.workers), func(t *testing.T) {
			b := NewBucket(tc.rate)
			total := 35 * time.Second
			ev := simulate(b, tc.workers, tc.sizes, total)
			most, least := worstWindow(ev, window, total-time.Second)
			want := float64(tc.rate) * window.Seconds()
			if float64(most) > 1.10*want {
				t.Errorf("%d bytes passed in one 10 s window: %.1f%% of the rate's %d", most, 100*float64(most)/want, int64(want))
			}
			if float64(least) < 0.90*want {
				t.Errorf("only %d bytes passed in one 10 s window: %.1f%% of the rate's %d", least, 100*float64(least)/want, int64(want))
			}
			t.Logf("any 10 s window: %.2f%% to %.2f%% of the rate", 100*float64(least)/want, 100*float64(most)/want)
		})
	}
}

// TestCancelledWaitGivesBack: a wait cut short by its context returns
// the context's error and does not hold up the readers after it.
func TestCancelledWaitGivesBack(t *testing.T) {
	b := NewBucket(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 { // the first takes the burst; the others would wait
		err := b.Wait(ctx, b.Burst())
		if err != nil && err != context.Canceled {
			t.Fatalf("Wait: %v", err)
		}
	}
	if b.Wait(context.Background(), 0) != nil || (*Bucket)(nil).Wait(ctx, 5) != nil {
		t.Fatal("a wait for nothing, or on no bucket, failed")
	}
}

func TestNoLimitIsTheStoreItself(t *testing.T) {
	st, err := cloud.Open(t.Context(), "file://"+t.TempDir()+"/s", cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if Wrap(st, Limits{}) != st || NewBucket(0) != nil {
		t.Fatal("no limit should leave the store alone")
	}
	a, b := Shared(5<<20, 0), Shared(5<<20, 0)
	if a.Upload != b.Upload || a.Upload == nil || a.Download != nil {
		t.Fatal("Shared should hand out the same buckets for the same rates")
	}
}

// TestConformance: the rate-limited store is a store like any other.
func TestConformance(t *testing.T) {
	t.Parallel()
	open := func(t *testing.T, url string) cloud.Store {
		st, err := cloud.Open(t.Context(), url, cloud.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cloud.Close(st) })
		return st
	}
	l := Limits{Upload: NewBucket(2 << 30), Download: NewBucket(2 << 30)}
	storetest.Run(t, func(t *testing.T) cloud.Store {
		return Wrap(open(t, "file://"+t.TempDir()+"/store"), l)
	}, storetest.Hooks{Open: open})
}
