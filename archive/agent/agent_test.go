package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

const segSize = 1 << 20

// writeSegment writes segment segNo of timeline 1 into walDir with a valid
// long page header, and its .ready file.
func writeSegment(t *testing.T, walDir string, segNo uint64) (string, []byte) {
	t.Helper()
	b := make([]byte, segSize)
	rng := rand.NewChaCha8([32]byte{byte(segNo)})
	_, _ = rng.Read(b[archive.LongHeaderLen:])
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002)
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], segNo*segSize)
	le.PutUint64(b[24:], 7312345678901234567)
	le.PutUint32(b[32:], segSize)
	le.PutUint32(b[36:], 8192)
	name := archive.SegmentName(1, segNo, segSize)
	if err := os.WriteFile(filepath.Join(walDir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(walDir, "archive_status", name+".ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return name, b
}

func testRepo(t *testing.T) (*repo.Repo, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := cloud.Open(context.Background(), "file://"+dir, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "sign.key")
	vk, err := crypto.GenerateSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	return &repo.Repo{Store: st, Sign: sk, Verify: []crypto.VerifyKey{vk}}, dir
}

func pgdata(t *testing.T) (string, string) {
	t.Helper()
	d := t.TempDir()
	wal := filepath.Join(d, "pg_wal")
	if err := os.MkdirAll(filepath.Join(wal, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	return d, wal
}

func exitCode(err error) int {
	switch {
	case errors.Is(err, archive.ErrNotInArchive):
		return 1
	case errors.Is(err, archive.ErrBadInput):
		return 2
	}
	return 9
}

// runAgent opens and runs an agent until the test ends.
func runAgent(t *testing.T, r *repo.Repo, cfg Config) *Agent {
	t.Helper()
	cfg.ExitCode = exitCode
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.SocketGID = -1
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	a, err := Open(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return a
}

func ask(t *testing.T, sock string, req proto.Request) proto.Response {
	t.Helper()
	c, err := proto.Dial(sock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write([]byte(req.Encode())); err != nil {
		t.Fatal(err)
	}
	resp, err := proto.ReadResponse(bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAgentArchivesAndAnswers(t *testing.T) {
	r, storeDir := testRepo(t)
	data, wal := pgdata(t)
	var names []string
	for i := uint64(1); i <= 6; i++ {
		n, _ := writeSegment(t, wal, i)
		names = append(names, n)
	}
	a := runAgent(t, r, Config{PGData: data, Concurrency: 3, Prefetch: 2})
	sock := a.Socket()
	if sock != proto.DefaultSocket(wal) {
		t.Fatalf("socket %s, want the default", sock)
	}
	// The last one jumps the queue; the answer comes once it is durable.
	resp := ask(t, sock, proto.Request{Verb: proto.VerbPush, Args: []string{filepath.Join(wal, names[5])}})
	if resp.Code != 0 {
		t.Fatalf("push: %+v", resp)
	}
	if _, err := os.Stat(filepath.Join(storeDir, repo.WALKey(mustParse(t, names[5])))); err != nil {
		t.Fatalf("answered 0 but the object is not stored: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for a.Stats().SegmentsArchived < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("not drained: %+v", a.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range names {
		if !a.marks.valid(n, mustID(t, filepath.Join(wal, n))) {
			t.Errorf("no valid marker for %s", n)
		}
		// PostgreSQL's files are only read.
		if _, err := os.Stat(filepath.Join(wal, "archive_status", n+".ready")); err != nil {
			t.Errorf("%s.ready: %v", n, err)
		}
	}

	cases := []struct {
		name string
		req  proto.Request
		code int
	}{
		{"durable", proto.Request{Verb: proto.VerbPush, Args: []string{filepath.Join(wal, names[0])}}, 0},
		{"another directory", proto.Request{Verb: proto.VerbPush, Args: []string{filepath.Join(t.TempDir(), names[0])}}, proto.CodeFallback},
		{"relative path", proto.Request{Verb: proto.VerbPush, Args: []string{"pg_wal/" + names[0]}}, proto.CodeFallback},
		{"missing file", proto.Request{Verb: proto.VerbPush, Args: []string{filepath.Join(wal, archive.SegmentName(1, 99, segSize))}}, 2},
		{"not a WAL name", proto.Request{Verb: proto.VerbPush, Args: []string{filepath.Join(wal, "postgresql.conf")}}, 2},
		{"fetch, not archived", proto.Request{Verb: proto.VerbFetch, Args: []string{archive.SegmentName(1, 99, segSize), filepath.Join(wal, "RECOVERYXLOG")}}, 1},
		{"fetch outside pg_wal", proto.Request{Verb: proto.VerbFetch, Args: []string{names[0], filepath.Join(data, "x")}}, proto.CodeFallback},
		{"unknown verb", proto.Request{Verb: "delete", Args: []string{names[0]}}, 2},
		{"push, two args", proto.Request{Verb: proto.VerbPush, Args: []string{"a", "b"}}, 2},
	}
	for _, c := range cases {
		if got := ask(t, sock, c.req); got.Code != c.code {
			t.Errorf("%s: %+v, want code %d", c.name, got, c.code)
		}
	}

	// A file rewritten since its upload (same name, other mtime) is not
	// taken for durable on the marker's word: it is checked again.
	p := filepath.Join(wal, names[1])
	later := time.Now().Add(time.Minute)
	before := a.Stats().AlreadyArchived
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if resp := ask(t, sock, proto.Request{Verb: proto.VerbPush, Args: []string{p}}); resp.Code != 0 {
		t.Fatalf("push of the touched file: %+v", resp)
	}
	if a.Stats().AlreadyArchived < before+1 {
		t.Fatal("the touched file was not checked against the store again")
	}

	// fetch writes DEST whole, in pg_wal only.
	dest := filepath.Join(wal, "RECOVERYXLOG")
	if resp := ask(t, sock, proto.Request{Verb: proto.VerbFetch, Args: []string{names[2], dest}}); resp.Code != 0 {
		t.Fatalf("fetch: %+v", resp)
	}
	got, _ := os.ReadFile(dest)
	orig, _ := os.ReadFile(filepath.Join(wal, names[2]))
	if !bytes.Equal(got, orig) {
		t.Fatal("fetched copy differs")
	}
	// Segments 4 and 5 are prefetched after 3; 4 is then served from the
	// prefetch, 5 too unless the file changed, when the store is asked.
	waitPrefetched := func(n string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			a.pf.mu.Lock()
			_, ok := a.pf.files[n]
			a.pf.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not prefetched", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPrefetched(names[3])
	waitPrefetched(names[4])
	hits := a.Stats().PrefetchHits
	for _, c := range []struct {
		i      int
		tamper bool
		hit    bool
	}{{3, false, true}, {4, true, false}} {
		if c.tamper {
			waitPrefetched(names[c.i])
			p := filepath.Join(a.pf.dir, names[c.i])
			if err := os.WriteFile(p, []byte("not the segment"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if resp := ask(t, sock, proto.Request{Verb: proto.VerbFetch, Args: []string{names[c.i], dest}}); resp.Code != 0 {
			t.Fatalf("fetch %s: %+v", names[c.i], resp)
		}
		got, _ := os.ReadFile(dest)
		orig, _ := os.ReadFile(filepath.Join(wal, names[c.i]))
		if !bytes.Equal(got, orig) {
			t.Fatalf("fetched %s differs (tampered prefetch: %v)", names[c.i], c.tamper)
		}
		if c.hit {
			hits++
		}
		if got := a.Stats().PrefetchHits; got != hits {
			t.Fatalf("fetch %s: %d prefetch hits, want %d", names[c.i], got, hits)
		}
	}
	// Serving 4 started the prefetch of 5 (segment 6): once it is in, no
	// temporary file may be left.
	waitPrefetched(names[5])
	if l := a.prefetchLeftovers(); len(l) > 0 {
		t.Fatalf("temporary files left in the prefetch directory: %v", l)
	}

	st := ask(t, sock, proto.Request{Verb: proto.VerbStatus})
	if st.Code != 0 || !strings.Contains(st.Message, `"segments_archived":6`) {
		t.Fatalf("status: %+v", st)
	}
}

func mustParse(t *testing.T, name string) archive.WALFile {
	t.Helper()
	wf, err := archive.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

func mustID(t *testing.T, p string) fileID {
	t.Helper()
	id, err := statID(p)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAgentQueuesArrivals: with no rescan period to fall back on, files
// whose .ready appears after the first scan are archived on inotify's word
// alone, and a .ready renamed to .done starts nothing.
func TestAgentQueuesArrivals(t *testing.T) {
	r, storeDir := testRepo(t)
	data, wal := pgdata(t)
	first, _ := writeSegment(t, wal, 1)
	a := runAgent(t, r, Config{PGData: data, Concurrency: 1, PollInterval: time.Hour})
	waitArchived := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for a.Stats().SegmentsArchived < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d archived, want %d: %+v", a.Stats().SegmentsArchived, n, a.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitArchived(1) // the first scan is over
	var names []string
	for i := uint64(2); i <= 4; i++ {
		n, _ := writeSegment(t, wal, i)
		names = append(names, n)
	}
	// Not a WAL file's name: ignored, as a scan ignores it.
	if err := os.WriteFile(filepath.Join(wal, "archive_status", "junk.ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitArchived(4)
	// The backlog figures follow without a scan: nothing ready is left
	// that is not durable.
	if s := a.Stats(); s.ReadyCount != 0 || s.ReadyBytes != 0 {
		t.Errorf("everything archived, yet the backlog says %d files, %d bytes", s.ReadyCount, s.ReadyBytes)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(storeDir, repo.WALKey(mustParse(t, n)))); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	st := filepath.Join(wal, "archive_status", first)
	if err := os.Rename(st+".ready", st+".done"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if s := a.Stats(); s.SegmentsArchived != 4 || s.AlreadyArchived != 0 || s.UploadErrors != 0 {
		t.Errorf("after .ready became .done: %+v", s)
	}
}

func TestOneAgentPerDataDirectory(t *testing.T) {
	r, _ := testRepo(t)
	data, _ := pgdata(t)
	runAgent(t, r, Config{PGData: data})
	_, err := Open(r, Config{PGData: data, SocketGID: -1})
	if !errors.Is(err, ErrLocked) || !errors.Is(err, archive.ErrConflict) || !strings.Contains(err.Error(), "(pid ") {
		t.Fatalf("second agent: %v", err)
	}
	if _, err := Open(r, Config{PGData: t.TempDir(), SocketGID: -1}); !errors.Is(err, archive.ErrBadInput) {
		t.Fatalf("not a data directory: %v", err)
	}
}

// A socket path over sun_path's 107 bytes is bound and reached through its
// directory.
func TestLongSocketPath(t *testing.T) {
	r, _ := testRepo(t)
	data, _ := pgdata(t)
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(long, "agent.sock")
	if len(sock) <= 107 {
		t.Fatalf("path only %d bytes", len(sock))
	}
	a := runAgent(t, r, Config{PGData: data, Socket: sock})
	if a.Socket() != sock {
		t.Fatalf("socket %s", a.Socket())
	}
	if resp := ask(t, sock, proto.Request{Verb: proto.VerbStatus}); resp.Code != 0 {
		t.Fatalf("status over a long path: %+v", resp)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi, err)
	}
}

func TestMarkers(t *testing.T) {
	r, _ := testRepo(t)
	other, _ := testRepo(t)
	dir := t.TempDir()
	m := markers{dir: dir, store: StoreIdentity(cloud.Identity(r.Store, "")), instance: "a"}
	id := fileID{size: 16 << 20, mtime: 1234}
	name := archive.SegmentName(1, 1, 16<<20)
	if err := m.write(name, id); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		m    markers
		id   fileID
		want bool
	}{
		{"same", m, id, true},
		{"other size", m, fileID{size: 1, mtime: 1234}, false},
		{"other mtime", m, fileID{size: 16 << 20, mtime: 1235}, false},
		{"other instance", markers{dir: dir, store: StoreIdentity(cloud.Identity(r.Store, "")), instance: "b"}, id, false},
		{"other store", markers{dir: dir, store: StoreIdentity(cloud.Identity(other.Store, "")), instance: "a"}, id, false},
		{"same store, another endpoint", markers{dir: dir, store: StoreIdentity(cloud.Identity(r.Store, "https://other:9000")), instance: "a"}, id, false},
	} {
		if got := c.m.valid(name, c.id); got != c.want {
			t.Errorf("%s: valid %v, want %v", c.what, got, c.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, name+".tmp123"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := m.list(); len(got) != 1 || got[0] != name {
		t.Fatalf("list: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, name+".tmp123")); err == nil {
		t.Fatal("a leftover temporary marker was kept")
	}
}

// The instance is kept for one pg_wal and changes, dropping the markers,
// when the spool turns up beside another (a copied data directory).
func TestInstanceID(t *testing.T) {
	spool := t.TempDir()
	wal1, wal2 := t.TempDir(), t.TempDir()
	a, err := instanceID(spool, wal1)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := instanceID(spool, wal1); b != a {
		t.Fatalf("instance changed: %s %s", a, b)
	}
	if err := os.MkdirAll(filepath.Join(spool, "durable"), 0o700); err != nil {
		t.Fatal(err)
	}
	c, _ := instanceID(spool, wal2)
	if c == a {
		t.Fatal("same instance for another pg_wal")
	}
	if _, err := os.Stat(filepath.Join(spool, "durable")); err == nil {
		t.Fatal("markers of another instance kept")
	}
}

func TestCheckSocketDir(t *testing.T) {
	for _, c := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o700, true}, {0o750, true}, {0o770, false}, {0o777, false}, {os.ModeSticky | 0o777, true}, {0o755, true},
	} {
		d := filepath.Join(t.TempDir(), "s")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, c.mode); err != nil {
			t.Fatal(err)
		}
		if err := checkSocketDir(d); (err == nil) != c.ok {
			t.Errorf("mode %04o: %v, want ok %v", c.mode, err, c.ok)
		}
	}
}

// TestFetchOnlyAgentDropsArrivals: an agent that does not archive takes
// no upload for a new .ready, and keeps none of inotify's reports.
func TestFetchOnlyAgentDropsArrivals(t *testing.T) {
	r, _ := testRepo(t)
	data, wal := pgdata(t)
	a := runAgent(t, r, Config{PGData: data, Concurrency: 1, NoArchive: true, PollInterval: time.Hour})
	for i := uint64(1); i <= 3; i++ {
		writeSegment(t, wal, i)
	}
	time.Sleep(300 * time.Millisecond)
	a.poke()
	time.Sleep(100 * time.Millisecond)
	a.arrMu.Lock()
	left := len(a.arrived)
	a.arrMu.Unlock()
	if s := a.Stats(); left != 0 || s.SegmentsArchived != 0 {
		t.Fatalf("fetch-only agent: %d reports kept, %d segments archived", left, s.SegmentsArchived)
	}
}
