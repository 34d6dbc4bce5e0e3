// Package neigh answers which link-layer address the kernel's neighbour table
// (ARP for IPv4, NDP for IPv6) holds for a requester, so a config server can
// check the MAC a request claims against the machine that actually sent it.
//
// The check rests on one fact: a peer on a directly attached subnet had to be
// resolved by the kernel before the TCP handshake could complete, so a
// legitimate on-link requester always has an entry. Nothing is learned for
// routed peers (the entry would be the gateway's), so those report
// onLink=false and the caller must decide without a MAC check. It is not a
// defence against ARP/NDP spoofing on the same segment.
package neigh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ErrNoEntry means the address is on a directly attached subnet but the
// neighbour table holds no usable entry for it (none, INCOMPLETE or FAILED).
var ErrNoEntry = errors.New("no usable neighbour entry for on-link address")

// errConflict: the same link-local address resolves to different MACs on
// different interfaces and the request did not say which one it came on.
// Failing is safer than guessing.
var errConflict = errors.New("neighbour entries on several interfaces disagree")

// refreshEvery bounds how stale the interface/address view may be. Lookup runs
// once per HTTP request and dumping every link and address each time would
// cost far more than the neighbour query itself; addresses change rarely, and
// a stale view only misjudges a subnet added or removed in the last 2 s.
const refreshEvery = 2 * time.Second

// nudValid is the kernel's NUD_VALID: states in which the entry's link-layer
// address is known (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP).
// NONE, INCOMPLETE and FAILED carry no trustworthy address.
const nudValid = netlink.NUD_PERMANENT | netlink.NUD_NOARP | netlink.NUD_REACHABLE |
	netlink.NUD_PROBE | netlink.NUD_STALE | netlink.NUD_DELAY

// Table looks up neighbour entries in the network namespace of the calling
// thread. It is safe for concurrent use; the zero value is ready to use.
//
// Each kernel query opens and closes its own netlink socket (done by the
// netlink package). That costs a few syscalls but needs no Close method, can
// leak nothing, and never makes concurrent requests queue behind one socket.
type Table struct {
	snap atomic.Pointer[snapshot]
	mu   sync.Mutex // serialises refreshes so a burst of requests dumps once

	// noGet is set once the kernel rejects single-entry RTM_GETNEIGH
	// (before Linux 4.20); from then on the one interface is dumped instead.
	noGet atomic.Bool
}

// New returns an empty Table; interfaces are read on first use.
func New() *Table { return &Table{} }

// link is what Lookup needs to know about one interface.
type link struct {
	index int
	name  string
	// l2 reports whether the kernel resolves neighbours on this link to
	// hardware addresses. Loopback, NOARP links and links without a hardware
	// address (tun, wireguard, ppp, ip tunnels) never hold such entries, so
	// their subnets cannot be checked.
	l2 bool
}

// ifAddr is one address assigned to this host, with its prefix length.
type ifAddr struct {
	index  int
	prefix netip.Prefix // unmasked: Addr() is the host's own address
}

type snapshot struct {
	at    time.Time
	links []link
	addrs []ifAddr
}

// Lookup reports whether ip is on a subnet directly attached to one of this
// host's non-loopback interfaces, and if so the MAC (canonical lower-case
// aa:bb:cc:dd:ee:ff) the neighbour table holds for it. onLink=false (and no
// error) for routed addresses, loopback, and this host's own addresses:
// nothing can be checked for them. On-link with no usable entry (none, or
// INCOMPLETE/FAILED) gives an error wrapping ErrNoEntry. onLink means
// something only when err is nil: a failed lookup must not skip a check.
//
// IPv4-mapped IPv6 addresses are unmapped first. A link-local IPv6 address
// is looked up on the interface named by its zone, or on every interface
// when it has none.
func (t *Table) Lookup(ip netip.Addr) (mac string, onLink bool, err error) {
	if !ip.IsValid() {
		// Fail rather than report "not on-link": a caller that lost the
		// peer address must not skip the check.
		return "", false, fmt.Errorf("neighbour lookup %s: invalid address", ip)
	}
	orig := ip
	ip = ip.Unmap()
	zone := ip.Zone()
	ip = ip.WithZone("")
	if !unicast(ip) {
		// Answered without touching the kernel.
		return "", false, nil
	}
	s, err := t.snapshot()
	if err != nil {
		return "", false, fmt.Errorf("neighbour lookup %s: %w", orig, err)
	}
	idxs := onLinkIndexes(s, ip, zone)
	if len(idxs) == 0 {
		return "", false, nil
	}

	var found net.HardwareAddr
	for _, idx := range idxs {
		hw, err := t.query(idx, ip)
		if errors.Is(err, ErrNoEntry) {
			continue
		}
		if err != nil {
			return "", true, fmt.Errorf("neighbour lookup %s: ifindex %d: %w", orig, idx, err)
		}
		if found != nil && !bytes.Equal(found, hw) {
			return "", true, fmt.Errorf("neighbour lookup %s: %w (%s, %s)", orig, errConflict, found, hw)
		}
		found = hw
	}
	if found == nil {
		return "", true, fmt.Errorf("neighbour lookup %s: %w", orig, ErrNoEntry)
	}
	// net.HardwareAddr.String is lower-case and colon-separated.
	return found.String(), true, nil
}

// Local reports whether ip is this host itself: a loopback address or one
// assigned to one of its interfaces. Such a requester is a process on the
// server, not a machine on the network. An unreadable interface list counts
// as local, so that a caller refusing local requesters fails closed.
func (t *Table) Local(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	s, err := t.snapshot()
	if err != nil {
		return true
	}
	for _, a := range s.addrs {
		if a.prefix.Addr() == ip {
			return true
		}
	}
	return false
}

// unicast reports whether ip could be a TCP peer at all; loopback,
// unspecified and multicast never have neighbour entries worth checking.
func unicast(ip netip.Addr) bool {
	return !ip.IsLoopback() && !ip.IsUnspecified() && !ip.IsMulticast()
}

// onLinkIndexes returns the interfaces whose neighbour table must hold ip
// (an unmapped address without zone), or nil when nothing can be checked:
// ip is this host's own, routed, or only on links without neighbour
// resolution. zone is the IPv6 zone the address arrived with, if any.
func onLinkIndexes(s *snapshot, ip netip.Addr, zone string) []int {
	if !unicast(ip) {
		return nil
	}
	for _, a := range s.addrs {
		if a.prefix.Addr() == ip {
			return nil // our own address: talking to ourselves via lo
		}
	}

	if ip.Is6() && ip.IsLinkLocalUnicast() {
		// fe80::/10 is on-link on every interface; only the zone tells
		// which one the peer is on.
		if zone != "" {
			if l, ok := s.linkByZone(zone); ok {
				if !l.l2 {
					return nil
				}
				return []int{l.index}
			}
			// Unknown zone (interface appeared after the last refresh):
			// fall through and try them all.
		}
		var idxs []int
		for _, l := range s.links {
			if l.l2 {
				idxs = append(idxs, l.index)
			}
		}
		return idxs
	}

	var idxs []int
	for _, a := range s.addrs {
		if !a.prefix.Contains(ip) {
			continue
		}
		l, ok := s.linkByIndex(a.index)
		if !ok || !l.l2 {
			continue
		}
		dup := false
		for _, i := range idxs {
			dup = dup || i == a.index
		}
		if !dup {
			idxs = append(idxs, a.index)
		}
	}
	return idxs
}

func (s *snapshot) linkByIndex(idx int) (link, bool) {
	for _, l := range s.links {
		if l.index == idx {
			return l, true
		}
	}
	return link{}, false
}

// linkByZone resolves an IPv6 zone, which Go gives as an interface name or,
// when the name was unknown to it, as a decimal index.
func (s *snapshot) linkByZone(zone string) (link, bool) {
	for _, l := range s.links {
		if l.name == zone {
			return l, true
		}
	}
	if n, err := strconv.Atoi(zone); err == nil {
		return s.linkByIndex(n)
	}
	return link{}, false
}

// snapshot returns the interface view, refreshing it when older than
// refreshEvery.
func (t *Table) snapshot() (*snapshot, error) {
	if s := t.snap.Load(); s != nil && time.Since(s.at) < refreshEvery {
		return s, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.snap.Load(); s != nil && time.Since(s.at) < refreshEvery {
		return s, nil // another caller refreshed while we waited
	}
	s, err := readInterfaces()
	if err != nil {
		return nil, err
	}
	t.snap.Store(s)
	return s, nil
}

// dumpRetries: a dump interrupted by a concurrent change is inconsistent;
// retrying a few times almost always gets a clean one.
const dumpRetries = 3

func readInterfaces() (*snapshot, error) {
	at := time.Now()
	var links []netlink.Link
	var addrs []netlink.Addr
	var err error
	for range dumpRetries {
		if links, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for range dumpRetries {
		if addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}

	s := &snapshot{at: at}
	for _, l := range links {
		la := l.Attrs()
		s.links = append(s.links, link{
			index: la.Index,
			name:  la.Name,
			l2: la.Flags&net.FlagLoopback == 0 &&
				la.RawFlags&unix.IFF_NOARP == 0 &&
				len(la.HardwareAddr) > 0,
		})
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		s.addrs = append(s.addrs, ifAddr{index: a.LinkIndex, prefix: netip.PrefixFrom(ip.Unmap(), ones)})
	}
	return s, nil
}

// query asks the kernel for the one neighbour entry of ip on interface idx.
func (t *Table) query(idx int, ip netip.Addr) (net.HardwareAddr, error) {
	if !t.noGet.Load() {
		hw, err := getNeigh(idx, ip)
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return hw, err
		}
		t.noGet.Store(true)
	}
	return dumpNeigh(idx, ip)
}

func family(ip netip.Addr) uint8 {
	if ip.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// getNeigh is `ip neigh get ADDR dev IFINDEX`: a single-entry RTM_GETNEIGH
// (Linux >= 4.20). The netlink package has no wrapper for it, so the request
// is built from its nl primitives.
func getNeigh(idx int, ip netip.Addr) (net.HardwareAddr, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, 0)
	req.AddData(&netlink.Ndmsg{Family: family(ip), Index: uint32(idx)})
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, ip.AsSlice()))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		// ENODEV: the interface went away, so the peer cannot be on it.
		return nil, ErrNoEntry
	}
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if hw, ok := usable(m, idx, ip); ok {
			return hw, nil
		}
	}
	return nil, ErrNoEntry
}

// dumpNeigh is the fallback for kernels without single-entry get: dump the
// neighbours of just interface idx (NDA_IFINDEX makes the kernel filter) in
// ip's family and pick ip out.
func dumpNeigh(idx int, ip netip.Addr) (net.HardwareAddr, error) {
	var hw net.HardwareAddr
	var err error
	for range dumpRetries {
		hw = nil
		req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
		req.AddData(&netlink.Ndmsg{Family: family(ip)})
		req.AddData(nl.NewRtAttr(netlink.NDA_IFINDEX, nl.Uint32Attr(uint32(idx))))
		err = req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH, func(m []byte) bool {
			if h, ok := usable(m, idx, ip); ok {
				hw = h
				return false // stop; the package drains the rest
			}
			return true
		})
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if errors.Is(err, unix.ENODEV) {
		return nil, ErrNoEntry
	}
	if err != nil && (hw == nil || !errors.Is(err, netlink.ErrDumpInterrupted)) {
		return nil, err
	}
	if hw == nil {
		return nil, ErrNoEntry
	}
	return hw, nil
}

// usable decodes one RTM_NEWNEIGH message and returns its hardware address
// if it is the entry for ip on idx and in a state where the address is known.
func usable(m []byte, idx int, ip netip.Addr) (net.HardwareAddr, bool) {
	if len(m) < unix.SizeofNdMsg { // NeighDeserialize would panic
		return nil, false
	}
	n, err := netlink.NeighDeserialize(m)
	if err != nil || n.LinkIndex != idx || n.Flags&netlink.NTF_PROXY != 0 {
		return nil, false
	}
	got, ok := netip.AddrFromSlice(n.IP)
	if !ok || got.Unmap() != ip {
		return nil, false
	}
	if !stateUsable(n.State) || len(n.HardwareAddr) == 0 {
		return nil, false
	}
	return n.HardwareAddr, true
}

func stateUsable(state int) bool { return state&nudValid != 0 }
