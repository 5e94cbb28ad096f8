package cloud

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// storeError is an error with a hand-written one-line message that still
// unwraps to the sentinel (ErrNotFound, ...) and the SDK's own error, so
// callers can use errors.Is/As without the SDK's long text reaching users.
type storeError struct {
	msg  string
	errs []error
}

func (e *storeError) Error() string   { return e.msg }
func (e *storeError) Unwrap() []error { return e.errs }

func newStoreError(msg string, errs ...error) error {
	return &storeError{msg: msg, errs: errs}
}

// maxMetadataBytes is the smallest user-metadata limit of the backends
// (S3: 2 KiB), so an object that fits one fits them all.
const maxMetadataBytes = 2048

// checkMetadata enforces PutOptions.Metadata's contract the same way on
// every backend: a key is a lower case letter followed by lower case
// letters, digits and '-' (Azure needs keys to be identifiers, which the
// '-' <-> '_' mapping keeps them); a value is printable ASCII without
// surrounding blanks (HTTP headers would trim them).
func checkMetadata(m map[string]string) error {
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
	return Permanent(newStoreError(fmt.Sprintf("%s: no data moved within the I/O timeout (--io-timeout): the connection or the server stalled", what), err)), true
}
