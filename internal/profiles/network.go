package profiles

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Bounds of a Network.
const (
	// minPrefixBits: a subnet wider than a /8 is a typo, not one
	// provisioning network.
	minPrefixBits = 8
	// maxPrefixBits: a /31 or /32 has no address besides its network and
	// broadcast addresses to hand out.
	maxPrefixBits = 30
	defaultLease  = time.Hour
	// minLease: shorter leases have clients renew every few seconds.
	minLease = time.Minute
	// maxLease: the address of a machine that left stays taken this long.
	maxLease = 30 * 24 * time.Hour
)

// The DHCP modes of serve --dhcp-mode, for CheckDHCP.
const (
	// DHCPProxy answers PXE clients next to the site's DHCP server, which
	// hands out the addresses.
	DHCPProxy = "proxy"
	// DHCPAuthoritative hands out addresses from the Networks itself.
	DHCPAuthoritative = "authoritative"
)

// Broadcast is the last address of the Network's subnet.
func (nw *Network) Broadcast() netip.Addr {
	a := nw.Prefix.Addr().As4()
	u := binary.BigEndian.Uint32(a[:]) | (1<<(32-nw.Prefix.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], u)
	return netip.AddrFrom4(a)
}

// InRange reports whether a lies in the Network's dynamic range.
func (nw *Network) InRange(a netip.Addr) bool {
	a = a.Unmap()
	return nw.First.IsValid() && nw.First.Compare(a) <= 0 && a.Compare(nw.Last) <= 0
}

// Networks returns the Networks, sorted by name. The slice is the Set's own:
// callers must not modify it.
func (s *Set) Networks() []*Network { return s.networks }

// Reservations maps the canonical MAC of every Machine with an ip to that
// address. The map is the Set's own, built at load so a DHCP request costs
// a lookup: callers must not modify it.
func (s *Set) Reservations() map[string]netip.Addr { return s.reservations }

// NetworkFor returns the Network whose subnet holds addr (a relay's giaddr,
// or the address of the interface a request came in on), or nil. Subnets
// never overlap, so there is at most one.
func (s *Set) NetworkFor(addr netip.Addr) *Network {
	addr = addr.Unmap()
	for _, nw := range s.networks {
		if nw.Prefix.IsValid() && nw.Prefix.Contains(addr) {
			return nw
		}
	}
	return nil
}

// CheckDHCP reports what the set cannot do when serve runs DHCP in mode
// (DHCPProxy or DHCPAuthoritative); serving says whether serve runs a DHCP
// server at all (it has a --dhcp-interface). problems must stop serve and
// fail validate; warnings, like Set.Warnings, are findings to show that stop
// nothing.
func (s *Set) CheckDHCP(mode string, serving bool) (problems, warnings Problems) {
	switch mode {
	case DHCPProxy:
		if serving {
			for _, name := range slices.Sorted(maps.Keys(s.Profiles)) {
				p := s.Profiles[name]
				if p.Boot.Loader != LoaderShim {
					continue
				}
				problems = append(problems, Problem{File: p.Pos.File, Line: p.loaderLine, Msg: fmt.Sprintf(
					"profile %q boots loader shim, but signed GRUB does not take the server from a proxy offer: run --dhcp-mode authoritative, "+
						"or have the site DHCP name provisiond (next-server/option 66 = this host, filename/option 67 = shimx64.efi) "+
						"and serve without the proxy (no --dhcp-interface)", p.Name)})
			}
		}
		for _, m := range s.Machines {
			if m.IPAddr.IsValid() {
				warnings = append(warnings, Problem{File: m.Pos.File, Line: m.ipLine, Msg: fmt.Sprintf(
					"machine %q reserves %s, which only --dhcp-mode authoritative hands out: in proxy mode the site's DHCP server chooses its address",
					m.Name, m.IPAddr)})
			}
		}
	case DHCPAuthoritative:
		if len(s.networks) == 0 {
			problems = append(problems, Problem{Msg: "authoritative DHCP needs at least one kind: Network, the address plan to hand out addresses from"})
		}
	default:
		problems = append(problems, Problem{Msg: fmt.Sprintf("unknown DHCP mode %q (want %s or %s)", mode, DHCPProxy, DHCPAuthoritative)})
	}
	return problems.sorted(), warnings.sorted()
}

// checkNetwork checks one Network document, n, and fills its parsed fields.
func (l *loader) checkNetwork(set *Set, nw *Network, n *yaml.Node) {
	file := nw.Pos.File
	if !validName(nw.Name) {
		l.probs.add(file, keyLine(n, "name"), "network needs a name of letters, digits, '.', '_' or '-' (got %q)", nw.Name)
	} else if prev, dup := l.networks[nw.Name]; dup {
		l.probs.add(file, keyLine(n, "name"), "network %q is also defined at %s", nw.Name, prev.Pos)
	} else {
		if l.networks == nil {
			l.networks = map[string]*Network{}
		}
		l.networks[nw.Name] = nw
	}
	nw.subnetLine, nw.rangeLine = keyLine(n, "subnet"), keyLine(n, "range")

	switch p, err := netip.ParsePrefix(nw.Subnet); {
	case nw.Subnet == "":
		l.probs.add(file, nw.subnetLine, "network %q needs a subnet, e.g. subnet: 10.99.0.0/24", nw.Name)
	case err != nil:
		l.probs.add(file, nw.subnetLine, "subnet: %q is not a subnet; write address/length, e.g. 10.99.0.0/24", nw.Subnet)
	case !p.Addr().Is4():
		l.probs.add(file, nw.subnetLine, "subnet: %s is not IPv4; Networks are for DHCPv4 only", nw.Subnet)
	case p.Masked() != p:
		l.probs.add(file, nw.subnetLine, "subnet: %s has host bits set (the address of a subnet is its first); write %s", nw.Subnet, p.Masked())
	case p.Bits() < minPrefixBits || p.Bits() > maxPrefixBits:
		l.probs.add(file, nw.subnetLine, "subnet: %s must be /%d to /%d: a /31 or /32 has no address to hand out, and a subnet wider than /%d is no one network", nw.Subnet, minPrefixBits, maxPrefixBits, minPrefixBits)
	default:
		nw.Prefix = p
	}

	l.checkRange(nw, mappingValue(n, "range"))

	if nw.Router != "" {
		line := keyLine(n, "router")
		if a, msg := parseIPv4(nw.Router); msg != "" {
			l.probs.add(file, line, "router: %s", msg)
		} else if msg := nw.hostProblem(a); msg != "" {
			l.probs.add(file, line, "router: %s %s", a, msg)
		} else if nw.InRange(a) {
			l.probs.add(file, line, "router: %s is inside range %s-%s, which would hand the router's address to a machine; move the range or the router", a, nw.First, nw.Last)
		} else {
			nw.RouterAddr = a
		}
	}

	dns := mappingValue(n, "dns")
	for i, s := range nw.DNS {
		if a, msg := parseIPv4(s); msg != "" {
			l.probs.add(file, itemLine(dns, i), "dns[%d]: %s", i, msg)
		} else {
			nw.DNSAddrs = append(nw.DNSAddrs, a)
		}
	}

	nw.Lease = defaultLease
	if nw.LeaseTime != "" {
		line := keyLine(n, "leaseTime")
		switch d, err := time.ParseDuration(nw.LeaseTime); {
		case err != nil:
			l.probs.add(file, line, "leaseTime: %q is not a duration; write e.g. 30m, 1h or 168h (Go durations have no days)", nw.LeaseTime)
		case d < minLease:
			l.probs.add(file, line, "leaseTime: %s is shorter than %v: clients would renew every few seconds", nw.LeaseTime, minLease)
		case d > maxLease:
			l.probs.add(file, line, "leaseTime: %s is longer than %v (30 days): the address of a machine that left would stay taken that long", nw.LeaseTime, maxLease)
		default:
			nw.Lease = d
		}
	}
	set.networks = append(set.networks, nw)
}

// checkRange checks range, rn, against the subnet and sets First and Last
// when it is usable.
func (l *loader) checkRange(nw *Network, rn *yaml.Node) {
	file := nw.Pos.File
	if len(nw.Range) == 0 {
		l.probs.add(file, nw.rangeLine, "network %q needs a range: [first, last], the addresses it hands out, e.g. range: [10.99.0.100, 10.99.0.199]", nw.Name)
		return
	}
	if len(nw.Range) != 2 {
		l.probs.add(file, nw.rangeLine, "range must be two addresses, [first, last]; got %d", len(nw.Range))
		return
	}
	var ends [2]netip.Addr
	ok := true
	for i, s := range nw.Range {
		a, msg := parseIPv4(s)
		if msg == "" && nw.Prefix.IsValid() {
			if msg = nw.hostProblem(a); msg != "" {
				msg = a.String() + " " + msg
			}
		}
		if msg != "" {
			l.probs.add(file, itemLine(rn, i), "range[%d]: %s", i, msg)
			ok = false
		}
		ends[i] = a
	}
	if !ok || !nw.Prefix.IsValid() {
		return
	}
	if ends[0].Compare(ends[1]) > 0 {
		l.probs.add(file, nw.rangeLine, "range: first %s is after last %s", ends[0], ends[1])
		return
	}
	nw.First, nw.Last = ends[0], ends[1]
}

// hostProblem says why a, an IPv4 address, cannot be a host's in the
// Network's subnet, or "". The subnet must be valid.
func (nw *Network) hostProblem(a netip.Addr) string {
	switch {
	case !nw.Prefix.IsValid():
		return ""
	case !nw.Prefix.Contains(a):
		return "is outside subnet " + nw.Prefix.String()
	case a == nw.Prefix.Addr():
		return "is the network address of subnet " + nw.Prefix.String() + ", which no host may have"
	case a == nw.Broadcast():
		return "is the broadcast address of subnet " + nw.Prefix.String() + ", which no host may have"
	}
	return ""
}

// checkReservation parses a Machine's ip. It runs before checkMachine, so it
// sees whether match.mac was written at all.
func (l *loader) checkReservation(m *Machine, n *yaml.Node) {
	if m.IP == "" {
		return
	}
	m.ipLine = keyLine(n, "ip")
	a, msg := parseIPv4(m.IP)
	if msg != "" {
		l.probs.add(m.Pos.File, m.ipLine, "ip: %s", msg)
		return
	}
	m.IPAddr = a
	if m.Match.MAC == "" {
		l.probs.add(m.Pos.File, m.ipLine, "machine %q reserves %s but does not match by mac: a DHCP server knows a client by its MAC "+
			"(labels arrive only after DHCP, and only PXE firmware sends a UUID, not the installed OS renewing its lease); add match.mac", m.Name, a)
	}
}

// indexNetworks sorts the Networks, refuses overlapping subnets and ranges,
// and checks and indexes the reservations. It runs after index, which
// refuses two Machines of one MAC.
func (l *loader) indexNetworks(set *Set) {
	slices.SortFunc(set.networks, func(a, b *Network) int { return strings.Compare(a.Name, b.Name) })
	l.checkOverlaps(set.networks)

	set.reservations = map[string]netip.Addr{}
	byIP := map[netip.Addr]*Machine{}
	for _, m := range set.Machines {
		a := m.IPAddr
		if !a.IsValid() {
			continue
		}
		if prev, dup := byIP[a]; dup {
			l.probs.add(m.Pos.File, m.ipLine, "machine %q reserves %s, already reserved by machine %q at %s", m.Name, a, prev.Name, prev.Pos)
			continue
		}
		byIP[a] = m
		nw := set.NetworkFor(a)
		switch {
		case nw == nil:
			l.probs.add(m.Pos.File, m.ipLine, "reservation %s of machine %s is in no Network's subnet%s", a, m.Name, subnetsHint(set.networks))
			continue
		case nw.hostProblem(a) != "":
			l.probs.add(m.Pos.File, m.ipLine, "reservation %s of machine %s %s (Network %q)", a, m.Name, nw.hostProblem(a), nw.Name)
			continue
		case a == nw.RouterAddr:
			l.probs.add(m.Pos.File, m.ipLine, "reservation %s of machine %s is the router of Network %q", a, m.Name, nw.Name)
			continue
		}
		if m.Match.MAC != "" {
			set.reservations[m.Match.MAC] = a
		}
	}
}

// subnetsHint lists the subnets of networks for a reservation in none.
func subnetsHint(networks []*Network) string {
	var subnets []string
	for _, nw := range networks {
		if nw.Prefix.IsValid() {
			subnets = append(subnets, fmt.Sprintf("%s %s", nw.Name, nw.Prefix))
		}
	}
	if len(subnets) == 0 {
		return "; declare the kind: Network whose subnet holds it"
	}
	return " (" + strings.Join(subnets, ", ") + ")"
}

// checkOverlaps refuses Networks whose subnets overlap: a request's Network
// is the one whose subnet holds its relay's giaddr or the address of the
// interface it came in on, and two would make that a coin toss. When their
// ranges overlap too, that is what is reported: both would hand out the
// same addresses. Subnets nest or are disjoint, so a sweep in address order
// against the widest subnet seen finds every Network inside another.
func (l *loader) checkOverlaps(networks []*Network) {
	var valid []*Network
	for _, nw := range networks {
		if nw.Prefix.IsValid() {
			valid = append(valid, nw)
		}
	}
	slices.SortStableFunc(valid, func(a, b *Network) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits() // the wider first
	})
	var widest *Network
	for _, nw := range valid {
		if widest != nil && widest.Prefix.Overlaps(nw.Prefix) {
			if widest.First.IsValid() && nw.First.IsValid() && widest.First.Compare(nw.Last) <= 0 && nw.First.Compare(widest.Last) <= 0 {
				lo, hi := maxAddr(widest.First, nw.First), minAddr(widest.Last, nw.Last)
				l.probs.add(nw.Pos.File, nw.rangeLine, "network %q range %s-%s overlaps network %q's range %s-%s at %s: both would hand out %s-%s",
					nw.Name, nw.First, nw.Last, widest.Name, widest.First, widest.Last, widest.Pos, lo, hi)
			} else {
				l.probs.add(nw.Pos.File, nw.subnetLine, "network %q subnet %s overlaps network %q's subnet %s at %s: a request's Network is the one whose subnet "+
					"holds its relay's giaddr or the serving interface's address, which would be ambiguous; make the subnets disjoint",
					nw.Name, nw.Prefix, widest.Name, widest.Prefix, widest.Pos)
			}
			continue // nested in widest, so no wider than it
		}
		widest = nw
	}
}

// parseIPv4 parses an IPv4 address, or says why s is not one.
func parseIPv4(s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Sprintf("%q is not an IPv4 address", s)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Sprintf("%s is not IPv4; Networks are for DHCPv4 only", s)
	}
	return a, ""
}

// itemLine is the line of item i of list n, or n's own line.
func itemLine(n *yaml.Node, i int) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if i < len(n.Content) {
		return n.Content[i].Line
	}
	return n.Line
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Compare(b) > 0 {
		return a
	}
	return b
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Compare(b) < 0 {
		return a
	}
	return b
}
