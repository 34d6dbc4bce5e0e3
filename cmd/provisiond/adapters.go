package main

import (
	"context"
	"strings"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
)

// dhcpBooter adapts the boot core to the proxyDHCP's Booter, so internal/dhcp
// never learns about profiles or the store.
type dhcpBooter struct{ core *boot.Core }

func (b dhcpBooter) BootPXE(ctx context.Context, c dhcp.Client) (bool, error) {
	return b.core.BootPXE(ctx, boot.Request{
		MAC:  c.MAC.String(), // net.HardwareAddr prints the canonical lower-case colon form
		UUID: c.UUID,
		Arch: dhcpArch(c),
	})
}

// dhcpArch names a client's architecture for the inventory, e.g. "efi-x86_64".
func dhcpArch(c dhcp.Client) string {
	return strings.ToLower(strings.ReplaceAll(c.Arch.String(), " ", "-"))
}
