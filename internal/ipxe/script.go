package ipxe

import (
	"fmt"
	"path"
	"strings"
)

// ChainScript is served at /boot.ipxe to any iPXE: it asks for this machine's own
// script, naming it by the identities iPXE knows. ${uuid} is the SMBIOS UUID.
//
// The machine's script returns only when it says "boot from disk"
// (LocalBootScript). The chain script then exits non-zero, so that iPXE
// reports a failed boot to the firmware, which moves on to its next boot
// device. A plain `exit` counts as success: ipxe.efi's embedded script would
// carry on with another DHCP and autoboot and end at its shell, never reaching
// the disk.
//
// Any failure, of the fetch of the machine's script or of a command in it,
// lands at the same retry. Its message says what failed: each script sets
// StepSetting before each command that can fail (iPXE's settings outlive
// the script that sets them), so a kernel the server lacks is not reported
// as a missing script.
func ChainScript(baseURL string) string {
	return "#!ipxe\n" +
		step("fetch the script for this machine") +
		"chain --autofree " + baseURL + "/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&arch=${buildarch}&platform=${platform} || goto failed\n" +
		"exit 1\n" +
		":failed\n" +
		"echo provisiond: could not ${" + StepSetting + "}, retrying in 10 s\n" +
		"sleep 10\n" +
		"chain --autofree " + baseURL + "/boot.ipxe\n"
}

// StepSetting is the iPXE setting that names what the boot is doing, for
// ChainScript's retry message.
const StepSetting = "provisiond-step"

// step is the line that sets StepSetting to what, e.g. "fetch the kernel URL".
func step(what string) string {
	return "set " + StepSetting + " " + what + "\n"
}

// Boot is what one machine boots now.
type Boot struct {
	Comment string   // one line, e.g. "machine node1, profile flatcar-worker"
	Kernel  string   // URL
	Initrds []string // URLs
	Args    []string // kernel command line, without initrd=
	// ConfigURL, if set, is this boot's config URL, token included. The script
	// sets it as ${config-url} so that profile args can name it, e.g. for a
	// cloud-init datasource; iPXE expands it on the kernel line.
	ConfigURL string
}

// BootScript renders a script that boots on BIOS and UEFI alike. Each initrd is
// loaded with --name and named again in initrd=<name> on the kernel command line:
// a UEFI kernel booted through its EFI stub finds initrds only that way (without
// it: "VFS: Unable to mount root fs"), and legacy BIOS boots ignore the argument.
// Before each command it names the file at stake for ChainScript's retry
// message: "could not fetch the kernel http://...".
func BootScript(b Boot) string {
	var s strings.Builder
	s.WriteString("#!ipxe\n")
	if b.Comment != "" {
		fmt.Fprintf(&s, "# provisiond: %s\n", strings.ReplaceAll(b.Comment, "\n", " "))
	}
	if b.ConfigURL != "" {
		s.WriteString("set config-url " + b.ConfigURL + "\n")
	}
	names := initrdNames(b.Initrds)
	s.WriteString(step("fetch the kernel " + b.Kernel))
	s.WriteString("kernel " + b.Kernel)
	for _, n := range names {
		s.WriteString(" initrd=" + n)
	}
	for _, a := range b.Args {
		s.WriteString(" " + a)
	}
	s.WriteString("\n")
	for i, u := range b.Initrds {
		s.WriteString(step("fetch the initrd " + u))
		fmt.Fprintf(&s, "initrd --name %s %s\n", names[i], u)
	}
	s.WriteString(step("boot the kernel " + b.Kernel))
	s.WriteString("boot\n")
	return s.String()
}

// initrdNames gives each initrd a distinct, space-free name derived from its URL.
func initrdNames(urls []string) []string {
	names := make([]string, len(urls))
	seen := map[string]bool{}
	for i, u := range urls {
		base := path.Base(strings.SplitN(u, "?", 2)[0])
		if base == "." || base == "/" || base == "" {
			base = "initrd"
		}
		name := base
		for n := 1; seen[name]; n++ {
			name = fmt.Sprintf("%d-%s", n, base)
		}
		seen[name] = true
		names[i] = name
	}
	return names
}

// LocalBootScript makes iPXE give up network boot so the firmware boots the next
// device, normally the installed disk. `exit` is the portable way: `sanboot` of a
// local drive misbehaves on many UEFI firmwares. It exits with success so that
// ChainScript's `|| goto failed` does not retry; ChainScript turns it into the
// failure the firmware needs.
func LocalBootScript(comment string) string {
	return "#!ipxe\n# provisiond: " + strings.ReplaceAll(comment, "\n", " ") + "\nexit\n"
}
