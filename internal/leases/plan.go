package leases

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// DefaultLeaseTime is the lease time of a Network that sets none.
const DefaultLeaseTime = time.Hour

// Network is an address plan: the range an authoritative server hands out
// on one subnet, and what it tells the clients there.
type Network struct {
	Name      string
	Subnet    netip.Prefix
	First     netip.Addr // the range, both ends included
	Last      netip.Addr
	Router    netip.Addr // invalid: none
	DNS       []netip.Addr
	LeaseTime time.Duration // 0: DefaultLeaseTime
}

// network is a Network with its range as numbers, so a pick walks it by
// offset.
type network struct {
	Network
	first uint32
	size  uint32 // addresses in the range
}

func (n *network) inRange(ip netip.Addr) bool {
	return ip.Is4() && u32(ip)-n.first < n.size
}

func (n *network) addr(offset uint32) netip.Addr { return addr4(n.first + offset) }

// Plan is the read-only index of the Networks and reservations of one
// profiles load. The Allocator swaps it whole on every reload.
type Plan struct {
	nets        []*network            // ordered by subnet address; subnets do not overlap
	reservation map[string]netip.Addr // canonical MAC -> its reserved address
	reservedFor map[netip.Addr]string // reserved address -> canonical MAC
}

// NewPlan indexes nets and reserved (MAC, in any spelling, -> address). It
// refuses what would let one address go to two machines or outside its
// network: overlapping subnets, a range outside its subnet or over its
// network or broadcast address, the router inside the range, a reservation
// in no network or shared by two MACs.
func NewPlan(nets []Network, reserved map[string]netip.Addr) (*Plan, error) {
	p := &Plan{
		reservation: make(map[string]netip.Addr, len(reserved)),
		reservedFor: make(map[netip.Addr]string, len(reserved)),
	}
	names := map[string]bool{}
	for _, n := range nets {
		nn, err := checkNetwork(n)
		if err != nil {
			return nil, err
		}
		if names[n.Name] {
			return nil, fmt.Errorf("network %q: defined twice", n.Name)
		}
		names[n.Name] = true
		p.nets = append(p.nets, nn)
	}
	slices.SortFunc(p.nets, func(a, b *network) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
	for i := 1; i < len(p.nets); i++ {
		if prev, n := p.nets[i-1], p.nets[i]; prev.Subnet.Overlaps(n.Subnet) {
			return nil, fmt.Errorf("network %q: subnet %s overlaps %s of network %q", n.Name, n.Subnet, prev.Subnet, prev.Name)
		}
	}
	for mac, ip := range reserved {
		canon, err := store.CanonicalMAC(mac)
		if err != nil {
			return nil, fmt.Errorf("reservation %s: %w", ip, err)
		}
		ip = ip.Unmap()
		n := p.network(ip)
		if n == nil {
			return nil, fmt.Errorf("reservation %s for %s: in no network", ip, canon)
		}
		if ip == n.Subnet.Masked().Addr() || ip == broadcast(n.Subnet) || ip == n.Router {
			return nil, fmt.Errorf("reservation %s for %s: the network, broadcast or router address of network %q", ip, canon, n.Name)
		}
		if other, ok := p.reservedFor[ip]; ok {
			return nil, fmt.Errorf("reservation %s: reserved for both %s and %s", ip, min(other, canon), max(other, canon))
		}
		if _, ok := p.reservation[canon]; ok {
			return nil, fmt.Errorf("reservation %s for %s: the MAC has two reservations", ip, canon)
		}
		p.reservation[canon], p.reservedFor[ip] = ip, canon
	}
	return p, nil
}

// checkNetwork validates n and numbers its range.
func checkNetwork(n Network) (*network, error) {
	if n.Name == "" {
		return nil, errors.New("network with no name")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("network %q: %s", n.Name, fmt.Sprintf(format, args...))
	}
	if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() || n.Subnet.Bits() < 8 || n.Subnet.Bits() > 30 {
		return nil, fail("subnet %s is not an IPv4 prefix from /8 to /30", n.Subnet)
	}
	if n.LeaseTime < 0 {
		return nil, fail("negative lease time %s", n.LeaseTime)
	}
	n.Subnet = n.Subnet.Masked()
	n.First, n.Last, n.Router = n.First.Unmap(), n.Last.Unmap(), n.Router.Unmap()
	n.LeaseTime = cmp.Or(n.LeaseTime, DefaultLeaseTime)
	n.DNS = slices.Clone(n.DNS)
	for _, a := range []netip.Addr{n.First, n.Last} {
		if !n.Subnet.Contains(a) || a == n.Subnet.Addr() || a == broadcast(n.Subnet) {
			return nil, fail("range end %s is not a host address of %s", a, n.Subnet)
		}
	}
	if n.Last.Less(n.First) {
		return nil, fail("range [%s, %s] ends before it starts", n.First, n.Last)
	}
	nn := &network{Network: n, first: u32(n.First), size: u32(n.Last) - u32(n.First) + 1}
	if n.Router.IsValid() {
		if !n.Subnet.Contains(n.Router) {
			return nil, fail("router %s is outside %s", n.Router, n.Subnet)
		}
		if nn.inRange(n.Router) {
			return nil, fail("router %s is inside the range [%s, %s]", n.Router, n.First, n.Last)
		}
	}
	return nn, nil
}

// network returns the Network whose subnet holds ip, nil if none (or p is
// nil: no plan loaded).
func (p *Plan) network(ip netip.Addr) *network {
	if p == nil || !ip.Is4() {
		return nil
	}
	i, found := slices.BinarySearchFunc(p.nets, ip, func(n *network, ip netip.Addr) int {
		return n.Subnet.Addr().Compare(ip)
	})
	if !found {
		i-- // the last subnet starting before ip
	}
	if i < 0 || !p.nets[i].Subnet.Contains(ip) {
		return nil
	}
	return p.nets[i]
}

// reservedForOther reports whether ip is reserved for a MAC other than mac.
func (p *Plan) reservedForOther(ip netip.Addr, mac string) bool {
	owner, ok := p.reservedFor[ip]
	return ok && owner != mac
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func broadcast(p netip.Prefix) netip.Addr {
	return addr4(u32(p.Addr()) | (1<<(32-p.Bits()) - 1))
}
