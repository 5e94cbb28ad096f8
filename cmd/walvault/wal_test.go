package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

func segName(n int) string { return fmt.Sprintf("0000000100000000%08X", n) }

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestPushAheadUsesReadySegmentsAndTouchesNoStatusFile(t *testing.T) {
	dir := t.TempDir()
	wal := filepath.Join(dir, "pg_wal")
	status := filepath.Join(wal, "archive_status")
	if err := os.MkdirAll(status, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		fakeSegment(t, wal, segName(i), 42, byte(i))
		if err := os.WriteFile(filepath.Join(status, segName(i)+".ready"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	statusBefore := listDir(t, status)
	store := filepath.Join(dir, "store")
	objects := func() []string { return listDir(t, filepath.Join(store, "wal", "0000000100000000")) }

	code, _, stderr := runCLI(t, "wal-push", "--store", "file://"+store, "--upload-concurrency", "4", filepath.Join(wal, segName(1)))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := objects(); len(got) != 4 || got[0] != segName(1) || got[3] != segName(4) {
		t.Fatalf("after one wal-push with concurrency 4 the store holds %v, want segments 1-4", got)
	}
	if got := listDir(t, filepath.Join(wal, ".walvault", "pushed")); strings.Join(got, ",") != strings.Join([]string{segName(2), segName(3), segName(4)}, ",") {
		t.Fatalf("pushed-ahead markers: %v", got)
	}
	// PostgreSQL's next call for segment 2 is answered from the marker.
	code, _, stderr = runCLI(t, "wal-push", "--log-level", "debug", "--store", "file://"+store, filepath.Join(wal, segName(2)))
	if code != 0 || !strings.Contains(stderr, "already pushed ahead") {
		t.Fatalf("exit %d, stderr %q: want the pushed-ahead fast path", code, stderr)
	}
	if got := listDir(t, filepath.Join(wal, ".walvault", "pushed")); len(got) != 2 {
		t.Fatalf("marker of segment 2 not consumed: %v", got)
	}
	// A marker does not survive a change of the file: segment 3 is rewritten
	// (as if recycled and reused), so its marker must not vouch for it.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(wal, segName(3)), later, later); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "wal-push", "--log-level", "debug", "--store", "file://"+store, filepath.Join(wal, segName(3)))
	if code != 0 || strings.Contains(stderr, "already pushed ahead") || !strings.Contains(stderr, "identical content") {
		t.Fatalf("exit %d, stderr %q: a stale marker was trusted or the store was not checked", code, stderr)
	}
	if got := listDir(t, status); strings.Join(got, ",") != strings.Join(statusBefore, ",") {
		t.Fatalf("archive_status changed: %v -> %v", statusBefore, got)
	}
}

func TestPushIdempotentAndConflict(t *testing.T) {
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	a := filepath.Join(dir, "a")
	b := filepath.Join(dir, "b")
	_ = os.Mkdir(a, 0o700)
	_ = os.Mkdir(b, 0o700)
	seg := fakeSegment(t, a, segName(5), 42, 1)
	other := fakeSegment(t, b, segName(5), 42, 2) // same name, other content
	objPath := filepath.Join(dir, "store", "wal", "0000000100000000", segName(5))

	if code, _, e := runCLI(t, "wal-push", "--store", store, seg); code != 0 {
		t.Fatal(e)
	}
	before, _ := os.ReadFile(objPath)
	if code, _, e := runCLI(t, "wal-push", "--store", store, seg); code != 0 || !strings.Contains(e, "identical content") {
		t.Fatalf("second push of the same content: exit %d, %q", code, e)
	}
	code, _, e := runCLI(t, "wal-push", "--store", store, other)
	if code != exitConflict || !strings.Contains(e, "different checksum") {
		t.Fatalf("push of different content: exit %d, %q; want %d", code, e, exitConflict)
	}
	after, _ := os.ReadFile(objPath)
	if !bytes.Equal(before, after) {
		t.Fatal("the stored object changed")
	}
	// A segment of another cluster is refused before anything is written.
	foreign := fakeSegment(t, b, segName(6), 4242, 3)
	code, _, e = runCLI(t, "wal-push", "--store", store, foreign)
	if code != exitConflict || !strings.Contains(e, "system identifier 42") {
		t.Fatalf("foreign cluster: exit %d, %q", code, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "wal", "0000000100000000", segName(6))); err == nil {
		t.Fatal("the foreign segment was stored")
	}
}

func TestFetchPrefetchAndVerify(t *testing.T) {
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	src := filepath.Join(dir, "src")
	_ = os.Mkdir(src, 0o700)
	id := filepath.Join(dir, "id.txt")
	code, recip, e := runCLI(t, "keygen", id)
	if code != 0 {
		t.Fatal(e)
	}
	recip = strings.TrimSpace(recip)
	for i := 1; i <= 6; i++ {
		p := fakeSegment(t, src, segName(i), 42, byte(i))
		if code, _, e := runCLI(t, "wal-push", "--store", store, "--recipient", recip, "--upload-concurrency", "1", p); code != 0 {
			t.Fatal(e)
		}
	}
	restoreDir := filepath.Join(dir, "pg_wal")
	_ = os.Mkdir(restoreDir, 0o700)
	dest := filepath.Join(restoreDir, "RECOVERYXLOG")
	fetch := func(name string, extra ...string) (int, string) {
		args := append([]string{"wal-fetch", "--store", store, "--identity-file", id}, extra...)
		code, _, e := runCLI(t, append(args, name, dest)...)
		return code, e
	}
	// The CLI's prefetcher re-executes os.Executable (the test binary here),
	// so run the prefetch step in-process instead.
	if code, e := fetch(segName(1), "--prefetch", "0"); code != 0 {
		t.Fatal(e)
	}
	want, _ := os.ReadFile(filepath.Join(src, segName(1)))
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("fetched segment differs")
	}
	spool := filepath.Join(restoreDir, ".walvault")
	if code, _, e := runCLI(t, "wal-prefetch", "--store", store, "--identity-file", id, "--prefetch", "3", segName(1), "1048576", spool); code != 0 {
		t.Fatal(e)
	}
	pre := filepath.Join(spool, "prefetch")
	var files []string
	for _, n := range listDir(t, pre) {
		if !strings.HasPrefix(n, ".") {
			files = append(files, n[:24])
		}
	}
	if strings.Join(files, ",") != strings.Join([]string{segName(2), segName(3), segName(4)}, ",") {
		t.Fatalf("prefetched %v, want segments 2-4", files)
	}
	// Segment 2 is served from the spool (and leaves it).
	if code, e := fetch(segName(2), "--prefetch", "0", "--log-level", "debug"); code != 0 || !strings.Contains(e, "prefetched=true") {
		t.Fatalf("exit %d, %q: want a prefetched serve", code, e)
	}
	want, _ = os.ReadFile(filepath.Join(src, segName(2)))
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("prefetched segment differs")
	}
	// A damaged prefetched file is never served: segment 3 is corrupted in
	// the spool, and wal-fetch must fall back to the store.
	for _, n := range listDir(t, pre) {
		if strings.HasPrefix(n, segName(3)) {
			p := filepath.Join(pre, n)
			b, _ := os.ReadFile(p)
			b[1000] ^= 0xff
			_ = os.WriteFile(p, b, 0o600)
		}
	}
	if code, e := fetch(segName(3), "--prefetch", "0", "--log-level", "debug"); code != 0 || strings.Contains(e, "prefetched=true") {
		t.Fatalf("exit %d, %q: a damaged prefetched file was served", code, e)
	}
	want, _ = os.ReadFile(filepath.Join(src, segName(3)))
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("segment 3 differs after fallback")
	}
	// Prefetched files from another store are not served either.
	if code, e := fetch(segName(4), "--prefetch", "0", "--log-level", "debug", "--store", "file://"+filepath.Join(dir, "other")); code != exitNotFound {
		t.Fatalf("exit %d, %q: served a file prefetched from another store", code, e)
	}
	// Wrong identity and a flipped byte in the store: non-zero, DEST absent.
	_ = os.Remove(dest)
	other := filepath.Join(dir, "other-id.txt")
	runCLI(t, "keygen", other)
	if code, _, e := runCLI(t, "wal-fetch", "--store", store, "--identity-file", other, "--prefetch", "0", segName(5), dest); code != exitStopRecovery || !strings.Contains(e, "identity") {
		t.Fatalf("wrong identity: exit %d, %q", code, e)
	}
	obj := filepath.Join(dir, "store", "wal", "0000000100000000", segName(5))
	b, _ := os.ReadFile(obj)
	b[len(b)-100] ^= 0x01
	_ = os.WriteFile(obj, b, 0o600)
	if code, e := fetch(segName(5), "--prefetch", "0"); code != exitStopRecovery || !strings.Contains(e, segName(5)) {
		t.Fatalf("flipped byte: exit %d, %q", code, e)
	}
	// Without compression or encryption only the recorded checksum can
	// notice a flipped byte.
	plainStore := filepath.Join(dir, "plain")
	if code, _, e := runCLI(t, "wal-push", "--store", "file://"+plainStore, "--compression", "none", filepath.Join(src, segName(6))); code != 0 {
		t.Fatal(e)
	}
	obj = filepath.Join(plainStore, "wal", "0000000100000000", segName(6))
	b, _ = os.ReadFile(obj)
	b[len(b)-100] ^= 0x01
	_ = os.WriteFile(obj, b, 0o600)
	if code, _, e := runCLI(t, "wal-fetch", "--store", "file://"+plainStore, "--prefetch", "0", segName(6), dest); code != exitStopRecovery || !strings.Contains(e, "checksum") {
		t.Fatalf("flipped byte in an uncompressed object: exit %d, %q", code, e)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("DEST exists after a failed fetch")
	}
	if left := listDir(t, restoreDir); len(left) != 1 || left[0] != ".walvault" {
		t.Fatalf("temp files left beside DEST: %v", left)
	}

	// A store that cannot be reached: during an archive recovery it stops
	// recovery too (255); on a standby, where PostgreSQL retries and
	// streams meanwhile, it is the store's code (3). A damaged object
	// stops a standby as well: retrying cannot mend it.
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	gone := []string{"--prefetch", "0", "--store", "s3://bucket/prefix", "--s3-endpoint", "http://127.0.0.1:1", "--s3-path-style"}
	if code, e := fetch(segName(1), gone...); code != exitStopRecovery || !strings.Contains(e, "stops recovery") {
		t.Fatalf("unreachable store, archive recovery: exit %d, %q", code, e)
	}
	if err := os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, e := fetch(segName(1), gone...); code != exitStore {
		t.Fatalf("unreachable store, standby: exit %d, %q", code, e)
	}
	if code, e := fetch(segName(5), "--prefetch", "0"); code != exitStopRecovery {
		t.Fatalf("damaged object, standby: exit %d, %q", code, e)
	}
	if code, e := fetch(segName(9), "--prefetch", "0"); code != exitNotFound {
		t.Fatalf("absent file, standby: exit %d, %q", code, e)
	}
}

// The prefetcher gets this command line's flags, never a setting that
// came from the environment (a store URL with credentials in it, say).
func TestPrefetchArgsKeepEnvironmentOffArgv(t *testing.T) {
	t.Setenv("WALVAULT_STORE", "s3://bucket/p?secret=hunter2")
	// Nothing may leave this machine: a closed local port, static keys.
	t.Setenv("WALVAULT_S3_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	dir := t.TempDir()
	runCLI(t, "wal-fetch", "--prefetch", "2", "--log-level", "warn", "000000010000000000000001", filepath.Join(dir, "x"))
	got := strings.Join(prefetchArgs("000000010000000000000001", 16<<20, dir), " ")
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "--prefetch") || !strings.HasPrefix(got, "wal-prefetch ") {
		t.Fatalf("prefetcher argv: %s", got)
	}
}
