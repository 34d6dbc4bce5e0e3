package dhcp

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/ipxe"
)

// maxFileLen is the BOOTP file field (128 bytes) minus its terminating NUL.
const maxFileLen = 127

// pxeVendorOptions is option 43 with PXE sub-option 6 (PXE_DISCOVERY_CONTROL) = 8:
// "boot the file in this offer". Without option 43 EDK2 takes a PXEClient offer as a
// boot-server pointer and asks again on port 4011; with it, the first offer is enough.
func pxeVendorOptions() []byte {
	return []byte{6, 1, 8, 255}
}

// bootProgram names the iPXE build a firmware can run, by its architecture and
// whether it boots over HTTP (UEFI HTTP Boot) or TFTP (PXE).
func bootProgram(arch iana.Arch, http bool) (string, bool) {
	switch {
	case !http && arch == iana.INTEL_X86PC:
		return ipxe.UndionlyKPXE, true
	// 6 is IA32 by RFC 4578, but x86-64 firmware has been seen sending it, and 7/9
	// were swapped in the RFC's first version: all three get the x86-64 build.
	case !http && (arch == iana.EFI_IA32 || arch == iana.EFI_X86_64 || arch == iana.EFI_BC),
		http && arch == iana.EFI_X86_64_HTTP:
		return ipxe.IPXEEFI, true
	case !http && arch == iana.EFI_ARM64, http && arch == iana.EFI_ARM64_HTTP:
		return ipxe.SNPEFI, true
	}
	return "", false
}

// ShimNBP is the TFTP name of the signed shim a LoaderShim client boots:
// the operator's vendor-signed shimx64.efi, which then fetches grubx64.efi
// beside it.
const ShimNBP = "shimx64.efi"

// bootFile is what goes in the reply's file field for c, booted by v: the chain script
// URL for iPXE, the NBP's URL for UEFI HTTP Boot, the NBP's TFTP name for PXE firmware.
// v.Loader replaces iPXE for the clients it can boot: LoaderShim for UEFI x86-64 PXE
// firmware (the only firmware Secure Boot shims are built for here), LoaderUKI for x86-64
// UEFI HTTP Boot firmware, which loads the UKI straight from its URL. Every other client of
// such a profile gets what it gets without a loader.
func bootFile(c Client, v Verdict, advertiseURL string) (string, error) {
	base := strings.TrimSuffix(advertiseURL, "/")
	if c.IPXE {
		return base + "/boot.ipxe", nil
	}
	switch v.Loader {
	case "":
	case LoaderShim:
		if !c.HTTP && isX86EFI(c.Arch) {
			return ShimNBP, nil
		}
	case LoaderUKI:
		// x86-64 only: the arm64 path has no VM test.
		if c.HTTP && c.Arch == iana.EFI_X86_64_HTTP {
			if !strings.HasPrefix(v.UKI, "http://") && !strings.HasPrefix(v.UKI, "https://") {
				return "", fmt.Errorf("loader uki: UKI %q is not an http(s) URL", v.UKI)
			}
			return v.UKI, nil
		}
	default:
		return "", fmt.Errorf("unknown loader %q", v.Loader)
	}
	nbp, ok := bootProgram(c.Arch, c.HTTP)
	if !ok {
		return "", fmt.Errorf("no boot program for client arch %d (%s)", c.Arch, c.Arch)
	}
	if c.HTTP {
		return base + "/nbp/" + nbp, nil
	}
	return nbp, nil
}

// isX86EFI reports the PXE architectures that get the x86-64 EFI build (see bootProgram).
func isX86EFI(a iana.Arch) bool {
	return a == iana.EFI_IA32 || a == iana.EFI_X86_64 || a == iana.EFI_BC
}

// bootOptions are the options that tell network boot client c, booted by v, what to
// boot: the file field, siaddr, option 60 (with 43 for PXE) and option 97 echoed.
// The proxy's replies and the authoritative server's both carry exactly these.
func bootOptions(req *dhcpv4.DHCPv4, c Client, v Verdict, cfg Config) ([]dhcpv4.Modifier, error) {
	serverIP := cfg.ServerIP.To4()
	if serverIP == nil {
		return nil, errors.New("server IP is not an IPv4 address")
	}
	file, err := bootFile(c, v, cfg.AdvertiseURL)
	if err != nil {
		return nil, err
	}
	if len(file) > maxFileLen {
		return nil, fmt.Errorf("boot file %q is longer than the %d-byte file field", file, maxFileLen)
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithServerIP(serverIP),
		// PXE spec: the client matches the reply to itself by its GUID.
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
		func(d *dhcpv4.DHCPv4) { d.BootFileName = file },
	}
	if c.HTTP && !c.IPXE {
		// UEFI HTTP Boot wants option 60 "HTTPClient", an http URL in the file field and
		// no PXE option 43; it never asks port 4011.
		return append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendorHTTP))), nil
	}
	// PXE ROMs, EDK2 and iPXE (whatever its own vendor class) all recognise a boot
	// offer by "PXEClient"; a proxy's also by its yiaddr 0.
	return append(mods,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendorPXE)),
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions()),
	), nil
}

// Decide builds the proxyDHCP answer to req from client c, booted by v: an OFFER to a
// DISCOVER, an ACK to a REQUEST, carrying boot information and never an address
// (yiaddr stays 0).
func Decide(req *dhcpv4.DHCPv4, c Client, v Verdict, cfg Config) (*dhcpv4.DHCPv4, error) {
	boot, err := bootOptions(req, c, v, cfg)
	if err != nil {
		return nil, fmt.Errorf("decide: %w", err)
	}
	msgType, ciaddr := dhcpv4.MessageTypeOffer, net.IPv4zero
	if c.MessageType == dhcpv4.MessageTypeRequest {
		// RFC 2131 table 3: an ACK echoes the request's ciaddr (set in 4011 requests).
		msgType, ciaddr = dhcpv4.MessageTypeAck, req.ClientIPAddr
	}
	mods := append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(msgType),
		dhcpv4.WithClientIP(ciaddr),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.ServerIP.To4())),
	}, boot...)
	if ciaddr.IsUnspecified() {
		// A client without an address can be reached only by broadcast. A
		// relay (RFC 1542) delivers a reply without the broadcast flag to
		// yiaddr, which a proxy leaves 0: the offer would be lost. iPXE does
		// not set the flag in its request, so the reply does, as dnsmasq's
		// proxy mode does.
		mods = append(mods, func(d *dhcpv4.DHCPv4) { d.SetBroadcast() })
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("decide: build reply: %w", err)
	}
	return reply, nil
}
