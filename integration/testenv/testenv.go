// Package testenv starts real storage servers for tests: versitygw (S3),
// fake-gcs-server (GCS) and Azurite (Azure Blob), each on a free 127.0.0.1
// port with its own data directory, and hands out targets (a fresh bucket
// plus everything a client needs) on them.
//
// The binaries come from the test cache: $WALVAULT_TEST_CACHE, or the .cache
// directory next to go.mod. A missing binary is an error naming it and
// "run make test-deps": tests fail on it, they never skip.
//
// Credentials are fixed test values, identical for every server of a kind.
// Starting a server puts them in the process environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_EC2_METADATA_DISABLED for S3;
// AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY for Azure) so stores opened
// in-process with Target.Options find them; endpoints are never put there,
// they travel in Target.Options and Target.Env.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
	_ "github.com/walvault/walvault/cloud/all" // the servers' stores open in-process
)

// Kind names a storage server.
type Kind string

// The servers testenv knows.
const (
	S3    Kind = "s3"
	GCS   Kind = "gcs"
	Azure Kind = "azure"
)

// Fixed test credentials. They protect nothing: the servers listen on
// loopback only and live as long as a test.
const (
	S3AccessKey    = "walvault-test"
	S3SecretKey    = "walvault-test-secret-9f3c1e7a" // #nosec G101 -- a throwaway credential for a loopback test server
	S3Region       = "us-east-1"
	AzureAccount   = "devstoreaccount1"
	AzureKey       = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	defaultPrefix  = "walvault"
	readyTimeout   = 30 * time.Second
	stopTimeout    = 10 * time.Second
	logTailOnError = 2000
)

// Server is one running (or stopped) storage server.
type Server struct {
	Kind Kind
	// Addr is 127.0.0.1:PORT; it stays the same across Restart.
	Addr string
	// Endpoint is the base URL clients use: http://127.0.0.1:PORT, for
	// Azure http://127.0.0.1:PORT/devstoreaccount1.
	Endpoint string
	// DataDir is where the server keeps objects. versitygw stores each
	// object as the file DataDir/BUCKET/KEY.
	DataDir string
	// LogFile receives the server's output.
	LogFile string

	bin  string
	args []string
	env  []string
	// keys are an S3 server's root credentials (the fixed test ones
	// unless StartS3WithKeys chose others).
	accessKey, secretKey string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

// Target is a fresh bucket (container) with a prefix on a server: what a
// test needs to point walvault at it.
type Target struct {
	Server *Server
	Bucket string
	Prefix string
	// URL is the store URL, e.g. s3://BUCKET/walvault.
	URL string
	// Env is the environment ("KEY=value") a walvault child process needs
	// to reach the target, WALVAULT_STORE included; append it to
	// os.Environ().
	Env []string
	// Options are the cloud.Options for opening URL in-process.
	Options cloud.Options
}

// CacheDir returns the directory the test servers are installed in.
func CacheDir() (string, error) {
	if d := os.Getenv("WALVAULT_TEST_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the working directory and WALVAULT_TEST_CACHE is not set: run make test-deps")
		}
		dir = parent
	}
}

// Binary returns the path of the server binary for kind, or an error
// saying what is missing.
func Binary(kind Kind) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	var p, what string
	switch kind {
	case S3:
		p, what = filepath.Join(cache, "bin", "versitygw"), "versitygw v1.8.0"
	case GCS:
		p, what = filepath.Join(cache, "bin", "fake-gcs-server"), "fake-gcs-server v1.56.1"
	case Azure:
		p, what = filepath.Join(cache, "azurite", "node_modules", ".bin", "azurite-blob"), "azurite 3.37.0"
		if _, err := exec.LookPath("node"); err != nil {
			return "", fmt.Errorf("testenv: node is not in PATH (Azurite needs Node.js): install nodejs, then run make test-deps")
		}
	default:
		return "", fmt.Errorf("testenv: unknown server kind %q", kind)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("testenv: %s is missing: no executable %s (test cache %s, set WALVAULT_TEST_CACHE to move it): run make test-deps", what, p, cache)
	}
	return p, nil
}

// Start starts a server of kind with its files under dir (created if
// needed) and waits until it answers. The caller must Stop it; StartT is
// the variant for a single test. The package links the SDK backends
// (cloud/all), so that the server's stores open in-process.
func Start(kind Kind, dir string) (*Server, error) {
	bin, err := Binary(kind)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{Kind: kind, DataDir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, string(kind)+".log"), bin: bin,
		accessKey: S3AccessKey, secretKey: S3SecretKey}
	if keys, ok := s3Keys.LoadAndDelete(dir); ok {
		k := keys.([2]string)
		s.accessKey, s.secretKey = k[0], k[1]
	}
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil { // #nosec G301 -- test data, readable for debugging
		return nil, fmt.Errorf("testenv: %w", err)
	}
	setProcessCredentials(kind)
	// A free port can be taken between probing and binding: try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.configure(port)
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt >= 2 || !strings.Contains(err.Error(), "in use") {
			return nil, err
		}
	}
}

// StartT starts a server for one test in a temporary directory and stops it
// when the test ends; a failure is fatal for the test.
func StartT(t testing.TB, kind Kind) *Server {
	t.Helper()
	s, err := Start(kind, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping %s: %v", kind, err)
		}
	})
	return s
}

// s3Keys hands StartS3WithKeys's credentials to Start, by directory.
var s3Keys sync.Map

// StartS3WithKeys starts a versitygw whose root credentials are access and
// secret instead of the fixed test ones: a store in "another account",
// reached with credentials of its own (see CredentialsFile). The process
// environment keeps the fixed ones.
func StartS3WithKeys(dir, access, secret string) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s3Keys.Store(abs, [2]string{access, secret})
	defer s3Keys.Delete(abs)
	return Start(S3, abs)
}

// CredentialsFile writes an AWS shared credentials file holding an S3
// server's root credentials as profile "default" into dir, for the
// s3-credentials-file setting, and returns its path.
func (s *Server) CredentialsFile(dir string) (string, error) {
	p := filepath.Join(dir, "aws-credentials-"+strings.ReplaceAll(s.Addr, ":", "-"))
	body := "[default]\naws_access_key_id = " + s.accessKey + "\naws_secret_access_key = " + s.secretKey + "\n"
	return p, os.WriteFile(p, []byte(body), 0o600)
}

// ForS3 starts a versitygw for this test and returns a fresh target on it.
func ForS3(t testing.TB) *Target { t.Helper(); return StartT(t, S3).NewTarget(t) }

// ForGCS starts a fake-gcs-server for this test and returns a fresh target on it.
func ForGCS(t testing.TB) *Target { t.Helper(); return StartT(t, GCS).NewTarget(t) }

// ForAzure starts an Azurite for this test and returns a fresh target on it.
func ForAzure(t testing.TB) *Target { t.Helper(); return StartT(t, Azure).NewTarget(t) }

func (s *Server) configure(port int) {
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Endpoint = "http://" + s.Addr
	p := strconv.Itoa(port)
	switch s.Kind {
	case S3:
		s.args = []string{"--port", s.Addr, "--health", "/health", "--quiet", "posix", s.DataDir}
		s.env = []string{"ROOT_ACCESS_KEY=" + s.accessKey, "ROOT_SECRET_KEY=" + s.secretKey}
	case GCS:
		// The filesystem backend keeps objects across Restart.
		s.args = []string{"-scheme", "http", "-host", "127.0.0.1", "-port", p, "-public-host", s.Addr,
			"-external-url", s.Endpoint, "-backend", "filesystem", "-filesystem-root", s.DataDir, "-log-level", "warn"}
	case Azure:
		s.Endpoint += "/" + AzureAccount
		// --disableTelemetry: Azurite otherwise reports to Microsoft.
		// --skipApiVersionCheck: azblob speaks a newer API than it knows.
		s.args = []string{"--blobHost", "127.0.0.1", "--blobPort", p, "--location", s.DataDir,
			"--skipApiVersionCheck", "--disableTelemetry", "--silent"}
	}
}

func (s *Server) start() error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) // #nosec G302 -- a test server log
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	cmd := exec.Command(s.bin, s.args...) // #nosec G204 -- our own test binaries
	cmd.Dir = filepath.Dir(s.DataDir)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("testenv: starting %s: %w", s.bin, err)
	}
	_ = logf.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.waitReady(done); err != nil {
		_ = s.Stop()
		return err
	}
	return nil
}

func (s *Server) waitReady(done <-chan struct{}) error {
	var url string
	switch s.Kind {
	case S3:
		url = s.Endpoint + "/health"
	case GCS:
		url = s.Endpoint + "/_internal/healthcheck"
	case Azure:
		url = s.Endpoint + "?comp=list" // no health endpoint: any answer means up
	}
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("testenv: %s exited during start-up: %s", s.Kind, s.logTail())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if s.Kind == Azure || resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("testenv: %s did not answer on %s within %s: %s", s.Kind, s.Addr, readyTimeout, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.LogFile)
	b = bytes.TrimSpace(b)
	if len(b) > logTailOnError {
		b = b[len(b)-logTailOnError:]
	}
	if len(b) == 0 {
		return "(no output; log " + s.LogFile + ")"
	}
	return string(b)
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and waits
// for it. Its data directory is kept, and Restart reuses its port. Stopping
// a stopped server is a no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	// The server runs in its own process group: signal all of it (Azurite
	// is node under a shell-less shim, but be thorough).
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("testenv: %s (pid %d) did not exit", s.Kind, cmd.Process.Pid)
	}
}

// Restart starts a stopped server again on the same port and data
// directory (it stops it first if it is running).
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	// The port was ours a moment ago; a client may still hold it in
	// TIME_WAIT, which SO_REUSEADDR servers ignore. Retry briefly anyway.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// Options returns the cloud.Options that reach this server in-process.
func (s *Server) Options() cloud.Options {
	switch s.Kind {
	case S3:
		return cloud.Options{Settings: cloud.Values{"s3-endpoint": s.Endpoint, "s3-path-style": "true", "s3-region": S3Region}}
	case GCS:
		return cloud.Options{Settings: cloud.Values{"gcs-endpoint": s.Endpoint + "/storage/v1/"}}
	case Azure:
		return cloud.Options{Settings: cloud.Values{"azure-endpoint": s.Endpoint}}
	}
	return cloud.Options{}
}

// Env returns the environment ("KEY=value") a walvault child process needs
// to reach this server, without a store URL.
func (s *Server) Env() []string {
	switch s.Kind {
	case S3:
		return []string{
			"AWS_ACCESS_KEY_ID=" + s.accessKey,
			"AWS_SECRET_ACCESS_KEY=" + s.secretKey,
			"AWS_REGION=" + S3Region,
			"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
			"AWS_EC2_METADATA_DISABLED=true",
			"WALVAULT_S3_PATH_STYLE=true",
		}
	case GCS:
		return []string{"STORAGE_EMULATOR_HOST=" + s.Addr}
	case Azure:
		return []string{"AZURE_STORAGE_CONNECTION_STRING=" + s.ConnectionString()}
	}
	return nil
}

// ConnectionString is Azurite's connection string (Azure only).
func (s *Server) ConnectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + AzureAccount + ";AccountKey=" + AzureKey +
		";BlobEndpoint=" + s.Endpoint + ";"
}

// URL returns the store URL for bucket and prefix on this server.
func (s *Server) URL(bucket, prefix string) string {
	scheme := map[Kind]string{S3: "s3", GCS: "gs", Azure: "azure"}[s.Kind]
	return strings.TrimSuffix(scheme+"://"+bucket+"/"+prefix, "/")
}

// NewTarget creates a fresh, uniquely named bucket on the server and
// returns a target for prefix "walvault" in it; a failure is fatal.
func (s *Server) NewTarget(t testing.TB) *Target {
	t.Helper()
	bucket := BucketName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	url := s.URL(bucket, defaultPrefix)
	return &Target{
		Server:  s,
		Bucket:  bucket,
		Prefix:  defaultPrefix,
		URL:     url,
		Env:     append(s.Env(), "WALVAULT_STORE="+url),
		Options: s.Options(),
	}
}

// Open opens the target's store in-process; a failure is fatal. The store
// is closed when the test ends.
func (tg *Target) Open(t testing.TB) cloud.Store {
	t.Helper()
	st, err := cloud.Open(context.Background(), tg.URL, tg.Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close(st) })
	return st
}

// ObjectPath returns the file that holds key (relative to the target's
// prefix) on a versitygw server, for tests that corrupt or remove objects
// behind the store's back. It returns "" for other servers.
func (tg *Target) ObjectPath(key string) string {
	if tg.Server.Kind != S3 {
		return ""
	}
	return filepath.Join(tg.Server.DataDir, tg.Bucket, filepath.FromSlash(cloud.JoinKey(tg.Prefix, key)))
}

var nameRE = regexp.MustCompile(`[^a-z0-9]+`)

// BucketName makes a unique name valid for S3 buckets, GCS buckets and
// Azure containers (3-63 of [a-z0-9-], no double '-'), with hint in it.
func BucketName(hint string) string {
	h := strings.Trim(nameRE.ReplaceAllString(strings.ToLower(hint), "-"), "-")
	if len(h) > 40 {
		h = strings.TrimRight(h[:40], "-")
	}
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	if h == "" {
		return "wv-" + hex.EncodeToString(rnd[:])
	}
	return "wv-" + h + "-" + hex.EncodeToString(rnd[:])
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: no free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var credsOnce sync.Map

// setProcessCredentials puts the fixed test credentials of kind in the
// process environment, once, so in-process stores find them the way
// walvault does (each SDK's own environment variables).
func setProcessCredentials(kind Kind) {
	if _, loaded := credsOnce.LoadOrStore(kind, true); loaded {
		return
	}
	switch kind {
	case S3:
		_ = os.Setenv("AWS_ACCESS_KEY_ID", S3AccessKey)
		_ = os.Setenv("AWS_SECRET_ACCESS_KEY", S3SecretKey)
		_ = os.Setenv("AWS_REGION", S3Region)
		_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		_ = os.Unsetenv("AWS_SESSION_TOKEN") // would join the static keys
	case Azure:
		_ = os.Setenv("AZURE_STORAGE_ACCOUNT", AzureAccount)
		_ = os.Setenv("AZURE_STORAGE_KEY", AzureKey)
	}
}
