package dhcp

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func TestObserve(t *testing.T) {
	client := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 50), Port: 68}
	relay := &net.UDPAddr{IP: net.IPv4(10, 98, 0, 1), Port: 67}
	unset := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	requested := dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 98, 0, 120)))
	for _, tc := range []struct {
		name string
		pkt  *dhcpv4.DHCPv4
		svc  service
		peer net.Addr
		want Binding
		none bool
	}{
		{name: "PXE DISCOVER: the UUID only", pkt: biosDiscover(t), svc: serviceDHCP, peer: unset, want: Binding{MAC: testMAC, UUID: testUUID}},
		{name: "DISCOVER's option 50 is only a wish", pkt: biosDiscover(t, requested), svc: serviceDHCP, peer: unset, want: Binding{MAC: testMAC, UUID: testUUID}},
		{name: "REQUEST to the site's server, relayed", pkt: biosDiscover(t, requested, msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithRelay(relay.IP)), svc: serviceDHCP, peer: relay,
			want: Binding{MAC: testMAC, UUID: testUUID, IP: netip.MustParseAddr("10.98.0.120")}},
		{name: "not a PXE client: an installed OS's REQUEST", pkt: packet(t, requested, msgType(dhcpv4.MessageTypeRequest)), svc: serviceDHCP, peer: unset,
			want: Binding{MAC: testMAC, IP: netip.MustParseAddr("10.98.0.120")}},
		{name: "ciaddr beats option 50", pkt: packet(t, requested, msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 51))), svc: serviceDHCP, peer: client,
			want: Binding{MAC: testMAC, IP: netip.MustParseAddr("10.99.0.51")}},
		{name: "boot-server REQUEST: its source", pkt: packet(t, vendor(vcEDK2ARM), arch(iana.EFI_ARM64), msgType(dhcpv4.MessageTypeRequest)), svc: serviceBootServer, peer: client,
			want: Binding{MAC: testMAC, IP: netip.MustParseAddr("10.99.0.50")}},
		{name: "the source on 67 says nothing", pkt: packet(t, msgType(dhcpv4.MessageTypeRequest)), svc: serviceDHCP, peer: client, none: true},
		{name: "a broadcast address is no client's", pkt: packet(t, msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4bcast)), svc: serviceDHCP, peer: unset, none: true},
		{name: "RELEASE", pkt: packet(t, msgType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 51))), svc: serviceDHCP, peer: client, none: true},
		{name: "not Ethernet", pkt: packet(t, requested, msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8})), svc: serviceDHCP, peer: unset, none: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := observe(tc.pkt, tc.svc, tc.peer)
			if ok == tc.none {
				t.Fatalf("observe = %+v, %v; want a binding: %v", got, ok, !tc.none)
			}
			if !tc.none && (got.MAC.String() != tc.want.MAC.String() || got.UUID != tc.want.UUID || got.IP != tc.want.IP) {
				t.Errorf("observe = %+v, want %+v", got, tc.want)
			}
		})
	}
}

type binderFunc func(Binding)

func (f binderFunc) Bind(_ context.Context, b Binding) { f(b) }

// Every DISCOVER and REQUEST is shown to the Binder, answered or not: the
// REQUEST a client sends the site's server carries the address it will use.
func TestServerBinds(t *testing.T) {
	var mu sync.Mutex
	var got []Binding
	cfg := testConfig()
	cfg.Binder = binderFunc(func(b Binding) { mu.Lock(); got = append(got, b); mu.Unlock() })
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	site := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1)))
	req := biosDiscover(t, msgType(dhcpv4.MessageTypeRequest), site, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 120))))
	s.handle(t.Context(), &capturingConn{}, serviceDHCP, req.ToBytes(), &net.UDPAddr{IP: net.IPv4zero, Port: 68})
	if len(got) != 1 || got[0].IP != netip.MustParseAddr("10.99.0.120") || got[0].UUID != testUUID {
		t.Errorf("bound %+v; want the client's address and UUID", got)
	}
}
