package cloud_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walvault/walvault/cloud"
	_ "github.com/walvault/walvault/cloud/all" // the SDK backends, as cmd/walvault links them
	"github.com/walvault/walvault/cloud/storetest"
	"github.com/walvault/walvault/integration/testenv"
)

// Each kind of server is started at most once per test binary, on first
// use, and stopped when the tests are done.
var (
	serversMu sync.Mutex
	servers   = map[testenv.Kind]*sharedServer{}
	serverDir string
)

type sharedServer struct {
	once sync.Once
	srv  *testenv.Server
	err  error
}

// isolate keeps every SDK away from cloud metadata services and real
// credentials, whatever the machine or a single test sets up: tests talk to
// 127.0.0.1 only. Tests that need other values use t.Setenv.
func isolate() {
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_DISABLED":         "true",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1",
		"AWS_ACCESS_KEY_ID":                 testenv.S3AccessKey,
		"AWS_SECRET_ACCESS_KEY":             testenv.S3SecretKey,
		"AWS_REGION":                        testenv.S3Region,
		"AWS_CONFIG_FILE":                   os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE":       os.DevNull,
		"GCE_METADATA_HOST":                 "127.0.0.1:1",
		"GOOGLE_APPLICATION_CREDENTIALS":    "",
		"STORAGE_EMULATOR_HOST":             "",
		"AZURE_STORAGE_CONNECTION_STRING":   "",
		"AZURE_STORAGE_ACCOUNT":             testenv.AzureAccount,
		"AZURE_STORAGE_KEY":                 testenv.AzureKey,
		"AZURE_STORAGE_SAS_TOKEN":           "",
	} {
		_ = os.Setenv(k, v)
	}
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		_ = os.Unsetenv(k)
	}
}

func TestMain(m *testing.M) {
	isolate()
	dir, err := os.MkdirTemp("", "walvault-cloud-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	serverDir = dir
	code := m.Run()
	serversMu.Lock()
	for kind, s := range servers {
		if s.srv != nil {
			if err := s.srv.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "stopping %s: %v\n", kind, err)
			}
		}
	}
	serversMu.Unlock()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// server returns the shared server of kind, starting it on first use; a
// server that cannot start fails the test.
func server(t testing.TB, kind testenv.Kind) *testenv.Server {
	t.Helper()
	serversMu.Lock()
	s := servers[kind]
	if s == nil {
		s = &sharedServer{}
		servers[kind] = s
	}
	serversMu.Unlock()
	s.once.Do(func() {
		s.srv, s.err = testenv.Start(kind, serverDir+"/"+string(kind))
	})
	if s.err != nil {
		t.Fatalf("cannot start the %s test server: %v", kind, s.err)
	}
	return s.srv
}

func openURL(t *testing.T, url string, opts cloud.Options) cloud.Store {
	t.Helper()
	st, err := cloud.Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = cloud.Close(st) })
	return st
}

func TestFileConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) cloud.Store {
		return openURL(t, "file://"+t.TempDir()+"/store", cloud.Options{})
	}, storetest.Hooks{
		Open: func(t *testing.T, url string) cloud.Store { return openURL(t, url, cloud.Options{}) },
	})
}

// TestFaultsConformance: the fault-injecting store, with no rule set,
// is a store like any other (the decorators pass the suite too).
func TestFaultsConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) cloud.Store {
		return storetest.NewFaults(openURL(t, "file://"+t.TempDir()+"/store", cloud.Options{}))
	}, storetest.Hooks{
		Open: func(t *testing.T, url string) cloud.Store { return openURL(t, url, cloud.Options{}) },
	})
}

// unavailable opens url's store through endpoint, for the retry budget.
func unavailable(url string, set cloud.Values) func(t *testing.T, endpoint string) cloud.Store {
	return func(t *testing.T, endpoint string) cloud.Store {
		opts := cloud.Options{Settings: cloud.Values{}}
		for k, v := range set {
			opts.Settings[k] = strings.ReplaceAll(v, "ENDPOINT", endpoint)
		}
		return openURL(t, url, opts)
	}
}

func TestS3Conformance(t *testing.T) {
	conformance(t, testenv.S3, storetest.Hooks{Leftovers: s3Leftovers,
		Unavailable: unavailable("s3://bucket/p", cloud.Values{"s3-endpoint": "ENDPOINT", "s3-path-style": "true"})})
}

// s3Leftovers lists unfinished multipart uploads in the store's bucket.
func s3Leftovers(t *testing.T, st cloud.Store) []string {
	srv := server(t, testenv.S3)
	bucket := strings.SplitN(strings.TrimPrefix(st.String(), "s3://"), "/", 2)[0]
	out, err := srv.S3Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("listing multipart uploads: %v", err)
	}
	var l []string
	for _, u := range out.Uploads {
		l = append(l, "multipart upload of "+aws.ToString(u.Key))
	}
	return l
}

func TestGCSConformance(t *testing.T) {
	conformance(t, testenv.GCS, storetest.Hooks{
		Unavailable: unavailable("gs://bucket/p", cloud.Values{"gcs-endpoint": "ENDPOINT/storage/v1/"})})
}

func TestAzureConformance(t *testing.T) {
	conformance(t, testenv.Azure, storetest.Hooks{
		Unavailable: unavailable("azure://container/p", cloud.Values{"azure-endpoint": "ENDPOINT/devstoreaccount1"})})
}

// conformance runs the storetest suite on the shared server of kind, each
// test in a fresh bucket.
func conformance(t *testing.T, kind testenv.Kind, hooks storetest.Hooks) {
	t.Parallel()
	srv := server(t, kind)
	hooks.Open = func(t *testing.T, url string) cloud.Store { return openURL(t, url, srv.Options()) }
	storetest.Run(t, func(t *testing.T) cloud.Store {
		return srv.NewTarget(t).Open(t)
	}, hooks)
}
