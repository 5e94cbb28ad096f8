package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
	"github.com/walvault/walvault/crypto"
)

func clusterRepo(t *testing.T) *Repo {
	t.Helper()
	st, err := cloud.Open(context.Background(), "file://"+filepath.Join(t.TempDir(), "store"), cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &Repo{Store: st}
}

// newSigningKey makes a signing key in a file of its own, as keygen does.
func newSigningKey(t *testing.T) *crypto.SigningKey {
	t.Helper()
	key := filepath.Join(t.TempDir(), "sign.key")
	if _, err := crypto.GenerateSigningKey(key); err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(key, false)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func putCluster(t *testing.T, r *Repo, body string) {
	t.Helper()
	if err := r.Store.Put(context.Background(), ClusterKey, cloud.Bytes([]byte(body)), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The first push records the segment size; it caps decoded WAL from then
// on, and a cluster writing another size is refused.
func TestClusterRecordsSegmentSize(t *testing.T) {
	ctx := context.Background()
	w := clusterRepo(t)
	w.Sign = newSigningKey(t)
	cache := t.TempDir()
	if got := w.SegmentSizeCap(ctx); got != MaxWALSegmentBytes {
		t.Fatalf("no cluster.json yet: cap %d", got)
	}
	if err := w.EnsureCluster(ctx, 7300000000000000001, 16<<20, cache); err != nil {
		t.Fatal(err)
	}
	ci, ok, err := w.ReadCluster(ctx)
	if err != nil || !ok || ci.WALSegmentSize != 16<<20 || ci.SystemIdentifier != "7300000000000000001" {
		t.Fatalf("%+v %v %v", ci, ok, err)
	}
	if got := w.SegmentSizeCap(ctx); got != 16<<20 {
		t.Fatalf("cap %d", got)
	}
	// Written through the object layer, with its digest, so it is signed.
	rc, info, err := w.Store.Get(ctx, ClusterKey)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	_ = rc.Close()
	if info.Metadata[MetaSHA256] == "" || info.Metadata[MetaProof] == "" {
		t.Fatalf("cluster.json metadata %v", info.Metadata)
	}
	// The same cluster again: answered by the cache, or the store.
	for _, dir := range []string{cache, ""} {
		if err := w.EnsureCluster(ctx, 7300000000000000001, 16<<20, dir); err != nil {
			t.Fatal(err)
		}
	}
	// Another segment size under the same identifier (pg_resetwal
	// --wal-segsize): the cache, which remembers the size, does not hide it.
	for _, dir := range []string{cache, ""} {
		err := w.EnsureCluster(ctx, 7300000000000000001, 64<<20, dir)
		if !errors.Is(err, archive.ErrOtherCluster) || !strings.Contains(err.Error(), "segments of 16777216 bytes") {
			t.Fatalf("cache %q: got %v", dir, err)
		}
	}
	if err := w.EnsureCluster(ctx, 42, 16<<20, ""); !errors.Is(err, archive.ErrOtherCluster) {
		t.Fatalf("another cluster: %v", err)
	}
	if err := w.EnsureCluster(ctx, 7300000000000000001, 3<<20, ""); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("a size PostgreSQL never uses: %v", err)
	}
}

// cluster.json files written before the size was recorded stay valid: any
// segment size is accepted, and WAL is capped at PostgreSQL's largest.
func TestClusterWithoutSegmentSize(t *testing.T) {
	ctx := context.Background()
	r := clusterRepo(t)
	putCluster(t, r, `{"system_identifier": "7300000000000000001", "created": "2026-01-01T00:00:00Z"}`)
	if err := r.EnsureCluster(ctx, 7300000000000000001, 64<<20, ""); err != nil {
		t.Fatal(err)
	}
	if got := r.SegmentSizeCap(ctx); got != 1<<30 {
		t.Fatalf("cap %d", got)
	}
}

// cluster.json is read from the store like everything else: bounded, and
// what no walvault writes is refused (its identifier ends up in messages).
// The cap then falls back to the largest segment size, never to none.
func TestClusterHostile(t *testing.T) {
	ctx := context.Background()
	for name, body := range map[string]string{
		"escape in the identifier": `{"system_identifier": "1\u001b[2J", "created": "2026-01-01T00:00:00Z"}`,
		"no identifier":            `{"created": "2026-01-01T00:00:00Z"}`,
		"odd segment size":         `{"system_identifier": "1", "wal_segment_size": 3000000}`,
		"segment size of 4 GiB":    `{"system_identifier": "1", "wal_segment_size": 4294967296}`,
		"longer than the cap":      `{"system_identifier": "1", "x": "` + strings.Repeat("a", MaxClusterBytes) + `"}`,
		"not JSON":                 `cluster`,
	} {
		t.Run(name, func(t *testing.T) {
			r := clusterRepo(t)
			putCluster(t, r, body)
			// Unsigned, it is refused before it is parsed; read as an
			// archive from before signing, the parser refuses it.
			if _, _, err := r.ReadCluster(ctx); !errors.Is(err, crypto.ErrBadProof) {
				t.Fatalf("unsigned: got %v", err)
			}
			old := *r
			old.AllowUnsigned = true
			if _, _, err := old.ReadCluster(ctx); !errors.Is(err, archive.ErrIntegrity) {
				t.Fatalf("got %v", err)
			}
			if got := r.SegmentSizeCap(ctx); got != 1<<30 {
				t.Fatalf("cap %d", got)
			}
		})
	}
}

// cluster.json written before walvault signed objects: the first push of
// an upgraded database host signs the same record, so that readers can
// authenticate it; one that names another cluster is not touched.
func TestClusterUnsignedIsSignedByTheWriter(t *testing.T) {
	ctx := context.Background()
	w := clusterRepo(t)
	key := filepath.Join(t.TempDir(), "sign.key")
	vk, err := crypto.GenerateSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if w.Sign, err = crypto.LoadSigningKey(key, false); err != nil {
		t.Fatal(err)
	}
	putCluster(t, w, `{"system_identifier": "7300000000000000001", "created": "2026-01-01T00:00:00Z", "wal_segment_size": 16777216}`)
	reader := &Repo{Store: w.Store, Verify: []crypto.VerifyKey{vk}}
	if err := reader.BindCluster(ctx); !errors.Is(err, crypto.ErrBadProof) {
		t.Fatalf("an unsigned cluster.json: %v", err)
	}
	if err := w.EnsureCluster(ctx, 7300000000000000001, 16<<20, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := reader.BindCluster(ctx); err != nil || reader.Cluster != "7300000000000000001" {
		t.Fatalf("after the writer signed it: %q %v", reader.Cluster, err)
	}
	// Another cluster's unsigned claim: refused, left alone.
	other := clusterRepo(t)
	other.Sign = w.Sign
	putCluster(t, other, `{"system_identifier": "99"}`)
	if err := other.EnsureCluster(ctx, 7300000000000000001, 16<<20, ""); !errors.Is(err, crypto.ErrBadProof) {
		t.Fatalf("another cluster's unsigned cluster.json: %v", err)
	}
}

// An object signed for one cluster is refused by a reader bound to
// another, although the same key signed both: its proof names the cluster.
func TestProofBindsCluster(t *testing.T) {
	ctx := context.Background()
	w, r := signedRepos(t)
	w.Cluster = "7300000000000000001"
	body := []byte("a history file")
	putSigned(t, w, "wal/history/00000002.history", body)
	r.Cluster = "7300000000000000002"
	if _, err := load(r, "wal/history/00000002.history", Want{Proof: true}); !errors.Is(err, crypto.ErrBadProof) || !strings.Contains(err.Error(), "7300000000000000001") {
		t.Fatalf("an object of another cluster: %v", err)
	}
	r.Cluster = "7300000000000000001"
	if got, err := load(r, "wal/history/00000002.history", Want{Proof: true}); err != nil || string(got) != string(body) {
		t.Fatalf("an object of this cluster: %q %v", got, err)
	}
	// The cluster named in the metadata, changed: the proof no longer fits.
	info, err := w.Store.Stat(ctx, "wal/history/00000002.history")
	if err != nil {
		t.Fatal(err)
	}
	meta := info.Metadata
	meta[MetaCluster] = "7300000000000000002"
	rc, _, err := w.Store.Get(ctx, "wal/history/00000002.history")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	_ = rc.Close()
	if err := w.Store.Put(ctx, "wal/history/00000002.history", cloud.Bytes([]byte(string(raw))), cloud.PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	r.Cluster = "7300000000000000002"
	if _, err := load(r, "wal/history/00000002.history", Want{Proof: true}); !errors.Is(err, crypto.ErrBadProof) {
		t.Fatalf("a relabelled object: %v", err)
	}
}

// TestClusterProbesSecondCreate: the first push with a cache learns
// whether the store refuses to create an object that exists, by asking it
// to create cluster.json again as it is; a store that ignores the
// condition is marked so (its writes are looked at first), and its
// cluster.json is the same afterwards, bytes and metadata. The answer is
// cached for a day, then asked again; without a cache nothing is asked.
func TestClusterProbesSecondCreate(t *testing.T) {
	ctx := context.Background()
	for _, ignores := range []bool{false, true} {
		t.Run(map[bool]string{false: "refuses", true: "ignores"}[ignores], func(t *testing.T) {
			f := storetest.NewFaults(clusterRepo(t).Store)
			f.IgnoreIfAbsent = ignores
			sk := newSigningKey(t)
			w := &Repo{Store: f, Sign: sk}
			if err := w.EnsureCluster(ctx, 7300000000000000001, 16<<20, ""); err != nil {
				t.Fatal(err)
			}
			if w.RefusesSecondCreate {
				t.Fatal("without a cache the store was judged")
			}
			stored := func() ([]byte, map[string]string) {
				rc, info, err := f.Get(ctx, ClusterKey)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = rc.Close() }()
				b, err := io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
				return b, info.Metadata
			}
			body, meta := stored()
			cache := t.TempDir()
			f.Set()
			if err := w.EnsureCluster(ctx, 7300000000000000001, 16<<20, cache); err != nil {
				t.Fatal(err)
			}
			if w.RefusesSecondCreate != !ignores || f.Calls(storetest.Put) != 1 {
				t.Fatalf("RefusesSecondCreate %v after %d puts; want %v after 1", w.RefusesSecondCreate, f.Calls(storetest.Put), !ignores)
			}
			if b, m := stored(); !bytes.Equal(b, body) || !maps.Equal(m, meta) {
				t.Fatalf("cluster.json changed: %q %v, was %q %v", b, m, body, meta)
			}
			// From the cache: no request.
			again := &Repo{Store: f, Sign: sk}
			f.Set()
			if err := again.EnsureCluster(ctx, 7300000000000000001, 16<<20, cache); err != nil {
				t.Fatal(err)
			}
			if again.RefusesSecondCreate != !ignores || f.Calls(storetest.Get)+f.Calls(storetest.Put) != 0 {
				t.Fatalf("from the cache: RefusesSecondCreate %v after %d gets, %d puts", again.RefusesSecondCreate, f.Calls(storetest.Get), f.Calls(storetest.Put))
			}
			// A day later the store is asked again.
			files, _ := filepath.Glob(filepath.Join(cache, "cluster-v2-*"))
			if len(files) != 1 {
				t.Fatalf("cache files %v", files)
			}
			old := time.Now().Add(-25 * time.Hour)
			if err := os.Chtimes(files[0], old, old); err != nil {
				t.Fatal(err)
			}
			later := &Repo{Store: f, Sign: sk}
			f.Set()
			if err := later.EnsureCluster(ctx, 7300000000000000001, 16<<20, cache); err != nil {
				t.Fatal(err)
			}
			if later.RefusesSecondCreate != !ignores || f.Calls(storetest.Put) != 1 {
				t.Fatalf("a day later: RefusesSecondCreate %v after %d puts", later.RefusesSecondCreate, f.Calls(storetest.Put))
			}
		})
	}
}

// TestClusterProbeWithoutAnswer: a probe that fails (here its write) is no
// answer: a repository that knew the store refuses keeps knowing it, one
// that did not know keeps looking first.
func TestClusterProbeWithoutAnswer(t *testing.T) {
	ctx := context.Background()
	f := storetest.NewFaults(clusterRepo(t).Store)
	if err := (&Repo{Store: f, AllowUnsigned: true}).EnsureCluster(ctx, 7300000000000000001, 16<<20, ""); err != nil {
		t.Fatal(err)
	}
	f.Set(storetest.Rule{Op: storetest.Put, Keys: ClusterKey, Err: cloud.Permanent(errors.New("injected"))})
	for _, knew := range []bool{false, true} {
		r := &Repo{Store: f, AllowUnsigned: true, RefusesSecondCreate: knew}
		if err := r.EnsureCluster(ctx, 7300000000000000001, 16<<20, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		if r.RefusesSecondCreate != knew {
			t.Errorf("knew %v: after a failed probe RefusesSecondCreate is %v", knew, r.RefusesSecondCreate)
		}
	}
	if f.Injected() != 2 {
		t.Fatalf("%d probes failed, want 2", f.Injected())
	}
}
