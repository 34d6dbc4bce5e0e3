package dhcp

import (
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want Client // MAC is always testMAC
	}{
		{
			name: "BIOS PXE ROM",
			mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC), guid()},
			want: Client{UUID: testUUID, Arch: iana.INTEL_X86PC, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "EDK2 x86-64",
			mods: []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64), guid()},
			want: Client{UUID: testUUID, Arch: iana.EFI_X86_64, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "EDK2 arm64",
			mods: []dhcpv4.Modifier{vendor(vcEDK2ARM), arch(iana.EFI_ARM64), guid()},
			want: Client{UUID: testUUID, Arch: iana.EFI_ARM64, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "UEFI HTTP Boot",
			mods: []dhcpv4.Modifier{vendor(vcHTTPBoot), arch(iana.EFI_X86_64_HTTP), guid()},
			want: Client{UUID: testUUID, Arch: iana.EFI_X86_64_HTTP, HTTP: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "UEFI HTTP Boot arm64",
			mods: []dhcpv4.Modifier{vendor("HTTPClient:Arch:00019:UNDI:003000"), arch(iana.EFI_ARM64_HTTP)},
			want: Client{Arch: iana.EFI_ARM64_HTTP, HTTP: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "iPXE ROM with user class and option 175",
			mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC), guid(), rawUserClass("iPXE"), ipxeOptions()},
			want: Client{UUID: testUUID, Arch: iana.INTEL_X86PC, IPXE: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "iPXE user class in RFC 3004 encoding",
			mods: []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64), dhcpv4.WithUserClass("iPXE", true)},
			want: Client{Arch: iana.EFI_X86_64, IPXE: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "ipxedust Tinkerbell raw user class after chainload",
			mods: []dhcpv4.Modifier{vendor("PXEClient"), arch(iana.EFI_ARM64), guid(), rawUserClass("Tinkerbell")},
			want: Client{UUID: testUUID, Arch: iana.EFI_ARM64, IPXE: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "Tinkerbell user class in RFC 3004 encoding",
			mods: []dhcpv4.Modifier{vendor("PXEClient"), arch(iana.EFI_X86_64), dhcpv4.WithUserClass("Tinkerbell", true)},
			want: Client{Arch: iana.EFI_X86_64, IPXE: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "bare PXEClient after chainload, option 175 only",
			mods: []dhcpv4.Modifier{vendor("PXEClient"), arch(iana.EFI_X86_64), ipxeOptions()},
			want: Client{Arch: iana.EFI_X86_64, IPXE: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "iPXE on an architecture without NBP still gets the script",
			mods: []dhcpv4.Modifier{vendor("PXEClient"), arch(iana.EFI_ARM32), rawUserClass("iPXE")},
			want: Client{Arch: iana.EFI_ARM32, IPXE: true, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "arch from option 60 when option 93 is missing",
			mods: []dhcpv4.Modifier{vendor(vcEDK2x64)},
			want: Client{Arch: iana.EFI_X86_64, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "arch from option 60 when option 93 is malformed",
			mods: []dhcpv4.Modifier{vendor(vcEDK2ARM), dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{7})},
			want: Client{Arch: iana.EFI_ARM64, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "REQUEST",
			mods: []dhcpv4.Modifier{vendor(vcEDK2x64), arch(iana.EFI_X86_64), msgType(dhcpv4.MessageTypeRequest)},
			want: Client{Arch: iana.EFI_X86_64, MessageType: dhcpv4.MessageTypeRequest},
		},
		{
			name: "malformed GUID boots without UUID",
			mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testGUID[1:])},
			want: Client{Arch: iana.INTEL_X86PC, MessageType: dhcpv4.MessageTypeDiscover},
		},
		{
			name: "GUID with non-zero type boots without UUID",
			mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(iana.INTEL_X86PC), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{1}, testGUID[1:]...))},
			want: Client{Arch: iana.INTEL_X86PC, MessageType: dhcpv4.MessageTypeDiscover},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Classify(packet(t, tt.mods...))
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			tt.want.MAC = testMAC
			if got.MAC.String() != tt.want.MAC.String() || got.UUID != tt.want.UUID || got.Arch != tt.want.Arch ||
				got.IPXE != tt.want.IPXE || got.HTTP != tt.want.HTTP || got.MessageType != tt.want.MessageType {
				t.Errorf("Classify =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestClassifyIgnores(t *testing.T) {
	tests := []struct {
		name   string
		mods   []dhcpv4.Modifier
		reason string // substring of the error
	}{
		{name: "no vendor class", mods: []dhcpv4.Modifier{arch(iana.INTEL_X86PC)}, reason: "neither PXEClient nor HTTPClient"},
		{name: "Windows client", mods: []dhcpv4.Modifier{vendor("MSFT 5.0")}, reason: "neither PXEClient nor HTTPClient"},
		{name: "busybox udhcpc", mods: []dhcpv4.Modifier{vendor("udhcp 1.36.1")}, reason: "neither PXEClient nor HTTPClient"},
		{name: "lower-case pxeclient", mods: []dhcpv4.Modifier{vendor("pxeclient"), arch(0)}, reason: "neither PXEClient nor HTTPClient"},
		{name: "bare PXEClient without option 93", mods: []dhcpv4.Modifier{vendor("PXEClient")}, reason: "no client architecture"},
		{name: "non-numeric Arch in option 60", mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:x86:UNDI:002001")}, reason: "bad Arch field"},
		{name: "PXE arm32 has no NBP", mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00010:UNDI:003000"), arch(iana.EFI_ARM32)}, reason: "no boot program"},
		{name: "HTTPClient with a PXE arch", mods: []dhcpv4.Modifier{vendor("HTTPClient"), arch(iana.EFI_X86_64)}, reason: "no boot program"},
		{name: "PXEClient with an HTTP arch", mods: []dhcpv4.Modifier{vendor("PXEClient"), arch(iana.EFI_X86_64_HTTP)}, reason: "no boot program"},
		{name: "BIOS over HTTP", mods: []dhcpv4.Modifier{vendor("HTTPClient"), arch(iana.INTEL_X86PC)}, reason: "no boot program"},
		{name: "INFORM", mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(0), msgType(dhcpv4.MessageTypeInform)}, reason: "not DISCOVER or REQUEST"},
		{name: "RELEASE", mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(0), msgType(dhcpv4.MessageTypeRelease)}, reason: "not DISCOVER or REQUEST"},
		{name: "BOOTP without message type", mods: []dhcpv4.Modifier{vendor(vcBIOS), arch(0), dhcpv4.WithoutOption(dhcpv4.OptionDHCPMessageType)}, reason: "not DISCOVER or REQUEST"},
		{
			name:   "another server's OFFER",
			mods:   []dhcpv4.Modifier{vendor(vcBIOS), arch(0), msgType(dhcpv4.MessageTypeOffer), func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }},
			reason: "not a request",
		},
		{
			name:   "not Ethernet",
			mods:   []dhcpv4.Modifier{vendor(vcBIOS), arch(0), dhcpv4.WithHWType(iana.HWTypeInfiniband)},
			reason: "not Ethernet",
		},
		{
			name:   "short hardware address",
			mods:   []dhcpv4.Modifier{vendor(vcBIOS), arch(0), dhcpv4.WithHwAddr(testMAC[:4])},
			reason: "not Ethernet",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Classify(packet(t, tt.mods...))
			if err == nil {
				t.Fatalf("Classify = %+v, want ignored (%s)", c, tt.reason)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("reason %q, want it to mention %q", err, tt.reason)
			}
		})
	}
}

func TestClientUUID(t *testing.T) {
	tests := []struct {
		name string
		opt  []byte
		want string
	}{
		{name: "EFI byte order swapped to canonical", opt: testGUID, want: testUUID},
		// A real pair: dmidecode / iPXE ${uuid} of a QEMU VM started with -uuid, and
		// the option 97 bytes its iPXE ROM sends.
		{name: "qemu -uuid", opt: []byte{0, 0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}, want: "12345678-1234-5678-1234-56789abcdef0"},
		{name: "leading zero bytes kept", opt: make([]byte, 17), want: "00000000-0000-0000-0000-000000000000"},
		{name: "absent", opt: nil, want: ""},
		{name: "too long", opt: append(append([]byte{}, testGUID...), 0), want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientUUID(tt.opt); got != tt.want {
				t.Errorf("clientUUID = %q, want %q", got, tt.want)
			}
		})
	}
}
