// Package faultproxy is a TCP proxy for tests that injects network faults
// between an HTTP/1.1 client (walvault) and a storage server: connection
// resets, transfers cut mid-body, stalls and throttling.
//
// It reads just enough of the byte stream to tell requests apart on a
// kept-alive connection (a request starts when the client sends a method
// token after the server has answered), so a fault can target one request:
// "reset the PUT of this segment after 100 KiB of its body", "cut the
// response of the first GET". It never parses or alters the bytes it
// forwards.
//
// It listens on 127.0.0.1 only.
package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Dir is a direction of transfer.
type Dir int

// The two directions.
const (
	Up   Dir = iota + 1 // client -> server: the request
	Down                // server -> client: the response
)

func (d Dir) String() string {
	switch d {
	case Up:
		return "request"
	case Down:
		return "response"
	}
	return "any"
}

// Kind is a kind of fault.
type Kind int

// The faults the proxy injects.
const (
	None     Kind = iota
	Reset         // send RST to both peers (SO_LINGER 0) once After bytes went in Dir
	Cut           // close both connections (FIN) once After bytes went in Dir
	Stall         // stop forwarding Dir for Duration after After bytes (0: until the client gives up)
	Throttle      // forward Dir at Rate bytes per second from After bytes on
	numKinds
)

func (k Kind) String() string {
	return [...]string{"none", "reset", "cut", "stall", "throttle"}[k]
}

// Fault says what to do to one request (or, from a connection rule, to a
// connection before any byte crosses it: only Reset and Cut apply there).
type Fault struct {
	Kind     Kind
	Dir      Dir
	After    int64         // bytes of Dir forwarded before the fault strikes
	Duration time.Duration // Stall
	Rate     int64         // Throttle, bytes per second
	// Before, when set, runs before the request's first byte is forwarded:
	// a hook for barriers (hold two uploads until both are in flight).
	Before func(Request)
}

// Request is an HTTP request as the proxy saw it start.
type Request struct {
	Seq    int    // 1, 2, ... over the proxy's lifetime
	Conn   int    // connection number, 1, 2, ...
	Method string // "PUT", "GET", ...
	Target string // request target as sent, e.g. /bucket/prefix/key?uploadId=...
	// Header holds the request's header fields as far as the first chunk
	// the client sent shows them (all of them, for any request whose
	// header block fits in 32 KiB), to check what a client asks for.
	Header http.Header
}

func (r Request) String() string { return fmt.Sprintf("#%d %s %s", r.Seq, r.Method, r.Target) }

// Rule picks the fault for a request. It is called once per request, from
// the connection's goroutine, and may keep state (count, fire once).
type Rule func(Request) Fault

// ConnRule picks a fault for a new connection, before it is connected
// upstream.
type ConnRule func(conn int) Fault

// Proxy forwards 127.0.0.1:PORT to an upstream address.
type Proxy struct {
	upstream string
	ln       net.Listener

	mu       sync.Mutex
	rule     Rule
	connRule ConnRule
	conns    map[int]*conn
	requests []Request

	nconn, nreq atomic.Int64
	fired       [numKinds]atomic.Int64
	wg          sync.WaitGroup
	closed      chan struct{}
}

// New starts a proxy to upstream ("127.0.0.1:PORT").
func New(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, ln: ln, conns: map[int]*conn{}, closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Start is New for a test: a failure is fatal and the proxy is closed when
// the test ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Addr is the proxy's listening address, 127.0.0.1:PORT.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is http://127.0.0.1:PORT.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// SetRule installs the rule for requests that start from now on (nil: no
// faults).
func (p *Proxy) SetRule(r Rule) {
	p.mu.Lock()
	p.rule = r
	p.mu.Unlock()
}

// SetConnRule installs the rule for connections accepted from now on.
func (p *Proxy) SetConnRule(r ConnRule) {
	p.mu.Lock()
	p.connRule = r
	p.mu.Unlock()
}

// Stats counts what the proxy saw and did.
type Stats struct {
	Conns, Requests int64
	Fired           map[Kind]int64 // faults that actually struck
}

// Faults is the total number of faults that struck.
func (s Stats) Faults() int64 {
	var n int64
	for _, v := range s.Fired {
		n += v
	}
	return n
}

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	s := Stats{Conns: p.nconn.Load(), Requests: p.nreq.Load(), Fired: map[Kind]int64{}}
	for k := Kind(1); k < numKinds; k++ {
		if v := p.fired[k].Load(); v > 0 {
			s.Fired[k] = v
		}
	}
	return s
}

// Requests returns the requests seen so far, in order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// ConnState is the state of one proxied connection.
type ConnState struct {
	Request   Request // the current (last started) request; zero before the first
	Sent      int64   // request bytes forwarded so far
	Answered  bool    // the server has started to answer it
	Connected bool    // both sides still open
}

// State returns the state of the connection whose client side is the
// local port clientPort (as /proc/net/tcp shows it for the client).
func (p *Proxy) State(clientPort int) (ConnState, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.clientPort != clientPort {
			continue
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		st := ConnState{Connected: !c.dead}
		if c.req != nil {
			st.Request, st.Sent, st.Answered = c.req.Request, c.req.up.Load(), c.req.answered
		}
		return st, true
	}
	return ConnState{}, false
}

// Close stops accepting, drops every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	select {
	case <-p.closed:
		return nil
	default:
	}
	close(p.closed)
	err := p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.kill(false)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		cl, err := p.ln.Accept()
		if err != nil {
			return
		}
		id := int(p.nconn.Add(1))
		p.mu.Lock()
		cr := p.connRule
		p.mu.Unlock()
		if cr != nil {
			if f := cr(id); f.Kind == Reset || f.Kind == Cut {
				p.fired[f.Kind].Add(1)
				if f.Kind == Reset {
					_ = cl.(*net.TCPConn).SetLinger(0)
				}
				_ = cl.Close()
				continue
			}
		}
		p.wg.Add(1)
		go p.serve(id, cl.(*net.TCPConn))
	}
}

type reqState struct {
	Request
	fault    Fault
	up, down atomic.Int64 // bytes forwarded in each direction
	fired    atomic.Bool
	answered bool // guarded by conn.mu
	before   bool // Before has run (up goroutine only)
}

type conn struct {
	p          *Proxy
	id         int
	clientPort int
	client     *net.TCPConn
	server     *net.TCPConn
	done       chan struct{}
	once       sync.Once

	mu   sync.Mutex
	req  *reqState
	dead bool
}

func (p *Proxy) serve(id int, cl *net.TCPConn) {
	defer p.wg.Done()
	sv, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		_ = cl.Close()
		return
	}
	c := &conn{p: p, id: id, client: cl, server: sv.(*net.TCPConn), done: make(chan struct{})}
	if a, ok := cl.RemoteAddr().(*net.TCPAddr); ok {
		c.clientPort = a.Port
	}
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		c.kill(false)
		return
	default:
	}
	p.conns[id] = c
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, id)
		p.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pumpUp() }()
	go func() { defer wg.Done(); c.pumpDown() }()
	wg.Wait()
	c.kill(false)
}

// kill closes both sides, with RST when reset.
func (c *conn) kill(reset bool) {
	c.once.Do(func() {
		c.mu.Lock()
		c.dead = true
		c.mu.Unlock()
		if reset {
			_ = c.client.SetLinger(0)
			_ = c.server.SetLinger(0)
		}
		_ = c.client.Close()
		_ = c.server.Close()
		close(c.done)
	})
}

var methods = [][]byte{[]byte("GET "), []byte("PUT "), []byte("POST "), []byte("HEAD "), []byte("DELETE "), []byte("OPTIONS "), []byte("PATCH ")}

func looksLikeRequest(b []byte) bool {
	for _, m := range methods {
		if bytes.HasPrefix(b, m) {
			return true
		}
	}
	return false
}

// startRequest begins a new request from its first bytes.
func (c *conn) startRequest(first []byte) *reqState {
	line := first
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	parts := strings.Fields(string(line))
	r := Request{Seq: int(c.p.nreq.Add(1)), Conn: c.id, Header: parseHeader(first)}
	if len(parts) > 0 {
		r.Method = parts[0]
	}
	if len(parts) > 1 {
		r.Target = parts[1]
	}
	c.p.mu.Lock()
	c.p.requests = append(c.p.requests, r)
	rule := c.p.rule
	c.p.mu.Unlock()
	rs := &reqState{Request: r}
	if rule != nil {
		rs.fault = rule(r)
	}
	return rs
}

// parseHeader reads the header fields in a request's first bytes, up to
// the blank line that ends them (or the end of what was read).
func parseHeader(first []byte) http.Header {
	h := http.Header{}
	head, _, _ := bytes.Cut(first, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return h
}

func (c *conn) pumpUp() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			data := buf[:n]
			// Only this goroutine replaces c.req; the lock orders it
			// against pumpDown and State (and is never held while taking
			// the proxy's lock).
			c.mu.Lock()
			rs := c.req
			fresh := rs == nil || (rs.answered && looksLikeRequest(data))
			c.mu.Unlock()
			if fresh {
				rs = c.startRequest(data)
				c.mu.Lock()
				c.req = rs
				c.mu.Unlock()
			}
			if rs.fault.Before != nil && !rs.before {
				rs.before = true
				rs.fault.Before(rs.Request)
			}
			if !c.forward(rs, Up, c.server, data) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = c.server.CloseWrite()
				return
			}
			c.kill(false)
			return
		}
	}
}

func (c *conn) pumpDown() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			c.mu.Lock()
			rs := c.req
			if rs != nil {
				rs.answered = true
			}
			c.mu.Unlock()
			if !c.forward(rs, Down, c.client, buf[:n]) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = c.client.CloseWrite()
				return
			}
			c.kill(false)
			return
		}
	}
}

// forward writes data to dst, applying rs's fault if it concerns dir. It
// returns false once the connection is gone.
func (c *conn) forward(rs *reqState, dir Dir, dst *net.TCPConn, data []byte) bool {
	if rs == nil || rs.fault.Kind == None || rs.fault.Dir != dir {
		return c.write(dst, data)
	}
	f := rs.fault
	count := &rs.up
	if dir == Down {
		count = &rs.down
	}
	sent := count.Load()
	// The part before the fault's threshold passes untouched.
	if f.Kind != Throttle || !rs.fired.Load() {
		if sent+int64(len(data)) <= f.After {
			count.Add(int64(len(data)))
			return c.write(dst, data)
		}
		if head := f.After - sent; head > 0 {
			if !c.write(dst, data[:head]) {
				return false
			}
			count.Add(head)
			data = data[head:]
		}
	}
	first := rs.fired.CompareAndSwap(false, true)
	if first {
		c.p.fired[f.Kind].Add(1)
	}
	switch f.Kind {
	case Reset:
		c.kill(true)
		return false
	case Cut:
		c.kill(false)
		return false
	case Stall:
		if first {
			var wait <-chan time.Time
			if f.Duration > 0 {
				tm := time.NewTimer(f.Duration)
				defer tm.Stop()
				wait = tm.C
			}
			select {
			case <-wait:
			case <-c.done:
				return false
			}
		}
		count.Add(int64(len(data)))
		return c.write(dst, data)
	case Throttle:
		rate := max(f.Rate, 1024)
		piece := int(max(rate/50, 512))
		for len(data) > 0 {
			n := min(piece, len(data))
			if !c.write(dst, data[:n]) {
				return false
			}
			count.Add(int64(n))
			data = data[n:]
			select {
			case <-time.After(time.Duration(int64(n) * int64(time.Second) / rate)):
			case <-c.done:
				return false
			}
		}
		return true
	}
	return c.write(dst, data)
}

func (c *conn) write(dst *net.TCPConn, data []byte) bool {
	if _, err := dst.Write(data); err != nil {
		c.kill(false)
		return false
	}
	return true
}

// Describe is a short text for logs: "reset request after 65536 B".
func (f Fault) Describe() string {
	switch f.Kind {
	case None:
		return "none"
	case Stall:
		d := "until the client gives up"
		if f.Duration > 0 {
			d = "for " + f.Duration.String()
		}
		return fmt.Sprintf("stall %s after %d B %s", f.Dir, f.After, d)
	case Throttle:
		return fmt.Sprintf("throttle %s to %s/s after %d B", f.Dir, size(f.Rate), f.After)
	}
	return fmt.Sprintf("%s %s after %d B", f.Kind, f.Dir, f.After)
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

// Match builds a predicate on requests: method ("" for any) and a
// substring of the target ("" for any).
func Match(method, targetContains string) func(Request) bool {
	return func(r Request) bool {
		return (method == "" || r.Method == method) && strings.Contains(r.Target, targetContains)
	}
}

// Times applies f to the first n requests that match, then nothing
// (n < 0: to every matching request).
func Times(n int, match func(Request) bool, f Fault) Rule {
	var mu sync.Mutex
	left := n
	return func(r Request) Fault {
		mu.Lock()
		defer mu.Unlock()
		if !match(r) || left == 0 {
			return Fault{}
		}
		if left > 0 {
			left--
		}
		return f
	}
}

// Once applies f to the first request that matches.
func Once(match func(Request) bool, f Fault) Rule { return Times(1, match, f) }

// Always applies f to every request that matches.
func Always(match func(Request) bool, f Fault) Rule { return Times(-1, match, f) }
