package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	relayIP    = net.IPv4(10, 98, 0, 254).To4()
	clientIP   = net.IPv4(10, 99, 0, 150).To4()
	otherSrv   = net.IPv4(10, 99, 0, 1).To4()
	ours       = dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP))
	theirs     = dhcpv4.WithOption(dhcpv4.OptServerIdentifier(otherSrv))
	requestMsg = msgType(dhcpv4.MessageTypeRequest)
)

func wants(ip net.IP) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))
}

func TestReadLease(t *testing.T) {
	server, relay, client := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.98.0.254"), netip.MustParseAddr("10.99.0.150")
	tests := []struct {
		name   string
		mods   []dhcpv4.Modifier
		want   leaseRequest
		reason string // "" = for us
	}{
		{name: "DISCOVER", want: leaseRequest{ask: askOffer, link: server}},
		{name: "DISCOVER with a wish", mods: []dhcpv4.Modifier{wants(clientIP)}, want: leaseRequest{ask: askOffer, link: server, ip: client}},
		{name: "DISCOVER wishing for the broadcast address", mods: []dhcpv4.Modifier{wants(net.IPv4bcast)}, want: leaseRequest{ask: askOffer, link: server}},
		{name: "relayed DISCOVER: giaddr's network", mods: []dhcpv4.Modifier{dhcpv4.WithRelay(relayIP)}, want: leaseRequest{ask: askOffer, link: relay}},
		{name: "SELECTING", mods: []dhcpv4.Modifier{requestMsg, ours, wants(clientIP)}, want: leaseRequest{ask: askAck, state: "selecting", link: server, ip: client}},
		{name: "SELECTING another server", mods: []dhcpv4.Modifier{requestMsg, theirs, wants(clientIP)}, reason: "selects server 10.99.0.1"},
		{name: "SELECTING without an address", mods: []dhcpv4.Modifier{requestMsg, ours}, reason: "no usable client address"},
		{name: "INIT-REBOOT", mods: []dhcpv4.Modifier{requestMsg, wants(clientIP)}, want: leaseRequest{ask: askAck, state: "init-reboot", link: server, ip: client}},
		{name: "relayed INIT-REBOOT", mods: []dhcpv4.Modifier{requestMsg, wants(clientIP), dhcpv4.WithRelay(relayIP)}, want: leaseRequest{ask: askAck, state: "init-reboot", link: relay, ip: client}},
		{name: "RENEWING: ciaddr's network", mods: []dhcpv4.Modifier{requestMsg, dhcpv4.WithClientIP(clientIP)}, want: leaseRequest{ask: askAck, state: "renewing", link: client, ip: client}},
		{name: "relayed REBINDING: giaddr's network", mods: []dhcpv4.Modifier{requestMsg, dhcpv4.WithClientIP(clientIP), dhcpv4.WithRelay(relayIP)}, want: leaseRequest{ask: askAck, state: "renewing", link: relay, ip: client}},
		{name: "REQUEST naming nothing", mods: []dhcpv4.Modifier{requestMsg}, reason: "no usable client address"},
		{name: "RELEASE", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRelease), ours, dhcpv4.WithClientIP(clientIP)}, want: leaseRequest{ask: askRelease, link: client, ip: client}},
		{name: "RELEASE to another server", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRelease), theirs, dhcpv4.WithClientIP(clientIP)}, reason: "for server 10.99.0.1"},
		{name: "RELEASE without ciaddr", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRelease), ours}, reason: "no usable client address"},
		{name: "DECLINE", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDecline), ours, wants(clientIP)}, want: leaseRequest{ask: askDecline, link: server, ip: client}},
		{name: "DECLINE of another server's address", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDecline), theirs, wants(clientIP)}, reason: "for server"},
		{name: "INFORM", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(clientIP)}, want: leaseRequest{ask: askInform, link: client, ip: client}},
		{name: "INFORM without ciaddr", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeInform)}, reason: "no usable client address"},
		{name: "another server's OFFER", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeOffer)}, reason: "not for a server"},
		{name: "BOOTP without message type", mods: []dhcpv4.Modifier{dhcpv4.WithoutOption(dhcpv4.OptionDHCPMessageType)}, reason: "not for a server"},
		{name: "a reply", mods: []dhcpv4.Modifier{func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }}, reason: "not a request"},
		{name: "not Ethernet", mods: []dhcpv4.Modifier{dhcpv4.WithHwAddr(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8})}, reason: "not Ethernet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readLease(packet(t, tt.mods...), testServerIP)
			if tt.reason != "" {
				if err == nil || !strings.Contains(err.Error(), tt.reason) {
					t.Errorf("readLease = %+v, %v; want an error mentioning %q", got, err, tt.reason)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("readLease = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// testAssignment is 10.99.0.150 on a /20, so the mask is not the default one.
func testAssignment() Assignment {
	return Assignment{
		IP: netip.MustParseAddr("10.99.0.150"), Network: "prov", Subnet: netip.MustParsePrefix("10.99.0.0/20"),
		Router: netip.MustParseAddr("10.99.0.1"), DNS: []netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.53")},
		LeaseTime: time.Hour,
	}
}

func TestLeaseReply(t *testing.T) {
	pxe := []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64), guid()}
	tests := []struct {
		name     string
		mods     []dhcpv4.Modifier
		boot     bool
		wantType dhcpv4.MessageType
		yiaddr   bool // yiaddr and lease times present
		ciaddr   net.IP
		wantFile string
	}{
		{name: "OFFER to a plain client: address only", wantType: dhcpv4.MessageTypeOffer, yiaddr: true},
		{name: "ACK to SELECTING", mods: []dhcpv4.Modifier{requestMsg, ours, wants(clientIP)}, wantType: dhcpv4.MessageTypeAck, yiaddr: true},
		{name: "ACK to RENEWING echoes ciaddr", mods: []dhcpv4.Modifier{requestMsg, dhcpv4.WithClientIP(clientIP)}, wantType: dhcpv4.MessageTypeAck, yiaddr: true, ciaddr: clientIP},
		{name: "ACK to INFORM: options, no address, no lease", mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(clientIP)}, wantType: dhcpv4.MessageTypeAck, ciaddr: clientIP},
		{name: "OFFER to a booted PXE client carries its boot options", mods: pxe, boot: true, wantType: dhcpv4.MessageTypeOffer, yiaddr: true, wantFile: "ipxe.efi"},
		{name: "ACK to a booted PXE client too", mods: append([]dhcpv4.Modifier{requestMsg, ours, wants(clientIP)}, pxe...), boot: true, wantType: dhcpv4.MessageTypeAck, yiaddr: true, wantFile: "ipxe.efi"},
		{name: "a PXE client not booted gets the address only", mods: pxe, wantType: dhcpv4.MessageTypeOffer, yiaddr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := packet(t, tt.mods...)
			var boot []dhcpv4.Modifier
			if tt.boot {
				c, err := Classify(req)
				if err != nil {
					t.Fatalf("Classify: %v", err)
				}
				if boot, err = bootOptions(req, c, Verdict{Boot: true}, testConfig()); err != nil {
					t.Fatalf("bootOptions: %v", err)
				}
			}
			reply, err := leaseReply(req, testAssignment(), boot, testServerIP)
			if err != nil {
				t.Fatalf("leaseReply: %v", err)
			}
			got, err := dhcpv4.FromBytes(reply.ToBytes())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if got.OpCode != dhcpv4.OpcodeBootReply || got.MessageType() != tt.wantType || got.TransactionID != req.TransactionID {
				t.Errorf("reply is %s %s xid %s, want BootReply %s xid %s", got.OpCode, got.MessageType(), got.TransactionID, tt.wantType, req.TransactionID)
			}
			wantYI := net.IPv4zero
			if tt.yiaddr {
				wantYI = clientIP
			}
			wantCI := tt.ciaddr
			if wantCI == nil {
				wantCI = net.IPv4zero
			}
			if !got.YourIPAddr.Equal(wantYI) || !got.ClientIPAddr.Equal(wantCI) {
				t.Errorf("yiaddr %s ciaddr %s, want %s %s", got.YourIPAddr, got.ClientIPAddr, wantYI, wantCI)
			}
			if !got.ServerIdentifier().Equal(testServerIP) {
				t.Errorf("option 54 = %s, want %s", got.ServerIdentifier(), testServerIP)
			}
			if m := net.IP(got.SubnetMask()).String(); m != "255.255.240.0" {
				t.Errorf("option 1 = %s, want 255.255.240.0 from the /20", m)
			}
			if r := got.Router(); len(r) != 1 || !r[0].Equal(net.IPv4(10, 99, 0, 1)) {
				t.Errorf("option 3 = %v, want [10.99.0.1]", r)
			}
			if d := got.DNS(); len(d) != 2 || !d[1].Equal(net.IPv4(10, 99, 0, 53)) {
				t.Errorf("option 6 = %v, want [10.99.0.1 10.99.0.53]", d)
			}
			lease, t1, t2 := got.IPAddressLeaseTime(0), got.IPAddressRenewalTime(0), got.IPAddressRebindingTime(0)
			if tt.yiaddr && (lease != time.Hour || t1 != 30*time.Minute || t2 != 52*time.Minute+30*time.Second) {
				t.Errorf("options 51/58/59 = %v/%v/%v, want 1h/30m/52m30s", lease, t1, t2)
			}
			if !tt.yiaddr && (got.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || got.Options.Has(dhcpv4.OptionRenewTimeValue)) {
				t.Errorf("an INFORM reply carries lease times")
			}
			if got.BootFileName != tt.wantFile {
				t.Errorf("file = %q, want %q", got.BootFileName, tt.wantFile)
			}
			booted := tt.wantFile != ""
			if got.Options.Has(dhcpv4.OptionClassIdentifier) != booted || got.Options.Has(dhcpv4.OptionVendorSpecificInformation) != booted ||
				got.ServerIPAddr.Equal(testServerIP) != booted {
				t.Errorf("boot options (60 %q, 43 %x, siaddr %s) present must be %v", got.ClassIdentifier(), got.GetOneOption(dhcpv4.OptionVendorSpecificInformation), got.ServerIPAddr, booted)
			}
			if booted && (got.ClassIdentifier() != "PXEClient" || !bytes.Equal(got.GetOneOption(dhcpv4.OptionClientMachineIdentifier), testGUID)) {
				t.Errorf("option 60 %q, 97 %x; want PXEClient and the request's GUID", got.ClassIdentifier(), got.GetOneOption(dhcpv4.OptionClientMachineIdentifier))
			}
		})
	}
}

func TestLeaseReplyRelayed(t *testing.T) {
	req := packet(t, dhcpv4.WithRelay(relayIP), dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 3, 'p', 'o', 'r'}))
	reply, err := leaseReply(req, testAssignment(), nil, testServerIP)
	if err != nil {
		t.Fatal(err)
	}
	if !reply.GatewayIPAddr.Equal(relayIP) || !bytes.Equal(reply.GetOneOption(dhcpv4.OptionRelayAgentInformation), []byte{1, 3, 'p', 'o', 'r'}) {
		t.Errorf("giaddr %s option 82 %x: the relay needs both back", reply.GatewayIPAddr, reply.GetOneOption(dhcpv4.OptionRelayAgentInformation))
	}
}

func TestLeaseReplyErrors(t *testing.T) {
	req := packet(t)
	for _, tc := range []struct {
		name   string
		req    *dhcpv4.DHCPv4
		edit   func(*Assignment)
		server net.IP
		reason string
	}{
		{name: "no lease time", req: req, edit: func(a *Assignment) { a.LeaseTime = 0 }, reason: "lease time"},
		{name: "lease under a second", req: req, edit: func(a *Assignment) { a.LeaseTime = time.Millisecond }, reason: "lease time"},
		{name: "address outside its subnet", req: req, edit: func(a *Assignment) { a.IP = netip.MustParseAddr("10.1.0.1") }, reason: "not an IPv4 address in subnet"},
		{name: "IPv6 address", req: req, edit: func(a *Assignment) { a.IP = netip.MustParseAddr("fd00::1") }, reason: "not an IPv4 address"},
		{name: "no server IP", req: req, edit: func(*Assignment) {}, server: net.ParseIP("fd00::2"), reason: "server IP"},
		{name: "RELEASE", req: packet(t, msgType(dhcpv4.MessageTypeRelease)), edit: func(*Assignment) {}, reason: "gets no lease reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAssignment()
			tc.edit(&a)
			server := testServerIP
			if tc.server != nil {
				server = tc.server
			}
			if _, err := leaseReply(tc.req, a, nil, server); err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("leaseReply error = %v, want one mentioning %q", err, tc.reason)
			}
		})
	}
}

func TestNakReply(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req       *dhcpv4.DHCPv4
		broadcast bool
		dst       string
	}{
		{name: "INIT-REBOOT on the wrong network: broadcast", req: packet(t, requestMsg, wants(clientIP), dhcpv4.WithBroadcast(false)), dst: "255.255.255.255:68"},
		{name: "RENEWING: broadcast, not to ciaddr", req: packet(t, requestMsg, dhcpv4.WithClientIP(clientIP), dhcpv4.WithBroadcast(false)), dst: "255.255.255.255:68"},
		{name: "relayed: to the relay, with the broadcast flag", req: packet(t, requestMsg, wants(clientIP), dhcpv4.WithRelay(relayIP)), broadcast: true, dst: "10.98.0.254:67"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := nakReply(tc.req, testServerIP, "address refused")
			if err != nil {
				t.Fatal(err)
			}
			got, err := dhcpv4.FromBytes(reply.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			if got.MessageType() != dhcpv4.MessageTypeNak || !got.YourIPAddr.IsUnspecified() || !got.ServerIdentifier().Equal(testServerIP) || got.Message() != "address refused" {
				t.Errorf("got %s yiaddr %s 54 %s 56 %q; want a NAK from us, no address, with the reason", got.MessageType(), got.YourIPAddr, got.ServerIdentifier(), got.Message())
			}
			if got.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || got.Options.Has(dhcpv4.OptionSubnetMask) || got.BootFileName != "" {
				t.Errorf("a NAK carries lease options or a file: %s", got.Summary())
			}
			if tc.broadcast && !got.IsBroadcast() {
				t.Error("relayed NAK without the broadcast flag")
			}
			dst, err := leaseReplyAddr(tc.req, got, &net.UDPAddr{IP: net.IPv4zero, Port: 68}, ports{client: 68, relay: 67})
			if err != nil || dst.String() != tc.dst {
				t.Errorf("NAK goes to %v (%v), want %s", dst, err, tc.dst)
			}
		})
	}
}

func TestLeaseReplyAddr(t *testing.T) {
	p := ports{client: 68, relay: 67}
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		want string
	}{
		{name: "OFFER: broadcast (no ARP entry for yiaddr)", req: packet(t, dhcpv4.WithBroadcast(false)), want: "255.255.255.255:68"},
		{name: "broadcast flag: broadcast", req: packet(t), want: "255.255.255.255:68"},
		{name: "relayed: the relay", req: packet(t, dhcpv4.WithRelay(relayIP)), want: "10.98.0.254:67"},
		{name: "RENEWING: unicast to ciaddr", req: packet(t, requestMsg, dhcpv4.WithClientIP(clientIP), dhcpv4.WithBroadcast(false)), want: "10.99.0.150:68"},
		{name: "relayed REBINDING: the relay", req: packet(t, requestMsg, dhcpv4.WithClientIP(clientIP), dhcpv4.WithRelay(relayIP)), want: "10.98.0.254:67"},
		{name: "INFORM: unicast to ciaddr", req: packet(t, msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(clientIP)), want: "10.99.0.150:68"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := leaseReply(tc.req, testAssignment(), nil, testServerIP)
			if err != nil {
				t.Fatal(err)
			}
			dst, err := leaseReplyAddr(tc.req, reply, &net.UDPAddr{IP: net.IPv4zero, Port: 68}, p)
			if err != nil || dst.String() != tc.want {
				t.Errorf("reply goes to %v (%v), want %s", dst, err, tc.want)
			}
		})
	}
}

// The loader a profile names changes the file of exactly the clients it can
// boot, in both modes' replies (they share bootOptions).
func TestBootFileLoader(t *testing.T) {
	shim := Verdict{Boot: true, Loader: LoaderShim}
	uki := Verdict{Boot: true, Loader: LoaderUKI, UKI: "http://10.99.0.2:8080/assets/talos/uki.efi"}
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		v    Verdict
		want string
	}{
		{name: "shim: EDK2 x86-64 PXE", mods: []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64)}, v: shim, want: "shimx64.efi"},
		{name: "shim: EFI BC", mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00009:UNDI:003016"), arch(iana.EFI_BC)}, v: shim, want: "shimx64.efi"},
		{name: "shim: EFI IA32 (x86-64 firmware sends it)", mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00006:UNDI:003016"), arch(iana.EFI_IA32)}, v: shim, want: "shimx64.efi"},
		{name: "shim: BIOS keeps undionly.kpxe", mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC)}, v: shim, want: "undionly.kpxe"},
		{name: "shim: arm64 keeps snp.efi", mods: []dhcpv4.Modifier{vendor(vcEDK2ARM), arch(iana.EFI_ARM64)}, v: shim, want: "snp.efi"},
		{name: "shim: HTTP Boot keeps the ipxe.efi URL", mods: []dhcpv4.Modifier{vendor(vcHTTPBoot), arch(iana.EFI_X86_64_HTTP)}, v: shim, want: "http://10.99.0.2:8080/nbp/ipxe.efi"},
		{name: "shim: iPXE keeps the script", mods: []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64), rawUserClass("iPXE")}, v: shim, want: "http://10.99.0.2:8080/boot.ipxe"},
		{name: "uki: HTTP Boot x86-64 gets the UKI", mods: []dhcpv4.Modifier{vendor(vcHTTPBoot), arch(iana.EFI_X86_64_HTTP)}, v: uki, want: "http://10.99.0.2:8080/assets/talos/uki.efi"},
		{name: "uki: HTTP Boot arm64 keeps the snp.efi URL", mods: []dhcpv4.Modifier{vendor("HTTPClient:Arch:00019:UNDI:003000"), arch(iana.EFI_ARM64_HTTP)}, v: uki, want: "http://10.99.0.2:8080/nbp/snp.efi"},
		{name: "uki: PXE keeps ipxe.efi", mods: []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64)}, v: uki, want: "ipxe.efi"},
		{name: "uki: iPXE keeps the script", mods: []dhcpv4.Modifier{vendor(vcHTTPBoot), arch(iana.EFI_X86_64_HTTP), rawUserClass("iPXE")}, v: uki, want: "http://10.99.0.2:8080/boot.ipxe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := packet(t, tt.mods...)
			c, err := Classify(req)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			proxy, err := Decide(req, c, tt.v, testConfig())
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			boot, err := bootOptions(req, c, tt.v, testConfig())
			if err != nil {
				t.Fatalf("bootOptions: %v", err)
			}
			auth, err := leaseReply(req, testAssignment(), boot, testServerIP)
			if err != nil {
				t.Fatalf("leaseReply: %v", err)
			}
			for mode, reply := range map[string]*dhcpv4.DHCPv4{"proxy": proxy, "authoritative": auth} {
				if reply.BootFileName != tt.want || !reply.ServerIPAddr.Equal(testServerIP) {
					t.Errorf("%s: file %q siaddr %s, want %q from %s", mode, reply.BootFileName, reply.ServerIPAddr, tt.want, testServerIP)
				}
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		req := packet(t, vendor(vcHTTPBoot), arch(iana.EFI_X86_64_HTTP))
		c, err := Classify(req)
		if err != nil {
			t.Fatal(err)
		}
		for v, reason := range map[Verdict]string{
			{Boot: true, Loader: LoaderUKI}:                                                   "is not an http(s) URL",
			{Boot: true, Loader: LoaderUKI, UKI: "/assets/talos/uki.efi"}:                     "is not an http(s) URL",
			{Boot: true, Loader: "grub"}:                                                      `unknown loader "grub"`,
			{Boot: true, Loader: LoaderUKI, UKI: "http://" + strings.Repeat("u", maxFileLen)}: "longer than",
		} {
			if _, err := Decide(req, c, v, testConfig()); err == nil || !strings.Contains(err.Error(), reason) {
				t.Errorf("Decide(%+v) error = %v, want one mentioning %q", v, err, reason)
			}
		}
	})
}
