package server

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxConnsPerIP bounds the connections one address holds open at once. A
// booting machine uses one or two (iPXE fetches kernel and initrd in turn), a
// browser six, Prometheus one; 64 leaves room for a few operators behind one
// NAT, while a client flooding the port holds at most 64 descriptors and every
// other address keeps being served.
const maxConnsPerIP = 64

// busyReply is what a connection over its address's limit reads before it is
// closed, so that a client sees why rather than only a reset.
const busyReply = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 40\r\n\r\ntoo many connections from your address\r\n"

// perIPListener admits at most max TCP connections per remote address. A
// trusted reverse proxy's connections, carrying many clients', and any other
// kind of connection pass uncounted.
type perIPListener struct {
	net.Listener
	max     int
	proxies []netip.Prefix
	log     *slog.Logger

	mu   sync.Mutex
	open map[netip.Addr]*ipCount
}

type ipCount struct {
	n      int
	warned bool // this address's current run at the limit is logged
}

func limitPerIP(l net.Listener, max int, proxies []netip.Prefix, log *slog.Logger) *perIPListener {
	return &perIPListener{Listener: l, max: max, proxies: proxies, log: log, open: map[netip.Addr]*ipCount{}}
}

// Accept returns the next connection within its address's limit. The ones
// over it are answered 503 and closed here: they never reach net/http and
// hold a descriptor for microseconds.
func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, isTCP := c.(*net.TCPConn)
		ta, hasAddr := c.RemoteAddr().(*net.TCPAddr)
		if !isTCP || !hasAddr {
			return c, nil
		}
		ip := ta.AddrPort().Addr().Unmap()
		if isProxy(l.proxies, ip) {
			return c, nil
		}
		if l.admit(ip) {
			return &ipConn{TCPConn: tc, release: func() { l.release(ip) }}, nil
		}
		// A fresh socket's send buffer is empty: the write cannot block,
		// the deadline only makes sure of it.
		_ = tc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = tc.Write([]byte(busyReply))
		_ = tc.Close()
	}
}

// admit counts a new connection from ip, or reports false if ip holds max.
func (l *perIPListener) admit(ip netip.Addr) bool {
	l.mu.Lock()
	c := l.open[ip]
	if c == nil {
		c = &ipCount{}
		l.open[ip] = c
	}
	if c.n < l.max {
		c.n++
		l.mu.Unlock()
		return true
	}
	warn := !c.warned
	c.warned = true
	l.mu.Unlock()
	if warn { // once per run: a flood would otherwise log a line per connection
		l.log.Warn("http connections refused: too many from one address", "remote", ip.String(), "limit", l.max)
	}
	return false
}

func (l *perIPListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.open[ip]
	if c.n--; c.n == 0 {
		delete(l.open, ip)
	}
}

// ipConn gives its address's slot back when closed. It embeds *net.TCPConn,
// not net.Conn, so that net/http still finds ReadFrom and sends assets with
// sendfile(2).
type ipConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *ipConn) Close() error {
	c.once.Do(c.release)
	return c.TCPConn.Close()
}
