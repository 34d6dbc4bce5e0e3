package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The VMs of TestUKIBoot: OVMF with Secure Boot enforced and the snakeoil
// test key enrolled, PXE off, so that only UEFI HTTP Boot can boot them.
// One's profile boots the UKI signed with that key, the other's an unsigned
// copy of it, which the firmware must refuse.
var (
	ukiVM         = vm{Name: "vm-uki", MAC: "52:54:00:e2:e4:01", Hostname: "vm-uki.e2e", UEFI: true, HTTPBoot: true, SecureBoot: true}
	unsignedUKIVM = vm{Name: "vm-uki-unsigned", MAC: "52:54:00:e2:e4:02", Hostname: "vm-uki-unsigned.e2e", UEFI: true, HTTPBoot: true, SecureBoot: true}
)

// ukiCmdline is the command line built into the UKI: like Talos's
// talos.config, its config URL names the machine by ${mac}, which the test
// OS fills in (testdata/init.sh), and carries no token.
const ukiCmdline = "console=ttyS0 panic=10 ignition.config.url=" + advertiseURL + "/ignition?mac=${mac}"

// The intruder is a host on the VLAN that asks for the UKI machine's config
// in its name, without a token, while its session is open.
const intruderAddr = "10.99.0.66"

// linuxBanner is the kernel's first console line: it must never show when
// the firmware refused the image, nor on the installed machine's next boot.
const linuxBanner = "Linux version"

// OVMF's console as its HTTP Boot over IPv4 gives up and it tries the next
// boot option, and as it fetches a boot file.
const (
	startHTTPBoot6 = ">>Start HTTP Boot over IPv6"
	httpBootFile   = "URI: "
)

// TestUKIBoot boots a signed unified kernel image over UEFI HTTP Boot, as a
// Talos machine boots, through provisiond alone: serve --dhcp-mode
// authoritative, and a profile with boot: {loader: uki, uki: /assets/uki.efi}.
// The UKI is the test OS's kernel and initramfs with systemd-stub and a
// fixed command line, signed with OVMF's snakeoil key; the firmware enforces
// Secure Boot with that key enrolled, and its PXE is off. The firmware must
// get the UKI's URL from DHCP, verify and run it, the kernel report Secure
// Boot enabled, and the test OS fetch its own config without a token
// (its command line has none) exactly once; that config carries the
// session token provisiond minted then, with which the test OS phones home.
// Meanwhile another host on the VLAN and provisiond's own host ask for that
// config in the machine's name: both are refused. Installed, the machine is
// powered on again: its profile boots once, so the DHCP answer names no boot
// file, and the firmware must fetch nothing and move on to its next boot
// option (a real machine's disk), with no new session.
//
// First, as the negative control that proves the test can fail, a VM with
// the same firmware whose profile boots an unsigned copy of the UKI must
// fetch it over HTTP and have the firmware refuse it (Access Denied).
func TestUKIBoot(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	requireUKI(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	assets := t.TempDir()
	unsigned := filepath.Join(assets, "uki-unsigned.efi")
	buildUKI(t, tos, ukiCmdline, unsigned)
	signUKI(t, unsigned, filepath.Join(assets, "uki.efi"))
	prov := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: writeUKIProfiles(t), assets: assets, data: t.TempDir(),
		pxe: authoritativeOn("eth0"),
	})
	intruder := l.addHost("intruder", intruderAddr)
	unsignedM, ukiM := l.addMachine(unsignedUKIVM), l.addMachine(ukiVM)
	unsignedM.varStore, ukiM.varStore = l.snakeoilVars(unsignedUKIVM.Name), l.snakeoilVars(ukiVM.Name)

	// One VM at a time: each has a core to itself.
	before := scrapeMetrics(t, prov)
	p, err := unsignedM.powerOn(refusalTimeout, startHTTPBoot, accessDenied, linuxBanner)
	if err != nil {
		t.Fatal(err)
	}
	p.waitMark(refusalTimeout, accessDenied, linuxBanner)
	refused := p.powerOff()
	after := scrapeMetrics(t, prov)

	p, err = ukiM.powerOn(bootTimeout, startHTTPBoot, efiStubSecureBoot, kernelSecureBoot, ignitionEnd, phonedHome)
	if err != nil {
		t.Fatal(err)
	}
	// The attempts run once the firmware's DHCP has opened the session, so
	// they meet it open (or, if the test OS was quicker, already served).
	attempts := []struct {
		name string
		http *http.Client
	}{
		{"another host on the VLAN", l.httpClient(intruder)},
		{"provisiond's own host", l.httpClient(l.Prov)},
	}
	sessionErr := p.poll("session opened by the firmware's DHCP", func() (bool, error) {
		m, err := prov.api.machine(ukiVM.MAC)
		return m.sessionOpen(), err
	})
	answers := make([]string, len(attempts))
	for i, a := range attempts {
		answers[i] = askConfig(a.http, ukiVM.MAC)
	}
	booted := p.wait()

	p, err = ukiM.powerOn(secondBootTimeout, httpBootFile, linuxBanner, startHTTPBoot6)
	if err != nil {
		t.Fatal(err)
	}
	p.waitMark(secondBootTimeout, httpBootFile, linuxBanner, startHTTPBoot6)
	second := p.powerOff()
	provLog, err := os.ReadFile(prov.daemon.log)
	if err != nil {
		t.Fatal(err)
	}

	t.Run(ukiVM.Name, func(t *testing.T) {
		if sessionErr != nil {
			t.Error(sessionErr)
		}
		checkUKIBoot(t, prov.api, booted, string(provLog))
		for i, a := range attempts {
			if !strings.HasPrefix(answers[i], "403") {
				t.Errorf("%s asked for %s's config without a token: %s, want 403", a.name, ukiVM.Name, answers[i])
			}
		}
		checkAuthoritativeLease(t, prov.api, ukiVM)
		t.Logf("%s: power-on to HTTP Boot %s, to the kernel's Secure Boot line %s, to config fetched %s",
			ukiVM.Name, seconds(booted.Marks[startHTTPBoot]), seconds(booted.Marks[kernelSecureBoot]), seconds(booted.Fetched()))
	})
	t.Run(ukiVM.Name+"-installed", func(t *testing.T) {
		checkUKIDiskBoot(t, prov.api, second)
	})
	t.Run(unsignedUKIVM.Name+"-refused", func(t *testing.T) {
		checkUKIRefused(t, prov.api, refused, before, after)
	})
}

// writeUKIProfiles writes the profiles of TestUKIBoot: the VLAN's Network,
// and for each VM a boot-once profile of loader uki with testdata/e2e.bu as
// its config: e2e-uki boots the signed UKI, e2e-uki-unsigned the unsigned
// copy.
func writeUKIProfiles(t *testing.T) string {
	t.Helper()
	dir := writeNetworks(t, "", secureBootNet)
	bu, err := os.ReadFile(filepath.Join("testdata", "e2e.bu"))
	if err != nil {
		t.Fatalf("read Butane template: %v", err)
	}
	var b strings.Builder
	for i, v := range []struct {
		vm
		profile, uki string
	}{{ukiVM, "e2e-uki", "uki.efi"}, {unsignedUKIVM, "e2e-uki-unsigned", "uki-unsigned.efi"}} {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, `kind: Profile
name: %s
boot: {loader: uki, uki: /assets/%s}
config:
  butane: e2e.bu
once: true
---
kind: Machine
name: %s
match: {mac: %q}
profile: %s
metadata: {hostname: %s}
`, v.profile, v.uki, v.Name, v.MAC, v.profile, v.Hostname)
	}
	for name, data := range map[string][]byte{"e2e.bu": bu, "uki.yaml": []byte(b.String())} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatalf("write profiles: %v", err)
		}
	}
	return dir
}

// askConfig asks for the /ignition of the machine mac without a token and
// returns the status line and the start of the body.
func askConfig(c *http.Client, mac string) string {
	resp, err := c.Get(advertiseURL + "/ignition?mac=" + url.QueryEscape(mac))
	if err != nil {
		return "no answer: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return fmt.Sprintf("%s: %q", resp.Status, body)
}

// checkUKIBoot checks the signed UKI's boot: the firmware booted it over
// HTTP Boot with Secure Boot on, the test OS fetched its own config with
// no token in the URL, got exactly one, with the token provisiond minted
// for it, phoned home with that token, and the API shows it installed.
func checkUKIBoot(t *testing.T, api *apiClient, r bootResult, provLog string) {
	t.Helper()
	if r.Err != nil {
		t.Errorf("boot: %v", r.Err)
	}
	serial := printable([]byte(r.Serial))
	at := 0
	for _, s := range []string{startHTTPBoot, efiStubSecureBoot, kernelSecureBoot, ignitionEnd} {
		i := strings.Index(serial[at:], s)
		if i < 0 {
			t.Fatalf("the console shows no %q after the boot's previous step:\n%s", s, tail(serial, 40))
		}
		at += i + len(s)
	}
	for _, s := range []string{startPXE, accessDenied} {
		if strings.Contains(serial, s) {
			t.Errorf("the console shows %q:\n%s", s, tail(serial, 40))
		}
	}
	line, ok := consoleLine(r.Serial, "PVD-IGNITION-URL ")
	if !ok {
		t.Fatal("no PVD-IGNITION-URL line on the serial console")
	}
	u, err := url.Parse(line)
	if err != nil || u.Query().Get("mac") != ukiVM.MAC || u.Query().Has("token") {
		t.Errorf("the test OS fetched %q (%v), want its own /ignition by MAC without a token", line, err)
	}

	raw, err := ignitionConfig(r.Serial)
	if err != nil {
		t.Fatal(err)
	}
	config, err := parseIgnition(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if hostname, err := config.fileContents("/etc/hostname"); err != nil || hostname != ukiVM.Hostname {
		t.Errorf("/etc/hostname is %q (%v), want %q", hostname, err, ukiVM.Hostname)
	}
	if strings.Contains(string(raw), unsignedUKIVM.Hostname) {
		t.Errorf("config mentions the other machine's hostname:\n%s", raw)
	}
	unit, err := config.unitContents(phoneHomeUnit)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	_, token, _ := strings.Cut(unit, "Environment=PHONE_HOME_TOKEN=")
	token, _, _ = strings.Cut(token, "\n")
	if !sessionToken.MatchString(token) {
		t.Errorf("the config's PHONE_HOME_TOKEN is %q, want the session token minted for the fetch:\n%s", token, unit)
	}
	checkPhoneHome(t, r.Serial, token)

	m, err := api.machine(ukiVM.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != "installed" || m.Provisioning == nil || m.Provisioning.SessionOpen || m.Provisioning.ConfigFetches != 1 {
		t.Errorf("machine at the end: %s, want installed after exactly 1 config fetch", m)
	}
	events, err := api.events(ukiVM.MAC)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		typ string
		n   int
	}{{"provisioning", 1}, {"config-served", 1}, {"installed", 1}} {
		if got := ofType(events, want.typ); len(got) != want.n {
			t.Errorf("%d %s events, want %d: %v", len(got), want.typ, want.n, got)
		}
	}
	for _, want := range []string{
		`msg="dhcp ack"`, `msg="http boot: uki session opened"`, `msg="config served"`,
	} {
		if !logHas(provLog, ukiVM.MAC, want) {
			t.Errorf("provisiond's log has no %s line for %s", want, ukiVM.MAC)
		}
	}
	if !logHas(provLog, ukiVM.MAC, `msg="dhcp ack"`, "file="+advertiseURL+"/assets/uki.efi") {
		t.Errorf("provisiond's log shows no DHCP ACK to %s naming %s/assets/uki.efi", ukiVM.MAC, advertiseURL)
	}
	if !logHas(provLog, ukiVM.MAC, `msg="config served"`, "minted=true") {
		t.Errorf("provisiond's log shows no config served to %s with a minted token", ukiVM.MAC)
	}
}

// logHas reports whether some line of the log names mac and holds every one
// of subs.
func logHas(log, mac string, subs ...string) bool {
	for line := range strings.Lines(log) {
		ok := strings.Contains(line, "mac="+mac)
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return true
		}
	}
	return false
}

// checkUKIRefused checks the negative control: provisiond sent the unsigned
// UKI over HTTP, the firmware refused to run it, no kernel started, and no
// config was served (before and after are provisiond's metrics around that
// boot, when nothing else booted).
func checkUKIRefused(t *testing.T, api *apiClient, r bootResult, before, after metricSamples) {
	t.Helper()
	serial := printable([]byte(r.Serial))
	if _, ok := r.Marks[linuxBanner]; ok {
		t.Fatalf("a kernel started from the unsigned UKI under Secure Boot:\n%s", tail(serial, 40))
	}
	d, ok := r.Marks[accessDenied]
	if !ok {
		t.Fatalf("the firmware never printed %q within %v:\n%s", accessDenied, refusalTimeout, tail(serial, 40))
	}
	line := lineWith(serial, accessDenied)
	if !strings.Contains(line, "HTTP") {
		t.Errorf("the refusal is not of the HTTP Boot option: %q", line)
	}
	t.Logf("%s: power-on to the firmware's refusal %s: %s", unsignedUKIVM.Name, seconds(d), line)

	sel := []string{`route="/assets/*"`, `code="200"`}
	if n := after.sum("provisiond_http_requests_total", sel...) - before.sum("provisiond_http_requests_total", sel...); n < 1 {
		t.Errorf("/assets/ answered 200 %v times during the boot, want 1 or more: the refusal must be the firmware's", n)
	}
	if n := after.sum("provisiond_http_requests_total", `route="/ignition"`) - before.sum("provisiond_http_requests_total", `route="/ignition"`); n != 0 {
		t.Errorf("/ignition answered %v requests during the refused boot, want none", n)
	}
	events, err := api.events(unsignedUKIVM.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if got := ofType(events, "config-served"); len(got) != 0 {
		t.Errorf("%d config-served events for the refused boot, want none: %v", len(got), got)
	}
}

// checkUKIDiskBoot checks the installed machine's second power-on: its
// firmware fetched no boot file and went on to its next boot option, and
// provisiond opened no session (the API still shows it installed after one
// session and one config).
func checkUKIDiskBoot(t *testing.T, api *apiClient, r bootResult) {
	t.Helper()
	serial := printable([]byte(r.Serial))
	if _, ok := r.Marks[startHTTPBoot6]; !ok {
		t.Errorf("the firmware never moved on from HTTP Boot over IPv4 (%q) within %v:\n%s", startHTTPBoot6, secondBootTimeout, tail(serial, 30))
	}
	for _, s := range []string{httpBootFile, linuxBanner} {
		if _, ok := r.Marks[s]; ok {
			t.Errorf("the installed machine's console shows %q: it booted the UKI again:\n%s", s, tail(serial, 30))
		}
	}
	t.Logf("%s: second power-on to the next boot option %s", ukiVM.Name, seconds(r.Marks[startHTTPBoot6]))
	m, err := api.machine(ukiVM.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != "installed" || m.sessionOpen() {
		t.Errorf("machine after the second power-on: %s, want installed with no session", m)
	}
	events, err := api.events(ukiVM.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if got := ofType(events, "provisioning"); len(got) != 1 {
		t.Errorf("%d provisioning events after the second power-on, want the first boot's alone: %v", len(got), got)
	}
}
