package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// The azure:// (alias azblob://) backend, for Azure Blob Storage.
func init() {
	Register("azure", openAzure)
	Register("azblob", openAzure)
}

const (
	azureDefaultBlock = 16 << 20
	azureMaxBlocks    = 50000
	azureMaxBlock     = 4000 << 20
	azureConcurrency  = 4
)

type azureStore struct {
	client    *container.Client
	name      string
	container string
	prefix    string
	block     int64
	tier      *blob.AccessTier
	scope     *blob.CPKScopeInfo
	credHint  string // which credentials are in use, for messages
}

// azureSettings gathers endpoint and credentials from the environment.
type azureSettings struct {
	endpoint, account, key, sas, source string
}

func azureFromEnv(opts Options) (azureSettings, error) {
	st := azureSettings{
		account: os.Getenv("AZURE_STORAGE_ACCOUNT"),
		key:     os.Getenv("AZURE_STORAGE_KEY"),
		sas:     strings.TrimPrefix(os.Getenv("AZURE_STORAGE_SAS_TOKEN"), "?"),
	}
	endpoint := opts.AzureEndpoint
	if endpoint == "" {
		endpoint = os.Getenv("AZURE_STORAGE_ENDPOINT")
	}
	switch {
	case os.Getenv("AZURE_STORAGE_CONNECTION_STRING") != "":
		cs, err := parseConnectionString(os.Getenv("AZURE_STORAGE_CONNECTION_STRING"))
		if err != nil {
			return st, err
		}
		st.account, st.key, st.sas, st.source = cs.account, cs.key, cs.sas, "AZURE_STORAGE_CONNECTION_STRING"
		if endpoint == "" {
			endpoint = cs.endpoint
		}
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
	if endpoint == "" {
		if st.account == "" {
			return st, errors.New("no storage account: set AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or Azure AD credentials) or AZURE_STORAGE_CONNECTION_STRING")
		}
		endpoint = "https://" + st.account + ".blob.core.windows.net"
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return st, fmt.Errorf("invalid Azure endpoint %q: write https://ACCOUNT.blob.core.windows.net", Redact(endpoint))
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

func openAzure(_ context.Context, loc Location, opts Options) (Store, error) {
	name := "azure://" + strings.TrimSuffix(loc.Bucket+"/"+loc.Prefix, "/")
	st, err := azureFromEnv(opts)
	if err != nil {
		return nil, Permanent(fmt.Errorf("%s: %w", name, err))
	}
	copts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		// Bounded retries: a dead endpoint must fail wal-push in seconds.
		Retry:     policy.RetryOptions{MaxRetries: 2, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 2 * time.Second},
		Transport: &http.Client{Transport: newHTTPTransport(opts.idleTimeout())}, // stall detection, see transport.go
	}}
	containerURL := st.endpoint + "/" + url.PathEscape(loc.Bucket)
	var client *container.Client
	switch {
	case st.key != "":
		cred, err := container.NewSharedKeyCredential(st.account, st.key)
		if err != nil {
			return nil, Permanent(fmt.Errorf("%s: the account key from %s is not valid base64", name, st.source))
		}
		client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, copts)
		if err != nil {
			return nil, Permanent(fmt.Errorf("%s: %w", name, err))
		}
	case st.sas != "":
		client, err = container.NewClientWithNoCredential(containerURL+"?"+st.sas, copts)
		if err != nil {
			return nil, Permanent(fmt.Errorf("%s: invalid SAS token from %s", name, st.source))
		}
	default:
		// Construction only: tokens are fetched on the first request.
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, Permanent(fmt.Errorf("%s: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or log in for Azure AD: %w", name, err))
		}
		client, err = container.NewClient(containerURL, cred, copts)
		if err != nil {
			return nil, Permanent(fmt.Errorf("%s: %w", name, err))
		}
	}
	s := &azureStore{
		client:    client,
		name:      name,
		container: loc.Bucket,
		prefix:    loc.Prefix,
		block:     azureDefaultBlock,
		credHint:  st.source,
	}
	if opts.PartSize > 0 {
		s.block = min(opts.PartSize, azureMaxBlock)
	}
	if opts.AzureAccessTier != "" {
		t := blob.AccessTier(opts.AzureAccessTier)
		s.tier = &t
	}
	if opts.AzureEncryptionScope != "" {
		s.scope = &blob.CPKScopeInfo{EncryptionScope: &opts.AzureEncryptionScope}
	}
	return s, nil
}

func (s *azureStore) String() string { return s.name }

func (s *azureStore) key(k string) string { return JoinKey(s.prefix, k) }

// Azure metadata names must be C# identifiers: '-' is not allowed. Keys are
// lower case letters, digits and '-' (checkMetadata), so '-' <-> '_' maps
// them both ways; Azure may return names with changed case.
func azureMetaOut(m map[string]string) map[string]*string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[strings.ReplaceAll(k, "-", "_")] = &v
	}
	return out
}

func azureMetaIn(m map[string]*string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if v != nil {
			out[strings.ReplaceAll(strings.ToLower(k), "_", "-")] = *v
		}
	}
	return out
}

func (s *azureStore) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error {
	if err := checkMetadata(opts.Metadata); err != nil {
		return Permanent(fmt.Errorf("%s: put %s: %w", s, key, err))
	}
	block := s.block
	if opts.SizeHint > 0 {
		need := (opts.SizeHint + opts.SizeHint/10) / (azureMaxBlocks - 1)
		block = min(max(block, (need+1<<20-1)&^(1<<20-1)), azureMaxBlock)
	}
	uo := &blockblob.UploadStreamOptions{
		// Anything below one block (plus framing slack) is a single Put
		// Blob; larger objects are staged blocks, committed at the end, so a
		// failed upload never becomes visible.
		BlockSize:    block + s3Slack,
		Concurrency:  azureConcurrency,
		Metadata:     azureMetaOut(opts.Metadata),
		AccessTier:   s.tier,
		CPKScopeInfo: s.scope,
	}
	if opts.IfAbsent {
		uo.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}}
	}
	src := &errReader{ctx: ctx, r: r}
	_, err := s.client.NewBlockBlobClient(s.key(key)).UploadStream(ctx, src, uo)
	if src.err != nil {
		return fmt.Errorf("%s: put %s: reading the data: %w", s, key, src.err)
	}
	if err != nil {
		return s.mapErr(ctx, "put", key, err)
	}
	return nil
}

func to[T any](v T) *T { return &v }

func (s *azureStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	resp, err := s.client.NewBlobClient(s.key(key)).DownloadStream(ctx, nil)
	if err != nil {
		return nil, ObjectInfo{}, s.mapErr(ctx, "get", key, err)
	}
	info := ObjectInfo{Key: key, Metadata: azureMetaIn(resp.Metadata)}
	if resp.ContentLength != nil {
		info.Size = *resp.ContentLength
	}
	if resp.LastModified != nil {
		info.ModTime = *resp.LastModified
	}
	return resp.Body, info, nil
}

func (s *azureStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	resp, err := s.client.NewBlobClient(s.key(key)).GetProperties(ctx, nil)
	if err != nil {
		return ObjectInfo{}, s.mapErr(ctx, "stat", key, err)
	}
	info := ObjectInfo{Key: key, Metadata: azureMetaIn(resp.Metadata)}
	if resp.ContentLength != nil {
		info.Size = *resp.ContentLength
	}
	if resp.LastModified != nil {
		info.ModTime = *resp.LastModified
	}
	return info, nil
}

func (s *azureStore) List(ctx context.Context, prefix string, opts ListOptions, fn func(ObjectInfo) error) error {
	base := ""
	if s.prefix != "" {
		base = s.prefix + "/"
	}
	full := base + prefix
	emit := func(entries []ObjectInfo) error {
		// Blobs and prefixes come as two lists: merge into lexical order.
		slices.SortFunc(entries, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}
	blobInfo := func(b *container.BlobItem) ObjectInfo {
		o := ObjectInfo{Key: strings.TrimPrefix(deref(b.Name), base)}
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
	if opts.Delimiter == "" {
		pager := s.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &full})
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return s.mapErr(ctx, "list", prefix, err)
			}
			var entries []ObjectInfo
			for _, b := range page.Segment.BlobItems {
				entries = append(entries, blobInfo(b))
			}
			if err := emit(entries); err != nil {
				return err
			}
		}
		return nil
	}
	pager := s.client.NewListBlobsHierarchyPager(opts.Delimiter, &container.ListBlobsHierarchyOptions{Prefix: &full})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return s.mapErr(ctx, "list", prefix, err)
		}
		var entries []ObjectInfo
		for _, b := range page.Segment.BlobItems {
			entries = append(entries, blobInfo(b))
		}
		for _, p := range page.Segment.BlobPrefixes {
			entries = append(entries, ObjectInfo{Key: strings.TrimPrefix(deref(p.Name), base), IsPrefix: true})
		}
		if err := emit(entries); err != nil {
			return err
		}
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *azureStore) Delete(ctx context.Context, key string) error {
	_, err := s.client.NewBlobClient(s.key(key)).Delete(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.BlobNotFound) {
		return nil
	}
	return s.mapErr(ctx, "delete", key, err)
}

// mapErr words Azure errors in one line. azcore's own error text spans many
// lines and quotes the request URL, which may carry a SAS token, so it is
// kept in the chain (errors.As still finds it) but never printed.
func (s *azureStore) mapErr(ctx context.Context, op, key string, err error) error {
	what := fmt.Sprintf("%s: %s %s", s, op, key)
	if key == "" {
		what = fmt.Sprintf("%s: %s", s, op)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	var re *azcore.ResponseError
	status, code := 0, ""
	if errors.As(err, &re) {
		status, code = re.StatusCode, re.ErrorCode
	}
	var authErr *azidentity.AuthenticationFailedError
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted):
		return Permanent(newStoreError(fmt.Sprintf("%s: container %q does not exist: create it or fix the store URL", what, s.container), err))
	case bloberror.HasCode(err, bloberror.BlobNotFound) || status == http.StatusNotFound && op != "list" && op != "put":
		if status == http.StatusNotFound && code == "" && op == "stat" && s.containerMissing(ctx) {
			return Permanent(newStoreError(fmt.Sprintf("%s: container %q does not exist: create it or fix the store URL", what, s.container), err))
		}
		return newStoreError(fmt.Sprintf("%s: %v", what, ErrNotFound), ErrNotFound, err)
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) ||
		op == "put" && (status == http.StatusConflict || status == http.StatusPreconditionFailed):
		return newStoreError(fmt.Sprintf("%s: %v", what, ErrExists), ErrExists, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return newStoreError(fmt.Sprintf("%s: %v (%s): check the credentials from %s", what, ErrAccess, orStatus(code, status), s.credHint), ErrAccess, err)
	case errors.As(err, &authErr) || re == nil && strings.Contains(err.Error(), "Credential"):
		return newStoreError(fmt.Sprintf("%s: %v: no usable Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or log in for Azure AD", what, ErrAccess), ErrAccess, err)
	}
	if host, ok := unreachable(err); ok {
		return newStoreError(fmt.Sprintf("%s: %s: is the server running? check AZURE_STORAGE_ENDPOINT / the connection string", what, describeUnreachable(host, err)), err)
	}
	if e, ok := stalled(what, err); ok {
		return e
	}
	if re != nil {
		msg := fmt.Sprintf("%s: %s", what, orStatus(code, status))
		if status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
			return Permanent(newStoreError(msg, err))
		}
		return newStoreError(msg, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error's text includes the URL, and with it any SAS token.
		return newStoreError(fmt.Sprintf("%s: %s: %v", what, ue.Op, ue.Err), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func orStatus(code string, status int) string {
	if code != "" {
		return fmt.Sprintf("%s, HTTP %d", code, status)
	}
	return fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
}

// containerMissing tells a missing container from a missing blob after a
// HEAD answered 404 without an error code. It costs a request on misses only.
func (s *azureStore) containerMissing(ctx context.Context) bool {
	_, err := s.client.GetProperties(ctx, nil)
	return bloberror.HasCode(err, bloberror.ContainerNotFound)
}
