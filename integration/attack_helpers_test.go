package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/integration/pgtest"
)

// The attacker of attack_test.go: write access to the bucket and the
// public recipient, nothing else. It reaches the objects the way a leaked
// bucket credential does, not through walvault's own store code (whose
// checks are part of what is tested): plain files for file://, the S3 API
// for S3.

// bucketWriter is raw access to a store's objects, keys relative to the
// store's prefix.
type bucketWriter interface {
	// put stores body (size bytes) under key with metadata meta.
	put(t testing.TB, key string, body io.ReadSeeker, size int64, meta map[string]string)
	// get returns an object's bytes and metadata.
	get(t testing.TB, key string) ([]byte, map[string]string)
	// removeAll deletes every object under prefix (a folder, with '/').
	removeAll(t testing.TB, prefix string)
}

func putBytes(t testing.TB, b bucketWriter, key string, body []byte, meta map[string]string) {
	t.Helper()
	b.put(t, key, bytes.NewReader(body), int64(len(body)), meta)
}

// copyObject copies an object, bytes and metadata, to another key.
func copyObject(t testing.TB, b bucketWriter, from, to string) {
	t.Helper()
	body, meta := b.get(t, from)
	putBytes(t, b, to, body, meta)
}

// replaceFor swaps what key holds for the rest of the test: the original
// bytes and metadata are put back when it ends, so each attack starts from
// the genuine archive.
func replaceFor(t testing.TB, b bucketWriter, key string, body io.ReadSeeker, size int64, meta map[string]string) {
	t.Helper()
	orig, origMeta := b.get(t, key)
	b.put(t, key, body, size, meta)
	t.Cleanup(func() { putBytes(t, b, key, orig, origMeta) })
}

// fileBucket writes a file:// store's files directly, envelope and all
// (see cloud/file.go): "WVO1", the metadata's length (uint32 big-endian),
// the metadata as JSON, the object's bytes.
type fileBucket struct{ dir string }

func (f fileBucket) path(key string) string { return filepath.Join(f.dir, filepath.FromSlash(key)) }

func (f fileBucket) put(t testing.TB, key string, body io.ReadSeeker, _ int64, meta map[string]string) {
	t.Helper()
	p := f.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil { // #nosec G301 -- test data
		t.Fatal(err)
	}
	js, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(p) // #nosec G304 -- a key of the test's own store
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = out.Close() }() // closed, checked, below; this one is for t.Fatal
	hdr := make([]byte, 8, 8+len(js))
	copy(hdr, "WVO1")
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(js))) // #nosec G115 -- small
	if _, err := out.Write(append(hdr, js...)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, body); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func (f fileBucket) get(t testing.TB, key string) ([]byte, map[string]string) {
	t.Helper()
	b, err := os.ReadFile(f.path(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || string(b[:4]) != "WVO1" {
		t.Fatalf("%s: no envelope", key)
	}
	n := int(binary.BigEndian.Uint32(b[4:8]))
	var meta map[string]string
	if err := json.Unmarshal(b[8:8+n], &meta); err != nil {
		t.Fatalf("%s: envelope: %v", key, err)
	}
	return b[8+n:], meta
}

func (f fileBucket) removeAll(t testing.TB, prefix string) {
	t.Helper()
	if err := os.RemoveAll(f.path(strings.TrimSuffix(prefix, "/"))); err != nil {
		t.Fatal(err)
	}
}

// s3Bucket talks to the S3 server with the test credentials, as anyone
// holding the bucket's key would.
type s3Bucket struct {
	client         *s3.Client
	bucket, prefix string
}

func newS3Bucket(tg *target) s3Bucket {
	u, _ := url.Parse(tg.URL)
	return s3Bucket{client: tg.Server.S3Client(), bucket: u.Host, prefix: strings.Trim(u.Path, "/")}
}

func (s s3Bucket) key(k string) string { return s.prefix + "/" + k }

func (s s3Bucket) put(t testing.TB, key string, body io.ReadSeeker, size int64, meta map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key)),
		Body: body, ContentLength: aws.Int64(size), Metadata: meta})
	if err != nil {
		t.Fatalf("planting %q: %v", key, err)
	}
}

func (s s3Bucket) get(t testing.TB, key string) ([]byte, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key))})
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{}
	for k, v := range out.Metadata {
		meta[strings.ToLower(k)] = v
	}
	return b, meta
}

func (s s3Bucket) removeAll(t testing.TB, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.key(prefix))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing %q: %v", prefix, err)
		}
		for _, o := range page.Contents {
			if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: o.Key}); err != nil {
				t.Fatalf("deleting %q: %v", aws.ToString(o.Key), err)
			}
		}
	}
}

// objectMeta is the metadata a careful forger gives its content: the right
// digest and size (anyone can compute them), and the proof and signer
// lifted from a genuine object, which sign something else.
func objectMeta(content []byte, genuine map[string]string) map[string]string {
	sum := sha256.Sum256(content)
	return forgedMeta(hex.EncodeToString(sum[:]), int64(len(content)), genuine)
}

func forgedMeta(sha string, size int64, genuine map[string]string) map[string]string {
	m := map[string]string{repo.MetaSHA256: sha, repo.MetaSize: strconv.FormatInt(size, 10)}
	for _, k := range []string{repo.MetaProof, repo.MetaSigner} {
		if v := genuine[k]; v != "" {
			m[k] = v
		}
	}
	return m
}

// withoutProof is meta with the proof and the signer dropped.
func withoutProof(meta map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range meta {
		if k != repo.MetaProof && k != repo.MetaSigner {
			out[k] = v
		}
	}
	return out
}

// ageEncrypt encrypts to the archive's public recipient, as stock age does.
func ageEncrypt(t testing.TB, recipient string, plain []byte) []byte {
	t.Helper()
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// walPageHeader is the long page header that starts segment name in a
// cluster with system identifier sysid: what a WAL reader checks first.
func walPageHeader(t testing.TB, name string, segSize int64, sysid uint64) []byte {
	t.Helper()
	wf, err := archive.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 40)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)                       // PostgreSQL 15's XLOG_PAGE_MAGIC
	le.PutUint16(b[2:], 0x0002)                       // XLP_LONG_HEADER
	le.PutUint32(b[4:], wf.Timeline)                  // xlp_tli
	le.PutUint64(b[8:], uint64(wf.StartLSN(segSize))) // xlp_pageaddr
	le.PutUint64(b[24:], sysid)                       // xlp_sysid
	le.PutUint32(b[32:], uint32(segSize))             // #nosec G115 -- a valid segment size
	le.PutUint32(b[36:], 8192)                        // xlp_xlog_blcksz
	if _, err := archive.ParsePageHeader(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// zstd window descriptors (RFC 8878 3.1.1.1.2): window = 2^(10+exponent).
const (
	zstdWindow8MiB   = 13 << 3 // what walvault's writer uses
	zstdWindow512MiB = 19 << 3 // the most klauspost/compress accepts by default
)

// zstdZeros is a hand-made zstd frame: head as a raw block, then zeros
// bytes of zeros as RLE blocks of 128 KiB, 4 bytes each. A gigabyte of
// zeros takes 32 KiB: the bomb. Its frame header declares the window
// windowDesc says, whatever the content needs.
func zstdZeros(windowDesc byte, head []byte, zeros int64) []byte {
	const maxBlock = 128 << 10
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, windowDesc} // magic; no checksum, no content size
	block := func(last bool, typ, size int) {
		v := uint32(size)<<3 | uint32(typ)<<1 // #nosec G115 -- at most 128 KiB
		if last {
			v |= 1
		}
		b = append(b, byte(v), byte(v>>8), byte(v>>16))
	}
	for len(head) > 0 {
		n := min(len(head), maxBlock)
		block(zeros == 0 && n == len(head), 0, n)
		b = append(b, head[:n]...)
		head = head[n:]
	}
	for zeros > 0 {
		n := min(zeros, maxBlock)
		zeros -= n
		block(zeros == 0, 1, int(n))
		b = append(b, 0)
	}
	return b
}

// zerosDigest is the SHA-256 of head followed by zeros zero bytes.
func zerosDigest(head []byte, zeros int64) string {
	h := sha256.New()
	h.Write(head)
	buf := make([]byte, 1<<20)
	for zeros > 0 {
		n := min(zeros, int64(len(buf)))
		h.Write(buf[:n])
		zeros -= n
	}
	return hex.EncodeToString(h.Sum(nil))
}

// tarHeaderBlock is the 512-byte tar header of a regular file.
func tarHeaderBlock(t testing.TB, name string, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: size, ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 512 {
		t.Fatalf("tar header of %d bytes", buf.Len())
	}
	return buf.Bytes()
}

// tarOf is a whole tar holding one regular file.
func tarOf(t testing.TB, name string, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(content)), ModTime: time.Unix(1700000000, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func crc32cOf(r io.Reader) (string, int64) {
	var c repo.CRC32C
	n, _ := io.Copy(&c, r)
	return c.Hex(), n
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// patternReader is head, n copies of fill, tail: a huge object streamed
// from a few bytes of memory. It seeks, so an S3 client can sign it.
type patternReader struct {
	head, tail []byte
	fill       byte
	n          int64
	off        int64
	buf        []byte // fill bytes to copy from
}

func (p *patternReader) size() int64 { return int64(len(p.head)) + p.n + int64(len(p.tail)) }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size() {
		return 0, io.EOF
	}
	k := 0
	for k < len(b) && p.off < p.size() {
		switch h, f := int64(len(p.head)), int64(len(p.head))+p.n; {
		case p.off < h:
			c := copy(b[k:], p.head[p.off:])
			k += c
			p.off += int64(c)
		case p.off < f:
			c := int(min(int64(len(b)-k), f-p.off))
			if len(p.buf) == 0 {
				p.buf = bytes.Repeat([]byte{p.fill}, 64<<10)
			}
			c = copy(b[k:k+c], p.buf)
			k += c
			p.off += int64(c)
		default:
			c := copy(b[k:], p.tail[p.off-f:])
			k += c
			p.off += int64(c)
		}
	}
	return k, nil
}

func (p *patternReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += p.off
	case io.SeekEnd:
		off += p.size()
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	p.off = off
	return off, nil
}

// digest is the SHA-256 of the whole content; the reader is left at its
// start.
func (p *patternReader) digest(t testing.TB) string {
	t.Helper()
	h := sha256.New()
	if _, err := p.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyBuffer(h, p, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// runResult is one walvault run: exit code, output, and the peak resident
// memory the kernel reports for it.
type runResult struct {
	code           int
	stdout, stderr string
	maxRSS         int64 // bytes
}

func (r runResult) String() string {
	return fmt.Sprintf("exit %d, peak RSS %.1f MB\nstdout: %s\nstderr: %s", r.code, float64(r.maxRSS)/1e6, r.stdout, r.stderr)
}

// exitIn checks the exit code against the documented ones the attack may
// end in.
func (r runResult) exitIn(t testing.TB, what string, codes ...int) {
	t.Helper()
	for _, c := range codes {
		if r.code == c {
			return
		}
	}
	t.Errorf("%s: want exit %v; got %s", what, codes, r)
}

// walvaultEnv is the environment for a walvault run: the test's, without
// any WALVAULT_ setting the harness may carry (each attack says exactly
// which keys the victim uses), plus the target's and extra.
func walvaultEnv(tg *target, extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WALVAULT_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_EC2_METADATA_DISABLED=true")
	env = append(env, tg.Env...)
	return append(env, extra...)
}

// runWalvault runs the binary and reports its peak RSS. The kernel's
// rusage of a child started from this (large) test process counts the
// test's own memory too (the high-water mark survives exec), so the peak
// comes from GNU time, which forks walvault from a small process, or,
// without it, from sampling the process's VmHWM while it runs.
func runWalvault(t testing.TB, tg *target, env []string, args ...string) runResult {
	t.Helper()
	bin, argv := pgtest.Walvault(t), args
	var rssFile string
	if _, err := os.Stat(gnuTime); err == nil {
		f, err := os.CreateTemp("", "wv-rss-")
		if err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		rssFile = f.Name()
		defer func() { _ = os.Remove(rssFile) }()
		bin, argv = gnuTime, append([]string{"-f", "%M", "-o", rssFile, bin}, args...)
	}
	cmd := exec.Command(bin, argv...) // #nosec G204 -- the binary under test
	cmd.Env = walvaultEnv(tg, env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var hwm *hwmSampler
	if rssFile == "" {
		hwm = sampleHWM(cmd.Process.Pid)
	}
	err := cmd.Wait()
	res := runResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	if hwm != nil {
		res.maxRSS = hwm.done()
	} else if b, err := os.ReadFile(rssFile); err == nil {
		f := strings.Fields(string(b)) // a "Command exited with non-zero status N" line comes first
		if len(f) > 0 {
			kb, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			res.maxRSS = kb * 1024
		}
	}
	return res
}

const gnuTime = "/usr/bin/time"

// hwmSampler polls /proc/PID/status for VmHWM, the process's own peak
// resident set, until it exits.
type hwmSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak int64
}

func sampleHWM(pid int) *hwmSampler {
	s := &hwmSampler{stop: make(chan struct{})}
	path := fmt.Sprintf("/proc/%d/status", pid)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			if b, err := os.ReadFile(path); err == nil { // #nosec G304 -- /proc of our child
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
						s.peak = max(s.peak, kb*1024)
					}
				}
			}
			select {
			case <-s.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return s
}

func (s *hwmSampler) done() int64 { close(s.stop); s.wg.Wait(); return s.peak }

// regularBytes totals the regular files under dir (0 when it is absent)
// and lists them.
func regularBytes(dir string) (int64, []string) {
	var total int64
	var names []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		names = append(names, p)
		return nil
	})
	sort.Strings(names)
	return total, names
}

// peakWatcher samples the bytes of regular files under a directory while
// a command runs, keeping the largest total seen.
type peakWatcher struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak int64
}

func watchPeak(dir string) *peakWatcher {
	w := &peakWatcher{stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			if n, _ := regularBytes(dir); n > w.peak {
				w.peak = n
			}
			select {
			case <-w.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *peakWatcher) done() int64 { close(w.stop); w.wg.Wait(); return w.peak }

// emptyDir fails unless dir holds no file at all (directories aside).
func emptyDir(t testing.TB, what, dir string) {
	t.Helper()
	if n, names := regularBytes(dir); len(names) > 0 {
		t.Errorf("%s: %d files (%d bytes) left in %s: %v", what, len(names), n, dir, names)
	}
}

// absent fails if path exists.
func absent(t testing.TB, what, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		_, names := regularBytes(path)
		if len(names) > 3 {
			names = append(names[:3], fmt.Sprintf("and %d more", len(names)-3))
		}
		t.Errorf("%s: %s exists (files: %v)", what, path, names)
	}
}

// notStartable fails if dest holds a data directory PostgreSQL could start.
func notStartable(t testing.TB, dest string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dest, "global", "pg_control")); err == nil {
		t.Errorf("%s has global/pg_control: a failed restore left a startable directory", dest)
	}
}

// firstLine is s's first line, for logs.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// forgeCRC32C rewrites the last 4 bytes of b so that its CRC-32C is want
// (8 hex digits): what anyone can do to a file whose only check is a CRC.
func forgeCRC32C(t testing.TB, b []byte, want string) {
	t.Helper()
	target, err := strconv.ParseUint(want, 16, 32)
	if err != nil || len(b) < 4 {
		t.Fatalf("forgeCRC32C(%d bytes, %q)", len(b), want)
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	var rev [256]byte
	for i := range 256 {
		rev[tab[i]>>24] = byte(i)
	}
	// The table index each of the last 4 steps must use to end at target.
	f := ^uint32(target)
	var idx [4]byte
	for i := 3; i >= 0; i-- {
		idx[i] = rev[f>>24]
		f = (f ^ tab[idx[i]]) << 8
	}
	state := ^crc32.Update(0, tab, b[:len(b)-4])
	for i := range 4 {
		b[len(b)-4+i] = byte(state) ^ idx[i]
		state = state>>8 ^ tab[idx[i]]
	}
	if got, _ := crc32cOf(bytes.NewReader(b)); got != want {
		t.Fatalf("forgeCRC32C: got %s, want %s", got, want)
	}
}
