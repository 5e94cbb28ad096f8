// Package azure is the azure:// (alias azblob://) backend of package
// cloud, for Azure Blob Storage. Importing it registers it (cloud/all
// does).
package azure

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/walvault/walvault/cloud"
)

const (
	defaultBlock = 16 << 20
	maxBlocks    = 50000
	maxBlock     = 4000 << 20
	concurrency  = 4
)

type store struct {
	client    *container.Client
	name      string
	container string
	prefix    string
	block     int64
	tier      *blob.AccessTier
	scope     *blob.CPKScopeInfo
	credHint  string // which credentials are in use, for messages
}

// The backend's settings.
const (
	setEndpoint        = "azure-endpoint"
	setAccessTier      = "azure-access-tier"
	setEncryptionScope = "azure-encryption-scope"
	setConnStringFile  = "azure-connection-string-file"
)

func init() {
	cloud.Register(cloud.Backend{
		Schemes: []string{"azure", "azblob"},
		Settings: []cloud.Setting{
			{Name: setEndpoint, Help: "Azure Blob service URL (Azurite, sovereign clouds)", Secret: true, Reading: true, Endpoint: true},
			{Name: setAccessTier, Help: "Azure access tier for new blobs (Hot, Cool, Cold, Archive)"},
			{Name: setEncryptionScope, Help: "Azure encryption scope for new blobs"},
			{Name: setConnStringFile, Help: "file holding the connection string of this store's account, in place of the AZURE_STORAGE_* variables", Reading: true},
		},
		Open: Open,
		EnvEndpoint: func(getenv func(string) string) (string, string) {
			ep, from, _ := envEndpoint(getenv)
			return ep, from
		},
	})
}

// envEndpoint is the service URL the environment gives, and the variable
// it comes from: AZURE_STORAGE_ENDPOINT, else the connection string's,
// else the public cloud's for AZURE_STORAGE_ACCOUNT. A connection string
// that does not parse is an error, and gives no endpoint.
func envEndpoint(getenv func(string) string) (endpoint, from string, err error) {
	if v := getenv("AZURE_STORAGE_ENDPOINT"); v != "" {
		return v, "AZURE_STORAGE_ENDPOINT", nil
	}
	if v := getenv("AZURE_STORAGE_CONNECTION_STRING"); v != "" {
		cs, err := parseConnectionString(v)
		if err != nil {
			return "", "", err
		}
		return cs.endpoint, "AZURE_STORAGE_CONNECTION_STRING", nil
	}
	if a := getenv("AZURE_STORAGE_ACCOUNT"); a != "" {
		return "https://" + a + ".blob.core.windows.net", "AZURE_STORAGE_ACCOUNT", nil
	}
	return "", "", nil
}

// settings gathers endpoint and credentials from the environment.
type settings struct {
	endpoint, account, key, sas, source string
}

func settingsFromEnv(opts cloud.Options) (settings, error) {
	st := settings{
		account: os.Getenv("AZURE_STORAGE_ACCOUNT"),
		key:     os.Getenv("AZURE_STORAGE_KEY"),
		sas:     strings.TrimPrefix(os.Getenv("AZURE_STORAGE_SAS_TOKEN"), "?"),
	}
	getenv := os.Getenv
	if f := opts.Settings[setConnStringFile]; f != "" {
		// The store's own account: its file replaces the environment.
		b, err := os.ReadFile(f) // #nosec G304 -- the file the user named
		if err != nil {
			return st, fmt.Errorf("%s %s cannot be read: %w", setConnStringFile, f, errors.Unwrap(err))
		}
		cs, err := parseConnectionString(strings.TrimSpace(string(b)))
		if err != nil {
			return st, fmt.Errorf("%s %s: %s", setConnStringFile, f, strings.ReplaceAll(err.Error(), "AZURE_STORAGE_CONNECTION_STRING", "the connection string"))
		}
		st = settings{account: cs.account, key: cs.key, sas: cs.sas, source: setConnStringFile + " " + f}
		getenv = func(string) string { return "" }
		if opts.Settings[setEndpoint] == "" {
			opts = opts.With(setEndpoint, cs.endpoint)
		}
	}
	switch {
	case st.source != "":
	case os.Getenv("AZURE_STORAGE_CONNECTION_STRING") != "":
		cs, err := parseConnectionString(os.Getenv("AZURE_STORAGE_CONNECTION_STRING"))
		if err != nil {
			return st, err
		}
		st.account, st.key, st.sas, st.source = cs.account, cs.key, cs.sas, "AZURE_STORAGE_CONNECTION_STRING"
	case st.key != "":
		st.source = "AZURE_STORAGE_ACCOUNT/AZURE_STORAGE_KEY"
	case st.sas != "":
		st.source = "AZURE_STORAGE_SAS_TOKEN"
	default:
		st.source = "Azure AD (DefaultAzureCredential)"
	}
	if st.key != "" && st.account == "" {
		return st, errors.New("AZURE_STORAGE_KEY is set but AZURE_STORAGE_ACCOUNT is not")
	}
	endpoint := opts.Settings[setEndpoint]
	if endpoint == "" {
		ep, _, err := envEndpoint(getenv)
		if err != nil {
			return st, err
		}
		endpoint = ep
	}
	if endpoint == "" {
		return st, errors.New("no storage account: set AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or Azure AD credentials) or AZURE_STORAGE_CONNECTION_STRING")
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return st, fmt.Errorf("invalid Azure endpoint %q: write https://ACCOUNT.blob.core.windows.net", cloud.Redact(endpoint))
	}
	u.RawQuery = "" // a SAS in the endpoint is a credential, not an address
	st.endpoint = strings.TrimSuffix(u.String(), "/")
	return st, nil
}

type connString struct{ account, key, sas, endpoint string }

// parseConnectionString reads an Azure Storage connection string. Its
// errors never quote the string: it holds the account key.
func parseConnectionString(s string) (connString, error) {
	kv := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return connString{}, errors.New("AZURE_STORAGE_CONNECTION_STRING is malformed: expected Key=Value pairs separated by ';'")
		}
		kv[strings.ToLower(k)] = v
	}
	cs := connString{account: kv["accountname"], key: kv["accountkey"], sas: strings.TrimPrefix(kv["sharedaccesssignature"], "?"), endpoint: kv["blobendpoint"]}
	if strings.EqualFold(kv["usedevelopmentstorage"], "true") {
		cs.account = "devstoreaccount1"
		cs.key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
		if cs.endpoint == "" {
			cs.endpoint = "http://127.0.0.1:10000/devstoreaccount1"
		}
	}
	if cs.endpoint == "" && cs.account != "" {
		proto, suffix := kv["defaultendpointsprotocol"], kv["endpointsuffix"]
		if proto == "" {
			proto = "https"
		}
		if suffix == "" {
			suffix = "core.windows.net"
		}
		cs.endpoint = proto + "://" + cs.account + ".blob." + suffix
	}
	if cs.endpoint == "" {
		return connString{}, errors.New("AZURE_STORAGE_CONNECTION_STRING names neither AccountName nor BlobEndpoint")
	}
	if cs.key == "" && cs.sas == "" {
		return connString{}, errors.New("AZURE_STORAGE_CONNECTION_STRING has neither AccountKey nor SharedAccessSignature")
	}
	return cs, nil
}

// Open opens the azure:// store loc names, with credentials from the
// environment. It only builds a client: tokens are fetched on first use.
func Open(_ context.Context, loc cloud.Location, opts cloud.Options) (cloud.Store, error) {
	name := "azure://" + strings.TrimSuffix(loc.Bucket+"/"+loc.Prefix, "/")
	st, err := settingsFromEnv(opts)
	if err != nil {
		return nil, cloud.Permanent(fmt.Errorf("%s: %w", name, err))
	}
	copts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		// Bounded retries: a dead endpoint must fail wal-push in seconds.
		Retry:     policy.RetryOptions{MaxRetries: cloud.SDKAttempts - 1, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 2 * time.Second},
		Transport: &http.Client{Transport: cloud.NewHTTPTransport(opts.IdleTimeout())}, // stall detection
	}}
	containerURL := st.endpoint + "/" + url.PathEscape(loc.Bucket)
	var client *container.Client
	switch {
	case st.key != "":
		cred, err := container.NewSharedKeyCredential(st.account, st.key)
		if err != nil {
			return nil, cloud.Permanent(fmt.Errorf("%s: the account key from %s is not valid base64", name, st.source))
		}
		client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, copts)
		if err != nil {
			return nil, cloud.Permanent(fmt.Errorf("%s: %w", name, err))
		}
	case st.sas != "":
		client, err = container.NewClientWithNoCredential(containerURL+"?"+st.sas, copts)
		if err != nil {
			return nil, cloud.Permanent(fmt.Errorf("%s: invalid SAS token from %s", name, st.source))
		}
	default:
		// Construction only: tokens are fetched on the first request.
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, cloud.Permanent(fmt.Errorf("%s: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or log in for Azure AD: %w", name, err))
		}
		client, err = container.NewClient(containerURL, cred, copts)
		if err != nil {
			return nil, cloud.Permanent(fmt.Errorf("%s: %w", name, err))
		}
	}
	s := &store{
		client:    client,
		name:      name,
		container: loc.Bucket,
		prefix:    loc.Prefix,
		block:     defaultBlock,
		credHint:  st.source,
	}
	if opts.PartSize > 0 {
		s.block = min(opts.PartSize, maxBlock)
	}
	if v := opts.Settings[setAccessTier]; v != "" {
		t := blob.AccessTier(v)
		s.tier = &t
	}
	if v := opts.Settings[setEncryptionScope]; v != "" {
		s.scope = &blob.CPKScopeInfo{EncryptionScope: &v}
	}
	return s, nil
}

func (s *store) String() string { return s.name }

func (s *store) key(k string) string { return cloud.JoinKey(s.prefix, k) }

// Azure metadata names must be C# identifiers: '-' is not allowed. Keys are
// lower case letters, digits and '-' (cloud.CheckMetadata), so '-' <-> '_' maps
// them both ways; Azure may return names with changed case.
func metaOut(m map[string]string) map[string]*string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[strings.ReplaceAll(k, "-", "_")] = &v
	}
	return out
}

func metaIn(m map[string]*string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if v != nil {
			out[strings.ReplaceAll(strings.ToLower(k), "_", "-")] = *v
		}
	}
	return out
}

func (s *store) Put(ctx context.Context, key string, r cloud.Body, opts cloud.PutOptions) error {
	if err := cloud.CheckMetadata(opts.Metadata); err != nil {
		return cloud.Permanent(fmt.Errorf("%s: put %s: %w", s, key, err))
	}
	block := s.block
	if opts.SizeHint > 0 {
		need := (opts.SizeHint + opts.SizeHint/10) / (maxBlocks - 1)
		block = min(max(block, (need+1<<20-1)&^(1<<20-1)), maxBlock)
	}
	uo := &blockblob.UploadStreamOptions{
		// Anything below one block (plus framing slack) is a single Put
		// Blob; larger objects are staged blocks, committed at the end, so a
		// failed upload never becomes visible.
		BlockSize:    block + cloud.PartSlack,
		Concurrency:  concurrency,
		Metadata:     metaOut(opts.Metadata),
		AccessTier:   s.tier,
		CPKScopeInfo: s.scope,
	}
	if opts.IfAbsent {
		uo.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}}
	}
	if opts.Retention != nil {
		return s.putLocked(ctx, key, r, uo, opts.Retention)
	}
	src := cloud.NewSourceReader(ctx, r)
	_, err := s.client.NewBlockBlobClient(s.key(key)).UploadStream(ctx, src, uo)
	if src.Err() != nil {
		return fmt.Errorf("%s: put %s: reading the data: %w", s, key, src.Err())
	}
	if err != nil {
		return s.mapErr(ctx, "put", key, err)
	}
	return nil
}

func to[T any](v T) *T { return &v }

func (s *store) Get(ctx context.Context, key string) (io.ReadCloser, cloud.ObjectInfo, error) {
	resp, err := s.client.NewBlobClient(s.key(key)).DownloadStream(ctx, nil)
	if err != nil {
		return nil, cloud.ObjectInfo{}, s.mapErr(ctx, "get", key, err)
	}
	info := cloud.ObjectInfo{Key: key, Metadata: metaIn(resp.Metadata)}
	if resp.ContentLength != nil {
		info.Size = *resp.ContentLength
	}
	if resp.LastModified != nil {
		info.ModTime = *resp.LastModified
	}
	if resp.ImmutabilityPolicyExpiresOn != nil {
		info.RetainUntil = *resp.ImmutabilityPolicyExpiresOn
	}
	return resp.Body, info, nil
}

// GetRange downloads the bytes with a Range header (a Count of 0 would
// mean "to the end": n == 0 asks nothing); a range past the end is an
// empty body.
func (s *store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if body, done, err := cloud.TrivialRange(ctx, s, key, off, n); done {
		return body, err
	}
	resp, err := s.client.NewBlobClient(s.key(key)).DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: n}})
	if err != nil {
		return cloud.RangeAfterError(ctx, s, key, off, s.mapErr(ctx, "get", key, err))
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, n), resp.Body}, nil
}

// Load is cloud.LoadOnce over Get; the retry decorator retries it.
func (s *store) Load(ctx context.Context, key string, fn func(io.Reader, cloud.ObjectInfo) error) error {
	return cloud.LoadOnce(ctx, s, key, fn)
}

func (s *store) Stat(ctx context.Context, key string) (cloud.ObjectInfo, error) {
	resp, err := s.client.NewBlobClient(s.key(key)).GetProperties(ctx, nil)
	if err != nil {
		return cloud.ObjectInfo{}, s.mapErr(ctx, "stat", key, err)
	}
	info := cloud.ObjectInfo{Key: key, Metadata: metaIn(resp.Metadata)}
	if resp.ContentLength != nil {
		info.Size = *resp.ContentLength
	}
	if resp.LastModified != nil {
		info.ModTime = *resp.LastModified
	}
	if resp.ImmutabilityPolicyExpiresOn != nil {
		info.RetainUntil = *resp.ImmutabilityPolicyExpiresOn
	}
	return info, nil
}

func (s *store) List(ctx context.Context, prefix string, opts cloud.ListOptions, fn func(cloud.ObjectInfo) error) error {
	base := ""
	if s.prefix != "" {
		base = s.prefix + "/"
	}
	full := base + prefix
	entries := func(blobs []*container.BlobItem, prefixes []*container.BlobPrefix) []cloud.ObjectInfo {
		out := make([]cloud.ObjectInfo, 0, len(blobs)+len(prefixes))
		for _, b := range blobs {
			out = append(out, blobInfo(b, base))
		}
		for _, p := range prefixes {
			out = append(out, cloud.ObjectInfo{Key: strings.TrimPrefix(deref(p.Name), base), IsPrefix: true})
		}
		return out
	}
	mapErr := func(err error) error { return s.mapErr(ctx, "list", prefix, err) }
	// The SDK has a pager per kind of listing, with a response type each.
	if opts.Delimiter == "" {
		pager := s.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &full})
		return eachPage(ctx, pager, func(page container.ListBlobsFlatResponse) []cloud.ObjectInfo {
			return entries(page.Segment.BlobItems, nil)
		}, fn, mapErr)
	}
	pager := s.client.NewListBlobsHierarchyPager(opts.Delimiter, &container.ListBlobsHierarchyOptions{Prefix: &full})
	return eachPage(ctx, pager, func(page container.ListBlobsHierarchyResponse) []cloud.ObjectInfo {
		return entries(page.Segment.BlobItems, page.Segment.BlobPrefixes)
	}, fn, mapErr)
}

// eachPage runs pager to its end and hands the entries of every page to
// fn (see cloud.EmitSorted). A page that cannot be fetched fails with
// mapErr's wording of the error; fn's error is returned as is.
func eachPage[T any](ctx context.Context, pager *runtime.Pager[T], entries func(T) []cloud.ObjectInfo, fn func(cloud.ObjectInfo) error, mapErr func(error) error) error {
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return mapErr(err)
		}
		if err := cloud.EmitSorted(entries(page), fn); err != nil {
			return err
		}
	}
	return nil
}

// blobInfo describes a listed blob; base is the store's prefix, with '/'.
func blobInfo(b *container.BlobItem, base string) cloud.ObjectInfo {
	o := cloud.ObjectInfo{Key: strings.TrimPrefix(deref(b.Name), base)}
	if b.Properties != nil {
		if b.Properties.ContentLength != nil {
			o.Size = *b.Properties.ContentLength
		}
		if b.Properties.LastModified != nil {
			o.ModTime = *b.Properties.LastModified
		}
	}
	return o
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *store) Delete(ctx context.Context, key string) error {
	_, err := s.client.NewBlobClient(s.key(key)).Delete(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.BlobNotFound) {
		return nil
	}
	if bloberror.HasCode(err, bloberror.BlobImmutableDueToPolicy) {
		return cloud.NewStoreError(fmt.Sprintf("%s: %v (Azure immutability policy)", cloud.Describe(s, "delete", key), cloud.ErrLocked), cloud.ErrLocked, err)
	}
	return s.mapErr(ctx, "delete", key, err)
}

// mapErr words Azure errors in one line. azcore's own error text spans many
// lines and quotes the request URL, which may carry a SAS token, so it is
// kept in the chain (errors.As still finds it) but never printed.
func (s *store) mapErr(ctx context.Context, op, key string, err error) error {
	what := cloud.Describe(s, op, key)
	if err := cloud.Ended(ctx, what); err != nil {
		return err
	}
	var re *azcore.ResponseError
	status, code := 0, ""
	if errors.As(err, &re) {
		status, code = re.StatusCode, re.ErrorCode
	}
	var authErr *azidentity.AuthenticationFailedError
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted):
		return cloud.Permanent(cloud.NewStoreError(fmt.Sprintf("%s: container %q does not exist: create it or fix the store URL", what, s.container), err))
	case bloberror.HasCode(err, bloberror.BlobNotFound) || status == http.StatusNotFound && op != "list" && op != "put":
		if status == http.StatusNotFound && code == "" && op == "stat" && !cloud.WritesNext(ctx) && s.containerMissing(ctx) {
			return cloud.Permanent(cloud.NewStoreError(fmt.Sprintf("%s: container %q does not exist: create it or fix the store URL", what, s.container), err))
		}
		return cloud.NewStoreError(fmt.Sprintf("%s: %v", what, cloud.ErrNotFound), cloud.ErrNotFound, err)
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) ||
		op == "put" && (status == http.StatusConflict || status == http.StatusPreconditionFailed):
		return cloud.NewStoreError(fmt.Sprintf("%s: %v", what, cloud.ErrExists), cloud.ErrExists, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return cloud.NewStoreError(fmt.Sprintf("%s: %v (%s): check the credentials from %s", what, cloud.ErrAccess, orStatus(code, status), s.credHint), cloud.ErrAccess, err)
	case errors.As(err, &authErr) || re == nil && strings.Contains(err.Error(), "Credential"):
		return cloud.NewStoreError(fmt.Sprintf("%s: %v: no usable Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or log in for Azure AD", what, cloud.ErrAccess), cloud.ErrAccess, err)
	}
	// Keep azcore's text out of the message: in place of it, the error
	// code, or for a request that got no answer, url.Error's text without
	// the URL (and with it any SAS token).
	var ue *url.Error
	switch {
	case re != nil:
		err = cloud.NewStoreError(orStatus(code, status), err)
	case errors.As(err, &ue):
		err = cloud.NewStoreError(fmt.Sprintf("%s: %v", ue.Op, ue.Err), err)
	}
	return cloud.MapError(what, err, status, "check AZURE_STORAGE_ENDPOINT / the connection string")
}

func orStatus(code string, status int) string {
	if code != "" {
		return fmt.Sprintf("%s, HTTP %d", code, status)
	}
	return fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
}

// containerMissing tells a missing container from a missing blob after a
// HEAD answered 404 without an error code. It costs a request on misses only.
func (s *store) containerMissing(ctx context.Context) bool {
	_, err := s.client.GetProperties(ctx, nil)
	return bloberror.HasCode(err, bloberror.ContainerNotFound)
}

// putLocked uploads an object with a version-level immutability policy,
// which UploadStream cannot ask for: one Put Blob when it fits in a block,
// else blocks staged one after the other and a Put Block List that
// commits them with the policy, so the blob never exists unlocked.
func (s *store) putLocked(ctx context.Context, key string, r cloud.Body, uo *blockblob.UploadStreamOptions, ret *cloud.Retention) error {
	mode := blob.ImmutabilityPolicySettingLocked
	if ret.Mode == cloud.LockGovernance {
		mode = blob.ImmutabilityPolicySettingUnlocked
	}
	until := ret.Until.UTC()
	bb := s.client.NewBlockBlobClient(s.key(key))
	src := cloud.NewSourceReader(ctx, r)
	buf := make([]byte, uo.BlockSize)
	readErr := func(err error) error {
		if src.Err() != nil {
			return fmt.Errorf("%s: put %s: reading the data: %w", s, key, src.Err())
		}
		return fmt.Errorf("%s: put %s: reading the data: %w", s, key, err)
	}
	n, err := io.ReadFull(src, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		_, err = bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(buf[:n])), &blockblob.UploadOptions{
			Metadata: uo.Metadata, Tier: uo.AccessTier, CPKScopeInfo: uo.CPKScopeInfo, AccessConditions: uo.AccessConditions,
			ImmutabilityPolicyMode: &mode, ImmutabilityPolicyExpiryTime: &until,
		})
		if err != nil {
			return s.mapErr(ctx, "put", key, err)
		}
		return nil
	}
	if err != nil {
		return readErr(err)
	}
	var ids []string
	for idx := 0; n > 0; idx++ {
		id := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "walvault-block-%08d", idx))
		if _, err := bb.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader(buf[:n])), &blockblob.StageBlockOptions{CPKScopeInfo: uo.CPKScopeInfo}); err != nil {
			return s.mapErr(ctx, "put", key, err)
		}
		ids = append(ids, id)
		if n, err = io.ReadFull(src, buf); err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return readErr(err)
		}
	}
	_, err = bb.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
		Metadata: uo.Metadata, Tier: uo.AccessTier, CPKScopeInfo: uo.CPKScopeInfo, AccessConditions: uo.AccessConditions,
		ImmutabilityPolicyMode: &mode, ImmutabilityPolicyExpiryTime: &until,
	})
	if err != nil {
		return s.mapErr(ctx, "put", key, err)
	}
	return nil
}

// LockSupport reads whether the container has version-level immutability.
func (s *store) LockSupport(ctx context.Context) (cloud.LockInfo, error) {
	li := cloud.LockInfo{Kind: "Azure version-level immutability"}
	p, err := s.client.GetProperties(ctx, nil)
	if err != nil {
		return li, s.mapErr(ctx, "read the properties of", "", err)
	}
	if p.IsImmutableStorageWithVersioningEnabled == nil || !*p.IsImmutableStorageWithVersioningEnabled {
		li.Detail = fmt.Sprintf("container %q does not have version-level immutability support: enable it on the container (az storage container-rm create --enable-vlw, on an account with blob versioning)", s.container)
		return li, nil
	}
	li.Supported = true
	li.Detail = fmt.Sprintf("container %q has version-level immutability support", s.container)
	return li, nil
}
