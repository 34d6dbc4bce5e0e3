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

// capturingConn is a PacketConn that only records what is written to it.
type capturingConn struct {
	net.PacketConn // nil: any other method would panic, and none is called
	sent           [][]byte
}

func (c *capturingConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.sent = append(c.sent, append([]byte(nil), b...))
	return len(b), nil
}

// FuzzHandle feeds arbitrary datagrams through the whole per-packet path (parse,
// learn the binding, classify, port rules, Booter, decide, marshal) on both
// ports. It must never panic, and whatever it sends must be a parseable reply
// that hands out no address.
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
	}
	for _, seed := range seeds {
		f.Add(seed(f).ToBytes(), false)
		f.Add(seed(f).ToBytes(), true)
	}
	f.Add([]byte{}, false)

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
	s, err := New(cfg)
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	f.Fuzz(func(t *testing.T, b []byte, bootServer bool) {
		svc := serviceDHCP
		if bootServer {
			svc = serviceBootServer
		}
		conn := &capturingConn{}
		s.handle(t.Context(), conn, svc, b, &net.UDPAddr{IP: net.IPv4(10, 99, 0, 50), Port: 68})
		for _, out := range conn.sent {
			reply, err := dhcpv4.FromBytes(out)
			if err != nil {
				t.Fatalf("sent an unparseable reply: %v", err)
			}
			if !reply.YourIPAddr.IsUnspecified() {
				t.Fatalf("sent yiaddr %s", reply.YourIPAddr)
			}
		}
	})
}
