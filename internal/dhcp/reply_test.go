package dhcp

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name     string
		req      []dhcpv4.Modifier
		wantType dhcpv4.MessageType
		wantFile string
		wantVC   string // option 60 in the reply
		want43   bool
	}{
		{
			name:     "BIOS gets undionly.kpxe over TFTP",
			req:      []dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC), guid()},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "undionly.kpxe", wantVC: "PXEClient", want43: true,
		},
		{
			name:     "EDK2 x86-64 gets ipxe.efi over TFTP",
			req:      []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64), guid()},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "ipxe.efi", wantVC: "PXEClient", want43: true,
		},
		{
			name:     "EFI IA32 gets ipxe.efi",
			req:      []dhcpv4.Modifier{vendor("PXEClient:Arch:00006:UNDI:003016"), arch(iana.EFI_IA32)},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "ipxe.efi", wantVC: "PXEClient", want43: true,
		},
		{
			name:     "EFI BC gets ipxe.efi",
			req:      []dhcpv4.Modifier{vendor("PXEClient:Arch:00009:UNDI:003016"), arch(iana.EFI_BC)},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "ipxe.efi", wantVC: "PXEClient", want43: true,
		},
		{
			name:     "EDK2 arm64 gets snp.efi over TFTP",
			req:      []dhcpv4.Modifier{vendor(vcEDK2ARM), arch(iana.EFI_ARM64), guid()},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "snp.efi", wantVC: "PXEClient", want43: true,
		},
		{
			name:     "HTTP Boot x86-64 gets the ipxe.efi URL, HTTPClient, no option 43",
			req:      []dhcpv4.Modifier{vendor(vcHTTPBoot), arch(iana.EFI_X86_64_HTTP), guid()},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://10.99.0.2:8080/nbp/ipxe.efi", wantVC: "HTTPClient",
		},
		{
			name:     "HTTP Boot arm64 gets the snp.efi URL",
			req:      []dhcpv4.Modifier{vendor("HTTPClient:Arch:00019:UNDI:003000"), arch(iana.EFI_ARM64_HTTP)},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://10.99.0.2:8080/nbp/snp.efi", wantVC: "HTTPClient",
		},
		{
			name:     "iPXE gets the chain script URL",
			req:      []dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC), guid(), rawUserClass("iPXE"), ipxeOptions()},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://10.99.0.2:8080/boot.ipxe", wantVC: "PXEClient", want43: true,
		},
		{
			name:     "ipxedust arm64 gets the chain script URL",
			req:      []dhcpv4.Modifier{vendor("PXEClient"), arch(iana.EFI_ARM64), rawUserClass("Tinkerbell")},
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://10.99.0.2:8080/boot.ipxe", wantVC: "PXEClient", want43: true,
		},
		{
			name:     "REQUEST gets an ACK with the same boot file",
			req:      []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64), guid(), msgType(dhcpv4.MessageTypeRequest)},
			wantType: dhcpv4.MessageTypeAck, wantFile: "ipxe.efi", wantVC: "PXEClient", want43: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := packet(t, tt.req...)
			c, err := Classify(req)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			reply, err := Decide(req, c, Verdict{Boot: true}, testConfig())
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			// Check the reply as the client sees it.
			got, err := dhcpv4.FromBytes(reply.ToBytes())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if got.OpCode != dhcpv4.OpcodeBootReply || got.MessageType() != tt.wantType {
				t.Errorf("reply is %s %s, want BootReply %s", got.OpCode, got.MessageType(), tt.wantType)
			}
			if got.TransactionID != req.TransactionID || got.ClientHWAddr.String() != testMAC.String() {
				t.Errorf("reply xid %s chaddr %s, want %s %s", got.TransactionID, got.ClientHWAddr, req.TransactionID, testMAC)
			}
			if got.BootFileName != tt.wantFile {
				t.Errorf("file = %q, want %q", got.BootFileName, tt.wantFile)
			}
			if !got.YourIPAddr.IsUnspecified() {
				t.Errorf("yiaddr = %s: a proxy must never hand out an address", got.YourIPAddr)
			}
			if !got.ServerIPAddr.Equal(testServerIP) || !got.ServerIdentifier().Equal(testServerIP) {
				t.Errorf("siaddr %s, option 54 %s, want both %s", got.ServerIPAddr, got.ServerIdentifier(), testServerIP)
			}
			if vc := got.ClassIdentifier(); vc != tt.wantVC {
				t.Errorf("option 60 = %q, want %q", vc, tt.wantVC)
			}
			if has := got.Options.Has(dhcpv4.OptionVendorSpecificInformation); has != tt.want43 {
				t.Errorf("option 43 present = %v, want %v", has, tt.want43)
			}
			if tt.want43 && !bytes.Equal(got.GetOneOption(dhcpv4.OptionVendorSpecificInformation), []byte{6, 1, 8, 255}) {
				t.Errorf("option 43 = %x, want discovery control 8", got.GetOneOption(dhcpv4.OptionVendorSpecificInformation))
			}
			if want := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got.GetOneOption(dhcpv4.OptionClientMachineIdentifier), want) {
				t.Errorf("option 97 = %x, want the request's %x", got.GetOneOption(dhcpv4.OptionClientMachineIdentifier), want)
			}
		})
	}
}

func TestDecideRelayed(t *testing.T) {
	relay := net.IPv4(10, 1, 2, 1).To4()
	req := biosDiscover(t, dhcpv4.WithRelay(relay))
	c, err := Classify(req)
	if err != nil {
		t.Fatalf("Classify: %v", err)
	}
	reply, err := Decide(req, c, Verdict{Boot: true}, testConfig())
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if !reply.GatewayIPAddr.Equal(relay) {
		t.Errorf("giaddr = %s, want the relay %s so it can forward the reply", reply.GatewayIPAddr, relay)
	}
}

func TestDecideErrors(t *testing.T) {
	req := biosDiscover(t)
	c, err := Classify(req)
	if err != nil {
		t.Fatalf("Classify: %v", err)
	}
	tests := []struct {
		name   string
		c      Client
		cfg    Config
		reason string
	}{
		{name: "no server IP", c: c, cfg: Config{AdvertiseURL: "http://x"}, reason: "not an IPv4"},
		{name: "unknown arch", c: Client{Arch: iana.EFI_ARM32}, cfg: testConfig(), reason: "no boot program"},
		{
			name:   "URL longer than the file field",
			c:      Client{IPXE: true},
			cfg:    Config{ServerIP: testServerIP, AdvertiseURL: "http://" + strings.Repeat("a", 120)},
			reason: "longer than",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decide(req, tt.c, Verdict{Boot: true}, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Decide error = %v, want one mentioning %q", err, tt.reason)
			}
		})
	}
}

func TestDecideTrailingSlash(t *testing.T) {
	cfg := testConfig()
	cfg.AdvertiseURL += "/"
	req := biosDiscover(t, rawUserClass("iPXE"))
	c, err := Classify(req)
	if err != nil {
		t.Fatalf("Classify: %v", err)
	}
	reply, err := Decide(req, c, Verdict{Boot: true}, cfg)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if want := "http://10.99.0.2:8080/boot.ipxe"; reply.BootFileName != want {
		t.Errorf("file = %q, want %q", reply.BootFileName, want)
	}
}

func BenchmarkDecide(b *testing.B) {
	req := packet(b, vendor(vcEDK2x64), arch(iana.EFI_X86_64), guid())
	wire := req.ToBytes()
	cfg := testConfig()
	b.ReportAllocs()
	for b.Loop() {
		// The whole per-packet path short of the socket: parse, classify, decide, marshal.
		req, err := dhcpv4.FromBytes(wire)
		if err != nil {
			b.Fatal(err)
		}
		c, err := Classify(req)
		if err != nil {
			b.Fatal(err)
		}
		reply, err := Decide(req, c, Verdict{Boot: true}, cfg)
		if err != nil {
			b.Fatal(err)
		}
		_ = reply.ToBytes()
	}
}

// A relay delivers a reply without the broadcast flag to yiaddr, which a
// proxy leaves 0: every reply to a client without an address must carry the
// flag, whatever the request had, and one to a client with an address need not.
func TestReplyBroadcastFlag(t *testing.T) {
	relayed := packet(t, vendor("PXEClient"), arch(iana.INTEL_X86PC), rawUserClass("iPXE"), dhcpv4.WithBroadcast(false), dhcpv4.WithRelay(net.IPv4(10, 98, 0, 254)))
	withAddr := packet(t, vendor(vcEDK2x64), arch(iana.EFI_X86_64), msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithBroadcast(false), dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 50)))
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		want bool
	}{{"relayed DISCOVER without the flag", relayed, true}, {"boot-server REQUEST from an address", withAddr, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Classify(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			reply, err := Decide(tc.req, c, Verdict{Boot: true}, testConfig())
			if err != nil {
				t.Fatal(err)
			}
			if reply.IsBroadcast() != tc.want {
				t.Errorf("broadcast flag %v, want %v", reply.IsBroadcast(), tc.want)
			}
		})
	}
}
