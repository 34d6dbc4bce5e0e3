package main

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
)

func TestDHCPRequest(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	for _, tc := range []struct {
		name string
		in   dhcp.Client
		want boot.Request
	}{
		{"BIOS", dhcp.Client{MAC: mac, Arch: iana.INTEL_X86PC}, boot.Request{MAC: "52:54:00:00:00:01", Arch: "bios"}},
		{"UEFI x86_64 with UUID", dhcp.Client{MAC: mac, Arch: iana.EFI_X86_64, UUID: "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b"},
			boot.Request{MAC: "52:54:00:00:00:01", Arch: "efi-x86_64", UUID: "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b"}},
		{"EFI BC is x86_64", dhcp.Client{MAC: mac, Arch: iana.EFI_BC}, boot.Request{MAC: "52:54:00:00:00:01", Arch: "efi-x86_64"}},
		{"arm64 HTTP boot", dhcp.Client{MAC: mac, Arch: iana.EFI_ARM64_HTTP}, boot.Request{MAC: "52:54:00:00:00:01", Arch: "efi-arm64"}},
		{"placeholder UUID dropped", dhcp.Client{MAC: mac, Arch: iana.EFI_X86_64, UUID: "00000000-0000-0000-0000-000000000000"},
			boot.Request{MAC: "52:54:00:00:00:01", Arch: "efi-x86_64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dhcpRequest(tc.in); got.MAC != tc.want.MAC || got.UUID != tc.want.UUID || got.Arch != tc.want.Arch {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
