package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// The authoritative server's pure half: what a packet on port 67 asks
// (readLease), and the replies to it (leaseReply, nakReply, leaseReplyAddr).
// Server.answerLease only asks Addresses and the Booter in between.

// leaseAsk is what a client asks of an authoritative server.
type leaseAsk int

const (
	askOffer   leaseAsk = iota // DISCOVER: Addresses.Offer
	askAck                     // REQUEST: Addresses.Ack, ACK or NAK
	askRelease                 // RELEASE: Addresses.Release, no answer
	askDecline                 // DECLINE: Addresses.Decline, no answer
	askInform                  // INFORM: the network's options, no address
)

// leaseRequest is one client packet as an authoritative server reads it.
type leaseRequest struct {
	ask leaseAsk
	// state is the RFC 2131 4.3.2 client state of a REQUEST, for logs:
	// "selecting", "init-reboot" or "renewing" (which covers rebinding).
	state string
	// link names the client's network for Addresses: the relay's giaddr,
	// else the address a renewing (or informing) client holds, else the
	// server's own address on the interface.
	link netip.Addr
	// ip is the address the packet is about: a DISCOVER's wish (option 50;
	// invalid when none), the address to ACK, release or decline, or an
	// INFORM's ciaddr.
	ip netip.Addr
}

// readLease reads what req asks of an authoritative server whose address is
// serverIP, or says why the packet is not for it. It is pure.
func readLease(req *dhcpv4.DHCPv4, serverIP net.IP) (leaseRequest, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return leaseRequest{}, fmt.Errorf("opcode %s is not a request", req.OpCode)
	}
	// Leases are keyed by MAC: a client without an Ethernet address has none.
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return leaseRequest{}, fmt.Errorf("hardware type %s with %d-byte address is not Ethernet", req.HWType, len(req.ClientHWAddr))
	}
	ciaddr, requested := addr(req.ClientIPAddr), addr(req.RequestedIPAddress())
	r := leaseRequest{link: addr(serverIP)}
	switch {
	case isSet(req.GatewayIPAddr):
		r.link = addr(req.GatewayIPAddr)
	case usable(ciaddr):
		r.link = ciaddr
	}
	sid := req.ServerIdentifier()
	ours := sid == nil || sid.Equal(serverIP)
	mt := req.MessageType()
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		r.ask = askOffer
		if usable(requested) {
			r.ip = requested
		}
		return r, nil
	case dhcpv4.MessageTypeRequest:
		r.ask = askAck
		switch {
		case !ours:
			// Another server's OFFER won: the client is not ours, and
			// nothing of what we offered was ever written down.
			return leaseRequest{}, fmt.Errorf("REQUEST selects server %v, not us", sid)
		case sid != nil:
			// SELECTING names the offered address in option 50; a client
			// that puts it in ciaddr instead is taken at its word too.
			r.state, r.ip = "selecting", requested
			if !r.ip.IsValid() {
				r.ip = ciaddr
			}
		case isSet(req.ClientIPAddr):
			// RENEWING (unicast) and REBINDING (broadcast) look the same:
			// ciaddr is the lease to extend.
			r.state, r.ip = "renewing", ciaddr
		default:
			r.state, r.ip = "init-reboot", requested
		}
	case dhcpv4.MessageTypeDecline:
		r.ask, r.ip = askDecline, requested
	case dhcpv4.MessageTypeRelease:
		r.ask, r.ip = askRelease, ciaddr
	case dhcpv4.MessageTypeInform:
		r.ask, r.ip = askInform, ciaddr
	default:
		return leaseRequest{}, fmt.Errorf("message type %s is not for a server", mt)
	}
	if !ours {
		return leaseRequest{}, fmt.Errorf("%s is for server %v, not us", mt, sid)
	}
	if !usable(r.ip) {
		return leaseRequest{}, fmt.Errorf("%s names no usable client address", mt)
	}
	return r, nil
}

// leaseReply builds the authoritative answer to req that hands out a: an
// OFFER to a DISCOVER, an ACK to a REQUEST, both with yiaddr, the network's
// options and the lease times; an ACK without address or lease times to an
// INFORM (RFC 2131 3.4). boot, from bootOptions, adds what a network boot
// client boots. Every option is always included: the parameter request list
// only ever asks for a subset of these few.
func leaseReply(req *dhcpv4.DHCPv4, a Assignment, boot []dhcpv4.Modifier, serverIP net.IP) (*dhcpv4.DHCPv4, error) {
	serverIP = serverIP.To4()
	if serverIP == nil {
		return nil, errors.New("lease reply: server IP is not an IPv4 address")
	}
	if !a.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("lease reply: subnet %v is not IPv4", a.Subnet)
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
		dhcpv4.WithNetmask(net.CIDRMask(a.Subnet.Bits(), 32)),
	}
	if a.Router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(a.Router.AsSlice())))
	}
	if len(a.DNS) > 0 {
		dns := make([]net.IP, len(a.DNS))
		for i, d := range a.DNS {
			dns[i] = d.AsSlice()
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(dns...)))
	}
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeInform:
		// RFC 2131 3.4: no yiaddr and no lease times; ciaddr is echoed.
		mods = append(mods, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithClientIP(req.ClientIPAddr))
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest:
		if !a.IP.Is4() || !a.Subnet.Contains(a.IP) {
			return nil, fmt.Errorf("lease reply: address %v is not an IPv4 address in subnet %v", a.IP, a.Subnet)
		}
		// DHCP carries whole seconds; a lease under one would read as "no lease".
		secs := a.LeaseTime / time.Second
		if secs < 1 || secs > 0xffffffff {
			return nil, fmt.Errorf("lease reply: lease time %v is not 1 s to 2^32-1 s", a.LeaseTime)
		}
		lease := secs * time.Second
		reply, ciaddr := dhcpv4.MessageTypeOffer, net.IPv4zero
		if mt == dhcpv4.MessageTypeRequest {
			// RFC 2131 table 3: an ACK echoes ciaddr (a renewal's), an OFFER has none.
			reply, ciaddr = dhcpv4.MessageTypeAck, req.ClientIPAddr
		}
		mods = append(mods,
			dhcpv4.WithMessageType(reply),
			dhcpv4.WithClientIP(ciaddr),
			dhcpv4.WithYourIP(a.IP.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lease)),
			// RFC 2131 4.4.5 defaults: T1 at half the lease, T2 at 7/8.
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(lease/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(lease/8*7)),
		)
	default:
		return nil, fmt.Errorf("lease reply: %s gets no lease reply", mt)
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, append(mods, boot...)...)
	if err != nil {
		return nil, fmt.Errorf("lease reply: %w", err)
	}
	return reply, nil
}

// nakReply is the NAK to a REQUEST for an address that is not the client's
// (RFC 2131 4.3.2): no address, no options but the server identifier and a
// message (option 56) saying why.
func nakReply(req *dhcpv4.DHCPv4, serverIP net.IP, why string) (*dhcpv4.DHCPv4, error) {
	serverIP = serverIP.To4()
	if serverIP == nil {
		return nil, errors.New("nak: server IP is not an IPv4 address")
	}
	reply, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	if err != nil {
		return nil, fmt.Errorf("nak: %w", err)
	}
	if isSet(req.GatewayIPAddr) {
		// RFC 2131 4.3.2: the relay is to broadcast a NAK, since the
		// client may hold an address on another network.
		reply.SetBroadcast()
	}
	return reply, nil
}

// leaseReplyAddr is where the authoritative reply to req goes (RFC 2131 4.1):
// a relayed request's to the relay; a NAK broadcast; a client that holds an
// address (renewing, INFORM) unicast at it; every other broadcast. RFC 2131
// would unicast an OFFER or ACK without the broadcast flag to yiaddr and
// chaddr, but that needs the address written into the ARP cache first (or a
// raw socket), as a client that has not configured it answers no ARP request:
// like most servers without raw sockets, this one broadcasts, which every
// client accepts.
func leaseReplyAddr(req, reply *dhcpv4.DHCPv4, peer net.Addr, p ports) (*net.UDPAddr, error) {
	if reply.MessageType() == dhcpv4.MessageTypeNak && !isSet(req.GatewayIPAddr) {
		return &net.UDPAddr{IP: net.IPv4bcast, Port: p.client}, nil
	}
	return replyAddr(serviceDHCP, req, peer, p)
}
