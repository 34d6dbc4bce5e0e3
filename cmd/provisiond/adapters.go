package main

import (
	"context"
	"log/slog"
	"net/netip"
	"path"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/tftp"
)

// dhcpBooter adapts the boot core to the proxyDHCP's Booter, so internal/dhcp
// never learns about profiles or the store.
type dhcpBooter struct{ core *boot.Core }

func (b dhcpBooter) BootPXE(ctx context.Context, c dhcp.Client) (dhcp.Verdict, error) {
	a, err := b.core.BootPXE(ctx, dhcpRequest(c))
	return dhcp.Verdict{Boot: a.Boot, Machine: a.Machine, Loader: dhcpLoader(a.Loader), UKI: a.UKI}, err
}

// dhcpLoader is a profile's boot.loader as the DHCP server names it.
func dhcpLoader(l string) string {
	switch l {
	case profiles.LoaderShim:
		return dhcp.LoaderShim
	case profiles.LoaderUKI:
		return dhcp.LoaderUKI
	}
	return ""
}

// Bind hands what a DHCP packet showed of its sender to the boot core.
func (b dhcpBooter) Bind(_ context.Context, d dhcp.Binding) {
	b.core.Bind(d.MAC.String(), d.UUID, d.IP)
}

// dhcpRequest is what a DHCP client tells the boot core about itself. For
// UEFI HTTP Boot firmware it also says whether the client is committing to
// this server's answer (its REQUEST), where a loader: uki session opens;
// such profiles load only where this server hands out the addresses.
func dhcpRequest(c dhcp.Client) boot.Request {
	platform, cpu := dhcpPlatform(c.Arch)
	// net.HardwareAddr prints the canonical lower-case colon form.
	r := boot.NewRequest(c.MAC.String(), c.UUID, platform, cpu)
	if c.HTTP && !c.IPXE {
		r.HTTPBoot = boot.HTTPBootDiscover
		if c.MessageType == dhcpv4.MessageTypeRequest {
			r.HTTPBoot = boot.HTTPBootRequest
		}
	}
	return r
}

// dhcpPlatform is a DHCP client architecture (option 93) as the firmware
// platform and CPU boot.NewRequest takes; unknown ones pass through as cpu.
func dhcpPlatform(a iana.Arch) (platform, cpu string) {
	switch a {
	case iana.INTEL_X86PC:
		return "pcbios", "i386"
	case iana.EFI_IA32:
		return "efi", "i386"
	case iana.EFI_BC, iana.EFI_X86_64, iana.EFI_X86_64_HTTP:
		return "efi", "x86_64"
	case iana.EFI_ARM32, iana.EFI_ARM32_HTTP:
		return "efi", "arm32"
	case iana.EFI_ARM64, iana.EFI_ARM64_HTTP:
		return "efi", "arm64"
	}
	return "", strings.ToLower(strings.ReplaceAll(a.String(), " ", "-"))
}

// tftpTransfers is the TFTP server's OnTransfer: it counts each finished
// transfer and logs its one info line with the machine the boot core puts to
// the client address, since a TFTP request names none.
type tftpTransfers struct {
	identify func(context.Context, netip.Addr) boot.Identity // boot.Core.Identify
	step     func(mac string, s boot.Step)                   // boot.Core.Step: the boot timeline; nil: none
	count    func(tftp.Transfer)                             // metrics
	log      *slog.Logger
}

func (o tftpTransfers) done(t tftp.Transfer) {
	o.count(t)
	outcome := t.Outcome()
	if outcome == "busy" {
		// A flood is refused by the thousand: the counter tells it, and a
		// line (with an inventory lookup) each would only feed it.
		o.log.Debug("tftp transfer refused: busy", "client", t.Client, "file", t.File, "error", t.Err)
		return
	}
	level := slog.LevelInfo
	if outcome == "probe" || outcome == "not_found" && path.Base(t.File) == "autoexec.ipxe" {
		// Every UEFI boot probes the size first, and every iPXE looks for
		// an autoexec.ipxe first: both are how a boot goes, not news.
		level = slog.LevelDebug
	}
	var id boot.Identity
	if ap, err := netip.ParseAddrPort(t.Client); err == nil {
		id = o.identify(context.Background(), ap.Addr())
	}
	if id.MAC != "" && level == slog.LevelInfo && o.step != nil {
		// Probes and autoexec.ipxe misses are how every boot goes, not steps.
		o.step(id.MAC, boot.Step{Name: boot.StepTFTP, Detail: t.File, Outcome: outcome})
	}
	attrs := append(id.Attrs(), "client", t.Client, "file", t.File, "bytes", t.Bytes, "duration", t.Duration, "outcome", outcome)
	if t.Err != nil {
		attrs = append(attrs, "error", t.Err)
	}
	o.log.Log(context.Background(), level, "tftp transfer", attrs...)
}
