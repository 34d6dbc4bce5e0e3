package dhcp

import (
	"context"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Binding is what one DHCP packet shows about its sender, PXE client or
// not: the boot core uses it to tell which machine an HTTP requester is,
// since a request cannot be trusted to say so itself.
type Binding struct {
	MAC  net.HardwareAddr
	UUID string // option 97, canonical; "" when absent
	// IP is the address the client uses, or is committing to; invalid when
	// the packet shows none.
	IP netip.Addr
}

// Binder learns bindings. It is called for every DISCOVER and REQUEST read
// on either port, before anything decides whether to answer, and must not
// block: a flood of made-up packets must not slow the replies.
type Binder interface {
	Bind(ctx context.Context, b Binding)
}

// observe reads the binding a request shows, if any; svc and peer are the
// port and source it arrived from. It is pure, so the rules are tested
// without sockets:
//   - ciaddr, when set, is the address the client already holds;
//   - else option 50 of a REQUEST, the address it commits to (a DISCOVER's
//     option 50 is only a wish, possibly a stale lease another machine has
//     by now);
//   - else the source of a boot-server (4011) request, which EDK2 and iPXE
//     send from their leased address; on 67 the source is a relay or
//     0.0.0.0 and says nothing about the client.
func observe(req *dhcpv4.DHCPv4, svc service, peer net.Addr) (Binding, bool) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return Binding{}, false
	}
	mt := req.MessageType()
	if mt != dhcpv4.MessageTypeDiscover && mt != dhcpv4.MessageTypeRequest {
		return Binding{}, false
	}
	b := Binding{MAC: req.ClientHWAddr, UUID: clientUUID(req.GetOneOption(dhcpv4.OptionClientMachineIdentifier))}
	switch {
	case isSet(req.ClientIPAddr):
		b.IP = addr(req.ClientIPAddr)
	case mt == dhcpv4.MessageTypeRequest && isSet(req.RequestedIPAddress()):
		b.IP = addr(req.RequestedIPAddress())
	case svc == serviceBootServer:
		if u, ok := peer.(*net.UDPAddr); ok && isSet(u.IP) {
			b.IP = addr(u.IP)
		}
	}
	if b.IP.IsValid() && !usable(b.IP) {
		b.IP = netip.Addr{}
	}
	if b.UUID == "" && !b.IP.IsValid() {
		return Binding{}, false
	}
	return b, true
}

func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// usable reports whether a could be a client's own unicast address.
func usable(a netip.Addr) bool {
	return a.Is4() && !a.IsLoopback() && !a.IsMulticast() && !a.IsUnspecified() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
