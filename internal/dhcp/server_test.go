package dhcp

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/testutil"
)

func TestReplyAddr(t *testing.T) {
	p := ports{client: 68, relay: 67}
	relay := net.IPv4(10, 1, 2, 1).To4()
	clientIP := net.IPv4(10, 99, 0, 50).To4()
	tests := []struct {
		name string
		svc  service
		req  []dhcpv4.Modifier
		peer net.Addr
		want string
	}{
		{name: "broadcast to clients without address", svc: serviceDHCP, peer: &net.UDPAddr{IP: net.IPv4zero, Port: 68}, want: "255.255.255.255:68"},
		{name: "relayed: unicast to giaddr:67", svc: serviceDHCP, req: []dhcpv4.Modifier{dhcpv4.WithRelay(relay)}, peer: &net.UDPAddr{IP: relay, Port: 67}, want: "10.1.2.1:67"},
		{
			name: "relayed wins over ciaddr",
			svc:  serviceDHCP,
			req:  []dhcpv4.Modifier{dhcpv4.WithRelay(relay), dhcpv4.WithClientIP(clientIP)},
			peer: &net.UDPAddr{IP: relay, Port: 67},
			want: "10.1.2.1:67",
		},
		{name: "ciaddr set: unicast to ciaddr:68", svc: serviceDHCP, req: []dhcpv4.Modifier{dhcpv4.WithClientIP(clientIP)}, peer: &net.UDPAddr{IP: clientIP, Port: 68}, want: "10.99.0.50:68"},
		{name: "4011 from EDK2 arm64: back to port 4011", svc: serviceBootServer, peer: &net.UDPAddr{IP: clientIP, Port: 4011}, want: "10.99.0.50:4011"},
		{name: "4011 from iPXE: back to port 68", svc: serviceBootServer, peer: &net.UDPAddr{IP: clientIP, Port: 68}, want: "10.99.0.50:68"},
		{name: "4011 from an unconfigured client: broadcast to its port", svc: serviceBootServer, peer: &net.UDPAddr{IP: net.IPv4zero, Port: 68}, want: "255.255.255.255:68"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replyAddr(tt.svc, biosDiscover(t, tt.req...), tt.peer, p)
			if err != nil {
				t.Fatalf("replyAddr: %v", err)
			}
			if got.String() != tt.want {
				t.Errorf("replyAddr = %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("4011 peer that is not UDP", func(t *testing.T) {
		if _, err := replyAddr(serviceBootServer, biosDiscover(t), &net.IPAddr{IP: clientIP}, p); err == nil {
			t.Error("replyAddr accepted a non-UDP peer")
		}
	})
}

func TestAccepts(t *testing.T) {
	other := net.IPv4(10, 99, 0, 1).To4()
	tests := []struct {
		name string
		svc  service
		req  []dhcpv4.Modifier
		ok   bool
	}{
		{name: "DISCOVER on 67", svc: serviceDHCP, ok: true},
		{name: "REQUEST on 67 without server id (INIT-REBOOT)", svc: serviceDHCP, req: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest)}},
		{name: "REQUEST on 67 naming us", svc: serviceDHCP, req: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP))}, ok: true},
		{name: "REQUEST on 67 naming the site DHCP server", svc: serviceDHCP, req: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(other))}},
		{name: "REQUEST on 4011", svc: serviceBootServer, req: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest)}, ok: true},
		{name: "DISCOVER on 4011", svc: serviceBootServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := biosDiscover(t, tt.req...)
			c, err := Classify(req)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			if err := accepts(tt.svc, req, c, testServerIP); (err == nil) != tt.ok {
				t.Errorf("accepts = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		reason string // "" = valid
	}{
		{name: "valid", cfg: testConfig()},
		{name: "https", cfg: Config{ServerIP: testServerIP, AdvertiseURL: "https://boot.example"}},
		{name: "no server IP and no interface", cfg: Config{AdvertiseURL: "http://10.99.0.2:8080"}, reason: "not an IPv4"},
		{name: "IPv6 server IP", cfg: Config{ServerIP: net.ParseIP("fd00::2"), AdvertiseURL: "http://x"}, reason: "not an IPv4"},
		{name: "relative URL", cfg: Config{ServerIP: testServerIP, AdvertiseURL: "10.99.0.2:8080"}, reason: "advertise URL"},
		{name: "tftp URL", cfg: Config{ServerIP: testServerIP, AdvertiseURL: "tftp://10.99.0.2"}, reason: "not an absolute http(s) URL"},
		{name: "URL too long for the file field", cfg: Config{ServerIP: testServerIP, AdvertiseURL: "http://" + strings.Repeat("a", 110)}, reason: "too long"},
		{name: "unknown interface", cfg: Config{Interface: "nosuchif0", AdvertiseURL: "http://x"}, reason: "nosuchif0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("New error = %v, want one mentioning %q", err, tt.reason)
			}
		})
	}
}

func TestInterfaceIPv4Loopback(t *testing.T) {
	lo, err := loopbackName()
	if err != nil {
		t.Skip(err)
	}
	// Loopback has only 127.0.0.1, which is not global unicast.
	if _, err := InterfaceIPv4(lo); !errors.Is(err, ErrNoIPv4) {
		t.Errorf("InterfaceIPv4(%s) error = %v, want ErrNoIPv4", lo, err)
	}
}

func loopbackName() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return ifi.Name, nil
		}
	}
	return "", errors.New("no loopback interface")
}

func TestListenAndServeNeedsInterface(t *testing.T) {
	s, err := New(testConfig())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.ListenAndServe(t.Context()); err == nil {
		t.Error("ListenAndServe without an interface succeeded")
	}
}

// booterFunc adapts a function to Booter.
type booterFunc func(ctx context.Context, c Client) (Verdict, error)

func (f booterFunc) BootPXE(ctx context.Context, c Client) (Verdict, error) { return f(ctx, c) }

// loopback runs svc of a Server on 127.0.0.1 and returns a client socket whose port also
// stands in for the relay and client ports, so relayed and ciaddr replies reach it.
type loopback struct {
	server net.Addr
	client net.PacketConn
	logs   *testutil.Buffer
}

func startLoopback(t *testing.T, cfg Config, svc service) *loopback {
	t.Helper()
	logs := &testutil.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	cli, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	port := cli.LocalAddr().(*net.UDPAddr).Port
	s.ports = ports{client: port, relay: port}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		if svc == serviceBootServer {
			done <- s.ServeBootServer(ctx, srv)
		} else {
			done <- s.Serve(ctx, srv)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel, want nil", err)
			}
		// Well under booterTimeout: a busy Booter must be cancelled, not waited out.
		case <-time.After(time.Second):
			t.Error("Serve did not stop within 1 s of cancel")
		}
		srv.Close()
		cli.Close()
	})
	return &loopback{server: srv.LocalAddr(), client: cli, logs: logs}
}

func (l *loopback) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := l.client.WriteTo(b, l.server); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// receive returns the next reply, or nil if none arrives within wait.
func (l *loopback) receive(t *testing.T, wait time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
	buf := make([]byte, 1500)
	if err := l.client.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatalf("deadline: %v", err)
	}
	n, _, err := l.client.ReadFrom(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	reply, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return reply
}

func TestServeRelayedDiscover(t *testing.T) {
	l := startLoopback(t, testConfig(), serviceDHCP)
	req := biosDiscover(t, dhcpv4.WithRelay(net.IPv4(127, 0, 0, 1)))
	l.send(t, req.ToBytes())
	reply := l.receive(t, 5*time.Second)
	if reply == nil {
		t.Fatal("no OFFER")
	}
	if reply.MessageType() != dhcpv4.MessageTypeOffer || reply.TransactionID != req.TransactionID || reply.BootFileName != "undionly.kpxe" {
		t.Errorf("got %s xid %s file %q, want OFFER xid %s undionly.kpxe", reply.MessageType(), reply.TransactionID, reply.BootFileName, req.TransactionID)
	}
	waitFor(t, l.logs, `msg="dhcp offer"`)
	logs := l.logs.String()
	for _, want := range []string{"file=undionly.kpxe", "mac=" + testMAC.String(), "uuid=" + testUUID, "machine=\"\"", "arch=0", "xid=" + req.TransactionID.String()} {
		if !strings.Contains(logs, want) {
			t.Errorf("offer log lacks %q:\n%s", want, logs)
		}
	}
}

func TestServeUnicastToCiaddr(t *testing.T) {
	l := startLoopback(t, testConfig(), serviceDHCP)
	req := packet(t, vendor("PXEClient"), arch(iana.EFI_X86_64), rawUserClass("iPXE"),
		msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP)))
	l.send(t, req.ToBytes())
	reply := l.receive(t, 5*time.Second)
	if reply == nil {
		t.Fatal("no ACK")
	}
	if reply.MessageType() != dhcpv4.MessageTypeAck || reply.BootFileName != "http://10.99.0.2:8080/boot.ipxe" {
		t.Errorf("got %s file %q, want ACK with the chain script URL", reply.MessageType(), reply.BootFileName)
	}
}

func TestServeBootServer(t *testing.T) {
	l := startLoopback(t, testConfig(), serviceBootServer)
	// EDK2's boot-server REQUEST: new xid, ciaddr set, sent unicast from its own port.
	req := packet(t, vendor(vcEDK2ARM), arch(iana.EFI_ARM64), guid(),
		msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	l.send(t, req.ToBytes())
	reply := l.receive(t, 5*time.Second)
	if reply == nil {
		t.Fatal("no ACK on the boot-server port")
	}
	if reply.MessageType() != dhcpv4.MessageTypeAck || reply.TransactionID != req.TransactionID || reply.BootFileName != "snp.efi" {
		t.Errorf("got %s xid %s file %q, want ACK xid %s snp.efi", reply.MessageType(), reply.TransactionID, reply.BootFileName, req.TransactionID)
	}
	if !reply.ClientIPAddr.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("ACK ciaddr = %s, want the request's", reply.ClientIPAddr)
	}
	waitFor(t, l.logs, `msg="dhcp ack"`)
}

func TestServeBootServerIgnoresDiscover(t *testing.T) {
	l := startLoopback(t, testConfig(), serviceBootServer)
	l.send(t, biosDiscover(t).ToBytes())
	if reply := l.receive(t, 300*time.Millisecond); reply != nil {
		t.Errorf("boot-server port answered a DISCOVER with %s", reply.MessageType())
	}
	waitFor(t, l.logs, "boot-server port answers REQUEST")
}

func TestServeBooter(t *testing.T) {
	declined := net.HardwareAddr{0x52, 0x54, 0x00, 0xde, 0xc1, 0x1e}
	failing := net.HardwareAddr{0x52, 0x54, 0x00, 0xfa, 0x11, 0xed}
	seen := make(chan Client, 10)
	cfg := testConfig()
	cfg.Booter = booterFunc(func(ctx context.Context, c Client) (Verdict, error) {
		seen <- c
		switch c.MAC.String() {
		case declined.String():
			return Verdict{}, nil
		case failing.String():
			return Verdict{}, errors.New("store unavailable")
		}
		return Verdict{Boot: true, Machine: "node1"}, nil
	})
	l := startLoopback(t, cfg, serviceDHCP)
	relayed := dhcpv4.WithRelay(net.IPv4(127, 0, 0, 1))

	for _, mac := range []net.HardwareAddr{declined, failing} {
		l.send(t, biosDiscover(t, relayed, dhcpv4.WithHwAddr(mac)).ToBytes())
		select {
		case c := <-seen:
			if c.MAC.String() != mac.String() {
				t.Fatalf("Booter saw %s, want %s", c.MAC, mac)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Booter never asked about %s", mac)
		}
	}
	ok := biosDiscover(t, relayed)
	l.send(t, ok.ToBytes())
	reply := l.receive(t, 5*time.Second)
	if reply == nil || reply.TransactionID != ok.TransactionID {
		t.Fatalf("first reply = %v, want the OFFER to the booted client only", reply)
	}
	if extra := l.receive(t, 300*time.Millisecond); extra != nil {
		t.Errorf("a declined or failed client got a reply: %s", extra.ClientHWAddr)
	}
	c := <-seen
	if c.MAC.String() != testMAC.String() || c.UUID != testUUID || c.Arch != iana.INTEL_X86PC {
		t.Errorf("Booter got %+v, want mac, uuid and arch of the request", c)
	}
	waitFor(t, l.logs, "store unavailable")
	waitFor(t, l.logs, "booter declined")
	waitFor(t, l.logs, `msg="dhcp offer"`)
	for _, line := range strings.Split(l.logs.String(), "\n") {
		if strings.Contains(line, `msg="dhcp offer"`) && !strings.Contains(line, "machine=node1") {
			t.Errorf("offer log lacks the Booter's machine name: %s", line)
		}
	}
}

func TestServeSurvivesBadPackets(t *testing.T) {
	l := startLoopback(t, testConfig(), serviceDHCP)
	good := biosDiscover(t, dhcpv4.WithRelay(net.IPv4(127, 0, 0, 1)))
	wire := good.ToBytes()
	oversized := append(append([]byte{}, wire[:240]...), bytes.Repeat([]byte{1, 0}, 4000)...)
	for name, b := range map[string][]byte{
		"empty":     {},
		"one byte":  {1},
		"truncated": wire[:100],
		"no cookie": wire[:236],
		"bad cookie": func() []byte {
			b := bytes.Clone(wire)
			b[236] = 0
			return b
		}(),
		"option runs past the end": append(bytes.Clone(wire[:240]), 60, 200, 'P'),
		"oversized, no end option": oversized,
	} {
		t.Logf("sending %s (%d bytes)", name, len(b))
		l.send(t, b)
	}
	l.send(t, wire)
	reply := l.receive(t, 5*time.Second)
	if reply == nil || reply.TransactionID != good.TransactionID {
		t.Fatalf("reply after bad packets = %v, want the OFFER", reply)
	}
	waitFor(t, l.logs, "malformed packet")
}

func TestServeStopsWithBusyBooter(t *testing.T) {
	cfg := testConfig()
	started := make(chan struct{})
	cfg.Booter = booterFunc(func(ctx context.Context, c Client) (Verdict, error) {
		close(started)
		<-ctx.Done() // a Booter that only gives up when told to
		return Verdict{}, ctx.Err()
	})
	// startLoopback's cleanup checks Serve returns nil promptly after cancel.
	l := startLoopback(t, cfg, serviceDHCP)
	l.send(t, biosDiscover(t, dhcpv4.WithRelay(net.IPv4(127, 0, 0, 1))).ToBytes())
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("Booter never called")
	}
}

// waitFor waits until the server logged want: handlers log after sending.
func waitFor(t *testing.T, logs *testutil.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A Booter is given booterTimeout at most, so a stuck one cannot hold a
// handler for long; its error is the packet's.
func TestBooterBounded(t *testing.T) {
	var deadline time.Time
	var bounded bool
	s := &Server{cfg: Config{Booter: booterFunc(func(ctx context.Context, c Client) (Verdict, error) {
		deadline, bounded = ctx.Deadline()
		return Verdict{}, errors.New("store unavailable")
	})}}
	_, err := s.boots(context.Background(), Client{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}})
	if left := time.Until(deadline); !bounded || left > booterTimeout {
		t.Errorf("the Booter's context: deadline in %v (set %v); want at most %v", left, bounded, booterTimeout)
	}
	if err == nil || !strings.Contains(err.Error(), "store unavailable") {
		t.Errorf("boots = %v; want the Booter's error", err)
	}
}
