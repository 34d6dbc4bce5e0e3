package e2e

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// The VMs of TestPXEBoot: one per firmware on the VLAN, and one behind the
// router, each its own machine in the profiles so each must get its own config.
var labVMs = []vm{
	{Name: "vm-bios", MAC: "52:54:00:e2:e0:01", Hostname: "vm-bios.e2e"},
	// Matched by SMBIOS UUID alone: the proxyDHCP must read it from option 97
	// (EFI byte order) and iPXE's ${uuid} must agree, or this VM gets no offer.
	{Name: "vm-uefi", MAC: "52:54:00:e2:e0:02", UUID: "12345678-1234-5678-1234-56789abcdef0", Hostname: "vm-uefi.e2e", UEFI: true},
	// On the routed subnet: provisiond sees its DHCP only through the
	// router's relay, and must vouch for its address from that alone.
	{Name: "vm-relayed", MAC: "52:54:00:e2:e0:03", Hostname: "vm-relayed.e2e", Routed: true},
}

// The test OS at first boot fetches its config, phones home and reboots; the
// second boot of a boot-once machine ends at iPXE's `exit`, with no kernel.
// Under TCG on 2 cores, two VMs at a time, measured from power-on: BIOS
// config fetched ~22 s, installed ~22 s, second boot to boot-local ~18.5 s
// (Debian's 2019 iPXE ROM spends ~16 s of it configuring IPv6), the same
// through the relay (~24 s, ~24 s, ~19 s); UEFI ~35 s, ~35 s, ~22 s (up to
// twice that on a loaded machine). The margins cover a slow CI runner; a VM
// that gets no further is killed at these points.
const (
	bootTimeout       = 240 * time.Second // first power-on until QEMU exits after the phone-home
	secondBootTimeout = 150 * time.Second // second power-on until the boot-local event
	// restGrace is how long the second boot may run on after the boot-local
	// event, so that its console shows where iPXE's `exit` led (and that no
	// kernel came); it ends early at one of secondBootEnds.
	restGrace = 20 * time.Second
	pollEvery = 250 * time.Millisecond
)

// advertiseURL is where the VMs reach the stack under test.
const advertiseURL = "http://" + provAddr + ":8080"

// phoneHomeUnit is the systemd unit of testdata/e2e.bu whose contents carry
// the phone-home URL and token provisiond templated for the boot.
const phoneHomeUnit = "provisiond-phone-home.service"

// phonedHome starts the test OS's console line with the phone-home's status.
const phonedHome = "PVD-PHONED-HOME"

// secondBootEnds are where a second boot comes to rest after iPXE's `exit`
// with no disk to boot: back in the firmware, or not.
var secondBootEnds = []struct {
	mark, meaning string
	firmware      bool // the firmware has control again
}{
	{"No bootable device", "SeaBIOS tried every boot device", true},
	{"UiApp", "OVMF's boot manager menu", true},
	{"Shell>", "OVMF's UEFI shell", true},
	{"iPXE>", "the iPXE shell: iPXE never handed the boot back to the firmware", false},
}

func secondBootMarks() []string {
	var marks []string
	for _, e := range secondBootEnds {
		marks = append(marks, e.mark)
	}
	return marks
}

func TestPXEBoot(t *testing.T) {
	runPXEBoot(t, startProvisiond)
}

// stack starts the PXE services under test (proxyDHCP, TFTP, HTTP) in the
// lab's Prov namespace, serving tos to vms, and returns once they answer,
// with a client of its /api/v1. Whatever it starts must stop in t.Cleanup.
type stack func(t *testing.T, l *lab, tos *testOS, vms []vm) *apiClient

// runPXEBoot builds the lab with its routed subnet, starts the stack under
// test next to the site's DHCP server and the router's DHCP relay, and runs
// every VM of labVMs, two at a time, through a boot-once install: PXE boot,
// config fetched, phone-home, installed, reboot, and a second PXE boot told
// to boot from disk. Meanwhile the lab's attackers ask for each VM's boot
// files, config and phone-home in its name.
func runPXEBoot(t *testing.T, start stack) {
	kernel, release, busybox := requireLab(t)
	l := newLab(t)
	l.addRoutedSubnet()
	tos := buildTestOS(t, kernel, release, busybox)
	l.startSiteDHCP()
	l.startRelay()
	api := start(t, l, tos, labVMs)
	attackers := l.attackers(l.leaseTenant())

	// Every machine is wired up before any boots, so a failure while wiring
	// one cannot leave another's QEMU running.
	machines := make([]*machine, len(labVMs))
	for i, v := range labVMs {
		machines[i] = l.addMachine(v)
	}
	// Two VMs at a time, in labVMs' order, one emulated CPU per core: three
	// at once slowed every boot about twofold (measured: 55 s to the BIOS VM's
	// config, 85 s to the UEFI VM's), so the third would only make all of them
	// finish later. The third takes the core of the first to finish.
	cores := make(chan struct{}, 2)
	runs := make([]*vmRun, len(labVMs))
	// Meanwhile the routed attacker floods TFTP with requests it never
	// acknowledges: the UEFI VM must still fetch ipxe.efi and install.
	floodCtx, stopFlood := context.WithCancel(context.Background())
	floodStart := time.Now()
	flooded := l.tftpFlood(floodCtx, l.Attacker)
	var wg sync.WaitGroup
	for i, m := range machines {
		cores <- struct{}{}
		wg.Go(func() {
			defer func() { <-cores }()
			runs[i] = m.install(api, func() *impersonation { return impersonate(attackers, api, m.vm) })
		})
	}
	wg.Wait()
	stopFlood()
	sent := flooded()
	t.Log(floodSummary(sent, time.Since(floodStart)))
	if sent < tftpFloodRate {
		// Else the UEFI VM's install below says nothing about the flood.
		t.Errorf("the TFTP flood sent %d read requests, less than one second's worth (%d)", sent, tftpFloodRate)
	}

	for i, v := range labVMs {
		t.Run(v.Name, func(t *testing.T) {
			checkRun(t, v, runs[i])
		})
	}
	t.Run("impersonated", func(t *testing.T) {
		for i, v := range labVMs {
			t.Run(v.Name, func(t *testing.T) {
				checkImpersonation(t, v, runs[i])
			})
		}
	})
}

// vmRun is what one VM went through, as its consoles and the API showed it.
type vmRun struct {
	First, Second bootResult
	// Installed is the time from the first power-on until the API showed
	// the machine installed; BootLocal from the second power-on until the
	// API showed its boot-local event. Zero if that never happened.
	Installed, BootLocal time.Duration
	Machine              apiMachine     // at the end
	Events               []apiEvent     // the machine's, at the end
	Impersonation        *impersonation // what the attackers got, if they ran
	Errs                 []error        // failures of the run itself: timeouts, API errors
}

// install takes the machine through a boot-once install and the boot after
// it. attack, if not nil, runs once while its first boot's session is open
// (or, if that is missed, as soon as the machine is seen installed).
func (m *machine) install(api *apiClient, attack func() *impersonation) (r *vmRun) {
	r = &vmRun{}
	defer func() {
		// Whatever happened, the end state is evidence.
		var err error
		if r.Machine, err = api.machine(m.MAC); err != nil {
			r.Errs = append(r.Errs, err)
		}
		if r.Events, err = api.events(m.MAC); err != nil {
			r.Errs = append(r.Errs, err)
		}
	}()

	// First power-on: the test OS fetches its config, phones home and reboots.
	p, err := m.powerOn(bootTimeout, ignitionEnd, phonedHome)
	if err != nil {
		r.Errs = append(r.Errs, err)
		return r
	}
	err = p.poll("the API to show the machine installed", func() (bool, error) {
		mach, err := api.machine(m.MAC)
		if err != nil {
			return false, err
		}
		if attack != nil && r.Impersonation == nil && ((mach.State == "provisioning" && mach.sessionOpen()) || mach.State == "installed") {
			r.Impersonation = attack()
		}
		return mach.State == "installed", nil
	})
	if err == nil {
		r.Installed = p.elapsed()
	}
	r.First = p.wait()
	if attack != nil && r.Impersonation == nil {
		r.Impersonation = attack()
	}
	if err != nil {
		r.Errs = append(r.Errs, err)
		return r
	}
	if r.First.Err != nil {
		// Installed, but the reboot did not come: nothing to boot again.
		return r
	}

	// Second power-on, as after the reboot: /ipxe must answer `exit`.
	p, err = m.powerOn(secondBootTimeout, secondBootMarks()...)
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
		p.waitMark(restGrace, secondBootMarks()...)
	} else {
		r.Errs = append(r.Errs, err)
	}
	r.Second = p.powerOff()
	return r
}

// poll calls cond every pollEvery until it reports true. It fails when QEMU
// exits first (after one last call, as the machine may have finished just
// before) or its timeout passes; an error of cond is retried, and shown if
// it is still the last word.
func (p *power) poll(what string, cond func() (bool, error)) error {
	var last error
	check := keepLastError(cond, &last)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if check() {
			return nil
		}
		select {
		case <-tick.C:
		case <-p.done:
			if check() {
				return nil
			}
			return fmt.Errorf("%s: QEMU exited after %.1f s without %s%s", p.name, p.elapsed().Seconds(), what, lastErr(last))
		case <-p.ctx.Done():
			return fmt.Errorf("%s: no %s within %v%s", p.name, what, p.timeout, lastErr(last))
		}
	}
}

func lastErr(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf(" (last API error: %v)", err)
}

// waitMark waits up to d, QEMU's exit or the first of marks on the console.
func (p *power) waitMark(d time.Duration, marks ...string) {
	deadline := time.After(d)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		for _, mark := range marks {
			if _, ok := p.con.marked(mark); ok {
				return
			}
		}
		select {
		case <-tick.C:
		case <-p.done:
			return
		case <-deadline:
			return
		}
	}
}

// checkRun checks one VM's install: the first boot got its own config with
// this session's phone-home URL and token and phoned home; the API showed
// it installed; the second boot was told to boot from disk and fetched no
// config.
func checkRun(t *testing.T, v vm, r *vmRun) {
	for _, err := range r.Errs {
		t.Error(err)
	}
	if r.First.Err != nil {
		t.Errorf("first boot: %v", r.First.Err)
	}
	if r.Second.Err != nil {
		t.Errorf("second boot: %v", r.Second.Err)
	}
	t.Logf("%s: first power-on to config fetched %s, to installed (API) %s; second power-on to boot-local event (API) %s",
		v.Name, seconds(r.First.Fetched()), seconds(r.Installed), seconds(r.BootLocal))
	defer func() {
		if t.Failed() {
			t.Logf("%s: machine at the end: %s", v.Name, r.Machine)
			for _, e := range r.Events {
				t.Logf("%s: event %s", v.Name, e)
			}
		}
	}()

	token := checkConfig(t, v, labVMs, r.First.Serial)
	checkPhoneHome(t, r.First.Serial, token)
	checkLocalBoot(t, v, r)
}

// checkConfig checks the config a boot printed: its own, and none of others',
// with a phone-home unit naming this machine and the token of the boot's
// session (the one on its kernel command line), served by the lab's
// provisiond at advertiseURL. It returns that token.
func checkConfig(t *testing.T, v vm, others []vm, serial string) (token string) {
	t.Helper()
	return checkConfigFrom(t, advertiseURL, v, others, serial)
}

// checkConfigFrom is checkConfig for a config served by the instance whose
// advertise URL is base: the phone-home goes back to it.
func checkConfigFrom(t *testing.T, base string, v vm, others []vm, serial string) (token string) {
	t.Helper()
	raw, err := ignitionConfig(serial)
	if err != nil {
		t.Fatal(err)
	}
	config, err := parseIgnition(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	hostname, err := config.fileContents("/etc/hostname")
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if hostname != v.Hostname {
		t.Errorf("/etc/hostname is %q, want %q", hostname, v.Hostname)
	}
	for _, other := range others {
		if other.Name != v.Name && strings.Contains(string(raw), other.Hostname) {
			t.Errorf("config mentions %s, another machine's hostname:\n%s", other.Hostname, raw)
		}
	}

	token, err = cmdlineToken(serial)
	if err != nil {
		t.Fatal(err)
	}
	unit, err := config.unitContents(phoneHomeUnit)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	wantURL := base + "/api/v1/machines/" + strings.ReplaceAll(v.MAC, ":", "-") + "/installed"
	for _, want := range []string{
		"Environment=PHONE_HOME_URL=" + wantURL + "\n",
		"Environment=PHONE_HOME_TOKEN=" + token + "\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("served %s lacks %q (the session token is the one of ignition.config.url):\n%s", phoneHomeUnit, strings.TrimSpace(want), unit)
		}
	}
	return token
}

// sessionToken is what /ipxe puts in the config URL: 128 random bits, base32.
var sessionToken = regexp.MustCompile(`^[A-Z2-7]{26}$`)

// cmdlineToken returns the session token of the ignition.config.url the
// test OS found on its kernel command line.
func cmdlineToken(serial string) (string, error) {
	line, ok := consoleLine(serial, "PVD-IGNITION-URL ")
	if !ok {
		return "", errors.New("no PVD-IGNITION-URL line on the serial console")
	}
	u, err := url.Parse(line)
	if err != nil {
		return "", fmt.Errorf("ignition.config.url %q: %w", line, err)
	}
	token := u.Query().Get("token")
	if !sessionToken.MatchString(token) {
		return "", fmt.Errorf("ignition.config.url %q: token %q is not 26 characters of A-Z2-7", line, token)
	}
	return token, nil
}

// checkPhoneHome checks the test OS's phone-home was accepted.
func checkPhoneHome(t *testing.T, serial, token string) {
	t.Helper()
	status, ok := consoleLine(serial, phonedHome+" ")
	if !ok {
		t.Fatalf("no %s line on the serial console: the test OS did not phone home", phonedHome)
	}
	if status != "200" {
		t.Fatalf("phone-home with the session token %s answered %s, want 200", token, status)
	}
}

// checkLocalBoot checks the machine's lifecycle as the API recorded it: one
// session, its config served once, installed by the machine's phone-home,
// then a boot from disk whose console shows no kernel and no config fetch.
func checkLocalBoot(t *testing.T, v vm, r *vmRun) {
	t.Helper()
	if r.Machine.State != "installed" {
		t.Errorf("state at the end is %q, want installed", r.Machine.State)
	}
	if p := r.Machine.Provisioning; p == nil || p.SessionOpen || p.ConfigFetches != 1 {
		t.Errorf("provisioning at the end is %+v, want the session closed after 1 config fetch", p)
	}
	for _, want := range []struct {
		typ string
		n   int
	}{{"provisioning", 1}, {"config-served", 1}, {"installed", 1}} {
		if got := ofType(r.Events, want.typ); len(got) != want.n {
			t.Errorf("%d %s events, want %d: %v", len(got), want.typ, want.n, got)
		}
	}
	for _, e := range append(ofType(r.Events, "script-refused"), ofType(r.Events, "config-refused")...) {
		// The attackers' refusals are checked by checkImpersonation.
		if !r.byAttacker(e) {
			t.Errorf("a request of the machine itself was refused: %v", e)
		}
	}
	for _, e := range ofType(r.Events, "phone-home-refused") {
		if !r.byAttacker(e) {
			t.Errorf("phone-home refused: %v", e)
		}
	}
	installed := ofType(r.Events, "installed")
	for _, e := range installed {
		if e.Actor != "machine" {
			t.Errorf("installed by %q, want by the machine's phone-home: %v", e.Actor, e)
		}
	}

	// The API's account must match what the second boot's console shows.
	second := printable([]byte(r.Second.Serial))
	for _, s := range []string{"PVD-IGNITION-URL", ignitionBegin, "Linux version"} {
		if strings.Contains(second, s) {
			t.Errorf("second boot's console shows %q: it booted the test OS again instead of the disk:\n%s", s, tail(second, 30))
		}
	}
	local := ofType(r.Events, "boot-local")
	if len(local) == 0 {
		t.Fatal("no boot-local event: the second /ipxe did not answer with the boot-from-disk script")
	}
	if len(installed) > 0 && local[0].Seq < installed[0].Seq {
		t.Errorf("boot-local event %v before the installed event %v", local[0], installed[0])
	}
	// Where the boot went after `exit`. Only SeaBIOS is sure to get control
	// back: ipxe.efi runs its own embedded script around provisiond's.
	rest, at := "", time.Duration(0)
	for _, e := range secondBootEnds {
		if d, ok := r.Second.Marks[e.mark]; ok && (rest == "" || d < at) {
			rest, at = e.mark, d
		}
	}
	if rest == "" {
		t.Errorf("%s: second boot showed none of %q within %v of the boot-local event:\n%s", v.Name, secondBootMarks(), restGrace, tail(second, 30))
	}
	// One boot-from-disk answer: iPXE handed the boot back to the firmware
	// instead of running DHCP and autoboot again (ipxe.efi's embedded script).
	if len(local) != 1 {
		t.Errorf("%s: %d boot-local events, want 1: iPXE asked again instead of returning to the firmware: %v", v.Name, len(local), local)
	}
	for _, e := range secondBootEnds {
		if e.mark != rest {
			continue
		}
		t.Logf("%s: second boot came to rest %s after power-on at %q: %s", v.Name, seconds(at), e.mark, e.meaning)
		if !e.firmware {
			t.Errorf("%s: the boot-from-disk answer never reached the firmware, so a real machine would not boot its disk:\n%s", v.Name, tail(second, 30))
		}
	}
}

func seconds(d time.Duration) string {
	if d == 0 {
		return "never"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// requireLab skips the test unless this host can run the lab (or fails it
// under PROVISIOND_REQUIRE_LAB=1, see testutil.RequireLab), and returns the
// kernel, its release, and the static busybox the test OS is built from.
func requireLab(t *testing.T) (kernel, release, busybox string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots emulated VMs twice each (a minute or more, minutes on a loaded host); skipped in -short mode")
	}
	missing := testutil.Missing(
		testutil.Tool{Command: "ip", Package: "iproute2"},
		testutil.Tool{Command: "qemu-system-x86_64", Package: "qemu-system-x86"},
		testutil.Tool{Command: "dnsmasq", Package: "dnsmasq-base"},
		testutil.Tool{Command: "busybox", Package: "busybox-static"},
	)
	if os.Geteuid() != 0 {
		// Not a plain skip: under PROVISIOND_REQUIRE_LAB=1 a CI that lost
		// root must fail, not pass every VM test as skipped.
		missing = append(missing, "root (creates network namespaces, a bridge and tap devices)")
	}
	if _, err := os.Stat(ovmf); err != nil {
		missing = append(missing, ovmf+" (ovmf)")
	}
	kernel, release, ok := findKernel()
	if !ok {
		missing = append(missing, "/boot/vmlinuz-*-cloud-amd64 (linux-image-cloud-amd64)")
	} else if _, err := os.Stat(filepath.Join("/lib/modules", release, "modules.dep")); err != nil {
		missing = append(missing, "modules of "+release)
	}
	busybox, err := exec.LookPath("busybox")
	if err == nil && !isStatic(busybox) {
		missing = append(missing, "a static busybox (busybox-static)")
	}
	testutil.RequireLab(t, missing...)
	return kernel, release, busybox
}

// keepLastError wraps a poll condition: an error counts as not yet, and is
// kept in *last to be shown if it is still the last word at the timeout.
func keepLastError(cond func() (bool, error), last *error) func() bool {
	return func() bool {
		ok, err := cond()
		if err != nil {
			*last = err
		}
		return ok && err == nil
	}
}

// isStatic reports whether the ELF file at path has no program interpreter,
// i.e. runs in an initramfs without a dynamic loader.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// startProvisiond is the stack under test: provisiond alone, built from this
// checkout, doing proxyDHCP, TFTP and HTTP on the Prov namespace's eth0.
func startProvisiond(t *testing.T, l *lab, tos *testOS, vms []vm) *apiClient {
	return runProvisiond(t, l, tos, vms).api
}

// provisiondRun is provisiond serving the lab.
type provisiondRun struct {
	bin       string // the binary, which is also the operator's CLI
	ns        string // the namespace it serves in, where its operator asks
	url       string // its advertise URL
	tokenFile string // its API token
	daemon    *daemon
	api       *apiClient
}

// runProvisiond builds provisiond and serves vms with it as startProvisiond
// does; env (VAR=value) is added to the daemon's environment.
func runProvisiond(t *testing.T, l *lab, tos *testOS, vms []vm, env ...string) *provisiondRun {
	return l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: writeProfiles(t, tos, vms), assets: tos.Dir, data: t.TempDir(), env: env,
	})
}

// provisiondSpec is one provisiond instance of the lab.
type provisiondSpec struct {
	name     string // of its log
	ns, addr string // its namespace, whose eth0 has addr
	profiles string
	assets   string
	data     string
	env      []string // VAR=value added to its environment
	// pxe are the flags that serve PXE; nil: proxyDHCP and TFTP on eth0
	// (--dhcp-interface eth0).
	pxe []string
	// args are further serve flags. Without --api-token-file among them,
	// serve generates the token in data.
	args []string
}

// serveProvisiond starts provisiond serve as spec says (by default proxyDHCP
// and TFTP on eth0, HTTP on addr:8080) and returns once it answers /healthz.
func (l *lab) serveProvisiond(spec provisiondSpec) *provisiondRun {
	t := l.t
	t.Helper()
	bin := testutil.Binary(t)
	url := "http://" + spec.addr + ":8080"
	pxe := spec.pxe
	if pxe == nil {
		pxe = []string{"--dhcp-interface", "eth0"}
	}
	argv := append([]string{bin, "serve",
		"--profiles", spec.profiles,
		"--data-dir", spec.data,
		"--assets", spec.assets,
		"--http-addr", spec.addr + ":8080",
		"--advertise-url", url}, slices.Concat(pxe, spec.args)...)
	if len(spec.env) > 0 {
		// env execs the daemon: it is still the process the lab stops.
		argv = append(append([]string{"env"}, spec.env...), argv...)
	}
	d := l.start(spec.ns, spec.name, argv...)
	l.waitHTTP(d, spec.ns, url+"/healthz", 30*time.Second)
	tokenFile := filepath.Join(spec.data, "api-token")
	if i := slices.Index(spec.args, "--api-token-file"); i >= 0 && i+1 < len(spec.args) {
		tokenFile = spec.args[i+1]
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("API token: %v", err)
	}
	// The operator asks from the provisioner's own host.
	return &provisiondRun{
		bin: bin, ns: spec.ns, url: url, tokenFile: tokenFile, daemon: d,
		api: &apiClient{base: url + "/api/v1", token: strings.TrimSpace(string(token)), http: l.httpClient(spec.ns)},
	}
}

// writeProfiles writes the profiles directory provisiond serves: one
// boot-once profile booting the test OS with a Butane config (testdata/e2e.bu)
// that templates each machine's hostname and its phone-home URL and token,
// and one Machine per VM.
func writeProfiles(t *testing.T, tos *testOS, vms []vm) string {
	t.Helper()
	dir := t.TempDir()
	bu, err := os.ReadFile(filepath.Join("testdata", "e2e.bu"))
	if err != nil {
		t.Fatalf("read Butane template: %v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `kind: Profile
name: e2e
boot:
  kernel: /assets/%s
  initrd: [/assets/%s]
  args: [console=ttyS0, panic=10]
config:
  butane: e2e.bu
once: true
`, tos.Kernel, tos.Initrd)
	for _, v := range vms {
		match := fmt.Sprintf("{mac: %q}", v.MAC)
		if v.UUID != "" {
			match = fmt.Sprintf("{uuid: %q}", v.UUID)
		}
		fmt.Fprintf(&b, `---
kind: Machine
name: %s
match: %s
profile: e2e
metadata: {hostname: %s}
`, v.Name, match, v.Hostname)
		if v.BMC != nil {
			fmt.Fprintf(&b, "bmc: {address: %q, credentials: %q}\n", v.BMC.Address, v.BMC.Credentials)
		}
		if v.IP != "" {
			fmt.Fprintf(&b, "ip: %s\n", v.IP)
		}
	}
	for name, data := range map[string][]byte{"e2e.bu": bu, "e2e.yaml": []byte(b.String())} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatalf("write profiles: %v", err)
		}
	}
	return dir
}
