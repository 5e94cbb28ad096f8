package check

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// checkProbe writes, reads back, and deletes an object.
func checkProbe(ctx context.Context, st cloud.Store, rep *Report) bool {
	return checkProbeAs(ctx, st, rep, "store")
}

// checkProbeAs is checkProbe reported under name.
func checkProbeAs(ctx context.Context, st cloud.Store, rep *Report, name string) bool {
	var b [16]byte
	_, _ = rand.Read(b[:])
	key := "walvault-check/probe-" + hex.EncodeToString(b[:8])
	body := []byte("walvault check probe " + hex.EncodeToString(b[:]))
	fix := "walvault needs to list, read, write and delete objects under the store's prefix: check the credentials and the bucket's permissions"
	began := time.Now()
	if err := st.Put(ctx, key, cloud.Bytes(body), cloud.PutOptions{IfAbsent: true, SizeHint: int64(len(body)), NoLock: true}); err != nil {
		rep.add(name, Fail, fmt.Sprintf("%s: writing a probe object %s: %v", st, key, err), fix)
		return false
	}
	defer func() { _ = st.Delete(context.WithoutCancel(ctx), key) }()
	// WAL and manifests are written only if absent, so that two writers
	// can never both win; a server that ignores the condition (some
	// S3-compatible ones) loses that, and wal-push then looks at each key
	// before writing it (one more request per segment).
	second := []byte("walvault check probe, second write")
	again := st.Put(ctx, key, cloud.Bytes(second), cloud.PutOptions{IfAbsent: true, NoLock: true})
	switch {
	case errors.Is(again, cloud.ErrExists):
	case again == nil:
		rep.add(name+" conditional writes", Warn, fmt.Sprintf("%s: the store wrote over the probe object %s although asked to write it only if absent (If-None-Match: *)", st, key),
			"use a server that honours If-None-Match: * on PUT (AWS S3 does): without it two writers of one key can both succeed; wal-push looks at each key before writing it instead, one more request per segment")
	default:
		rep.add(name+" conditional writes", Fail, fmt.Sprintf("%s: a second create-if-absent write of the probe object %s: %v", st, key, again), fix)
		return false
	}
	rc, _, err := st.Get(ctx, key)
	if err != nil {
		rep.add(name, Fail, fmt.Sprintf("%s: reading back the probe object %s: %v", st, key, err), fix)
		return false
	}
	got, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	_ = rc.Close()
	if again == nil {
		body = second // written over
	}
	if err != nil || !bytes.Equal(got, body) {
		rep.add(name, Fail, fmt.Sprintf("%s: the probe object %s read back differs from what was written (%v)", st, key, err), "the store (or a proxy before it) alters objects: walvault cannot be used with it")
		return false
	}
	if err := st.Delete(ctx, key); err != nil {
		rep.add(name, Fail, fmt.Sprintf("%s: deleting the probe object %s: %v", st, key, err), fix+" (delete is needed by walvault delete)")
		return false
	}
	if _, err := st.Stat(ctx, key); !errors.Is(err, cloud.ErrNotFound) {
		rep.add(name, Fail, fmt.Sprintf("%s: the probe object %s is still there after delete (%v)", st, key, err), fix)
		return false
	}
	rep.add(name, OK, fmt.Sprintf("%s: wrote, read back and deleted a probe object (%d ms)", st, time.Since(began).Milliseconds()), "")
	return true
}

// checkCluster: a store prefix holds one cluster's WAL and backups.
func checkCluster(ctx context.Context, rep *Report, r *repo.Repo, srv *pg.Server) {
	ci, ok, err := r.ReadCluster(ctx)
	want := strconv.FormatUint(srv.SystemID, 10)
	switch {
	case err != nil:
		rep.add("cluster", Fail, "reading "+repo.ClusterKey+": "+err.Error(), "")
	case !ok:
		rep.add("cluster", OK, "the store is not claimed yet: the first wal-push records this cluster ("+want+") in "+repo.ClusterKey, "")
	case ci.SystemIdentifier != want:
		rep.add("cluster", Fail, fmt.Sprintf("%s belongs to the cluster with system identifier %s; this server is %s", r.Store, ci.SystemIdentifier, want),
			"give this cluster its own store prefix (a store prefix holds one cluster's WAL and backups)")
	default:
		rep.add("cluster", OK, "the store belongs to this cluster ("+want+")", "")
	}
}
