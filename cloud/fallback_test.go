package cloud_test

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/walvault/walvault/cloud"
)

// TestFallback: reads go to the primary first and to each fallback in
// turn for what it lacks, each noted; listings are the merged union in key
// order; writes and deletes touch the primary alone.
func TestFallback(t *testing.T) {
	ctx := t.Context()
	primary := openURL(t, "file://"+t.TempDir(), cloud.Options{})
	second := openURL(t, "file://"+t.TempDir(), cloud.Options{})
	third := openURL(t, "file://"+t.TempDir(), cloud.Options{})
	put := func(st cloud.Store, key, body string) {
		t.Helper()
		if err := st.Put(ctx, key, cloud.Bytes([]byte(body)), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put(primary, "wal/a", "primary a")
	put(primary, "wal/c", "primary c")
	put(second, "wal/a", "second a")
	put(second, "wal/b", "second b")
	put(second, "wal/d", "second d")
	put(third, "wal/b", "third b")
	put(third, "wal/e", "third e")
	for i := range 300 { // more than a listing's buffer, interleaved
		put([]cloud.Store{primary, second, third}[i%3], fmt.Sprintf("seg/%04d", i), "x")
	}
	var noted []string
	st := cloud.WithFallback(primary, []cloud.Store{second, third}, func(key string, from cloud.Store, why error) {
		if !errors.Is(why, cloud.ErrNotFound) {
			t.Errorf("%s noted with %v, want not found", key, why)
		}
		noted = append(noted, key+"<"+from.String())
	})
	defer cloud.Close(st)

	for _, c := range []struct{ key, want string }{
		{"wal/a", "primary a"}, {"wal/b", "second b"}, {"wal/c", "primary c"}, {"wal/d", "second d"}, {"wal/e", "third e"},
	} {
		rc, _, err := st.Get(ctx, c.key)
		if err != nil {
			t.Fatalf("Get %s: %v", c.key, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		var lb []byte
		if err := st.Load(ctx, c.key, func(r io.Reader, _ cloud.ObjectInfo) error {
			lb, err = io.ReadAll(r)
			return err
		}); err != nil {
			t.Fatalf("Load %s: %v", c.key, err)
		}
		if string(b) != c.want || string(lb) != c.want {
			t.Errorf("%s: Get %q, Load %q, want %q", c.key, b, lb, c.want)
		}
		if _, err := st.Stat(ctx, c.key); err != nil {
			t.Errorf("Stat %s: %v", c.key, err)
		}
	}
	want := []string{"wal/b<" + second.String(), "wal/b<" + second.String(), "wal/d<" + second.String(), "wal/d<" + second.String(), "wal/e<" + third.String(), "wal/e<" + third.String()}
	if !slices.Equal(noted, want) {
		t.Errorf("noted %q, want %q", noted, want)
	}
	if _, _, err := st.Get(ctx, "wal/z"); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("Get of a key nowhere: %v, want ErrNotFound", err)
	}

	var keys []string
	if err := st.List(ctx, "", cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{}
	for i := range 300 {
		wantKeys = append(wantKeys, fmt.Sprintf("seg/%04d", i))
	}
	wantKeys = append(wantKeys, "wal/a", "wal/b", "wal/c", "wal/d", "wal/e")
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("List: %d keys %q..., want %d", len(keys), keys[:min(len(keys), 8)], len(wantKeys))
	}
	var dirs []string
	if err := st.List(ctx, "", cloud.ListOptions{Delimiter: "/"}, func(o cloud.ObjectInfo) error {
		dirs = append(dirs, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dirs, []string{"seg/", "wal/"}) {
		t.Errorf("List with a delimiter: %q", dirs)
	}
	// Stopping early stops every listing (no goroutine left blocked: -race
	// and the test's end would hang).
	stop := errors.New("enough")
	n := 0
	if err := st.List(ctx, "", cloud.ListOptions{}, func(cloud.ObjectInfo) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) || n != 10 {
		t.Errorf("List stopped by fn: %v after %d", err, n)
	}

	// Writes and deletes: the primary alone.
	put(st, "wal/f", "new")
	if err := st.Delete(ctx, "wal/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := second.Stat(ctx, "wal/f"); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("a write reached a fallback: %v", err)
	}
	if _, err := second.Stat(ctx, "wal/b"); err != nil {
		t.Errorf("a delete reached a fallback: %v", err)
	}
	if fb, _ := cloud.FallbackStores(st); len(fb) != 2 {
		t.Errorf("FallbackStores: %d", len(fb))
	}
	if fb, _ := cloud.FallbackStores(primary); fb != nil {
		t.Errorf("FallbackStores of a plain store: %v", fb)
	}
	if cloud.WithFallback(primary, nil, nil) != primary {
		t.Error("no fallbacks decorates")
	}
}
