package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// The gs:// backend, for Google Cloud Storage.
func init() { Register("gs", openGCS) }

const (
	gcsDefaultChunk = 16 << 20
	gcsChunkAlign   = 256 << 10 // the SDK rounds chunks up to this
)

type gcsStore struct {
	client *storage.Client
	bucket *storage.BucketHandle
	name   string
	bkt    string
	prefix string
	chunk  int64
	class  string
	kmsKey string
}

func openGCS(ctx context.Context, loc Location, opts Options) (Store, error) {
	name := "gs://" + strings.TrimSuffix(loc.Bucket+"/"+loc.Prefix, "/")
	var copts []option.ClientOption
	switch ep := opts.GCSEndpoint; {
	case strings.HasPrefix(ep, "http://"):
		// Plain http is an emulator: no credentials to find or send.
		copts = append(copts, option.WithEndpoint(ep), option.WithoutAuthentication())
	case ep != "":
		copts = append(copts, option.WithEndpoint(ep))
	}
	// With STORAGE_EMULATOR_HOST the SDK itself skips authentication.
	// Otherwise it finds Application Default Credentials now, which reads
	// GOOGLE_APPLICATION_CREDENTIALS or gcloud's file: no network unless
	// neither exists and it has to ask whether this is a GCE machine.
	client, err := storage.NewClient(ctx, copts...)
	if err != nil {
		return nil, Permanent(fmt.Errorf("%s: cannot create a GCS client: %w (set GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth application-default login)", name, err))
	}
	// Bounded retries: a dead endpoint must fail wal-push within seconds.
	// Writes are conditional or idempotent by key, so the default policy
	// (retry idempotent operations only) is right.
	client.SetRetry(
		storage.WithBackoff(gax.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2}),
		storage.WithMaxAttempts(3),
	)
	s := &gcsStore{
		client: client,
		bucket: client.Bucket(loc.Bucket),
		name:   name,
		bkt:    loc.Bucket,
		prefix: loc.Prefix,
		chunk:  gcsDefaultChunk,
		class:  opts.GCSStorageClass,
		kmsKey: opts.GCSKMSKeyName,
	}
	if opts.PartSize > 0 {
		s.chunk = opts.PartSize
	}
	return s, nil
}

func (s *gcsStore) String() string { return s.name }

func (s *gcsStore) Close() error { return s.client.Close() }

func (s *gcsStore) key(k string) string { return JoinKey(s.prefix, k) }

// chunkFor picks the writer's buffer: a small object (by hint) gets a small
// buffer, and an object slightly larger than one chunk (a WAL segment plus
// framing) still goes up in a single request.
func (s *gcsStore) chunkFor(hint int64) int {
	c := s.chunk + s3Slack
	if hint > 0 && hint+s3Slack < c {
		c = hint + s3Slack
	}
	return int((c + gcsChunkAlign - 1) / gcsChunkAlign * gcsChunkAlign)
}

// errReader remembers the source's error so that Put can tell it from the
// upload's.
type errReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if err := e.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

func (s *gcsStore) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error {
	if err := checkMetadata(opts.Metadata); err != nil {
		return Permanent(fmt.Errorf("%s: put %s: %w", s, key, err))
	}
	// Cancelling the writer's context is the only way to abandon an upload
	// without finalizing the object; Close would commit what was written.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	obj := s.bucket.Object(s.key(key))
	if opts.IfAbsent {
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	}
	w := obj.NewWriter(wctx)
	w.ChunkSize = s.chunkFor(opts.SizeHint)
	w.Metadata = opts.Metadata
	w.StorageClass = s.class
	w.KMSKeyName = s.kmsKey
	src := &errReader{ctx: ctx, r: r}
	if _, err := io.Copy(w, src); err != nil {
		cancel()
		_ = w.Close()
		if src.err != nil {
			return fmt.Errorf("%s: put %s: reading the data: %w", s, key, src.err)
		}
		return s.mapErr(ctx, "put", key, err)
	}
	if err := ctx.Err(); err != nil {
		cancel()
		_ = w.Close()
		return fmt.Errorf("%s: put %s: %w", s, key, err)
	}
	if err := w.Close(); err != nil {
		return s.mapErr(ctx, "put", key, err)
	}
	return nil
}

func gcsInfo(key string, a *storage.ObjectAttrs) ObjectInfo {
	meta := make(map[string]string, len(a.Metadata))
	for k, v := range a.Metadata {
		meta[strings.ToLower(k)] = v
	}
	return ObjectInfo{Key: key, Size: a.Size, ModTime: a.Updated, Metadata: meta}
}

// Get opens the object and fetches its attributes at the same time: the
// reader does not carry user metadata. Both name the same generation, or
// the read is re-pinned to the generation the attributes describe.
func (s *gcsStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	obj := s.bucket.Object(s.key(key))
	type attrsResult struct {
		a   *storage.ObjectAttrs
		err error
	}
	ac := make(chan attrsResult, 1)
	go func() {
		a, err := obj.Attrs(ctx)
		ac <- attrsResult{a, err}
	}()
	rd, rerr := obj.NewReader(ctx)
	res := <-ac
	if res.err != nil {
		if rd != nil {
			_ = rd.Close()
		}
		return nil, ObjectInfo{}, s.mapErr(ctx, "get", key, res.err)
	}
	if rerr == nil && rd.Attrs.Generation == res.a.Generation {
		return rd, gcsInfo(key, res.a), nil
	}
	if rd != nil {
		_ = rd.Close()
	}
	rd, err := obj.Generation(res.a.Generation).NewReader(ctx)
	if err != nil {
		return nil, ObjectInfo{}, s.mapErr(ctx, "get", key, err)
	}
	return rd, gcsInfo(key, res.a), nil
}

func (s *gcsStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	a, err := s.bucket.Object(s.key(key)).Attrs(ctx)
	if err != nil {
		return ObjectInfo{}, s.mapErr(ctx, "stat", key, err)
	}
	return gcsInfo(key, a), nil
}

func (s *gcsStore) List(ctx context.Context, prefix string, opts ListOptions, fn func(ObjectInfo) error) error {
	base := ""
	if s.prefix != "" {
		base = s.prefix + "/"
	}
	q := &storage.Query{Prefix: base + prefix, Delimiter: opts.Delimiter}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
		return err
	}
	pager := iterator.NewPager(s.bucket.Objects(ctx, q), 1000, "")
	for {
		var page []*storage.ObjectAttrs
		next, err := pager.NextPage(&page)
		if err != nil {
			return s.mapErr(ctx, "list", prefix, err)
		}
		// A page lists objects, then prefixes: merge into lexical order.
		entries := make([]ObjectInfo, 0, len(page))
		for _, a := range page {
			if a.Prefix != "" {
				entries = append(entries, ObjectInfo{Key: strings.TrimPrefix(a.Prefix, base), IsPrefix: true})
			} else {
				entries = append(entries, ObjectInfo{Key: strings.TrimPrefix(a.Name, base), Size: a.Size, ModTime: a.Updated})
			}
		}
		slices.SortFunc(entries, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
	}
}

func (s *gcsStore) Delete(ctx context.Context, key string) error {
	err := s.bucket.Object(s.key(key)).Delete(ctx)
	if err == nil {
		return nil
	}
	err = s.mapErr(ctx, "delete", key, err)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (s *gcsStore) mapErr(ctx context.Context, op, key string, err error) error {
	what := fmt.Sprintf("%s: %s %s", s, op, key)
	if key == "" {
		what = fmt.Sprintf("%s: %s", s, op)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	var ge *googleapi.Error
	code := 0
	if errors.As(err, &ge) {
		code = ge.Code
	}
	switch {
	case errors.Is(err, storage.ErrBucketNotExist) || gcsBucketMissing(ge) ||
		op == "put" && code == http.StatusNotFound: // an upload has no object to miss
		return Permanent(newStoreError(fmt.Sprintf("%s: bucket %q does not exist: create it or fix the store URL", what, s.bkt), err))
	case errors.Is(err, storage.ErrObjectNotExist) || code == http.StatusNotFound:
		if op == "stat" || op == "get" {
			if s.bucketMissing(ctx) {
				return Permanent(newStoreError(fmt.Sprintf("%s: bucket %q does not exist: create it or fix the store URL", what, s.bkt), err))
			}
		}
		return newStoreError(fmt.Sprintf("%s: %v", what, ErrNotFound), ErrNotFound, err)
	case code == http.StatusPreconditionFailed:
		return newStoreError(fmt.Sprintf("%s: %v", what, ErrExists), ErrExists, err)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return newStoreError(fmt.Sprintf("%s: %v: check GOOGLE_APPLICATION_CREDENTIALS and the account's roles on bucket %q", what, ErrAccess, s.bkt), ErrAccess, err)
	case strings.Contains(err.Error(), "credentials"):
		// ADC found nothing usable when the first request needed a token.
		return newStoreError(fmt.Sprintf("%s: %v: no usable Google credentials: set GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth application-default login", what, ErrAccess), ErrAccess, err)
	}
	if e, ok := stalled(what, err); ok {
		return e
	}
	if host, ok := unreachable(err); ok {
		hint := "check STORAGE_EMULATOR_HOST"
		if os.Getenv("STORAGE_EMULATOR_HOST") == "" {
			hint = "check the network"
		}
		return newStoreError(fmt.Sprintf("%s: %s: is the server running? %s", what, describeUnreachable(host, err), hint), err)
	}
	if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
		return Permanent(fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// gcsBucketMissing recognises GCS's answer for a missing bucket, which
// the SDK reports as a missing object for object operations.
func gcsBucketMissing(ge *googleapi.Error) bool {
	if ge == nil || ge.Code != http.StatusNotFound {
		return false
	}
	msg := strings.ToLower(ge.Message + " " + ge.Body)
	return strings.Contains(msg, "bucket does not exist") || strings.Contains(msg, "nosuchbucket")
}

// bucketMissing checks, after an object was not found, whether the whole
// bucket is missing: a wrong bucket must not look like an empty archive.
// It costs one request, on misses only.
func (s *gcsStore) bucketMissing(ctx context.Context) bool {
	_, err := s.bucket.Attrs(ctx)
	return errors.Is(err, storage.ErrBucketNotExist)
}
