// Package grub renders the GRUB configuration provisiond serves over TFTP to
// UEFI machines that boot under Secure Boot through the vendor's signed shim
// and GRUB: a generic grub/grub.cfg that every such machine reads first, and
// that chains to the machine's own config, rendered on demand. It is pure:
// no sockets, no store.
//
// GRUB 2.06 (Debian's grubnetx64.efi) reads $prefix/grub.cfg over TFTP from
// the server DHCP named, with $root = (tftp,<server>), so paths without a
// device are TFTP paths on provisiond. It names the booting NIC's MAC in
// $net_default_mac: net.c reads it from net_<interface>_mac, which
// grub_net_hwaddr_to_str writes as lower-case, colon-separated hex
// ("52:54:00:12:34:56"), the canonical form of package ident.
package grub

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/provisiond/provisiond/internal/ident"
)

// File names on the TFTP server, relative to its root.
const (
	// Loader is the signed GRUB a shim loads from beside itself (the
	// operator's, from --shim-dir).
	Loader = "grubx64.efi"
	// ConfigFile is the generic config every shim+GRUB machine reads first.
	ConfigFile = "grub/grub.cfg"
	// MachinesDir holds the per-machine configs, one per MAC (MachineFile).
	MachinesDir = "grub/machines/"
)

// ErrUnsupported marks a boot GRUB cannot express: a kernel it cannot
// fetch, an argument it cannot quote.
var ErrUnsupported = errors.New("not supported by GRUB")

// MachineFile is the name of machine mac's config: MachinesDir + mac + ".cfg".
func MachineFile(mac string) string { return MachinesDir + mac + ".cfg" }

// MachineMAC returns the canonical MAC that name, a file under MachinesDir,
// is the config of. ok is false for names outside MachinesDir; err is set
// for a name there that is not "<mac>.cfg".
func MachineMAC(name string) (mac string, ok bool, err error) {
	rest, ok := strings.CutPrefix(name, MachinesDir)
	if !ok {
		return "", false, nil
	}
	base, cfg := strings.CutSuffix(rest, ".cfg")
	if !cfg {
		return "", true, fmt.Errorf("grub machine config %q: want %s<mac>.cfg", name, MachinesDir)
	}
	mac, err = ident.MAC(base)
	if err != nil {
		return "", true, fmt.Errorf("grub machine config %q: %w", name, err)
	}
	return mac, true, nil
}

// ChainConfig is ConfigFile: it loads the booting machine's own config. If
// that fails (the machine has no profile here, or is not the machine its
// address says: see provisiond's log), it says so and leaves GRUB after 10
// s, so that the firmware tries its next boot option.
func ChainConfig() string {
	return "# provisiond: every machine booted through shim and GRUB reads this file first.\n" +
		"set timeout=0\n" +
		"if [ -n \"$net_default_mac\" ]; then\n" +
		"  configfile /" + MachinesDir + "${net_default_mac}.cfg\n" +
		"  echo \"provisiond: could not load /" + MachinesDir + "${net_default_mac}.cfg from ${net_default_server}: no boot configuration for this machine (see provisiond's log)\"\n" +
		"else\n" +
		"  echo \"provisiond: GRUB knows no MAC address for this machine (net_default_mac is empty): it did not boot from the network\"\n" +
		"fi\n" +
		leave
}

// leave ends a config that could not boot: the message stays readable on the
// console for 10 s, then `exit` returns to the firmware, which tries its
// next boot option.
const leave = "echo \"provisiond: leaving GRUB in 10 seconds\"\n" +
	"sleep 10\n" +
	"exit\n"

// Boot is what one machine boots now. It has the fields of ipxe.Boot, in the
// same order, so the boot core converts one into the other.
type Boot struct {
	Comment string // one line, e.g. "machine node1, profile flatcar-worker"
	// Kernel and Initrds are paths on the TFTP server ("/assets/vmlinuz").
	Kernel  string
	Initrds []string
	Args    []string // kernel command line
	// ConfigURL, if set, is this boot's config URL, token included; it
	// replaces ${config-url} in Args, as iPXE expands it there.
	ConfigURL string
}

// Config renders the config that boots b. Every argument and path is
// single-quoted for GRUB's script parser, so nothing in it is expanded or
// split; an argument with a line break or NUL is refused. Note that GRUB
// 2.06 itself puts a backslash before ' " and \ when it builds the kernel
// command line (lib/cmdline.c), and double quotes around an argument with
// a space.
func Config(b Boot) (string, error) {
	kernel, err := path(b.Kernel)
	if err != nil {
		return "", err
	}
	var s strings.Builder
	if b.Comment != "" {
		s.WriteString("# provisiond: " + oneLine(b.Comment) + "\n")
	}
	s.WriteString("set timeout=0\n")
	s.WriteString("echo " + quote(oneLine("provisiond: "+cmp.Or(b.Comment, "booting")+": loading "+b.Kernel)) + "\n")
	s.WriteString("linux " + kernel)
	for _, a := range b.Args {
		if b.ConfigURL != "" {
			a = strings.ReplaceAll(a, "${config-url}", b.ConfigURL)
		}
		if strings.ContainsAny(a, "\n\r\x00") {
			return "", fmt.Errorf("kernel argument %q: a line break or NUL: %w", a, ErrUnsupported)
		}
		s.WriteString(" " + quote(a))
	}
	s.WriteString("\n")
	if len(b.Initrds) > 0 {
		s.WriteString("initrd")
		for _, i := range b.Initrds {
			p, err := path(i)
			if err != nil {
				return "", err
			}
			s.WriteString(" " + p)
		}
		s.WriteString("\n")
	}
	s.WriteString("boot\n")
	// Reached only when the kernel did not start, e.g. one the shim does
	// not trust ("bad shim signature").
	s.WriteString("echo " + quote(oneLine("provisiond: booting "+b.Kernel+" failed")) + "\n")
	s.WriteString(leave)
	return s.String(), nil
}

// LocalConfig makes GRUB give up network boot: `exit` returns to the
// firmware, which boots its next boot option, normally the installed disk.
func LocalConfig(comment string) string {
	line := oneLine("provisiond: " + comment)
	return "# " + line + "\necho " + quote(line) + "\nexit\n"
}

// path is a profile's boot reference as GRUB names the file: a path on the
// TFTP server, quoted. GRUB 2.06 fetches nothing over https, nor over http
// from a port other than 80 (provisiond's), so URLs are refused.
func path(ref string) (string, error) {
	if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") || strings.ContainsAny(ref, "\n\r\x00") {
		return "", fmt.Errorf("boot file %q: GRUB fetches paths on the TFTP server (/assets/...), without line breaks: %w", ref, ErrUnsupported)
	}
	return quote(ref), nil
}

// quote single-quotes s for GRUB's script parser, which, like sh, takes
// everything between single quotes literally and ends the quote at the next
// one: a quote inside closes the quote, adds an escaped quote (\') and
// reopens it. s must hold no line break.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// oneLine keeps a comment or message on its line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ", "\x00", " ").Replace(s)
}
