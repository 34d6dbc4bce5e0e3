package e2e

import (
	"bytes"
	"cmp"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/ipxe"
)

// TestSiteDHCP boots machines where proxyDHCP is not allowed: the site's DHCP
// server names provisiond itself (next-server and boot file by client
// architecture, the /boot.ipxe URL once the client runs iPXE), and provisiond
// runs without --dhcp-interface, serving TFTP (--tftp-addr) and HTTP only.
//
// The site's DHCP server is dnsmasq running the dnsmasq configuration of
// docs/quickstart-datacenter.md ("Where proxyDHCP is not allowed") as it
// stands there, its own TFTP off. These go through it:
//   - DHCP clients (busybox udhcpc) sending what a BIOS PXE ROM, an x86-64
//     UEFI of arch 9, an arm64 UEFI and an iPXE known only by option 175
//     send must get undionly.kpxe, ipxe.efi, snp.efi with next-server
//     10.99.0.2 (each then fetched over TFTP from provisiond and compared
//     with its embedded build), and the /boot.ipxe URL;
//   - a BIOS VM, whose NIC ROM is iPXE (user class "iPXE"): /boot.ipxe
//     straight away (QEMU has no plain PXE ROM: the first client above
//     stands in for one);
//   - a UEFI VM (OVMF's EDK2 PXE client, arch 7): ipxe.efi over TFTP from
//     provisiond, then that iPXE (user class "Tinkerbell") asks DHCP again
//     and must get /boot.ipxe, not ipxe.efi again.
//
// Each VM must then boot its profile's kernel and fetch its own config with
// its session token, and phone home. Meanwhile provisiond must have sent no
// DHCP packet: no socket of its host on UDP 67 or 4011, no DHCP packet in its
// /metrics, no proxyDHCP in its log. Both VMs boot at once (one per core):
// about 40 s under TCG.
func TestSiteDHCP(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	conf := docDnsmasqConf(t)
	vms := []vm{
		// Matched by MAC: provisiond sees no DHCP, so a UUID could not count.
		{Name: "site-bios", MAC: "52:54:00:e2:e1:01", Hostname: "site-bios.e2e"},
		{Name: "site-uefi", MAC: "52:54:00:e2:e1:02", Hostname: "site-uefi.e2e", UEFI: true},
	}
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	confFile := filepath.Join(t.TempDir(), "provisiond.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	l.startDnsmasq(l.Site, "site-dnsmasq", "DHCP, IP range", "--interface=eth0", "--bind-interfaces", "--conf-file="+confFile)
	prov := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: writeProfiles(t, tos, vms), assets: tos.Dir, data: t.TempDir(),
		pxe: []string{"--tftp-addr", provAddr + ":69"},
	})
	l.checkUDPPorts(t, l.Prov, map[int]bool{67: false, 4011: false, 69: true})

	t.Run("clients", l.checkSiteClients)

	machines := make([]*machine, len(vms))
	for i, v := range vms {
		machines[i] = l.addMachine(v)
	}
	results := bootTogether(machines)

	for i, v := range vms {
		t.Run(v.Name, func(t *testing.T) {
			t.Logf("%s: power-on to config fetched %s", v.Name, seconds(results[i].Fetched()))
			checkFirstBoot(t, prov.api, v, vms, results[i])
		})
	}

	t.Run("site-dhcp-named-provisiond", func(t *testing.T) {
		log, err := os.ReadFile(filepath.Join(l.Artifacts, "site-dnsmasq.log"))
		if err != nil {
			t.Fatal(err)
		}
		checkSiteReplies(t, dnsmasqReplies(string(log)))
	})

	t.Run("no-dhcp-from-provisiond", func(t *testing.T) {
		metrics := scrapeMetrics(t, prov)
		if n := metrics.sum("provisiond_dhcp_packets_total"); n != 0 {
			t.Errorf("provisiond counted %v DHCP packets, but runs no proxyDHCP", n)
		}
		for _, file := range []string{"undionly.kpxe", "ipxe.efi"} {
			if n := metrics.sum("provisiond_tftp_transfers_total", `file="`+file+`"`, `outcome="ok"`); n < 1 {
				t.Errorf("provisiond served %s over TFTP %v times, want 1 or more", file, n)
			}
		}
		log, err := os.ReadFile(prov.daemon.log)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(log, []byte(`msg="dhcp listening"`)) {
			t.Errorf("provisiond started a proxyDHCP (see its log)")
		}
		l.checkUDPPorts(t, l.Prov, map[int]bool{67: false, 4011: false, 69: true})
	})
}

// docDnsmasqConf returns the dnsmasq configuration the datacenter quickstart
// gives for a site DHCP server that names provisiond.
func docDnsmasqConf(t *testing.T) string {
	t.Helper()
	const (
		doc   = "../../docs/quickstart-datacenter.md"
		start = "```ini\n# /etc/dnsmasq.d/provisiond.conf"
	)
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), start)
	conf, _, closed := strings.Cut(rest, "\n```\n")
	if !ok || !closed {
		t.Fatalf("%s: no block that starts %q", doc, start)
	}
	return strings.TrimPrefix(start, "```ini\n") + conf + "\n"
}

// siteClients are DHCP clients the VMs do not cover, as busybox udhcpc
// arguments that send what each sends: vendor class, client architecture
// (option 93), iPXE's option 175. file is the boot file the site's DHCP must
// name; a file that is no URL must come from provisiond (next-server).
var siteClients = []struct {
	name string
	args []string
	file string
}{
	// QEMU's BIOS NIC ROM is iPXE already, so no VM asks as a plain PXE ROM.
	{"bios-pxe-rom", []string{"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"}, "undionly.kpxe"},
	{"uefi-arch-9", []string{"-V", "PXEClient:Arch:00009:UNDI:003000", "-x", "0x5d:0009"}, "ipxe.efi"},
	{"arm64-uefi", []string{"-V", "PXEClient:Arch:00011:UNDI:003000", "-x", "0x5d:000b"}, "snp.efi"},
	// An iPXE known by option 175 alone (no user class dnsmasq knows).
	{"ipxe-option-175", []string{"-V", "PXEClient", "-x", "0x5d:0007", "-x", "0xaf:130101"}, advertiseURL + "/boot.ipxe"},
}

// checkSiteClients asks the site's DHCP server for a lease as each of
// siteClients, from one host added to the VLAN, and fetches each boot file
// it names over TFTP from the next-server it names: provisiond's own.
func (l *lab) checkSiteClients(t *testing.T) {
	ns := l.addHost("pxeclient", "10.99.0.50")
	script := filepath.Join(t.TempDir(), "udhcpc.script")
	// busybox udhcpc exports the reply's siaddr and file fields to its script.
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"PVD-BOOT $siaddr $boot_file\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range siteClients {
		t.Run(c.name, func(t *testing.T) {
			out, err := l.udhcpc(t.Context(), ns, script, c.args...)
			if err != nil {
				t.Fatalf("udhcpc %v: %v\n%s", c.args, err, out)
			}
			boot, _ := consoleLine(string(out), "PVD-BOOT ")
			server, file, _ := strings.Cut(boot, " ")
			if file != c.file {
				t.Fatalf("the site's DHCP named boot file %q (next-server %q), want %q\n%s", file, server, c.file, out)
			}
			if strings.HasPrefix(file, "http://") {
				return
			}
			if server != provAddr {
				t.Fatalf("the site's DHCP named next-server %q for %s, want provisiond's %s", server, file, provAddr)
			}
			got := filepath.Join(t.TempDir(), file)
			if out, err := l.command(t.Context(), ns, "busybox", "tftp", "-g", "-r", file, "-l", got, server).CombinedOutput(); err != nil {
				t.Fatalf("tftp %s from %s: %v\n%s", file, server, err, out)
			}
			want := embedded(t, file)
			if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, want) {
				t.Fatalf("TFTP %s from %s: %d bytes (%v), want provisiond's %d", file, server, len(b), err, len(want))
			}
		})
	}
}

// embedded returns provisiond's embedded iPXE binary name.
func embedded(t *testing.T, name string) []byte {
	t.Helper()
	bins, err := ipxe.NewBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := bins.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkUDPPorts checks which of ports have a UDP socket bound in namespace ns
// (want true) and which have none (false), from its /proc/net/udp.
func (l *lab) checkUDPPorts(t *testing.T, ns string, ports map[int]bool) {
	t.Helper()
	out, err := l.command(t.Context(), ns, "cat", "/proc/net/udp").Output()
	if err != nil {
		t.Fatalf("read %s's /proc/net/udp: %v", ns, err)
	}
	bound := map[int]bool{}
	// "  sl  local_address rem_address ..." then "0: 0200630A:0045 ...".
	for _, line := range strings.Split(string(out), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		_, port, _ := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(port, 16, 16); err == nil {
			bound[int(p)] = true
		}
	}
	for port, want := range ports {
		if bound[port] != want {
			t.Errorf("UDP port %d bound on the provisiond host: %v, want %v\n%s", port, bound[port], want, out)
		}
	}
}

// siteReply is one boot reply of the site's dnsmasq, as --log-dhcp shows it.
type siteReply struct {
	xid, tags, file, next string
}

// dnsmasqReplies reads the replies that named a boot file from a dnsmasq
// --log-dhcp log: per transaction, the "tags:" line starts a reply, then
// "next server:" and the file ("bootfile name:" in the file field, or
// "option: 67 bootfile-name" when the client asked for option 67).
func dnsmasqReplies(log string) []siteReply {
	var out []siteReply
	open := map[string]*siteReply{}
	for line := range strings.Lines(log) {
		// "Dec  5 00:52:01 dnsmasq-dhcp[14806]: 3816238642 tags: efi64, eth0"
		_, rest, ok := strings.Cut(line, "]: ")
		if !ok {
			continue
		}
		xid, msg, _ := strings.Cut(strings.TrimSpace(rest), " ")
		r := open[xid]
		switch {
		case strings.HasPrefix(msg, "tags: "):
			if r != nil && r.file != "" {
				out = append(out, *r)
			}
			open[xid] = &siteReply{xid: xid, tags: strings.TrimPrefix(msg, "tags: ")}
		case r == nil:
		case strings.HasPrefix(msg, "next server: "):
			r.next = strings.TrimPrefix(msg, "next server: ")
		case strings.HasPrefix(msg, "bootfile name: "):
			r.file = strings.TrimPrefix(msg, "bootfile name: ")
		case strings.Contains(msg, "option: 67 bootfile-name"):
			fields := strings.Fields(msg)
			r.file = fields[len(fields)-1]
		}
	}
	for _, r := range open {
		if r.file != "" {
			out = append(out, *r)
		}
	}
	return out
}

// checkSiteReplies checks the site's DHCP answered each stage of each boot
// as the docs say: the firmware's PXE client the iPXE binary of its
// architecture on provisiond, and iPXE, whatever its firmware, the
// /boot.ipxe URL and never an iPXE binary again.
func checkSiteReplies(t *testing.T, replies []siteReply) {
	t.Helper()
	for _, c := range []struct {
		stage      string
		tag        string
		ipxe       bool
		file, next string // want; next "" for any
	}{
		{"BIOS PXE ROM (udhcpc)", "bios", false, "undionly.kpxe", provAddr},
		{"UEFI firmware", "efi64", false, "ipxe.efi", provAddr},
		{"iPXE NIC ROM of the BIOS VM", "bios", true, advertiseURL + "/boot.ipxe", ""},
		{"iPXE loaded over TFTP by the UEFI VM", "efi64", true, advertiseURL + "/boot.ipxe", ""},
	} {
		seen := 0
		for _, r := range replies {
			tags := strings.Split(r.tags, ", ")
			if !slices.Contains(tags, c.tag) || slices.Contains(tags, "ipxe") != c.ipxe {
				continue
			}
			seen++
			if r.file != c.file || (c.next != "" && r.next != c.next) {
				t.Errorf("%s: reply %s (tags %s) named next-server %q, boot file %q; want %q, %q", c.stage, r.xid, r.tags, r.next, r.file, cmp.Or(c.next, "any"), c.file)
			}
		}
		if seen == 0 {
			t.Errorf("%s: the site's dnsmasq sent no boot reply with tag %s (ipxe %v): %+v", c.stage, c.tag, c.ipxe, replies)
		}
	}
}
