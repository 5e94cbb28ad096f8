package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// ErrChecksum: the stored object fails the store's own checksum, which the
// SDK checks while reading: the bytes are damaged, in the store or on the
// way, rather than cut short by the network.
var ErrChecksum = errors.New("stored object fails the store's own checksum")

// storeError is an error with a hand-written one-line message that still
// unwraps to the sentinel (ErrNotFound, ...) and the SDK's own error, so
// callers can use errors.Is/As without the SDK's long text reaching users.
type storeError struct {
	msg  string
	errs []error
}

func (e *storeError) Error() string   { return e.msg }
func (e *storeError) Unwrap() []error { return e.errs }

// NewStoreError returns an error whose text is msg alone and which unwraps
// to errs: the sentinel callers test for and the SDK's own error, whose text
// is too long, spans lines or quotes secrets.
func NewStoreError(msg string, errs ...error) error {
	return &storeError{msg: msg, errs: errs}
}

// maxMetadataBytes is the smallest user-metadata limit of the backends
// (S3: 2 KiB), so an object that fits one fits them all.
const maxMetadataBytes = 2048

// CheckMetadata enforces PutOptions.Metadata's contract the same way on
// every backend: a key is a lower case letter followed by lower case
// letters, digits and '-' (Azure needs keys to be identifiers, which the
// '-' <-> '_' mapping keeps them); a value is printable ASCII without
// surrounding blanks (HTTP headers would trim them).
func CheckMetadata(m map[string]string) error {
	total := 0
	for k, v := range m {
		total += len(k) + len(v)
		if k == "" || k[0] < 'a' || k[0] > 'z' {
			return fmt.Errorf("invalid metadata key %q: must start with a lower case letter", k)
		}
		for _, c := range k {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("invalid metadata key %q: use lower case letters, digits and '-'", k)
			}
		}
		for _, c := range v {
			if c < 0x20 || c > 0x7e {
				return fmt.Errorf("invalid metadata value for %q: use printable ASCII", k)
			}
		}
		if strings.TrimSpace(v) != v {
			return fmt.Errorf("invalid metadata value for %q: leading or trailing blanks", k)
		}
	}
	if total > maxMetadataBytes {
		return fmt.Errorf("metadata too large: %d bytes, at most %d", total, maxMetadataBytes)
	}
	return nil
}

// unreachable reports whether err says the server could not be contacted at
// all (refused, no route, DNS), and if so, the host that failed.
func unreachable(err error) (host string, ok bool) {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Scheme + "://" + u.Host
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if host == "" {
			host = dnsErr.Name
		}
		return host, true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return host, true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if host == "" && op.Addr != nil {
			host = op.Addr.String()
		}
		return host, true
	}
	return "", false
}

// describeUnreachable words an unreachable-server error for users.
func describeUnreachable(host string, err error) string {
	why := "connection failed"
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		why = "host name not found"
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		why = "no route to host"
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			why = "connection timed out"
		}
	}
	if host == "" {
		host = "the storage endpoint"
	}
	return fmt.Sprintf("cannot reach endpoint %s (%s)", host, why)
}

// stalled reports whether err is an idle connection timing out (see
// ioTimeout), and words it. The SDK has retried it already; retrying again
// would multiply the wait, so the error is permanent for the decorator.
func stalled(what string, err error) (error, bool) {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, false
	}
	return Permanent(NewStoreError(fmt.Sprintf("%s: no data moved within the I/O timeout (--io-timeout): the connection or the server stalled", what), err)), true
}

// IgnoreNotFound returns err, a Delete's mapped error, unless it says the
// key was missing: deleting a missing key is not an error.
func IgnoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Describe names an operation on store for error messages: "STORE: OP KEY",
// or "STORE: OP" when there is no key.
func Describe(store fmt.Stringer, op, key string) string {
	if key == "" {
		return fmt.Sprintf("%s: %s", store, op)
	}
	return fmt.Sprintf("%s: %s %s", store, op, key)
}

// Ended returns ctx's error under what once ctx has ended, else nil.
// Backends check it before anything else: a cancelled request fails in
// SDK-specific ways (a token that could not be fetched, a connection
// closed under a request) that must not be taken for the store's answer.
func Ended(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// MapError words the failures every backend shares, once the backend's
// mapErr has ruled out its SDK's own (missing object, access, ...): an
// endpoint that cannot be reached (hint says what to check), a stalled
// connection, and otherwise err itself under what. status is the HTTP
// status of the answer, 0 without one: a 4xx other than 408 and 429 will
// not change on a retry, so the error is permanent.
func MapError(what string, err error, status int, hint string) error {
	if host, ok := unreachable(err); ok {
		return NewStoreError(fmt.Sprintf("%s: %s: is the server running? %s", what, describeUnreachable(host, err), hint), err)
	}
	if e, ok := stalled(what, err); ok {
		return e
	}
	err = fmt.Errorf("%s: %w", what, err)
	if status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
		return Permanent(err)
	}
	return err
}

// MarkChecksum wraps a Get body so that a read error whose text contains
// marker (how the SDK words a failed validation of the store's checksum,
// which it reports only as text) also unwraps to ErrChecksum. The SDK's
// error stays in the chain and its text in the message.
func MarkChecksum(body io.ReadCloser, marker string) io.ReadCloser {
	return &checksumBody{ReadCloser: body, marker: marker}
}

type checksumBody struct {
	io.ReadCloser
	marker string
}

func (b *checksumBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && strings.Contains(err.Error(), b.marker) {
		err = fmt.Errorf("%w: %w", ErrChecksum, err)
	}
	return n, err
}
