package dhcp

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// failingConn fails every write, as a socket whose interface went down would.
type failingConn struct{ net.PacketConn }

func (failingConn) WriteTo([]byte, net.Addr) (int, error) { return 0, errors.New("network is down") }

// TestOnPacket checks that every packet, answered or not, is reported once
// with its client arch and what became of it.
func TestOnPacket(t *testing.T) {
	declined := net.HardwareAddr{0x52, 0x54, 0x00, 0xde, 0xc1, 0x1e}
	failing := net.HardwareAddr{0x52, 0x54, 0x00, 0xfa, 0x11, 0xed}
	booter := booterFunc(func(_ context.Context, c Client) (Verdict, error) {
		switch c.MAC.String() {
		case declined.String():
			return Verdict{}, nil
		case failing.String():
			return Verdict{}, errors.New("store unavailable")
		}
		return Verdict{Boot: true, Machine: "node1"}, nil
	})
	bootServerRequest := func(t testing.TB) []byte {
		return packet(t, vendor(vcEDK2ARM), arch(iana.EFI_ARM64), guid(), msgType(dhcpv4.MessageTypeRequest)).ToBytes()
	}
	tests := []struct {
		name string
		svc  service
		pkt  func(testing.TB) []byte
		conn net.PacketConn
		want Handled
	}{
		{"offer", serviceDHCP, func(t testing.TB) []byte { return biosDiscover(t).ToBytes() }, nil, Handled{"Intel x86PC", OutcomeOffer}},
		{"ack on 4011", serviceBootServer, bootServerRequest, nil, Handled{"EFI ARM64", OutcomeAck}},
		{"malformed", serviceDHCP, func(testing.TB) []byte { return []byte{1, 2, 3} }, nil, Handled{"", OutcomeMalformed}},
		{"not a PXE client", serviceDHCP, func(t testing.TB) []byte { return packet(t).ToBytes() }, nil, Handled{"", OutcomeIgnored}},
		{"DISCOVER on 4011", serviceBootServer, func(t testing.TB) []byte { return biosDiscover(t).ToBytes() }, nil, Handled{"Intel x86PC", OutcomeIgnored}},
		{"declined", serviceDHCP, func(t testing.TB) []byte { return biosDiscover(t, dhcpv4.WithHwAddr(declined)).ToBytes() }, nil, Handled{"Intel x86PC", OutcomeDeclined}},
		{"booter failed", serviceDHCP, func(t testing.TB) []byte { return biosDiscover(t, dhcpv4.WithHwAddr(failing)).ToBytes() }, nil, Handled{"Intel x86PC", OutcomeError}},
		{"send failed", serviceDHCP, func(t testing.TB) []byte { return biosDiscover(t).ToBytes() }, failingConn{}, Handled{"Intel x86PC", OutcomeError}},
		{"unassigned arch", serviceDHCP, func(t testing.TB) []byte {
			return packet(t, vendor("PXEClient"), arch(iana.Arch(4242)), rawUserClass("iPXE")).ToBytes()
		}, nil, Handled{"unknown", OutcomeOffer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Handled
			cfg := testConfig()
			cfg.Booter = booter
			cfg.OnPacket = func(h Handled) { got = append(got, h) }
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			conn := tt.conn
			if conn == nil {
				conn = &capturingConn{}
			}
			s.handle(t.Context(), conn, tt.svc, tt.pkt(t), &net.UDPAddr{IP: net.IPv4(10, 99, 0, 50), Port: 68})
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("OnPacket got %+v, want exactly %+v", got, tt.want)
			}
		})
	}
}
