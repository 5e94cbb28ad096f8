package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Options carries what backends read besides the URL. Credentials are
// not here: each backend takes them from its SDK's own conventions.
type Options struct {
	// Settings are the values of backend settings (Backend.Settings) by
	// name; a backend reads its own. A name no registered backend has is
	// refused.
	Settings Values
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
	// Lock, when on, locks every object written (see WithLock).
	Lock Lock
}

// With is a copy of o with the setting name set to value ("" unsets it).
func (o Options) With(name, value string) Options {
	set := make(Values, len(o.Settings)+1)
	for k, v := range o.Settings {
		set[k] = v
	}
	set[name] = value
	o.Settings = set
	return o
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
	b, ok := BackendOf(loc.Scheme)
	if !ok {
		return nil, fmt.Errorf("%w: unknown scheme %q in %q: use one of %s", ErrBadURL, loc.Scheme+"://", Redact(raw), strings.Join(schemes(), ", "))
	}
	if err := knownSettings(opts.Settings); err != nil {
		return nil, err
	}
	s, err := b.Open(ctx, loc, opts)
	if err != nil {
		return nil, err
	}
	if _, ok := s.(Locker); opts.Lock.On() && !ok {
		_ = Close(s)
		return nil, NoRetention(s)
	}
	return WithLock(WithRetry(s, DefaultRetry), opts.Lock), nil
}

// knownSettings refuses a setting no registered backend has: a caller's
// mistake, which would otherwise be ignored.
func knownSettings(set Values) error {
	all := Settings()
	for name := range set {
		if !slices.ContainsFunc(all, func(s Setting) bool { return s.Name == name }) {
			return fmt.Errorf("no store backend has the setting %q", name)
		}
	}
	return nil
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
