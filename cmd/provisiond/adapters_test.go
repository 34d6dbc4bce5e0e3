package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/tftp"
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

// UEFI HTTP Boot firmware commits to this server with its REQUEST; a
// DISCOVER may still take another offer, and PXE clients never do.
func TestDHCPRequestHTTPBoot(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	for _, tc := range []struct {
		name string
		in   dhcp.Client
		want boot.HTTPBootStage
	}{
		{"authoritative DISCOVER", dhcp.Client{MAC: mac, Arch: iana.EFI_X86_64_HTTP, HTTP: true, MessageType: dhcpv4.MessageTypeDiscover}, boot.HTTPBootDiscover},
		{"authoritative REQUEST", dhcp.Client{MAC: mac, Arch: iana.EFI_X86_64_HTTP, HTTP: true, MessageType: dhcpv4.MessageTypeRequest}, boot.HTTPBootRequest},
		{"iPXE over HTTP", dhcp.Client{MAC: mac, Arch: iana.EFI_X86_64_HTTP, HTTP: true, IPXE: true, MessageType: dhcpv4.MessageTypeRequest}, boot.NotHTTPBoot},
		{"PXE", dhcp.Client{MAC: mac, Arch: iana.EFI_X86_64, MessageType: dhcpv4.MessageTypeRequest}, boot.NotHTTPBoot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dhcpRequest(tc.in).HTTPBoot; got != tc.want {
				t.Errorf("HTTPBoot = %v, want %v", got, tc.want)
			}
		})
	}
}

// A TFTP transfer is logged once, at info, with the machine the core puts to
// the client's address, and counted.
func TestTFTPTransfers(t *testing.T) {
	var buf bytes.Buffer
	var counted []tftp.Transfer
	o := tftpTransfers{
		identify: func(_ context.Context, ip netip.Addr) boot.Identity {
			if ip == netip.MustParseAddr("10.99.0.50") {
				return boot.Identity{MAC: "52:54:00:00:00:01", UUID: "4c4c4544-0042-3510-8052-b7c04f4e3232", Machine: "node1"}
			}
			return boot.Identity{}
		},
		count: func(tr tftp.Transfer) { counted = append(counted, tr) },
		log:   slog.New(slog.NewJSONHandler(&buf, nil)),
	}
	o.done(tftp.Transfer{Client: "10.99.0.50:2070", File: "undionly.kpxe", Bytes: 70000, Duration: time.Second})
	o.done(tftp.Transfer{Client: "192.0.2.9:2070", File: "nope", Err: fs.ErrNotExist})
	// How every boot goes: debug lines, counted all the same.
	o.done(tftp.Transfer{Client: "10.99.0.50:2071", File: "ipxe.efi", Err: fmt.Errorf("%w (sending block 0: code=8)", tftp.ErrProbe)})
	o.done(tftp.Transfer{Client: "10.99.0.50:2072", File: "autoexec.ipxe", Err: fs.ErrNotExist})
	o.done(tftp.Transfer{Client: "10.99.0.50:2073", File: "ipxe.efi", Err: tftp.ErrBusy})
	if len(counted) != 5 {
		t.Errorf("counted %d transfers; want 5", len(counted))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log:\n%s\nwant two lines at info", buf.String())
	}
	for i, want := range []map[string]any{
		{"level": "INFO", "msg": "tftp transfer", "mac": "52:54:00:00:00:01", "uuid": "4c4c4544-0042-3510-8052-b7c04f4e3232", "machine": "node1", "file": "undionly.kpxe", "outcome": "ok"},
		{"level": "INFO", "msg": "tftp transfer", "mac": "", "uuid": "", "machine": "", "file": "nope", "outcome": "not_found"},
	} {
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("line %d: %s = %v; want %v (%s)", i, k, rec[k], v, lines[i])
			}
		}
	}
}
