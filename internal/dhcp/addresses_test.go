package dhcp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// testNetwork is one address plan of testAddresses.
type testNetwork struct {
	name        string
	subnet      netip.Prefix
	first, last netip.Addr
	router      netip.Addr
	dns         []netip.Addr
	lease       time.Duration
}

// testAddresses is a small in-memory allocator, enough to test the
// protocol against real clients; the real one (internal/leases) has its own
// tests. It holds an offered address for its client for a few seconds, so
// concurrent DISCOVERs are not all offered the same free address and then
// NAKed one by one. fail, when set, is the error of every call (a store
// outage).
type testAddresses struct {
	networks []testNetwork

	mu       sync.Mutex
	fail     error
	leases   map[netip.Addr]string // address -> MAC
	byMAC    map[string]netip.Addr
	offers   map[netip.Addr]offerHold
	declined map[netip.Addr]bool
	next     map[string]netip.Addr // per network: where the search for a free address resumes
	calls    []string              // "release 52:54:00:00:00:01 10.99.0.100", "decline ..."
}

type offerHold struct {
	mac   string
	until time.Time
}

const offerHoldFor = 5 * time.Second

func newTestAddresses(networks ...testNetwork) *testAddresses {
	return &testAddresses{
		networks: networks,
		leases:   map[netip.Addr]string{},
		byMAC:    map[string]netip.Addr{},
		offers:   map[netip.Addr]offerHold{},
		declined: map[netip.Addr]bool{},
		next:     map[string]netip.Addr{},
	}
}

// testNet is a testNetwork from its addresses in text.
func testNet(name, subnet, first, last, router string, lease time.Duration, dns ...string) testNetwork {
	n := testNetwork{
		name:   name,
		subnet: netip.MustParsePrefix(subnet),
		first:  netip.MustParseAddr(first), last: netip.MustParseAddr(last),
		router: netip.MustParseAddr(router),
		lease:  lease,
	}
	for _, d := range dns {
		n.dns = append(n.dns, netip.MustParseAddr(d))
	}
	return n
}

// provNetwork is the lab's provisioning network as a Network document would
// give it.
func provNetwork() testNetwork {
	return testNet("prov", "10.99.0.0/24", "10.99.0.100", "10.99.0.199", "10.99.0.1", time.Hour, "10.99.0.1", "10.99.0.53")
}

// network returns link's network, or the failure every call has. The
// caller holds t.mu.
func (t *testAddresses) network(link netip.Addr) (testNetwork, error) {
	if t.fail != nil {
		return testNetwork{}, t.fail
	}
	for _, n := range t.networks {
		if n.subnet.Contains(link) {
			return n, nil
		}
	}
	return testNetwork{}, fmt.Errorf("link %v: %w", link, ErrNoNetwork)
}

func (n testNetwork) assign(ip netip.Addr) Assignment {
	return Assignment{IP: ip, Network: n.name, Subnet: n.subnet, Router: n.router, DNS: n.dns, LeaseTime: n.lease}
}

func (n testNetwork) inRange(ip netip.Addr) bool {
	return n.first.Compare(ip) <= 0 && ip.Compare(n.last) <= 0
}

// freeFor reports whether mac may have ip now.
func (t *testAddresses) freeFor(ip netip.Addr, mac string, now time.Time) bool {
	if holder, ok := t.leases[ip]; ok {
		return holder == mac
	}
	if o, ok := t.offers[ip]; ok && o.mac != mac && now.Before(o.until) {
		return false
	}
	return !t.declined[ip]
}

func (t *testAddresses) Offer(_ context.Context, link netip.Addr, mac string, requested netip.Addr) (Assignment, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.network(link)
	if err != nil {
		return Assignment{}, err
	}
	now := time.Now()
	hold := func(ip netip.Addr) (Assignment, error) {
		t.offers[ip] = offerHold{mac: mac, until: now.Add(offerHoldFor)}
		return n.assign(ip), nil
	}
	if ip, ok := t.byMAC[mac]; ok && n.inRange(ip) {
		return hold(ip)
	}
	if requested.IsValid() && n.inRange(requested) && t.freeFor(requested, mac, now) {
		return hold(requested)
	}
	start, ok := t.next[n.name]
	if !ok {
		start = n.first
	}
	ip := start
	for {
		if t.freeFor(ip, mac, now) {
			if t.next[n.name] = ip.Next(); !n.inRange(t.next[n.name]) {
				t.next[n.name] = n.first
			}
			return hold(ip)
		}
		if ip = ip.Next(); !n.inRange(ip) {
			ip = n.first
		}
		if ip == start {
			return Assignment{}, fmt.Errorf("network %s: %w", n.name, ErrExhausted)
		}
	}
}

func (t *testAddresses) Network(_ context.Context, link netip.Addr) (Assignment, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.network(link)
	if err != nil {
		return Assignment{}, err
	}
	return n.assign(netip.Addr{}), nil
}

func (t *testAddresses) Ack(_ context.Context, link netip.Addr, mac string, ip netip.Addr) (Assignment, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.network(link)
	if err != nil {
		return Assignment{}, err
	}
	if !n.inRange(ip) || !t.freeFor(ip, mac, time.Now()) {
		return Assignment{}, fmt.Errorf("%v for %s on %s: %w", ip, mac, n.name, ErrRefused)
	}
	if old, ok := t.byMAC[mac]; ok && old != ip {
		delete(t.leases, old)
	}
	t.leases[ip], t.byMAC[mac] = mac, ip
	delete(t.offers, ip)
	return n.assign(ip), nil
}

func (t *testAddresses) Release(_ context.Context, mac string, ip netip.Addr) error {
	return t.forget("release", mac, ip)
}

func (t *testAddresses) Decline(_ context.Context, mac string, ip netip.Addr) error {
	return t.forget("decline", mac, ip)
}

// forget records a release or decline and ends mac's lease of ip, or
// refuses it if mac does not hold ip; a declined address is given to no
// one after.
func (t *testAddresses) forget(what, mac string, ip netip.Addr) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail != nil {
		return t.fail
	}
	t.calls = append(t.calls, fmt.Sprintf("%s %s %s", what, mac, ip))
	if t.leases[ip] != mac {
		return fmt.Errorf("%s %v by %s: %w", what, ip, mac, ErrRefused)
	}
	delete(t.leases, ip)
	delete(t.byMAC, mac)
	t.declined[ip] = what == "decline"
	return nil
}

func (t *testAddresses) held(mac string) (netip.Addr, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ip, ok := t.byMAC[mac]
	return ip, ok
}

func (t *testAddresses) callLog() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.calls...)
}
