package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The VMs of TestSecureBoot: the same firmware, OVMF with Secure Boot
// enforced and Microsoft's keys enrolled. One's profile boots through the
// signed shim and GRUB; the other's through iPXE, as every profile without
// boot.loader shim does, which that firmware must refuse to run.
var (
	shimVM     = vm{Name: "vm-secureboot", MAC: "52:54:00:e2:e2:01", Hostname: "vm-secureboot.e2e", UEFI: true, SecureBoot: true}
	unsignedVM = vm{Name: "vm-secureboot-ipxe", MAC: "52:54:00:e2:e2:02", Hostname: "vm-secureboot-ipxe.e2e", UEFI: true, SecureBoot: true}
)

// secureBootNet is the VLAN's address plan: provisiond is the only DHCP
// server there.
var secureBootNet = network{
	Name: "vlan", Subnet: "10.99.0.0/24", First: "10.99.0.100", Last: "10.99.0.199",
	Router: routerAddr, DNS: provAddr, LeaseTime: "1h",
}

// What the Secure Boot VMs print on their serial console: the firmware's
// PXE client, shim, GRUB, and Debian's signed kernel, which checks the
// firmware's Secure Boot state itself (measured in the lab: LAB.md).
const (
	shimOffered       = "NBP filename is shimx64.efi"
	ipxeOffered       = "NBP filename is ipxe.efi"
	shimLoadsGRUB     = "Fetching Netboot Image grubx64.efi"
	grubStarted       = "Welcome to GRUB!"
	efiStubSecureBoot = "EFI stub: UEFI Secure Boot is enabled."
	kernelLockedDown  = "Kernel is locked down from EFI Secure Boot"
	kernelSecureBoot  = "secureboot: Secure boot enabled"
	// accessDenied ends OVMF's line for a boot option whose image failed
	// signature verification: "BdsDxe: failed to load Boot0002 "UEFI
	// PXEv4 (MAC:...)" from ...: Access Denied".
	accessDenied = "Access Denied"
	// ipxeStarted is iPXE's banner: it must never show under Secure Boot.
	ipxeStarted = "iPXE initialising devices"
	// startPXEv6 is where OVMF goes once its IPv4 PXE boot option failed,
	// refused or not.
	startPXEv6 = ">>Start PXE over IPv6"
	// grubPrompt is GRUB's command line: GRUB ran out of config without
	// booting or exiting, and a real machine would sit there.
	grubPrompt = "grub>"
)

// firmwareAgain are the console marks of OVMF having control again after
// GRUB's `exit`: its boot manager menu, which it shows when a boot option
// returns success (seen here), or its next boot option.
var firmwareAgain = []string{"UiApp", startPXEv6}

// refusalTimeout bounds the negative control's power-on: OVMF refused the
// unsigned NBP ~8.5 s after power-on in the lab (idle host), then spends
// minutes on PXEv6 and HTTP Boot, which the test does not wait for.
const refusalTimeout = 150 * time.Second

// TestSecureBoot boots OVMF with Secure Boot enforced and Microsoft's keys
// enrolled through provisiond alone: serve --dhcp-mode authoritative (no
// other DHCP server on the VLAN) --shim-dir holding Debian's signed shim and
// network GRUB, and a profile with boot.loader shim. The chain must be the
// firmware's PXE client -> shimx64.efi (TFTP) -> grubx64.efi (TFTP) ->
// grub/grub.cfg -> the machine's own GRUB config -> Debian's signed cloud
// kernel and the test OS's initramfs over TFTP. The kernel must report
// Secure Boot enabled and lockdown on, and the test OS fetch its own config
// with the session token GRUB put on its command line and phone home. The
// profile is boot-once: the next power-on must get a GRUB config that exits
// (a boot-local event, no kernel), handing the boot back to the firmware.
//
// First, as the negative control that proves the test can fail, a VM with
// the same firmware whose profile has no loader (so it is offered the
// embedded, unsigned ipxe.efi) must get that binary over TFTP and have the
// firmware refuse it (Access Denied): no iPXE, no script, no session.
func TestSecureBoot(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	requireSecureBoot(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	vms := []vm{shimVM, unsignedVM}
	prov := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: writeSecureBootProfiles(t, tos), assets: tos.Dir, data: t.TempDir(),
		pxe:  authoritativeOn("eth0"),
		args: []string{"--shim-dir", writeShimDir(t)},
	})
	unsignedM, shimM := l.addMachine(unsignedVM), l.addMachine(shimVM)

	// One VM at a time: each has a core to itself.
	before := scrapeMetrics(t, prov)
	refused := refusedBoot(t, unsignedM)
	after := scrapeMetrics(t, prov)
	p, err := shimM.powerOn(bootTimeout, shimOffered, grubStarted, kernelSecureBoot, ignitionEnd, phonedHome)
	if err != nil {
		t.Fatal(err)
	}
	booted := p.wait()
	// Installed, the machine's next power-on must leave GRUB for its disk.
	var local *localBootRun
	if _, ok := booted.Marks[phonedHome]; ok {
		local = grubLocalBoot(prov.api, shimM)
	}

	t.Run(shimVM.Name, func(t *testing.T) {
		checkSecureBootChain(t, booted)
		checkFirstBoot(t, prov.api, shimVM, vms, booted)
		// The config URL GRUB passed is the one /ipxe would have put there.
		if u, _ := consoleLine(booted.Serial, "PVD-IGNITION-URL "); !strings.HasPrefix(u, advertiseURL+"/ignition?") {
			t.Errorf("ignition.config.url on the kernel command line is %q, want %s/ignition?...", u, advertiseURL)
		}
		checkAuthoritativeLease(t, prov.api, shimVM)
		t.Logf("%s: power-on to shim %s, to GRUB %s, to the kernel's Secure Boot line %s, to config fetched %s",
			shimVM.Name, seconds(booted.Marks[shimOffered]), seconds(booted.Marks[grubStarted]),
			seconds(booted.Marks[kernelSecureBoot]), seconds(booted.Fetched()))
	})
	t.Run(shimVM.Name+"-local-boot", func(t *testing.T) {
		if local == nil {
			t.Fatal("not run: the first boot did not phone home")
		}
		checkGRUBLocalBoot(t, local)
	})
	t.Run(unsignedVM.Name+"-refused", func(t *testing.T) {
		checkRefused(t, prov.api, refused, before, after)
	})

	// The reference for the figures: the same machine and chain with
	// dnsmasq as the DHCP and TFTP server and static GRUB configs, to the
	// kernel's Secure Boot line (its test OS finds no config URL and powers off).
	prov.daemon.stop(t)
	l.startDnsmasq(l.Prov, "reference-dnsmasq", "TFTP root is", "--interface=eth0", "--bind-interfaces",
		"--dhcp-range="+secureBootNet.First+","+secureBootNet.Last+",255.255.255.0,1h",
		"--dhcp-boot=shimx64.efi", "--enable-tftp", "--tftp-root="+writeReferenceTFTPRoot(t, tos))
	p, err = shimM.powerOn(bootTimeout, shimOffered, grubStarted, kernelSecureBoot)
	if err != nil {
		t.Fatal(err)
	}
	ref := p.wait()
	t.Run(shimVM.Name+"-dnsmasq-reference", func(t *testing.T) {
		checkSecureBootChain(t, ref)
	})
	t.Logf("figure: Secure Boot (OVMF PXE -> shim -> GRUB -> signed kernel, TFTP) power-on to GRUB / to the kernel's Secure Boot line: authoritative provisiond %s / %s, dnsmasq DHCP+TFTP with static GRUB configs %s / %s (one VM, TCG)",
		seconds(booted.Marks[grubStarted]), seconds(booted.Marks[kernelSecureBoot]), seconds(ref.Marks[grubStarted]), seconds(ref.Marks[kernelSecureBoot]))
}

// writeReferenceTFTPRoot returns the TFTP root of the dnsmasq reference: the
// signed shim and GRUB, a grub/grub.cfg that chains to the booting MAC's
// file as provisiond's does, shimVM's file booting tos without a config, and
// tos under assets/.
func writeReferenceTFTPRoot(t *testing.T, tos *testOS) string {
	t.Helper()
	root := writeShimDir(t)
	files := map[string]string{
		"grub/grub.cfg":                        "configfile /grub/machines/${net_default_mac}.cfg\n",
		"grub/machines/" + shimVM.MAC + ".cfg": fmt.Sprintf("linux /assets/%s console=ttyS0 panic=10\ninitrd /assets/%s\nboot\n", tos.Kernel, tos.Initrd),
	}
	for name, data := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatalf("reference TFTP root: %v", err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{tos.Kernel, tos.Initrd} {
		if err := copyFile(filepath.Join(tos.Dir, name), filepath.Join(root, "assets", name)); err != nil {
			t.Fatalf("reference TFTP root: %v", err)
		}
	}
	return root
}

// writeSecureBootProfiles writes the profiles of TestSecureBoot: the VLAN's
// Network, writeProfiles' iPXE profile e2e for unsignedVM, and profile
// e2e-shim, the same boot and config through shim and GRUB, for shimVM.
func writeSecureBootProfiles(t *testing.T, tos *testOS) string {
	t.Helper()
	dir := writeNetworks(t, writeProfiles(t, tos, []vm{unsignedVM}), secureBootNet)
	shim := fmt.Sprintf(`kind: Profile
name: e2e-shim
boot:
  loader: shim
  kernel: /assets/%s
  initrd: [/assets/%s]
  args: [console=ttyS0, panic=10]
config:
  butane: e2e.bu
once: true
---
kind: Machine
name: %s
match: {mac: %q}
profile: e2e-shim
metadata: {hostname: %s}
`, tos.Kernel, tos.Initrd, shimVM.Name, shimVM.MAC, shimVM.Hostname)
	if err := os.WriteFile(filepath.Join(dir, "secureboot.yaml"), []byte(shim), 0o644); err != nil {
		t.Fatalf("write profiles: %v", err)
	}
	return dir
}

// refusedBoot powers m on until its firmware is done with its IPv4 PXE boot
// option (refused, run, or failed), then off: after that OVMF only tries its
// other network boot options.
func refusedBoot(t *testing.T, m *machine) bootResult {
	t.Helper()
	p, err := m.powerOn(refusalTimeout, ipxeOffered, accessDenied, ipxeStarted, startPXEv6)
	if err != nil {
		t.Fatal(err)
	}
	p.waitMark(refusalTimeout, accessDenied, ipxeStarted, startPXEv6)
	return p.powerOff()
}

// checkSecureBootChain checks the console shows each link of the signed
// chain, in order, and the kernel's own account of Secure Boot.
func checkSecureBootChain(t *testing.T, r bootResult) {
	t.Helper()
	serial := printable([]byte(r.Serial))
	at := 0
	for _, s := range []string{shimOffered, shimLoadsGRUB, grubStarted, efiStubSecureBoot, kernelLockedDown, kernelSecureBoot} {
		i := strings.Index(serial[at:], s)
		if i < 0 {
			t.Fatalf("the console shows no %q after the chain's previous step:\n%s", s, tail(serial, 40))
		}
		at += i + len(s)
	}
	if strings.Contains(serial, accessDenied) {
		t.Errorf("the firmware refused an image (%q) on the way:\n%s", accessDenied, tail(serial, 40))
	}
}

// checkAuthoritativeLease checks v got its address from provisiond: the
// address the API last saw it at is in the Network's range, and the lease
// list shows it held by v.
func checkAuthoritativeLease(t *testing.T, api *apiClient, v vm) {
	t.Helper()
	m, err := api.machine(v.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if !secureBootNet.inRange(m.IP) {
		t.Errorf("%s was last seen at %q, want an address of %s's range %s-%s", v.Name, m.IP, secureBootNet.Name, secureBootNet.First, secureBootNet.Last)
	}
	lease, ok := fetchLeases(t, api)[v.MAC]
	if !ok || lease.IP != m.IP || lease.State != "active" {
		t.Errorf("%s's lease is %v (listed: %v), want active for %s", v.Name, lease, ok, m.IP)
	}
}

// localBootRun is the power-on of a Secure Boot machine after its install.
type localBootRun struct {
	Boot      bootResult
	BootLocal time.Duration // from power-on to the API's boot-local event; zero if none
	Machine   apiMachine    // at the end
	Events    []apiEvent    // the machine's, at the end
	Errs      []error       // the run's own failures: timeouts, API errors
}

// grubLocalBoot powers the installed m on until provisiond has recorded its
// boot-local event and the firmware has control again (restGrace at most),
// then off.
func grubLocalBoot(api *apiClient, m *machine) *localBootRun {
	r := &localBootRun{}
	p, err := m.powerOn(secondBootTimeout, append([]string{grubStarted, grubPrompt}, firmwareAgain...)...)
	if err != nil {
		r.Errs = append(r.Errs, err)
		return r
	}
	err = p.poll("a boot-local event", func() (bool, error) {
		events, err := api.events(m.MAC)
		return len(ofType(events, "boot-local")) > 0, err
	})
	if err == nil {
		r.BootLocal = p.elapsed()
		p.waitMark(restGrace, append([]string{grubPrompt}, firmwareAgain...)...)
	} else {
		r.Errs = append(r.Errs, err)
	}
	r.Boot = p.powerOff()
	if r.Machine, err = api.machine(m.MAC); err != nil {
		r.Errs = append(r.Errs, err)
	}
	if r.Events, err = api.events(m.MAC); err != nil {
		r.Errs = append(r.Errs, err)
	}
	return r
}

// checkGRUBLocalBoot checks the boot after the install: GRUB ran and was told
// to exit (a boot-local event, no kernel), the firmware had control again,
// and the install stands (one session, one config fetch).
func checkGRUBLocalBoot(t *testing.T, r *localBootRun) {
	t.Helper()
	for _, err := range r.Errs {
		t.Error(err)
	}
	serial := printable([]byte(r.Boot.Serial))
	for _, s := range []string{efiStubSecureBoot, "Linux version", "PVD-IGNITION-URL"} {
		if strings.Contains(serial, s) {
			t.Errorf("the boot after the install shows %q: it booted the test OS again:\n%s", s, tail(serial, 30))
		}
	}
	g, ok := r.Boot.Marks[grubStarted]
	if !ok {
		t.Errorf("the console shows no %q: GRUB did not run:\n%s", grubStarted, tail(serial, 30))
	}
	if _, ok := r.Boot.Marks[grubPrompt]; ok {
		t.Errorf("GRUB stopped at its prompt instead of exiting:\n%s", tail(serial, 30))
	}
	back, mark := time.Duration(0), ""
	for _, m := range firmwareAgain {
		if d, ok := r.Boot.Marks[m]; ok && d > g && (mark == "" || d < back) {
			back, mark = d, m
		}
	}
	if mark == "" {
		t.Errorf("after GRUB the console shows none of %q within %v of the boot-local event: the firmware never got control back:\n%s",
			firmwareAgain, restGrace, tail(serial, 30))
	}
	if r.Machine.State != "installed" || r.Machine.sessionOpen() || r.Machine.Provisioning == nil || r.Machine.Provisioning.ConfigFetches != 1 {
		t.Errorf("machine at the end: %s, want installed, the session closed after 1 config fetch", r.Machine)
	}
	for _, want := range []struct {
		typ string
		n   int
	}{{"provisioning", 1}, {"config-served", 1}, {"installed", 1}, {"boot-local", 1}} {
		if got := ofType(r.Events, want.typ); len(got) != want.n {
			t.Errorf("%d %s events, want %d: %v", len(got), want.typ, want.n, got)
		}
	}
	t.Logf("%s: second power-on to the boot-local event %s, to the firmware again (%q) %s",
		shimVM.Name, seconds(r.BootLocal), mark, seconds(back))
}

// checkRefused checks the negative control: provisiond offered the unsigned
// ipxe.efi and sent it over TFTP, the firmware refused to run it, and so no
// boot script was asked for and no session opened (before and after are
// provisiond's metrics around that boot, when nothing else booted).
func checkRefused(t *testing.T, api *apiClient, r bootResult, before, after metricSamples) {
	t.Helper()
	serial := printable([]byte(r.Serial))
	if _, ok := r.Marks[ipxeOffered]; !ok {
		t.Fatalf("the console shows no %q: provisiond did not offer the embedded iPXE:\n%s", ipxeOffered, tail(serial, 40))
	}
	if _, ok := r.Marks[ipxeStarted]; ok {
		t.Fatalf("iPXE ran under Secure Boot (%q on the console):\n%s", ipxeStarted, tail(serial, 40))
	}
	d, ok := r.Marks[accessDenied]
	if !ok {
		t.Fatalf("the firmware never printed %q within %v:\n%s", accessDenied, refusalTimeout, tail(serial, 40))
	}
	line := lineWith(serial, accessDenied)
	if !strings.Contains(line, "BdsDxe: failed to load") || !strings.Contains(line, "PXEv4") {
		t.Errorf("the refusal is not of the PXE boot option: %q", line)
	}
	t.Logf("%s: power-on to the firmware's refusal %s: %s", unsignedVM.Name, seconds(d), line)

	sel := []string{`file="ipxe.efi"`, `outcome="ok"`}
	if n := after.sum("provisiond_tftp_transfers_total", sel...) - before.sum("provisiond_tftp_transfers_total", sel...); n < 1 {
		t.Errorf("ipxe.efi sent over TFTP %v times during the boot, want 1 or more: the refusal must be the firmware's", n)
	}
	for _, route := range []string{"/boot.ipxe", "/ipxe", "/ignition"} {
		sel := `route="` + route + `"`
		if n := after.sum("provisiond_http_requests_total", sel) - before.sum("provisiond_http_requests_total", sel); n != 0 {
			t.Errorf("%s answered %v requests during the refused boot, want none", route, n)
		}
	}
	m, err := api.machine(unsignedVM.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if m.sessionOpen() || (m.Provisioning != nil && m.Provisioning.ConfigFetches != 0) {
		t.Errorf("machine after the refused boot: %s, want no session", m)
	}
	events, err := api.events(unsignedVM.MAC)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"provisioning", "config-served"} {
		if got := ofType(events, typ); len(got) != 0 {
			t.Errorf("%d %s events for the refused boot, want none: %v", len(got), typ, got)
		}
	}
}

// lineWith returns the first console line that contains s, trimmed.
func lineWith(serial, s string) string {
	for line := range strings.Lines(serial) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
