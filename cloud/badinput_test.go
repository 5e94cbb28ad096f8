package cloud_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/integration/testenv"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// checkMessage asserts the error is one line, names the store, and leaks
// none of the secrets.
func checkMessage(t *testing.T, err error, store string, secrets ...string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.Contains(msg, store) {
		t.Errorf("error does not name the store %s: %q", store, msg)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error contains a secret: %q", msg)
		}
	}
	t.Logf("message: %s", msg)
}

// allOps runs every Store operation on key and returns their errors.
func allOps(ctx context.Context, st cloud.Store, key string) map[string]error {
	errs := map[string]error{}
	errs["put"] = st.Put(ctx, key, cloud.Bytes([]byte("data")), cloud.PutOptions{})
	_, errs["stat"] = st.Stat(ctx, key)
	rc, _, err := st.Get(ctx, key)
	if rc != nil {
		rc.Close()
	}
	errs["get"] = err
	errs["list"] = st.List(ctx, "", cloud.ListOptions{}, func(cloud.ObjectInfo) error { return nil })
	errs["delete"] = st.Delete(ctx, key)
	return errs
}

func TestS3WrongSecret(t *testing.T) {
	srv := server(t, testenv.S3)
	tg := srv.NewTarget(t)
	const bad = "this-is-not-the-secret-0123456789"
	t.Setenv("AWS_SECRET_ACCESS_KEY", bad)
	st := openURL(t, tg.URL, tg.Options)
	start := time.Now()
	for op, err := range allOps(t.Context(), st, "k") {
		if !errors.Is(err, cloud.ErrAccess) {
			t.Errorf("%s with a wrong secret: %v; want ErrAccess", op, err)
			continue
		}
		if !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
			t.Errorf("%s: message does not say what to fix: %v", op, err)
		}
		checkMessage(t, err, tg.URL, bad, testenv.S3SecretKey)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("access errors took %s: they must not be retried", d)
	}
}

func TestS3MissingCredentials(t *testing.T) {
	srv := server(t, testenv.S3)
	tg := srv.NewTarget(t)
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
	}
	// TestMain has disabled the metadata service: the chain ends there.
	st := openURL(t, tg.URL, tg.Options)
	_, err := st.Stat(t.Context(), "k")
	if !errors.Is(err, cloud.ErrAccess) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("Stat without credentials: %v; want ErrAccess naming AWS_ACCESS_KEY_ID", err)
	}
	checkMessage(t, err, tg.URL)
}

func TestS3MissingBucket(t *testing.T) {
	checkMissingBucket(t, server(t, testenv.S3), "bucket")
}

func TestS3ServerDown(t *testing.T) {
	addr := closedPort(t)
	checkServerDown(t, "s3://bucket/prefix", cloud.Options{Settings: cloud.Values{"s3-endpoint": "http://" + addr, "s3-path-style": "true"}}, "cannot reach endpoint http://"+addr)
}

// TestS3Restart stops the server under a store and starts it again on the
// same port: the store works again without being reopened.
func TestS3Restart(t *testing.T) {
	t.Parallel()
	srv := testenv.StartT(t, testenv.S3)
	tg := srv.NewTarget(t)
	st := tg.Open(t)
	ctx := t.Context()
	if err := st.Put(ctx, "a", cloud.Bytes([]byte("before")), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "a"); err == nil || !strings.Contains(err.Error(), "cannot reach endpoint") {
		t.Fatalf("Stat while stopped: %v", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if info, err := st.Stat(ctx, "a"); err != nil || info.Size != 6 {
		t.Fatalf("Stat after restart: %+v, %v", info, err)
	}
	if p := tg.ObjectPath("a"); p == "" {
		t.Error("no object path for versitygw")
	}
}

func TestGCSMissingBucket(t *testing.T) {
	checkMissingBucket(t, server(t, testenv.GCS), "bucket")
}

func TestGCSServerDown(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", closedPort(t))
	checkServerDown(t, "gs://bucket/prefix", cloud.Options{}, "cannot reach endpoint")
}

// TestGCSEmulatorNoMetadataProbe checks that with an emulator the client
// asks no metadata server for credentials: GCE_METADATA_HOST points at a
// listener that must stay silent.
func TestGCSEmulatorNoMetadataProbe(t *testing.T) {
	srv := server(t, testenv.GCS)
	var probes atomic.Int32
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer meta.Close()
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(meta.URL, "http://"))
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	tg := srv.NewTarget(t)
	// Both ways in: the Options endpoint, and STORAGE_EMULATOR_HOST as a
	// child process gets it.
	st1 := openURL(t, tg.URL, tg.Options)
	t.Setenv("STORAGE_EMULATOR_HOST", srv.Addr)
	st2 := openURL(t, tg.URL, cloud.Options{})
	for _, st := range []cloud.Store{st1, st2} {
		if err := st.Put(t.Context(), "k", cloud.Bytes([]byte("x")), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Stat(t.Context(), "k"); err != nil {
			t.Fatal(err)
		}
	}
	if n := probes.Load(); n != 0 {
		t.Fatalf("the GCS client made %d metadata server requests", n)
	}
}

func TestAzureWrongKey(t *testing.T) {
	srv := server(t, testenv.Azure)
	tg := srv.NewTarget(t)
	bad := base64.StdEncoding.EncodeToString([]byte("this is not the account key of devstoreaccount1!"))
	for _, how := range []string{"key", "connection string", "sas", "expired sas"} {
		t.Run(how, func(t *testing.T) {
			t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
			t.Setenv("AZURE_STORAGE_SAS_TOKEN", "")
			opts := tg.Options
			secret := bad
			switch how {
			case "key":
				t.Setenv("AZURE_STORAGE_KEY", bad)
			case "connection string":
				t.Setenv("AZURE_STORAGE_CONNECTION_STRING", strings.Replace(srv.ConnectionString(), testenv.AzureKey, bad, 1))
				opts = opts.With("azure-endpoint", "")
			case "sas":
				t.Setenv("AZURE_STORAGE_KEY", "")
				secret = badSAS(t, bad, tg.Bucket, time.Hour)
				t.Setenv("AZURE_STORAGE_SAS_TOKEN", secret)
			case "expired sas": // signed with the right key, expired an hour ago
				t.Setenv("AZURE_STORAGE_KEY", "")
				secret = badSAS(t, testenv.AzureKey, tg.Bucket, -time.Hour)
				t.Setenv("AZURE_STORAGE_SAS_TOKEN", secret)
			}
			st := openURL(t, tg.URL, opts)
			for op, err := range allOps(t.Context(), st, "k") {
				if !errors.Is(err, cloud.ErrAccess) {
					t.Errorf("%s with a wrong %s: %v; want ErrAccess", op, how, err)
					continue
				}
				checkMessage(t, err, tg.URL, secret, testenv.AzureKey, "sig=")
			}
		})
	}
}

// badSAS signs a container SAS with key, valid until now+valid.
func badSAS(t *testing.T, key, container string, valid time.Duration) string {
	cred, err := azblob.NewSharedKeyCredential(testenv.AzureAccount, key)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		StartTime:     time.Now().Add(-2 * time.Hour),
		ExpiryTime:    time.Now().Add(valid),
		ContainerName: container,
		Permissions:   (&sas.ContainerPermissions{Read: true, Write: true, List: true, Delete: true, Create: true}).String(),
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	return q.Encode()
}

func TestAzureMissingContainer(t *testing.T) {
	checkMissingBucket(t, server(t, testenv.Azure), "container", testenv.AzureKey)
}

// checkMissingBucket: every operation in a bucket that does not exist
// (noun: "bucket", or Azure's "container") fails permanently, naming it,
// and is not taken for a missing object.
func checkMissingBucket(t *testing.T, srv *testenv.Server, noun string, secrets ...string) {
	t.Helper()
	name := "no-such-" + noun + "-walvault"
	url := srv.URL(name, "p")
	st := openURL(t, url, srv.Options())
	for op, err := range allOps(t.Context(), st, "k") {
		if op == "delete" && err == nil {
			continue // a delete in a missing bucket may succeed (S3: 204)
		}
		if err == nil || errors.Is(err, cloud.ErrNotFound) || !strings.Contains(err.Error(), fmt.Sprintf("%s %q does not exist", noun, name)) {
			t.Errorf("%s in a missing %s: %v; want a '%s does not exist' error that is not ErrNotFound", op, noun, err, noun)
			continue
		}
		if cloud.IsTransient(err) {
			t.Errorf("%s: missing %s is transient: %v", op, noun, err)
		}
		checkMessage(t, err, url, secrets...)
	}
}

func TestAzureServerDown(t *testing.T) {
	addr := closedPort(t)
	checkServerDown(t, "azure://container/prefix", cloud.Options{Settings: cloud.Values{"azure-endpoint": "http://" + addr + "/devstoreaccount1"}}, "cannot reach endpoint http://"+addr, testenv.AzureKey)
}

// checkServerDown: a Put to a server that is not running fails within a
// few seconds with one line that names the store and says (want) that the
// endpoint cannot be reached.
func checkServerDown(t *testing.T, url string, opts cloud.Options, want string, secrets ...string) {
	t.Helper()
	st := openURL(t, url, opts)
	start := time.Now()
	err := st.Put(t.Context(), "k", cloud.Bytes([]byte("x")), cloud.PutOptions{})
	d := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Put to a closed port: %v; want 'cannot reach endpoint'", err)
	}
	checkMessage(t, err, url, secrets...)
	t.Logf("failed after %s", d.Round(time.Millisecond))
	if d > 8*time.Second {
		t.Errorf("a down server took %s to report; want a few seconds", d)
	}
}

// TestOpenIsLocal: opening a store contacts nothing (wal-push opens one per
// segment). Every endpoint, the GCE metadata server included, points at a
// listener that counts connections.
func TestOpenIsLocal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	ep := "http://" + l.Addr().String()
	t.Setenv("GCE_METADATA_HOST", l.Addr().String())
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	for _, tc := range []struct {
		url  string
		opts cloud.Options
	}{
		{"s3://b/p", cloud.Options{Settings: cloud.Values{"s3-endpoint": ep}}},
		{"gs://b/p", cloud.Options{Settings: cloud.Values{"gcs-endpoint": ep + "/storage/v1/"}}},
		{"azure://c/p", cloud.Options{Settings: cloud.Values{"azure-endpoint": ep + "/devstoreaccount1"}}},
	} {
		start := time.Now()
		openURL(t, tc.url, tc.opts)
		t.Logf("Open(%s) took %s", tc.url, time.Since(start))
	}
	time.Sleep(50 * time.Millisecond)
	if n := conns.Load(); n != 0 {
		t.Fatalf("opening stores made %d connections", n)
	}
}
