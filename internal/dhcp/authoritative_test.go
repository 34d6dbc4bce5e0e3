package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	declinedMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xde, 0xc1, 0x1e}
	failingMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0xfa, 0x11, 0xed}
	otherMAC    = "52:54:00:00:00:99"
)

// rackNetwork is a network behind a relay.
func rackNetwork() testNetwork {
	return testNet("rack2", "10.98.0.0/24", "10.98.0.100", "10.98.0.199", "10.98.0.254", 10*time.Minute)
}

// testBooter boots every client but declinedMAC (no boot options) and
// failingMAC (the Booter fails).
var testBooter = booterFunc(func(_ context.Context, c Client) (Verdict, error) {
	switch c.MAC.String() {
	case declinedMAC.String():
		return Verdict{}, nil
	case failingMAC.String():
		return Verdict{}, errors.New("store unavailable")
	}
	return Verdict{Boot: true, Machine: "node1"}, nil
})

// recordingBinder keeps every binding it is given.
type recordingBinder struct {
	mu  sync.Mutex
	got []Binding
}

func (r *recordingBinder) Bind(_ context.Context, b Binding) {
	r.mu.Lock()
	r.got = append(r.got, b)
	r.mu.Unlock()
}

// ips lists the addresses bound, as strings.
func (r *recordingBinder) ips() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.got {
		if b.IP.IsValid() {
			out = append(out, b.MAC.String()+"="+b.IP.String())
		}
	}
	return out
}

func authoritativeConfig(addrs Addresses) Config {
	cfg := testConfig()
	cfg.Mode = ModeAuthoritative
	cfg.Addresses = addrs
	cfg.Booter = testBooter
	return cfg
}

// TestAuthoritative runs every kind of packet through the whole per-packet
// path of an authoritative server (parse, read, Booter, Addresses, reply,
// address, send) against the in-test allocator.
func TestAuthoritative(t *testing.T) {
	mac := testMAC.String()
	hold := func(mac, ip string) func(*testAddresses) {
		return func(a *testAddresses) {
			if _, err := a.Ack(context.Background(), netip.MustParseAddr("10.99.0.2"), mac, netip.MustParseAddr(ip)); err != nil {
				panic(err)
			}
		}
	}
	outage := func(a *testAddresses) { a.fail = errors.New("etcd: no leader") }
	full := func(a *testAddresses) {
		a.networks[0].last = a.networks[0].first
		hold(otherMAC, "10.99.0.100")(a)
	}
	udhcpc := vendor("udhcp 1.36.1")
	held := netip.MustParseAddr("10.99.0.150").AsSlice()
	tests := []struct {
		name     string
		svc      service
		setup    func(*testAddresses)
		pkt      func(t testing.TB) *dhcpv4.DHCPv4
		wantType dhcpv4.MessageType // 0: no reply
		wantYI   string
		wantFile string
		wantDst  string
		want     Handled
		wantBind []string // addresses bound, mac=ip
		wantCall string   // Release or Decline seen
		wantHeld string   // the MAC that holds 10.99.0.150 after; "": not checked
	}{
		{
			name:     "PXE DISCOVER: an address and the boot file",
			pkt:      func(t testing.TB) *dhcpv4.DHCPv4 { return biosDiscover(t) },
			wantType: dhcpv4.MessageTypeOffer, wantYI: "10.99.0.100", wantFile: "undionly.kpxe", wantDst: "255.255.255.255:68",
			want: Handled{"Intel x86PC", OutcomeOffer},
		},
		{
			name:     "udhcpc DISCOVER: an address only",
			pkt:      func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, udhcpc) },
			wantType: dhcpv4.MessageTypeOffer, wantYI: "10.99.0.100", wantDst: "255.255.255.255:68",
			want: Handled{"", OutcomeOffer},
		},
		{
			name:     "PXE client the Booter does not boot: an address only",
			pkt:      func(t testing.TB) *dhcpv4.DHCPv4 { return biosDiscover(t, dhcpv4.WithHwAddr(declinedMAC)) },
			wantType: dhcpv4.MessageTypeOffer, wantYI: "10.99.0.100", wantDst: "255.255.255.255:68",
			want: Handled{"Intel x86PC", OutcomeOffer},
		},
		{
			name: "the Booter fails: silence",
			pkt:  func(t testing.TB) *dhcpv4.DHCPv4 { return biosDiscover(t, dhcpv4.WithHwAddr(failingMAC)) },
			want: Handled{"Intel x86PC", OutcomeError},
		},
		{
			name:     "relayed DISCOVER: giaddr's network, back to the relay",
			pkt:      func(t testing.TB) *dhcpv4.DHCPv4 { return biosDiscover(t, dhcpv4.WithRelay(relayIP)) },
			wantType: dhcpv4.MessageTypeOffer, wantYI: "10.98.0.100", wantFile: "undionly.kpxe", wantDst: "10.98.0.254:67",
			want: Handled{"Intel x86PC", OutcomeOffer},
		},
		{
			name: "relayed from a link in no network: silence",
			pkt:  func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, udhcpc, dhcpv4.WithRelay(net.IPv4(10, 50, 0, 1))) },
			want: Handled{"", OutcomeIgnored},
		},
		{
			name: "range exhausted: no OFFER", setup: full,
			pkt:  func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, udhcpc) },
			want: Handled{"", OutcomeExhausted},
		},
		{
			name: "DISCOVER in a store outage: silence", setup: outage,
			pkt:  func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, udhcpc) },
			want: Handled{"", OutcomeError},
		},
		{
			name: "SELECTING: ACK, and the ACK binds",
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return biosDiscover(t, requestMsg, ours, wants(net.IPv4(10, 99, 0, 120)))
			},
			wantType: dhcpv4.MessageTypeAck, wantYI: "10.99.0.120", wantFile: "undionly.kpxe", wantDst: "255.255.255.255:68",
			want: Handled{"Intel x86PC", OutcomeAck}, wantBind: []string{mac + "=10.99.0.120"},
		},
		{
			name: "SELECTING another server: silence, nothing written or bound",
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, udhcpc, requestMsg, theirs, wants(net.IPv4(10, 99, 0, 120)))
			},
			want: Handled{"", OutcomeIgnored},
		},
		{
			name: "SELECTING an address another machine holds: NAK, nothing bound", setup: hold(otherMAC, "10.99.0.150"),
			pkt:      func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, udhcpc, requestMsg, ours, wants(held)) },
			wantType: dhcpv4.MessageTypeNak, wantYI: "0.0.0.0", wantDst: "255.255.255.255:68",
			want: Handled{"", OutcomeNak},
		},
		{
			name: "INIT-REBOOT on the wrong network: NAK",
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, udhcpc, requestMsg, wants(net.IPv4(10, 98, 0, 150)))
			},
			wantType: dhcpv4.MessageTypeNak, wantYI: "0.0.0.0", wantDst: "255.255.255.255:68",
			want: Handled{"", OutcomeNak},
		},
		{
			name: "relayed INIT-REBOOT on its network: ACK to the relay",
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, udhcpc, requestMsg, wants(net.IPv4(10, 98, 0, 150)), dhcpv4.WithRelay(relayIP))
			},
			wantType: dhcpv4.MessageTypeAck, wantYI: "10.98.0.150", wantDst: "10.98.0.254:67",
			want: Handled{"", OutcomeAck}, wantBind: []string{mac + "=10.98.0.150"},
		},
		{
			name: "RENEWING: ACK unicast to ciaddr", setup: hold(mac, "10.99.0.150"),
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, udhcpc, requestMsg, dhcpv4.WithClientIP(held), dhcpv4.WithBroadcast(false))
			},
			wantType: dhcpv4.MessageTypeAck, wantYI: "10.99.0.150", wantDst: "10.99.0.150:68",
			want: Handled{"", OutcomeAck}, wantBind: []string{mac + "=10.99.0.150"},
		},
		{
			name: "RENEWING another machine's address: NAK", setup: hold(otherMAC, "10.99.0.150"),
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, udhcpc, requestMsg, dhcpv4.WithClientIP(held), dhcpv4.WithBroadcast(false))
			},
			wantType: dhcpv4.MessageTypeNak, wantYI: "0.0.0.0", wantDst: "255.255.255.255:68",
			want: Handled{"", OutcomeNak},
		},
		{
			name: "REQUEST in a store outage: silence, never a NAK", setup: outage,
			pkt:  func(t testing.TB) *dhcpv4.DHCPv4 { return packet(t, udhcpc, requestMsg, ours, wants(held)) },
			want: Handled{"", OutcomeError},
		},
		{
			name: "RELEASE: no answer", setup: hold(mac, "10.99.0.150"),
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, msgType(dhcpv4.MessageTypeRelease), ours, dhcpv4.WithClientIP(held))
			},
			want: Handled{"", OutcomeRelease}, wantCall: "release " + mac + " 10.99.0.150",
		},
		{
			name: "DECLINE: no answer", setup: hold(mac, "10.99.0.150"),
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, msgType(dhcpv4.MessageTypeDecline), ours, wants(held))
			},
			want: Handled{"", OutcomeDecline}, wantCall: "decline " + mac + " 10.99.0.150",
		},
		{
			// Anyone can send a RELEASE or DECLINE naming any address.
			name: "RELEASE of another machine's address: ignored, its lease stays", setup: hold(otherMAC, "10.99.0.150"),
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, msgType(dhcpv4.MessageTypeRelease), ours, dhcpv4.WithClientIP(held))
			},
			want: Handled{"", OutcomeIgnored}, wantCall: "release " + mac + " 10.99.0.150", wantHeld: otherMAC,
		},
		{
			name: "DECLINE of another machine's address: ignored, its lease stays", setup: hold(otherMAC, "10.99.0.150"),
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, msgType(dhcpv4.MessageTypeDecline), ours, wants(held))
			},
			want: Handled{"", OutcomeIgnored}, wantCall: "decline " + mac + " 10.99.0.150", wantHeld: otherMAC,
		},
		{
			name: "RELEASE in a store outage", setup: outage,
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, msgType(dhcpv4.MessageTypeRelease), ours, dhcpv4.WithClientIP(held))
			},
			want: Handled{"", OutcomeError},
		},
		{
			name: "INFORM: options, no address, unicast",
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(held))
			},
			wantType: dhcpv4.MessageTypeAck, wantYI: "0.0.0.0", wantDst: "10.99.0.150:68",
			want: Handled{"", OutcomeInform},
		},
		{
			// A host with its own address needs only the options: a full
			// range must not silence it, nor may it hold a range address.
			name:  "INFORM on a full network: options still",
			setup: full,
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(held))
			},
			wantType: dhcpv4.MessageTypeAck, wantYI: "0.0.0.0", wantDst: "10.99.0.150:68",
			want: Handled{"", OutcomeInform},
		},
		{
			name: "port 4011 stays a boot server: no address",
			svc:  serviceBootServer,
			pkt: func(t testing.TB) *dhcpv4.DHCPv4 {
				return packet(t, vendor(vcEDK2ARM), arch(iana.EFI_ARM64), requestMsg, dhcpv4.WithClientIP(held))
			},
			wantType: dhcpv4.MessageTypeAck, wantYI: "0.0.0.0", wantFile: "snp.efi", wantDst: "10.99.0.50:68",
			want: Handled{"EFI ARM64", OutcomeAck}, wantBind: []string{mac + "=10.99.0.150"}, // observe, as in proxy mode

		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addrs := newTestAddresses(provNetwork(), rackNetwork())
			if tt.setup != nil {
				tt.setup(addrs)
			}
			binder := &recordingBinder{}
			var got []Handled
			cfg := authoritativeConfig(addrs)
			cfg.Binder = binder
			cfg.OnPacket = func(h Handled) { got = append(got, h) }
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			conn := &capturingConn{}
			s.handle(t.Context(), conn, tt.svc, tt.pkt(t).ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 99, 0, 50), Port: 68})
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("OnPacket got %+v, want exactly %+v", got, tt.want)
			}
			if b := binder.ips(); strings.Join(b, ",") != strings.Join(tt.wantBind, ",") {
				t.Errorf("bound %v, want %v", b, tt.wantBind)
			}
			if c := addrs.callLog(); tt.wantCall != "" && (len(c) != 1 || c[0] != tt.wantCall) {
				t.Errorf("Addresses saw %v, want %q", c, tt.wantCall)
			}
			if ip, ok := addrs.held(tt.wantHeld); tt.wantHeld != "" && (!ok || ip.String() != "10.99.0.150") {
				t.Errorf("%s holds %v, want 10.99.0.150", tt.wantHeld, ip)
			}
			if tt.wantType == 0 {
				if len(conn.sent) != 0 {
					t.Errorf("sent %d replies, want silence", len(conn.sent))
				}
				return
			}
			if len(conn.sent) != 1 {
				t.Fatalf("sent %d replies, want one %s", len(conn.sent), tt.wantType)
			}
			reply, err := dhcpv4.FromBytes(conn.sent[0])
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if reply.MessageType() != tt.wantType || reply.YourIPAddr.String() != tt.wantYI || reply.BootFileName != tt.wantFile {
				t.Errorf("reply %s yiaddr %s file %q, want %s %s %q", reply.MessageType(), reply.YourIPAddr, reply.BootFileName, tt.wantType, tt.wantYI, tt.wantFile)
			}
			if conn.dsts[0].String() != tt.wantDst {
				t.Errorf("reply sent to %s, want %s", conn.dsts[0], tt.wantDst)
			}
			// A NAK goes to anyone asking: it must not say who holds the address.
			if reply.MessageType() == dhcpv4.MessageTypeNak && reply.Message() != ErrRefused.Error() {
				t.Errorf("NAK message %q, want only %q", reply.Message(), ErrRefused.Error())
			}
		})
	}
}

// The relayed network's own options reach its clients.
func TestAuthoritativeRelayedOptions(t *testing.T) {
	s, err := New(authoritativeConfig(newTestAddresses(provNetwork(), rackNetwork())))
	if err != nil {
		t.Fatal(err)
	}
	conn := &capturingConn{}
	s.handle(t.Context(), conn, serviceDHCP, packet(t, dhcpv4.WithRelay(relayIP)).ToBytes(), &net.UDPAddr{IP: relayIP, Port: 67})
	if len(conn.sent) != 1 {
		t.Fatalf("sent %d replies, want an OFFER", len(conn.sent))
	}
	reply, err := dhcpv4.FromBytes(conn.sent[0])
	if err != nil {
		t.Fatal(err)
	}
	if r := reply.Router(); len(r) != 1 || !r[0].Equal(net.IPv4(10, 98, 0, 254)) || reply.IPAddressLeaseTime(0) != 10*time.Minute || !reply.GatewayIPAddr.Equal(relayIP) {
		t.Errorf("router %v lease %v giaddr %s; want rack2's 10.98.0.254, 10m, and the relay", r, reply.IPAddressLeaseTime(0), reply.GatewayIPAddr)
	}
}

// On an authoritative server's port 67, an address a REQUEST merely claims
// binds nothing: only the ACK does. A DISCOVER's UUID still binds.
func TestAuthoritativeObserve(t *testing.T) {
	binder := &recordingBinder{}
	cfg := authoritativeConfig(newTestAddresses(provNetwork()))
	cfg.Binder = binder
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	unset := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	s.handle(t.Context(), &capturingConn{}, serviceDHCP, biosDiscover(t).ToBytes(), unset)
	s.handle(t.Context(), &capturingConn{}, serviceDHCP, packet(t, requestMsg, theirs, wants(clientIP)).ToBytes(), unset)
	if len(binder.got) != 1 || binder.got[0].UUID != testUUID || binder.got[0].IP.IsValid() {
		t.Errorf("bound %+v; want the DISCOVER's UUID only", binder.got)
	}
}

func TestNewAuthoritative(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		reason string
	}{
		{name: "no Addresses", cfg: Config{Mode: ModeAuthoritative, ServerIP: testServerIP, AdvertiseURL: "http://x"}, reason: "needs Addresses"},
		{name: "unknown mode", cfg: Config{Mode: "relay", ServerIP: testServerIP, AdvertiseURL: "http://x"}, reason: `dhcp mode "relay"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("New error = %v, want one mentioning %q", err, tc.reason)
			}
		})
	}
	s, err := New(testConfig())
	if err != nil || s.cfg.Mode != ModeProxy {
		t.Errorf("New without a mode: %v, mode %q; want proxy", err, s.cfg.Mode)
	}
}

// BenchmarkAuthoritative is one DORA's server side short of the socket: a
// DISCOVER and a REQUEST parsed, read, classified, booted, given an address
// by the in-test allocator, answered and marshalled.
func BenchmarkAuthoritative(b *testing.B) {
	addrs := newTestAddresses(testNetwork{
		name: "big", subnet: netip.MustParsePrefix("10.0.0.0/8"),
		first: netip.MustParseAddr("10.1.0.0"), last: netip.MustParseAddr("10.255.255.254"), lease: time.Hour,
	})
	cfg := authoritativeConfig(addrs)
	cfg.ServerIP = net.IPv4(10, 0, 0, 2).To4()
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	conn := &capturingConn{}
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		mac := net.HardwareAddr{0x52, 0x54, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		s.handle(b.Context(), conn, serviceDHCP, biosDiscover(b, dhcpv4.WithHwAddr(mac)).ToBytes(), peer)
		offer, err := dhcpv4.FromBytes(conn.sent[len(conn.sent)-1])
		if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
			b.Fatalf("no OFFER: %v", err)
		}
		req := biosDiscover(b, dhcpv4.WithHwAddr(mac), requestMsg, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.ServerIP)), wants(offer.YourIPAddr))
		s.handle(b.Context(), conn, serviceDHCP, req.ToBytes(), peer)
		conn.sent, conn.dsts = conn.sent[:0], conn.dsts[:0]
	}
}
