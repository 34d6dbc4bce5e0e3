package dhcp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// capturingConn is a PacketConn that only records what is written to it, and where.
type capturingConn struct {
	net.PacketConn // nil: any other method would panic, and none is called
	sent           [][]byte
	dsts           []net.Addr
}

func (c *capturingConn) WriteTo(b []byte, dst net.Addr) (int, error) {
	c.sent = append(c.sent, append([]byte(nil), b...))
	c.dsts = append(c.dsts, dst)
	return len(b), nil
}

// FuzzHandle feeds arbitrary datagrams through the whole per-packet path (parse,
// learn the binding, classify or read the lease request, port rules, Booter,
// Addresses, reply, marshal) on both ports, of a proxy and of an authoritative
// server. It must never panic, and whatever it sends must be a parseable reply:
// from the proxy one that hands out no address, from the authoritative server
// an address only in an OFFER or an ACK, and in an ACK only one the client now
// holds.
func FuzzHandle(f *testing.F) {
	seeds := []func(testing.TB) *dhcpv4.DHCPv4{
		func(t testing.TB) *dhcpv4.DHCPv4 { return biosDiscover(t) },
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return packet(t, vendor(vcEDK2ARM), arch(iana.EFI_ARM64), guid(), msgType(dhcpv4.MessageTypeRequest))
		},
		func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, vendor(vcHTTPBoot), arch(iana.EFI_X86_64_HTTP)) },
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return packet(t, vendor("PXEClient"), arch(iana.EFI_X86_64), rawUserClass("Tinkerbell"), ipxeOptions())
		},
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return packet(t, vendor(vcEDK2x64), dhcpv4.WithRelay(net.IPv4(10, 0, 0, 1)))
		},
		// What authoritative mode reads: every message type, relayed or not.
		func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, vendor("udhcp 1.36.1")) },
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return biosDiscover(t, requestMsg, ours, wants(net.IPv4(10, 99, 0, 120)))
		},
		func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, requestMsg, wants(net.IPv4(10, 98, 0, 120))) },
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return packet(t, requestMsg, dhcpv4.WithClientIP(net.IPv4(10, 98, 0, 120)), dhcpv4.WithRelay(relayIP))
		},
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return packet(t, msgType(dhcpv4.MessageTypeRelease), ours, dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 120)))
		},
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return packet(t, msgType(dhcpv4.MessageTypeDecline), ours, wants(net.IPv4(10, 99, 0, 120)))
		},
		func(t testing.TB) *dhcpv4.DHCPv4 {
			return packet(t, msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 7)))
		},
	}
	for _, seed := range seeds {
		for _, mode := range []uint8{0, 1, 2, 3} {
			f.Add(seed(f).ToBytes(), mode)
		}
	}
	f.Add([]byte{}, uint8(0))

	cfg := testConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Booter = booterFunc(func(context.Context, Client) (Verdict, error) { return Verdict{Boot: true}, nil })
	// Every binding learned must be one the boot core can use: a MAC, and a
	// UUID or a client's own unicast address.
	cfg.Binder = binderFunc(func(b Binding) {
		if len(b.MAC) != 6 || (b.UUID == "" && !b.IP.IsValid()) || (b.IP.IsValid() && !usable(b.IP)) {
			panic(fmt.Sprintf("bound %+v", b))
		}
	})
	proxy, err := New(cfg)
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	addrs := newTestAddresses(provNetwork(), rackNetwork())
	cfg.Mode, cfg.Addresses = ModeAuthoritative, addrs
	authoritative, err := New(cfg)
	if err != nil {
		f.Fatalf("New authoritative: %v", err)
	}
	// mode: bit 0 the boot-server port, bit 1 the authoritative server.
	f.Fuzz(func(t *testing.T, b []byte, mode uint8) {
		svc, s := serviceDHCP, proxy
		if mode&1 != 0 {
			svc = serviceBootServer
		}
		if mode&2 != 0 {
			s = authoritative
		}
		conn := &capturingConn{}
		s.handle(t.Context(), conn, svc, b, &net.UDPAddr{IP: net.IPv4(10, 99, 0, 50), Port: 68})
		for _, out := range conn.sent {
			reply, err := dhcpv4.FromBytes(out)
			if err != nil {
				t.Fatalf("sent an unparseable reply: %v", err)
			}
			if reply.YourIPAddr.IsUnspecified() {
				continue
			}
			if s == proxy || svc == serviceBootServer {
				t.Fatalf("sent yiaddr %s", reply.YourIPAddr)
			}
			switch reply.MessageType() {
			case dhcpv4.MessageTypeOffer:
			case dhcpv4.MessageTypeAck:
				if ip, ok := addrs.held(reply.ClientHWAddr.String()); !ok || ip != addr(reply.YourIPAddr) {
					t.Fatalf("ACKed %s to %s, which holds %v", reply.YourIPAddr, reply.ClientHWAddr, ip)
				}
			default:
				t.Fatalf("sent yiaddr %s in a %s", reply.YourIPAddr, reply.MessageType())
			}
		}
	})
}
