package main

import (
	"context"
	"strings"

	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/ident"
)

// dhcpBooter adapts the boot core to the proxyDHCP's Booter, so internal/dhcp
// never learns about profiles or the store.
type dhcpBooter struct{ core *boot.Core }

func (b dhcpBooter) BootPXE(ctx context.Context, c dhcp.Client) (bool, error) {
	return b.core.BootPXE(ctx, dhcpRequest(c))
}

// dhcpRequest is what a DHCP client tells the boot core about itself.
func dhcpRequest(c dhcp.Client) boot.Request {
	r := boot.Request{
		MAC:  c.MAC.String(), // net.HardwareAddr prints the canonical lower-case colon form
		Arch: dhcpArch(c),
	}
	if !ident.PlaceholderUUID(c.UUID) {
		r.UUID = c.UUID
	}
	return r
}

// dhcpArch names a client's architecture in the inventory's vocabulary (boot.Arch).
func dhcpArch(c dhcp.Client) string {
	switch c.Arch {
	case iana.INTEL_X86PC:
		return boot.Arch("pcbios", "i386")
	case iana.EFI_IA32:
		return boot.Arch("efi", "i386")
	case iana.EFI_BC, iana.EFI_X86_64, iana.EFI_X86_64_HTTP:
		return boot.Arch("efi", "x86_64")
	case iana.EFI_ARM32, iana.EFI_ARM32_HTTP:
		return boot.Arch("efi", "arm32")
	case iana.EFI_ARM64, iana.EFI_ARM64_HTTP:
		return boot.Arch("efi", "arm64")
	}
	return strings.ToLower(strings.ReplaceAll(c.Arch.String(), " ", "-"))
}
