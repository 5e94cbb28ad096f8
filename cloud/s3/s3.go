// Package s3 is the s3:// backend of package cloud, for AWS S3 and
// S3-compatible servers. Importing it registers it (cloud/all does).
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/walvault/walvault/cloud"
)

const (
	defaultPartSize = 16 << 20
	minPartSize     = 5 << 20 // S3's minimum for all parts but the last
	maxPartSize     = 5 << 30
	maxParts        = 10000
	// concurrency parts are uploaded at once; with the one being filled,
	// a Put buffers at most (concurrency+1)*partSize bytes.
	concurrency = 4
)

type store struct {
	client   *awss3.Client
	bucket   string
	prefix   string
	partSize int64
	checksum types.ChecksumAlgorithm // "" when the user asked for when_required
	class    types.StorageClass
	kmsKey   string
}

// The backend's settings.
const (
	setEndpoint     = "s3-endpoint"
	setPathStyle    = "s3-path-style"
	setRegion       = "s3-region"
	setStorageClass = "s3-storage-class"
	setKMSKey       = "s3-sse-kms-key-id"
	setProfile      = "s3-profile"
	setCredsFile    = "s3-credentials-file"
)

func init() {
	cloud.Register(cloud.Backend{
		Schemes: []string{"s3"},
		Settings: []cloud.Setting{
			{Name: setEndpoint, Help: "S3-compatible endpoint URL (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS)", Secret: true, Reading: true, Endpoint: true},
			{Name: setPathStyle, Help: "path-style S3 addressing (most S3-compatible servers need it)", Switch: true, Reading: true},
			{Name: setRegion, Help: "S3 region (default: AWS_REGION or us-east-1)", Reading: true},
			{Name: setStorageClass, Help: "S3 storage class for new objects (e.g. STANDARD_IA)"},
			{Name: setKMSKey, Help: "encrypt new S3 objects server-side with this KMS key"},
			{Name: setProfile, Help: "profile of the AWS shared config and credentials files to use for this store (default: AWS_PROFILE, else the SDK's chain)", Reading: true},
			{Name: setCredsFile, Help: "AWS shared credentials file for this store (default: AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials)", Reading: true},
		},
		Open: Open,
		EnvEndpoint: func(getenv func(string) string) (string, string) {
			// The SDK's own variables, in the order it reads them.
			for _, k := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
				if v := getenv(k); v != "" {
					return v, k
				}
			}
			return "", ""
		},
	})
}

// Open opens the s3:// store loc names. It reads configuration and
// credentials from the environment and shared files only: no network.
func Open(ctx context.Context, loc cloud.Location, opts cloud.Options) (cloud.Store, error) {
	name := "s3://" + strings.TrimSuffix(loc.Bucket+"/"+loc.Prefix, "/")
	set := opts.Settings
	var loadOpts []func(*config.LoadOptions) error
	if r := set[setRegion]; r != "" {
		loadOpts = append(loadOpts, config.WithRegion(r))
	}
	// A store's own credentials (a second store in another account): a
	// profile named here beats the AWS_* keys of the environment.
	if f := set[setCredsFile]; f != "" {
		loadOpts = append(loadOpts, config.WithSharedCredentialsFiles([]string{f}))
		if set[setProfile] == "" {
			loadOpts = append(loadOpts, config.WithSharedConfigProfile("default"))
		}
	}
	if p := set[setProfile]; p != "" {
		loadOpts = append(loadOpts, config.WithSharedConfigProfile(p))
	}
	// Bounded connect time and stall detection (see cloud.IdleDialer).
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.DialContext = cloud.IdleDialer(opts.IdleTimeout())
		tr.IdleConnTimeout = min(tr.IdleConnTimeout, opts.IdleTimeout()/2)
		cloud.ResumeTLS(tr)
	})
	loadOpts = append(loadOpts, config.WithHTTPClient(httpClient))
	// Reads only environment and shared config files: no network.
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, cloud.Permanent(fmt.Errorf("%s: loading AWS configuration: %w", name, err))
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Credentials != nil {
		cfg.Credentials = taggedCredentials{cfg.Credentials}
	}
	maxAttempts := cloud.SDKAttempts // the retry budget (AWS_MAX_ATTEMPTS overrides it)
	if cfg.RetryMaxAttempts > 0 {
		maxAttempts = cfg.RetryMaxAttempts
	}
	endpoint := set[setEndpoint]
	if endpoint != "" && !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	client := awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint) // the flag beats AWS_ENDPOINT_URL*
		}
		o.UsePathStyle = set.Bool(setPathStyle)
		// Multipart objects carry no whole-object checksum to validate; the
		// SDK would warn about it on stderr for every such Get.
		o.DisableLogOutputChecksumValidationSkipped = true
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = maxAttempts
			so.MaxBackoff = 2 * time.Second
		})
	})
	s := &store{
		client:   client,
		bucket:   loc.Bucket,
		prefix:   loc.Prefix,
		partSize: defaultPartSize,
		checksum: types.ChecksumAlgorithmCrc32,
		class:    types.StorageClass(set[setStorageClass]),
		kmsKey:   set[setKMSKey],
	}
	if cfg.RequestChecksumCalculation == aws.RequestChecksumCalculationWhenRequired {
		s.checksum = ""
	}
	if opts.PartSize > 0 {
		s.partSize = min(max(opts.PartSize, minPartSize), maxPartSize)
	}
	return s, nil
}

func (s *store) String() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + s.prefix
}

func (s *store) key(k string) string { return cloud.JoinKey(s.prefix, k) }

// partSizeFor grows the part size when the expected size would not fit in
// S3's 10,000 parts (with 10% headroom for a wrong hint).
func (s *store) partSizeFor(hint int64) int64 {
	ps := s.partSize
	if hint > 0 {
		need := (hint + hint/10) / (maxParts - 1)
		need = (need + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
		ps = min(max(ps, need), maxPartSize)
	}
	return ps
}

func (s *store) Put(ctx context.Context, key string, r cloud.Body, opts cloud.PutOptions) error {
	if err := cloud.CheckMetadata(opts.Metadata); err != nil {
		return cloud.Permanent(fmt.Errorf("%s: put %s: %w", s, key, err))
	}
	partSize := s.partSizeFor(opts.SizeHint)
	if b, ok := r.(*cloud.BytesBody); ok && int64(len(b.Bytes())) <= partSize+cloud.PartSlack {
		// Already in memory (an encoded WAL segment): sent as it is, not
		// copied into a buffer of its own first.
		return s.putSingle(ctx, key, bytes.NewReader(b.Bytes()), int64(len(b.Bytes())), opts)
	}
	first, eof, err := readFirst(ctx, r, partSize+cloud.PartSlack, opts.SizeHint)
	if err != nil {
		return fmt.Errorf("%s: put %s: reading the data: %w", s, key, err)
	}
	if eof {
		return s.putSingle(ctx, key, bytes.NewReader(first), int64(len(first)), opts)
	}
	return s.putMultipart(ctx, key, r, opts, partSize, first)
}

// putSingle stores body, size bytes, in one PutObject.
func (s *store) putSingle(ctx context.Context, key string, body io.ReadSeeker, size int64, opts cloud.PutOptions) error {
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.key(key)),
		Body:          body,
		ContentLength: aws.Int64(size),
		Metadata:      opts.Metadata,
		StorageClass:  s.class,
	}
	if opts.IfAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	s.applyKMS(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	if r := opts.Retention; r != nil {
		// S3 wants a checksum of a locked object's body.
		in.ObjectLockMode, in.ObjectLockRetainUntilDate = lockMode(r.Mode), aws.Time(r.Until)
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return s.mapErr(ctx, "put", key, err)
	}
	return nil
}

func (s *store) applyKMS(sse *types.ServerSideEncryption, id **string) {
	if s.kmsKey != "" {
		*sse = types.ServerSideEncryptionAwsKms
		*id = aws.String(s.kmsKey)
	}
}

// readFirst reads up to limit bytes, growing its buffer as data arrives so
// that a small object never costs a whole part's memory. eof reports that
// the stream ended within limit.
func readFirst(ctx context.Context, r io.Reader, limit, hint int64) ([]byte, bool, error) {
	size := int64(256 << 10)
	if hint > 0 {
		size = hint + 1 // +1 to see EOF without growing
	}
	buf := make([]byte, 0, min(size, limit))
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit {
				return buf, false, nil
			}
			// Grow by hand: slices.Grow may round capacity past limit.
			nb := make([]byte, len(buf), min(int64(2*cap(buf)), limit))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// fill reads into buf until it is full or the stream ends.
func fill(ctx context.Context, r io.Reader, buf []byte) (int, bool, error) {
	n := 0
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return n, false, err
		}
		m, err := r.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// putMultipart streams the rest of r as a multipart upload. Memory is
// bounded by a fixed pool of part buffers; any failure aborts the upload so
// that no parts (and no object) are left behind.
func (s *store) putMultipart(ctx context.Context, key string, r io.Reader, opts cloud.PutOptions, partSize int64, first []byte) (err error) {
	k := s.key(key)
	create := &awss3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(k),
		Metadata:          opts.Metadata,
		StorageClass:      s.class,
		ChecksumAlgorithm: s.checksum,
	}
	s.applyKMS(&create.ServerSideEncryption, &create.SSEKMSKeyId)
	checksum := s.checksum
	if r := opts.Retention; r != nil {
		create.ObjectLockMode, create.ObjectLockRetainUntilDate = lockMode(r.Mode), aws.Time(r.Until)
		checksum = types.ChecksumAlgorithmCrc32
		create.ChecksumAlgorithm = checksum
	}
	out, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return s.mapErr(ctx, "put", key, err)
	}
	uploadID := out.UploadId
	defer func() {
		if err != nil {
			s.abort(ctx, k, uploadID)
		}
	}()

	upCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []types.CompletedPart
		free  = make(chan []byte, concurrency+1)
		slots = make(chan struct{}, concurrency)
	)
	send := func(num int32, data, buf []byte) {
		defer wg.Done()
		defer func() { <-slots; free <- buf }()
		resp, err := s.client.UploadPart(upCtx, &awss3.UploadPartInput{
			Bucket:            aws.String(s.bucket),
			Key:               aws.String(k),
			UploadId:          uploadID,
			PartNumber:        aws.Int32(num),
			Body:              bytes.NewReader(data),
			ContentLength:     aws.Int64(int64(len(data))),
			ChecksumAlgorithm: checksum,
		})
		if err != nil {
			cancel(err)
			return
		}
		mu.Lock()
		parts = append(parts, types.CompletedPart{
			PartNumber:        aws.Int32(num),
			ETag:              resp.ETag,
			ChecksumCRC32:     resp.ChecksumCRC32,
			ChecksumCRC32C:    resp.ChecksumCRC32C,
			ChecksumCRC64NVME: resp.ChecksumCRC64NVME,
			ChecksumSHA1:      resp.ChecksumSHA1,
			ChecksumSHA256:    resp.ChecksumSHA256,
		})
		mu.Unlock()
	}
	start := func(num int32, data, buf []byte) bool {
		select {
		case slots <- struct{}{}:
		case <-upCtx.Done():
			return false
		}
		wg.Add(1)
		go send(num, data, buf)
		return true
	}
	allocated := 1
	getBuf := func() []byte {
		select {
		case b := <-free:
			return b
		default:
		}
		if allocated <= concurrency {
			allocated++
			return make([]byte, partSize)
		}
		select {
		case b := <-free:
			return b
		case <-upCtx.Done():
			return nil
		}
	}

	// Part 1 is the head of the first buffer; the rest carries over.
	carry := bytes.Clone(first[partSize:])
	num := int32(1)
	var readErr error
	if start(num, first[:partSize], first) {
		for {
			buf := getBuf()
			if buf == nil {
				break
			}
			buf = buf[:partSize]
			c := copy(buf, carry)
			carry = nil
			n, eof, rerr := fill(upCtx, r, buf[c:])
			n += c
			if rerr != nil {
				if upCtx.Err() == nil { // else an upload failed or ctx ended: reported below
					readErr = rerr
					cancel(rerr)
				}
				free <- buf
				break
			}
			if n > 0 {
				if num++; num > maxParts {
					readErr = cloud.Permanent(fmt.Errorf("object larger than %d parts of %d MiB: raise the part size", maxParts, partSize>>20))
					cancel(readErr)
					free <- buf
					break
				}
				if !start(num, buf[:n], buf) {
					free <- buf
					break
				}
			} else {
				free <- buf
			}
			if eof {
				break
			}
		}
	}
	wg.Wait()
	if readErr != nil {
		return fmt.Errorf("%s: put %s: reading the data: %w", s, key, readErr)
	}
	if cause := context.Cause(upCtx); cause != nil {
		return s.mapErr(ctx, "put", key, cause)
	}
	return s.complete(ctx, key, uploadID, parts, opts.IfAbsent)
}

// complete makes the uploaded parts the object, in part order; with
// ifAbsent, only if the key is still free.
func (s *store) complete(ctx context.Context, key string, uploadID *string, parts []types.CompletedPart, ifAbsent bool) error {
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	in := &awss3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(s.key(key)),
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := s.client.CompleteMultipartUpload(ctx, in); err != nil {
		return s.mapErr(ctx, "put", key, err)
	}
	return nil
}

// abort cleans up a failed multipart upload, even when ctx was cancelled:
// left-over parts are invisible but billed. A part whose body the server
// had whole when its connection broke may still be stored after the
// abort, bringing the upload back (S3's documentation says to abort again
// until ListParts finds nothing). One "gone" is not enough: on a loaded
// server such a part lands a second or more later. So the upload must
// stay gone over a few widening checks (about 4 s in all), aborted again
// each time it is back, within 10 s. Only a failed upload pays this.
func (s *store) abort(ctx context.Context, k string, uploadID *string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	in := &awss3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(k), UploadId: uploadID}
	_, _ = s.client.AbortMultipartUpload(actx, in)
	for _, wait := range abortChecks {
		select {
		case <-time.After(wait):
		case <-actx.Done():
			return
		}
		_, err := s.client.ListParts(actx, &awss3.ListPartsInput{
			Bucket: aws.String(s.bucket), Key: aws.String(k), UploadId: uploadID,
		})
		if err != nil && !isNoSuchUpload(err) {
			return // nothing more to learn from this server
		}
		if err == nil { // back (or never went): abort again
			_, _ = s.client.AbortMultipartUpload(actx, in)
		}
	}
}

// abortChecks are the pauses before each check that an aborted upload is
// still gone.
var abortChecks = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, 1 * time.Second, 2 * time.Second}

// isNoSuchUpload says whether err is S3's answer for an upload ID it does
// not know (aborted, completed, or never made).
func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	if errors.As(err, &nsu) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}

func (s *store) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key))})
	if err != nil {
		return nil, cloud.ObjectInfo{}, s.mapErr(ctx, "get", key, err)
	}
	return checksumBody(out.Body), cloud.ObjectInfo{
		Key:         key,
		Size:        aws.ToInt64(out.ContentLength),
		ModTime:     aws.ToTime(out.LastModified),
		Metadata:    lowerKeys(out.Metadata),
		RetainUntil: aws.ToTime(out.ObjectLockRetainUntilDate),
	}, nil
}

// GetRange asks for the bytes with a Range header; the server's 416 for a
// range past the end is an empty body (cloud.RangeAfterError).
func (s *store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if body, done, err := cloud.TrivialRange(ctx, s, key, off, n); done {
		return body, err
	}
	out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key)),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))})
	if err != nil {
		return cloud.RangeAfterError(ctx, s, key, off, s.mapErr(ctx, "get", key, err))
	}
	// A server that ignored the header sends the whole object: at most
	// the bytes asked for are handed on, from the right offset.
	if out.ContentRange == nil && off > 0 {
		_ = out.Body.Close()
		return nil, cloud.Permanent(fmt.Errorf("%s: %s: the server ignored a range request", s, key))
	}
	return limitBody(out.Body, n), nil
}

// limitBody reads at most n bytes of rc.
func limitBody(rc io.ReadCloser, n int64) io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, n), rc}
}

// checksumBody marks the SDK's failed validation of a response checksum,
// which it reports only as text, with cloud.ErrChecksum.
func checksumBody(body io.ReadCloser) io.ReadCloser {
	return cloud.MarkChecksum(body, "checksum did not match")
}

// Load is cloud.LoadOnce over Get; the retry decorator retries it.
func (s *store) Load(ctx context.Context, key string, fn func(io.Reader, cloud.ObjectInfo) error) error {
	return cloud.LoadOnce(ctx, s, key, fn)
}

func (s *store) Stat(ctx context.Context, key string) (cloud.ObjectInfo, error) {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key))})
	if err != nil {
		return cloud.ObjectInfo{}, s.mapErr(ctx, "stat", key, err)
	}
	return cloud.ObjectInfo{
		Key:         key,
		Size:        aws.ToInt64(out.ContentLength),
		ModTime:     aws.ToTime(out.LastModified),
		Metadata:    lowerKeys(out.Metadata),
		RetainUntil: aws.ToTime(out.ObjectLockRetainUntilDate),
	}, nil
}

func lowerKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

func (s *store) List(ctx context.Context, prefix string, opts cloud.ListOptions, fn func(cloud.ObjectInfo) error) error {
	base := ""
	if s.prefix != "" {
		base = s.prefix + "/"
	}
	in := &awss3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(base + prefix)}
	if opts.Delimiter != "" {
		in.Delimiter = aws.String(opts.Delimiter)
	}
	p := awss3.NewListObjectsV2Paginator(s.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.mapErr(ctx, "list", prefix, err)
		}
		entries := make([]cloud.ObjectInfo, 0, len(page.Contents)+len(page.CommonPrefixes))
		for _, o := range page.Contents {
			entries = append(entries, cloud.ObjectInfo{
				Key:     strings.TrimPrefix(aws.ToString(o.Key), base),
				Size:    aws.ToInt64(o.Size),
				ModTime: aws.ToTime(o.LastModified),
			})
		}
		for _, cp := range page.CommonPrefixes {
			entries = append(entries, cloud.ObjectInfo{Key: strings.TrimPrefix(aws.ToString(cp.Prefix), base), IsPrefix: true})
		}
		if err := cloud.EmitSorted(entries, fn); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object's current version. In a bucket with
// versioning (every bucket with Object Lock on AWS) a plain DELETE would
// only hide it behind a delete marker, still stored and billed, and would
// succeed even for a locked object; so the version the HEAD names is
// deleted, which the service refuses while it is locked.
func (s *store) Delete(ctx context.Context, key string) error {
	in := &awss3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key))}
	head, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key))})
	if err != nil {
		if err := s.mapErr(ctx, "delete", key, err); !errors.Is(err, cloud.ErrNotFound) {
			return err
		}
		return nil
	}
	if v := aws.ToString(head.VersionId); v != "" && v != "null" {
		in.VersionId = head.VersionId
	}
	if _, err = s.client.DeleteObject(ctx, in); err == nil {
		return nil
	}
	err = s.mapErr(ctx, "delete", key, err)
	if errors.Is(err, cloud.ErrAccess) {
		if until := aws.ToTime(head.ObjectLockRetainUntilDate); until.After(time.Now()) {
			return cloud.NewStoreError(fmt.Sprintf("%s: %v until %s (S3 Object Lock, %s)", cloud.Describe(s, "delete", key), cloud.ErrLocked,
				until.UTC().Format(time.RFC3339), head.ObjectLockMode), cloud.ErrLocked, err)
		}
	}
	return cloud.IgnoreNotFound(err)
}

func lockMode(m cloud.LockMode) types.ObjectLockMode {
	if m == cloud.LockGovernance {
		return types.ObjectLockModeGovernance
	}
	return types.ObjectLockModeCompliance
}

// LockSupport reads the bucket's Object Lock configuration.
func (s *store) LockSupport(ctx context.Context) (cloud.LockInfo, error) {
	li := cloud.LockInfo{Kind: "S3 Object Lock"}
	out, err := s.client.GetObjectLockConfiguration(ctx, &awss3.GetObjectLockConfigurationInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ObjectLockConfigurationNotFoundError" {
			li.Detail = fmt.Sprintf("bucket %q has no Object Lock: it can only be turned on when the bucket is created (aws s3api create-bucket --object-lock-enabled-for-bucket), or by AWS support for an existing bucket", s.bucket)
			return li, nil
		}
		return li, s.mapErr(ctx, "lock configuration of", "", err)
	}
	if c := out.ObjectLockConfiguration; c == nil || c.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		li.Detail = fmt.Sprintf("bucket %q has Object Lock turned off", s.bucket)
		return li, nil
	}
	li.Supported = true
	li.Detail = fmt.Sprintf("bucket %q has Object Lock enabled", s.bucket)
	return li, nil
}

// mapErr turns an SDK error into one line naming the store, the operation
// and the fix, wrapping the sentinel errors callers test for.
func (s *store) mapErr(ctx context.Context, op, key string, err error) error {
	what := cloud.Describe(s, op, key)
	if err := cloud.Ended(ctx, what); err != nil {
		return err
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var se *v4.SigningError
	var ce *credentialsError
	switch {
	case errors.As(err, &se), errors.As(err, &ce):
		return cloud.NewStoreError(fmt.Sprintf("%s: %v: no usable AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE", what, cloud.ErrAccess), cloud.ErrAccess, err)
	case code == "NoSuchBucket":
		return s.noBucket(what, err)
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		if op == "stat" && !cloud.WritesNext(ctx) && s.bucketMissing(ctx) {
			return s.noBucket(what, err)
		}
		return cloud.NewStoreError(fmt.Sprintf("%s: %v", what, cloud.ErrNotFound), cloud.ErrNotFound, err)
	case code == "PreconditionFailed" || code == "ConditionalRequestConflict" ||
		(op == "put" && status == http.StatusPreconditionFailed):
		return cloud.NewStoreError(fmt.Sprintf("%s: %v", what, cloud.ErrExists), cloud.ErrExists, err)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch":
		return cloud.NewStoreError(fmt.Sprintf("%s: %v (%s): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", what, cloud.ErrAccess, code), cloud.ErrAccess, err)
	case code == "ExpiredToken" || code == "InvalidToken" || code == "TokenRefreshRequired":
		return cloud.NewStoreError(fmt.Sprintf("%s: %v (%s): refresh the session credentials (AWS_SESSION_TOKEN, AWS_PROFILE)", what, cloud.ErrAccess, code), cloud.ErrAccess, err)
	case status == http.StatusForbidden || code == "AccessDenied":
		return cloud.NewStoreError(fmt.Sprintf("%s: %v: the credentials may not %s objects in bucket %q; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket policy", what, cloud.ErrAccess, op, s.bucket), cloud.ErrAccess, err)
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || status == http.StatusMovedPermanently:
		region := ""
		if re != nil && re.Response != nil {
			region = re.Response.Header.Get("X-Amz-Bucket-Region")
		}
		if region != "" {
			return cloud.Permanent(cloud.NewStoreError(fmt.Sprintf("%s: bucket %q is in region %s: set AWS_REGION=%s", what, s.bucket, region, region), err))
		}
		return cloud.Permanent(cloud.NewStoreError(fmt.Sprintf("%s: bucket %q is in another region: set AWS_REGION (%s)", what, s.bucket, code), err))
	}
	return cloud.MapError(what, err, status, "check --s3-endpoint / AWS_ENDPOINT_URL_S3")
}

func (s *store) noBucket(what string, err error) error {
	return cloud.Permanent(cloud.NewStoreError(fmt.Sprintf("%s: bucket %q does not exist: create it or fix the store URL", what, s.bucket), err))
}

// bucketMissing tells a missing bucket from a missing object after a HEAD
// answered 404 without a body. It costs a request only on that path.
func (s *store) bucketMissing(ctx context.Context) bool {
	_, err := s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return false
	}
	var re *awshttp.ResponseError
	var nb *types.NotFound
	return errors.As(err, &nb) || errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// credentialsError marks a failure to find or refresh credentials, which the
// SDK reports only as text.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

type taggedCredentials struct{ aws.CredentialsProvider }

func (c taggedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	cr, err := c.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return cr, &credentialsError{err}
	}
	return cr, nil
}
