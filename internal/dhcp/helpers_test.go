package dhcp

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Real-world option values, as captured from the firmware named.
const (
	vcBIOS     = "PXEClient:Arch:00000:UNDI:002001" // BIOS PXE ROM
	vcEDK2x64  = "PXEClient:Arch:00007:UNDI:003016" // OVMF
	vcEDK2ARM  = "PXEClient:Arch:00011:UNDI:003000" // QEMU_EFI.fd aarch64
	vcHTTPBoot = "HTTPClient:Arch:00016:UNDI:003000"
	// testGUID on the wire, in EFI byte order, is testUUID as iPXE prints ${uuid}.
	testUUID = "33221100-5544-7766-8899-aabbccddeeff"
)

var (
	testMAC      = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	testServerIP = net.IPv4(10, 99, 0, 2).To4()
	testGUID     = []byte{0, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
)

func testConfig() Config {
	return Config{ServerIP: testServerIP, AdvertiseURL: "http://10.99.0.2:8080"}
}

// packet builds a request the way it arrives: marshalled and parsed again, so options
// look exactly as on the wire (a raw user class stays raw).
func packet(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(testMAC),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithBroadcast(true),
	}
	d, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatalf("build packet: %v", err)
	}
	p, err := dhcpv4.FromBytes(d.ToBytes())
	if err != nil {
		t.Fatalf("parse built packet: %v", err)
	}
	return p
}

func vendor(vc string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc))
}

func arch(a iana.Arch) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClientArch(a))
}

func guid() dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testGUID)
}

// rawUserClass is option 77 as iPXE and ipxedust send it: the bytes, no RFC 3004 length.
func rawUserClass(uc string) dhcpv4.Modifier {
	return dhcpv4.WithUserClass(uc, false)
}

// ipxeOptions is option 175 (iPXE's encapsulated options), here with only "priority 0".
func ipxeOptions() dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, []byte{1, 1, 0})
}

func msgType(m dhcpv4.MessageType) dhcpv4.Modifier {
	return dhcpv4.WithMessageType(m)
}

// Firmware requests used across tests.
func biosDiscover(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	return packet(t, append([]dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC), guid()}, mods...)...)
}
