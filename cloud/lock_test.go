package cloud_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/integration/faultproxy"
	"github.com/walvault/walvault/integration/testenv"
)

func TestParseLockPeriod(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"", 0, false}, {"0", 0, false}, {"30", 30 * 24 * time.Hour, false}, {"36h", 36 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false}, {"7d", 7 * 24 * time.Hour, false}, {"90s", 90 * time.Second, false},
		{"-1", 0, true}, {"thirty", 0, true}, {"36501", 0, true}, {"-5m", 0, true},
	} {
		got, err := cloud.ParseLockPeriod(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseLockPeriod(%q) = %v, %v; want %v (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
	for _, c := range []struct {
		in   string
		want cloud.LockMode
		bad  bool
	}{{"", cloud.LockCompliance, false}, {"GOVERNANCE", cloud.LockGovernance, false}, {"compliance", cloud.LockCompliance, false}, {"legal", "", true}} {
		got, err := cloud.ParseLockMode(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseLockMode(%q) = %v, %v", c.in, got, err)
		}
	}
}

// recordStore records the options of each Put.
type recordStore struct {
	cloud.Store
	puts map[string]cloud.PutOptions
}

func (r *recordStore) Put(ctx context.Context, key string, b cloud.Body, o cloud.PutOptions) error {
	r.puts[key] = o
	_, err := io.Copy(io.Discard, b)
	return err
}

func TestLockDecorator(t *testing.T) {
	rec := &recordStore{Store: openURL(t, "file://"+t.TempDir(), cloud.Options{}), puts: map[string]cloud.PutOptions{}}
	st := cloud.WithLock(rec, cloud.Lock{Period: time.Hour, Mode: cloud.LockGovernance})
	if got := cloud.LockOf(cloud.WithRetry(st, cloud.DefaultRetry)); got.Period != time.Hour {
		t.Errorf("LockOf = %v", got)
	}
	later := time.Now().Add(48 * time.Hour)
	for key, o := range map[string]cloud.PutOptions{"a": {}, "probe": {NoLock: true}, "copy": {Retention: &cloud.Retention{Until: later}}} {
		if err := st.Put(t.Context(), key, cloud.Bytes([]byte("x")), o); err != nil {
			t.Fatal(err)
		}
	}
	if r := rec.puts["a"].Retention; r == nil || r.Mode != cloud.LockGovernance || time.Until(r.Until) < 59*time.Minute || time.Until(r.Until) > 61*time.Minute {
		t.Errorf("a: retention %+v, want governance for an hour", r)
	}
	if r := rec.puts["probe"].Retention; r != nil {
		t.Errorf("NoLock object got retention %+v", r)
	}
	if r := rec.puts["copy"].Retention; r == nil || !r.Until.Equal(later) {
		t.Errorf("a later retention asked for was not kept: %+v", r)
	}
	if cloud.WithLock(rec, cloud.Lock{}) != cloud.Store(rec) {
		t.Error("the zero lock decorates")
	}
	if _, err := cloud.Open(t.Context(), "file://"+t.TempDir(), cloud.Options{Lock: cloud.Lock{Period: time.Hour}}); err == nil || !strings.Contains(err.Error(), "cannot lock") {
		t.Errorf("a file store with a lock: %v", err)
	}
	li, err := cloud.LockSupport(t.Context(), rec)
	if err != nil || li.Supported {
		t.Errorf("file store lock support: %+v, %v", li, err)
	}
}

// TestS3ObjectLock: versitygw's posix backend keeps Object Lock retention
// and refuses a delete before the date; walvault asks for it on each Put,
// reads it back, and sees the refusal as ErrLocked.
func TestS3ObjectLock(t *testing.T) {
	t.Parallel()
	srv := server(t, testenv.S3)
	locked := srv.NewLockedTarget(t)
	opts := srv.Options()
	li, err := cloud.LockSupport(t.Context(), openURL(t, locked.URL, opts))
	if err != nil || !li.Supported {
		t.Fatalf("locked bucket: %+v, %v", li, err)
	}
	plain := srv.NewTarget(t)
	li, err = cloud.LockSupport(t.Context(), openURL(t, plain.URL, opts))
	if err != nil || li.Supported || !strings.Contains(li.Detail, "no Object Lock") {
		t.Fatalf("plain bucket: %+v, %v", li, err)
	}

	opts.Lock = cloud.Lock{Period: 3 * time.Second, Mode: cloud.LockCompliance}
	st := openURL(t, locked.URL, opts)
	big := bytes.Repeat([]byte("walvault"), 3<<20) // 24 MiB: a multipart upload
	start := time.Now()
	for key, body := range map[string][]byte{"small": []byte("hello"), "big": big} {
		if err := st.Put(t.Context(), key, cloud.Bytes(body), cloud.PutOptions{IfAbsent: true}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		info, err := st.Stat(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if info.RetainUntil.Before(start.Add(3*time.Second)) || info.RetainUntil.After(time.Now().Add(5*time.Second)) {
			t.Errorf("%s: retain until %v, want about now+3s", key, info.RetainUntil)
		}
		err = st.Delete(t.Context(), key)
		if !errors.Is(err, cloud.ErrLocked) {
			t.Errorf("delete of locked %s before its date: %v, want ErrLocked", key, err)
		}
		if _, err := st.Stat(t.Context(), key); err != nil {
			t.Errorf("%s is gone after a refused delete: %v", key, err)
		}
	}
	if err := st.Put(t.Context(), "probe", cloud.Bytes([]byte("p")), cloud.PutOptions{NoLock: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(t.Context(), "probe"); err != nil {
		t.Errorf("an unlocked object in a locked bucket: %v", err)
	}
	time.Sleep(time.Until(start.Add(5 * time.Second)))
	for _, key := range []string{"small", "big"} {
		if err := st.Delete(t.Context(), key); err != nil {
			t.Errorf("delete of %s after its date: %v", key, err)
		}
		if _, err := st.Stat(t.Context(), key); !errors.Is(err, cloud.ErrNotFound) {
			t.Errorf("%s after delete: %v", key, err)
		}
	}
	// A lock asked of a bucket without Object Lock fails at the server.
	pst := openURL(t, plain.URL, opts)
	if err := pst.Put(t.Context(), "x", cloud.Bytes([]byte("x")), cloud.PutOptions{}); err == nil {
		t.Error("a locked put into a bucket without Object Lock succeeded")
	}
}

// TestGCSObjectRetention: fake-gcs-server stores the retention an upload
// asks for and returns it, but neither refuses deletes before the date nor
// has bucket-level object retention; so this checks the request (what the
// server kept of it) and that check would say the bucket cannot lock.
func TestGCSObjectRetention(t *testing.T) {
	t.Parallel()
	srv := server(t, testenv.GCS)
	tg := srv.NewTarget(t)
	opts := srv.Options()
	opts.Lock = cloud.Lock{Period: time.Hour, Mode: cloud.LockCompliance}
	st := openURL(t, tg.URL, opts)
	start := time.Now()
	if err := st.Put(t.Context(), "obj", cloud.Bytes([]byte("hello")), cloud.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	info, err := st.Stat(t.Context(), "obj")
	if err != nil {
		t.Fatal(err)
	}
	if d := info.RetainUntil.Sub(start); d < time.Hour || d > time.Hour+5*time.Second {
		t.Errorf("retain until %v, want about now+1h", info.RetainUntil)
	}
	li, err := cloud.LockSupport(t.Context(), st)
	if err != nil || li.Supported || !strings.Contains(li.Detail, "object retention") {
		t.Errorf("fake-gcs-server bucket: %+v, %v", li, err)
	}
}

// TestAzureImmutabilityRequest: Azurite implements no immutability
// policies (it ignores them on upload and answers 501 to setting one);
// through the fault proxy, which records requests, this checks what the
// SDK sends for a locked upload, one Put Blob and one staged.
func TestAzureImmutabilityRequest(t *testing.T) {
	t.Parallel()
	srv := server(t, testenv.Azure)
	tg := srv.NewTarget(t)
	px := faultproxy.Start(t, srv.Addr)
	opts := cloud.Options{Settings: cloud.Values{"azure-endpoint": px.URL() + "/" + testenv.AzureAccount},
		PartSize: 1 << 20, Lock: cloud.Lock{Period: 48 * time.Hour, Mode: cloud.LockGovernance}}
	st := openURL(t, tg.URL, opts)
	big := bytes.Repeat([]byte("w"), 5<<20)
	for key, body := range map[string][]byte{"small": []byte("hello"), "big": big} {
		if err := st.Put(t.Context(), key, cloud.Bytes(body), cloud.PutOptions{IfAbsent: true}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		got, _ := getAll(t, st, key)
		if !bytes.Equal(got, body) {
			t.Errorf("%s: read back %d bytes, wrote %d", key, len(got), len(body))
		}
	}
	commits := 0
	for _, r := range px.Requests() {
		if u, err := url.Parse(r.Target); r.Method != "PUT" || err != nil || u.Query().Get("comp") == "block" {
			continue // a staged block commits nothing
		}
		commits++
		until, err := time.Parse(time.RFC1123, r.Header.Get("X-Ms-Immutability-Policy-Until-Date"))
		if err != nil || time.Until(until) < 47*time.Hour {
			t.Errorf("%s: immutability until %q (%v)", r, r.Header.Get("X-Ms-Immutability-Policy-Until-Date"), err)
		}
		if m := r.Header.Get("X-Ms-Immutability-Policy-Mode"); m != "Unlocked" {
			t.Errorf("%s: immutability mode %q, want Unlocked (governance)", r, m)
		}
		if r.Header.Get("If-None-Match") != "*" {
			t.Errorf("%s: not create-if-absent", r)
		}
	}
	if commits != 2 {
		t.Errorf("saw %d committing PUTs, want 2 (Put Blob, Put Block List): %v", commits, px.Requests())
	}
	li, err := cloud.LockSupport(t.Context(), st)
	if err != nil || li.Supported {
		t.Errorf("Azurite container: %+v, %v", li, err)
	}
}

func getAll(t *testing.T, st cloud.Store, key string) ([]byte, cloud.ObjectInfo) {
	t.Helper()
	rc, info, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b, info
}
