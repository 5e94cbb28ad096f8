// Package gcs is the gs:// backend of package cloud, for Google Cloud
// Storage. Importing it registers it (cloud/all does).
package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/walvault/walvault/cloud"
)

const (
	defaultChunk = 16 << 20
	chunkAlign   = 256 << 10 // the SDK rounds chunks up to this
)

type store struct {
	client *storage.Client
	bucket *storage.BucketHandle
	name   string
	bkt    string
	prefix string
	chunk  int64
	class  string
	kmsKey string
}

// The backend's settings.
const (
	setEndpoint     = "gcs-endpoint"
	setStorageClass = "gcs-storage-class"
	setKMSKey       = "gcs-kms-key-name"
	setCredsFile    = "gcs-credentials-file"
)

func init() {
	cloud.Register(cloud.Backend{
		Schemes: []string{"gs"},
		Settings: []cloud.Setting{
			{Name: setEndpoint, Help: "GCS JSON API endpoint (emulators; STORAGE_EMULATOR_HOST also works)", Secret: true, Reading: true, Endpoint: true},
			{Name: setStorageClass, Help: "GCS storage class for new objects (e.g. NEARLINE)"},
			{Name: setKMSKey, Help: "GCS Cloud KMS key for new objects"},
			{Name: setCredsFile, Help: "service account key file (JSON) for this store (default: GOOGLE_APPLICATION_CREDENTIALS or gcloud's application default credentials)", Reading: true},
		},
		Open: Open,
		EnvEndpoint: func(getenv func(string) string) (string, string) {
			// The SDK talks to an emulator there, without credentials.
			if v := getenv("STORAGE_EMULATOR_HOST"); v != "" {
				return v, "STORAGE_EMULATOR_HOST"
			}
			return "", ""
		},
	})
}

// Open opens the gs:// store loc names. It finds credentials now, from
// the environment and gcloud's files; see the comment inside for when that
// can mean a request.
func Open(ctx context.Context, loc cloud.Location, opts cloud.Options) (cloud.Store, error) {
	name := "gs://" + strings.TrimSuffix(loc.Bucket+"/"+loc.Prefix, "/")
	var copts []option.ClientOption
	switch ep := opts.Settings[setEndpoint]; {
	case strings.HasPrefix(ep, "http://"):
		// Plain http is an emulator: no credentials to find or send.
		copts = append(copts, option.WithEndpoint(ep), option.WithoutAuthentication())
	case ep != "":
		copts = append(copts, option.WithEndpoint(ep))
	}
	if f := opts.Settings[setCredsFile]; f != "" && !strings.HasPrefix(opts.Settings[setEndpoint], "http://") {
		// A store's own service account (a second store in another project).
		copts = append(copts, option.WithAuthCredentialsFile(option.ServiceAccount, f))
	}
	// With STORAGE_EMULATOR_HOST the SDK itself skips authentication.
	// Otherwise it finds Application Default Credentials now, which reads
	// GOOGLE_APPLICATION_CREDENTIALS or gcloud's file: no network unless
	// neither exists and it has to ask whether this is a GCE machine.
	client, err := storage.NewClient(ctx, copts...)
	if err != nil {
		return nil, cloud.Permanent(fmt.Errorf("%s: cannot create a GCS client: %w (set GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth application-default login)", name, err))
	}
	// Bounded retries: a dead endpoint must fail wal-push within seconds.
	// Writes are conditional or idempotent by key, so the default policy
	// (retry idempotent operations only) is right.
	client.SetRetry(
		storage.WithBackoff(gax.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2}),
		storage.WithMaxAttempts(cloud.SDKAttempts), // the retry budget
	)
	s := &store{
		client: client,
		bucket: client.Bucket(loc.Bucket),
		name:   name,
		bkt:    loc.Bucket,
		prefix: loc.Prefix,
		chunk:  defaultChunk,
		class:  opts.Settings[setStorageClass],
		kmsKey: opts.Settings[setKMSKey],
	}
	if opts.PartSize > 0 {
		s.chunk = opts.PartSize
	}
	return s, nil
}

func (s *store) String() string { return s.name }

func (s *store) Close() error { return s.client.Close() }

func (s *store) key(k string) string { return cloud.JoinKey(s.prefix, k) }

// chunkFor picks the writer's buffer: a small object (by hint) gets a small
// buffer, and an object slightly larger than one chunk (a WAL segment plus
// framing) still goes up in a single request.
func (s *store) chunkFor(hint int64) int {
	c := s.chunk + cloud.PartSlack
	if hint > 0 && hint+cloud.PartSlack < c {
		c = hint + cloud.PartSlack
	}
	return int((c + chunkAlign - 1) / chunkAlign * chunkAlign)
}

func (s *store) Put(ctx context.Context, key string, r cloud.Body, opts cloud.PutOptions) error {
	if err := cloud.CheckMetadata(opts.Metadata); err != nil {
		return cloud.Permanent(fmt.Errorf("%s: put %s: %w", s, key, err))
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
	if r := opts.Retention; r != nil {
		mode := "Locked"
		if r.Mode == cloud.LockGovernance {
			mode = "Unlocked"
		}
		w.Retention = &storage.ObjectRetention{Mode: mode, RetainUntil: r.Until}
	}
	src := cloud.NewSourceReader(ctx, r)
	if _, err := io.Copy(w, src); err != nil {
		cancel()
		_ = w.Close()
		if src.Err() != nil {
			return fmt.Errorf("%s: put %s: reading the data: %w", s, key, src.Err())
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

func objectInfo(key string, a *storage.ObjectAttrs) cloud.ObjectInfo {
	meta := make(map[string]string, len(a.Metadata))
	for k, v := range a.Metadata {
		meta[strings.ToLower(k)] = v
	}
	info := cloud.ObjectInfo{Key: key, Size: a.Size, ModTime: a.Updated, Metadata: meta}
	if a.Retention != nil {
		info.RetainUntil = a.Retention.RetainUntil
	}
	return info
}

// Get opens the object and fetches its attributes at the same time: the
// reader does not carry user metadata. Both name the same generation, or
// the read is re-pinned to the generation the attributes describe.
func (s *store) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
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
		return nil, cloud.ObjectInfo{}, s.mapErr(ctx, "get", key, res.err)
	}
	if rerr == nil && rd.Attrs.Generation == res.a.Generation {
		return checksumBody(rd), objectInfo(key, res.a), nil
	}
	if rd != nil {
		_ = rd.Close()
	}
	rd, err := obj.Generation(res.a.Generation).NewReader(ctx)
	if err != nil {
		return nil, cloud.ObjectInfo{}, s.mapErr(ctx, "get", key, err)
	}
	return checksumBody(rd), objectInfo(key, res.a), nil
}

// GetRange reads the bytes with a range reader (no checksum: the SDK checks
// whole objects only); a range past the end is an empty body.
func (s *store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if body, done, err := cloud.TrivialRange(ctx, s, key, off, n); done {
		return body, err
	}
	rd, err := s.bucket.Object(s.key(key)).NewRangeReader(ctx, off, n)
	if err != nil {
		return cloud.RangeAfterError(ctx, s, key, off, s.mapErr(ctx, "get", key, err))
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rd, n), rd}, nil
}

// checksumBody marks the SDK's failed CRC32C check of a download, which it
// reports only as text, with cloud.ErrChecksum.
func checksumBody(body io.ReadCloser) io.ReadCloser {
	return cloud.MarkChecksum(body, "bad CRC on read")
}

// Load is cloud.LoadOnce over Get; the retry decorator retries it.
func (s *store) Load(ctx context.Context, key string, fn func(io.Reader, cloud.ObjectInfo) error) error {
	return cloud.LoadOnce(ctx, s, key, fn)
}

func (s *store) Stat(ctx context.Context, key string) (cloud.ObjectInfo, error) {
	a, err := s.bucket.Object(s.key(key)).Attrs(ctx)
	if err != nil {
		return cloud.ObjectInfo{}, s.mapErr(ctx, "stat", key, err)
	}
	return objectInfo(key, a), nil
}

func (s *store) List(ctx context.Context, prefix string, opts cloud.ListOptions, fn func(cloud.ObjectInfo) error) error {
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
		entries := make([]cloud.ObjectInfo, 0, len(page))
		for _, a := range page {
			if a.Prefix != "" {
				entries = append(entries, cloud.ObjectInfo{Key: strings.TrimPrefix(a.Prefix, base), IsPrefix: true})
			} else {
				entries = append(entries, cloud.ObjectInfo{Key: strings.TrimPrefix(a.Name, base), Size: a.Size, ModTime: a.Updated})
			}
		}
		if err := cloud.EmitSorted(entries, fn); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
	}
}

func (s *store) Delete(ctx context.Context, key string) error {
	err := s.bucket.Object(s.key(key)).Delete(ctx)
	if err == nil {
		return nil
	}
	err = s.mapErr(ctx, "delete", key, err)
	if errors.Is(err, cloud.ErrAccess) {
		if a, aerr := s.bucket.Object(s.key(key)).Attrs(ctx); aerr == nil && a.Retention != nil && a.Retention.RetainUntil.After(time.Now()) {
			return cloud.NewStoreError(fmt.Sprintf("%s: %v until %s (GCS object retention, %s)", cloud.Describe(s, "delete", key), cloud.ErrLocked,
				a.Retention.RetainUntil.UTC().Format(time.RFC3339), a.Retention.Mode), cloud.ErrLocked, err)
		}
	}
	return cloud.IgnoreNotFound(err)
}

// LockSupport reads whether the bucket has object retention enabled.
func (s *store) LockSupport(ctx context.Context) (cloud.LockInfo, error) {
	li := cloud.LockInfo{Kind: "GCS object retention"}
	a, err := s.bucket.Attrs(ctx)
	if err != nil {
		return li, s.mapErr(ctx, "read the attributes of", "", err)
	}
	if a.ObjectRetentionMode != "Enabled" {
		li.Detail = fmt.Sprintf("bucket %q does not have object retention enabled: create it with gcloud storage buckets create --enable-per-object-retention", s.bkt)
		return li, nil
	}
	li.Supported = true
	li.Detail = fmt.Sprintf("bucket %q has object retention enabled", s.bkt)
	return li, nil
}

// mapErr words a client error in one line, wrapping the sentinels callers
// test for. A missing object may be a missing bucket, which GCS reports
// the same way: a miss on stat or get costs a look at the bucket.
func (s *store) mapErr(ctx context.Context, op, key string, err error) error {
	what := cloud.Describe(s, op, key)
	if err := cloud.Ended(ctx, what); err != nil {
		return err
	}
	var ge *googleapi.Error
	code := 0
	if errors.As(err, &ge) {
		code = ge.Code
	}
	switch {
	case errors.Is(err, storage.ErrBucketNotExist) || bucketMissingError(ge) ||
		op == "put" && code == http.StatusNotFound: // an upload has no object to miss
		return cloud.Permanent(cloud.NewStoreError(fmt.Sprintf("%s: bucket %q does not exist: create it or fix the store URL", what, s.bkt), err))
	case errors.Is(err, storage.ErrObjectNotExist) || code == http.StatusNotFound:
		if op == "stat" && !cloud.WritesNext(ctx) || op == "get" {
			if s.bucketMissing(ctx) {
				return cloud.Permanent(cloud.NewStoreError(fmt.Sprintf("%s: bucket %q does not exist: create it or fix the store URL", what, s.bkt), err))
			}
		}
		return cloud.NewStoreError(fmt.Sprintf("%s: %v", what, cloud.ErrNotFound), cloud.ErrNotFound, err)
	case code == http.StatusPreconditionFailed:
		return cloud.NewStoreError(fmt.Sprintf("%s: %v", what, cloud.ErrExists), cloud.ErrExists, err)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return cloud.NewStoreError(fmt.Sprintf("%s: %v: check GOOGLE_APPLICATION_CREDENTIALS and the account's roles on bucket %q", what, cloud.ErrAccess, s.bkt), cloud.ErrAccess, err)
	case strings.Contains(err.Error(), "credentials"):
		// ADC found nothing usable when the first request needed a token.
		return cloud.NewStoreError(fmt.Sprintf("%s: %v: no usable Google credentials: set GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth application-default login", what, cloud.ErrAccess), cloud.ErrAccess, err)
	}
	hint := "check STORAGE_EMULATOR_HOST"
	if os.Getenv("STORAGE_EMULATOR_HOST") == "" {
		hint = "check the network"
	}
	return cloud.MapError(what, err, code, hint)
}

// bucketMissingError recognises GCS's answer for a missing bucket, which
// the SDK reports as a missing object for object operations.
func bucketMissingError(ge *googleapi.Error) bool {
	if ge == nil || ge.Code != http.StatusNotFound {
		return false
	}
	msg := strings.ToLower(ge.Message + " " + ge.Body)
	return strings.Contains(msg, "bucket does not exist") || strings.Contains(msg, "nosuchbucket")
}

// bucketMissing checks, after an object was not found, whether the whole
// bucket is missing: a wrong bucket must not look like an empty archive.
// It costs one request, on misses only.
func (s *store) bucketMissing(ctx context.Context) bool {
	_, err := s.bucket.Attrs(ctx)
	return errors.Is(err, storage.ErrBucketNotExist)
}
