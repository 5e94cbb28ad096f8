package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options carries the settings backends read besides the URL. Credentials
// are not here: each backend takes them from its SDK's own conventions.
type Options struct {
	// S3
	S3Endpoint     string // custom endpoint (S3-compatible servers)
	S3PathStyle    bool   // path-style addressing
	S3Region       string
	S3StorageClass string
	S3SSEKMSKeyID  string
	// GCS
	GCSEndpoint     string // custom JSON API endpoint; http:// means an emulator, no auth
	GCSStorageClass string
	GCSKMSKeyName   string
	// Azure
	AzureEndpoint        string // custom service URL (Azurite, sovereign clouds)
	AzureAccessTier      string
	AzureEncryptionScope string

	// PartSize bounds the bytes a backend buffers per upload part; 0 picks
	// the backend's default.
	PartSize int64
	// IOTimeout fails a connection on which no data moves for this long;
	// 0 means 60 s.
	IOTimeout time.Duration
	// MustExist: the store's container must exist already. A file:// store
	// whose directory is missing is then ErrNotFound ("does not exist")
	// instead of being created: a reader given a mistyped path must not
	// take a new, empty directory for an empty archive. (Buckets and
	// containers are never created.)
	MustExist bool
}

// IdleTimeout is the I/O timeout in force: IOTimeout, or 60 s when unset.
// Backends hand it to IdleDialer or NewHTTPTransport.
func (o Options) IdleTimeout() time.Duration {
	if o.IOTimeout > 0 {
		return o.IOTimeout
	}
	return ioTimeout
}

// Location is a parsed store URL: scheme://bucket/prefix.
type Location struct {
	Scheme string
	Bucket string // empty for file://
	Prefix string // no leading or trailing '/'
	Path   string // file:// only: the absolute directory
	Query  url.Values
}

// Opener creates a Store for one URL scheme.
type Opener func(ctx context.Context, loc Location, opts Options) (Store, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a backend available under scheme. The file:// backend
// registers itself; the SDK backends are registered by cloud/all, called
// by the program, so that code which needs only the Store interface links
// no SDK.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[scheme] = open
}

func schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	var s []string
	for k := range registry {
		s = append(s, k+"://")
	}
	sort.Strings(s)
	return s
}

// ErrBadURL marks a store URL that cannot be used as written.
var ErrBadURL = errors.New("bad store URL")

// ParseURL splits a store URL into its parts without contacting anything.
func ParseURL(raw string) (Location, error) {
	if raw == "" {
		return Location{}, fmt.Errorf("%w: no store given: set --store or WALVAULT_STORE (e.g. file:///var/lib/walvault or s3://bucket/prefix)", ErrBadURL)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return Location{}, fmt.Errorf("%w: %q is not a URL: use scheme://bucket/prefix, one of %s", ErrBadURL, Redact(raw), strings.Join(schemes(), ", "))
	}
	loc := Location{Scheme: strings.ToLower(u.Scheme), Query: u.Query()}
	if loc.Scheme == "file" {
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("%w: file URL %q has a host: write file:///absolute/path (three slashes)", ErrBadURL, raw)
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return Location{}, fmt.Errorf("%w: file URL %q needs an absolute path: write file:///absolute/path", ErrBadURL, raw)
		}
		loc.Path = u.Path
		return loc, nil
	}
	if u.Host == "" {
		return Location{}, fmt.Errorf("%w: %q names no bucket: write %s://bucket/prefix", ErrBadURL, Redact(raw), loc.Scheme)
	}
	loc.Bucket = u.Host
	loc.Prefix = strings.Trim(u.Path, "/")
	return loc, nil
}

// Open parses raw and opens the store it names. The store is wrapped with
// the retry decorator.
func Open(ctx context.Context, raw string, opts Options) (Store, error) {
	loc, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	registryMu.RLock()
	open, ok := registry[loc.Scheme]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: unknown scheme %q in %q: use one of %s", ErrBadURL, loc.Scheme+"://", Redact(raw), strings.Join(schemes(), ", "))
	}
	s, err := open(ctx, loc, opts)
	if err != nil {
		return nil, err
	}
	return WithRetry(s, DefaultRetry), nil
}

// Redact removes user info and query strings (SAS tokens, keys) from a URL
// so it can be printed. Text that is not a URL with a host (host:port,
// KEY:SECRET@host, or one that does not parse) is withheld whole when it
// has an '@' or a '?' anywhere.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if !strings.ContainsAny(raw, "@?") {
			return raw
		}
		if scheme, _, ok := strings.Cut(raw, "://"); ok && !strings.ContainsAny(scheme, "@?/") {
			return scheme + "://REDACTED"
		}
		return "REDACTED"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery = "REDACTED"
	}
	return u.String()
}

// JoinKey joins a store prefix and a key: the object name a backend sends
// for key in a store opened with prefix.
func JoinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "/" + key
}
