package cloud

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// ioTimeout, the default of Options.IOTimeout, fails a connection on which
// nothing moves for this long. The
// SDKs have no such limit by default, and a stalled upload or a server that
// never answers would hang wal-push, and PostgreSQL's archiver with it. It
// plays the part of pgBackRest's io-timeout (also 60 s by default).
var ioTimeout = 60 * time.Second

// dialTimeout bounds connecting: an unreachable endpoint must fail in
// seconds so PostgreSQL retries, not after the usual 30 s per attempt.
const dialTimeout = 5 * time.Second

// idleConn extends its deadline on every read and write, so only a
// connection that makes no progress at all times out. Both directions share
// one deadline: a request being written means an answer is due, which
// keeps an earlier pending read (the transport's) from firing early.
type idleConn struct {
	net.Conn
	timeout time.Duration
	// timedOut is set once the deadline fired. The transport then closes
	// the connection, and the other direction sees "use of closed network
	// connection": report that as the timeout it is.
	timedOut atomic.Bool
}

// maxWriteChunk splits big writes so that each piece, not the whole buffer,
// has to make it within the timeout on a slow link.
const maxWriteChunk = 256 << 10

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Read(p)
	return n, c.check("read", err)
}

func (c *idleConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
		m, err := c.Conn.Write(p[n:min(len(p), n+maxWriteChunk)])
		n += m
		if err != nil {
			return n, c.check("write", err)
		}
	}
	return n, nil
}

func (c *idleConn) check(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
		return err
	}
	if c.timedOut.Load() {
		return &net.OpError{Op: op, Net: "tcp", Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
	}
	return err
}

// IdleDialer returns a DialContext for an SDK's own HTTP transport: it
// gives up connecting after a few seconds, and fails a connection on which
// no data moves for timeout (Options.IdleTimeout), so an unreachable or
// stalled server cannot hang wal-push and PostgreSQL's archiver with it.
func IdleDialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, timeout: timeout}, nil
	}
}

// NewHTTPTransport is the transport for backends whose SDK takes one:
// IdleDialer's bounded connect and stall detection, HTTP/1.1, and idle
// connections dropped well before their deadline could fire.
func NewHTTPTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:       http.ProxyFromEnvironment,
		DialContext: IdleDialer(timeout),
		// HTTP/1.1 only: object stores speak it, and one stream per
		// connection is what makes the idle deadline mean "stalled".
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       min(30*time.Second, timeout/2),
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: newSessionCache()},
	}
}

// ResumeTLS lets tr resume TLS sessions with servers it has talked to:
// a new connection then skips the certificate's verification. Servers
// that close the connection after each request (some S3-compatible ones)
// make every request a new handshake: resuming took 10% off its CPU.
func ResumeTLS(tr *http.Transport) {
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.ClientSessionCache = newSessionCache()
}

func newSessionCache() tls.ClientSessionCache { return tls.NewLRUClientSessionCache(64) }
