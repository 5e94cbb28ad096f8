package testenv_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/integration/testenv"
)

// TestS3Env opens the target the way a walvault child process would: from
// the environment alone (path style aside, which cmd maps from
// WALVAULT_S3_PATH_STYLE), and finds the object on disk where ObjectPath says.
func TestS3Env(t *testing.T) {
	tg := testenv.ForS3(t)
	opts := cloud.Options{Settings: cloud.Values{}}
	for _, kv := range tg.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "WALVAULT_S3_PATH_STYLE" {
			opts.Settings["s3-path-style"] = v
			continue
		}
		t.Setenv(k, v)
	}
	st, err := cloud.Open(context.Background(), os.Getenv("WALVAULT_STORE"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), "wal/1", cloud.Bytes([]byte("segment")), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tg.ObjectPath("wal/1"))
	if err != nil || string(b) != "segment" {
		t.Fatalf("object file %s: %q, %v", tg.ObjectPath("wal/1"), b, err)
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("WALVAULT_TEST_CACHE", t.TempDir())
	_, err := testenv.Start(testenv.S3, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "versitygw") || !strings.Contains(err.Error(), "run make test-deps") {
		t.Fatalf("Start without binaries: %v; want an error naming versitygw and make test-deps", err)
	}
}

// TestRestartKeepsData: every server comes back on the same port with its
// objects, and the child-process environment reaches it.
func TestRestartKeepsData(t *testing.T) {
	for _, kind := range []testenv.Kind{testenv.S3, testenv.GCS, testenv.Azure} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			tg := testenv.StartT(t, kind).NewTarget(t)
			st := tg.Open(t)
			ctx := context.Background()
			if err := st.Put(ctx, "a", cloud.Bytes([]byte("kept")), cloud.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			addr := tg.Server.Addr
			if err := tg.Server.Stop(); err != nil {
				t.Fatal(err)
			}
			if tg.Server.Running() {
				t.Fatal("running after Stop")
			}
			if err := tg.Server.Restart(); err != nil {
				t.Fatal(err)
			}
			if tg.Server.Addr != addr {
				t.Fatalf("restarted on %s, not %s", tg.Server.Addr, addr)
			}
			if info, err := st.Stat(ctx, "a"); err != nil || info.Size != 4 {
				t.Fatalf("after restart: %+v, %v", info, err)
			}
			for _, kv := range tg.Env {
				if !strings.Contains(kv, "=") || strings.ContainsAny(kv, "\n\x00") {
					t.Errorf("bad env entry %q", kv)
				}
			}
		})
	}
}
