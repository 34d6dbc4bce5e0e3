package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
	"github.com/provisiond/provisiond/test/bmcsim"
)

// TestBMCLifecycle takes a machine whose power its BMC owns through a whole
// provisioning life, every step asked of provisiond: power on, PXE boot,
// Ignition, phone-home, boot from disk, then reprovision with power: next
// boot PXE, power cycle, install again. Once per protocol, both at once on
// the lab's VLAN: IPMI (OpenIPMI's ipmi_sim, driven by bmclib's ipmitool
// provider) and Redfish (bmcsim's Redfish service, driven by bmclib's gofish
// provider). Each BMC serves on the provisioner's loopback and steers its VM
// through a bmcsim chassis script, which runs QEMU with the boot order of the
// device it was told to boot: the VM exists only while the BMC says it is on.
//
// Under TCG with both VMs at once, measured from the power-on: config fetched
// and installed ~22 s, booted "from disk" (boot-local) ~40 s; from the
// reprovision request: config fetched and installed again ~22 s. The whole
// test takes about 70 s.
func TestBMCLifecycle(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	requireBMCLab(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	l.startSiteDHCP()

	// The BMCs come first, as their addresses go into the profiles; every
	// VM stays off until provisiond powers it on.
	machines := []*bmcMachine{
		l.addBMCMachine(vm{Name: "vm-ipmi", MAC: "52:54:00:e2:e1:01", Hostname: "vm-ipmi.e2e"}, bmcIPMI),
		l.addBMCMachine(vm{Name: "vm-redfish", MAC: "52:54:00:e2:e1:02", Hostname: "vm-redfish.e2e"}, bmcRedfish),
	}
	var vms []vm
	var env []string
	for _, m := range machines {
		vms = append(vms, m.vm)
		env = append(env, m.credEnv)
	}
	pd := runProvisiond(t, l, tos, vms, env...)

	for _, m := range machines {
		t.Run(m.protocol, func(t *testing.T) {
			t.Parallel()
			m.lifecycle(t, l, pd, vms)
		})
	}
}

// The BMC protocols, as subtest names and bmc.address schemes.
const (
	bmcIPMI    = "ipmi"
	bmcRedfish = "redfish"
)

// bmcMachine is a lab VM whose power a simulated BMC owns: the BMC runs the
// bmcsim chassis script in dir, which starts QEMU on power-on (stdio, hence the
// serial console, on dir's machine.log) and kills it on power-off.
type bmcMachine struct {
	vm
	protocol string
	dir      string
	chassis  bmcsim.ScriptChassis
	credEnv  string // VAR=user:password, for provisiond's environment: its Machine's bmc.credentials is env:VAR
}

// The BMCs' accounts. ipmi_sim takes passwords of up to 16 characters.
const (
	bmcUser     = "admin"
	bmcPassword = "e2e-bmc-secret"
)

// addBMCMachine wires a VM into the lab (a tap port on the bridge) behind a
// BMC of protocol that listens on the provisioner's loopback, which its BMC
// field names. Whatever happens, the VM is off and the BMC stopped when t ends.
func (l *lab) addBMCMachine(v vm, protocol string) *bmcMachine {
	l.t.Helper()
	return l.addBMCMachineAt(v, protocol, bmcSite{ns: l.Prov, host: "127.0.0.1"})
}

// bmcSite is where a BMC serves, and what its VM does on a guest reboot.
type bmcSite struct {
	ns, host string // the BMC's namespace and its address there
	// offOnReboot makes a guest reboot power the VM off (QEMU -no-reboot),
	// as a machine set to shut down after its install: the test decides
	// when, and through which server, it boots next.
	offOnReboot bool
}

// addBMCMachineAt is addBMCMachine with the BMC at site.
func (l *lab) addBMCMachineAt(v vm, protocol string, site bmcSite) *bmcMachine {
	t := l.t
	t.Helper()
	tap := l.addTap(vlanBridge)
	m := &bmcMachine{vm: v, protocol: protocol, dir: filepath.Join(l.Artifacts, v.Name+"-bmc")}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := bmcsim.WriteChassisScript(m.dir, func(device string) []string {
		// -boot orders SeaBIOS's boot devices: c is the first disk, n the
		// NIC's option ROM (iPXE). Without -no-reboot a guest reboot
		// restarts QEMU's machine in place, as on a real one, and the power
		// stays on until the BMC turns it off.
		var order string
		switch device {
		case "pxe":
			order = "n"
		case "disk":
			// Disk first, then network: the VM has no disk, so, like a
			// fresh server, it falls through to PXE.
			order = "cn"
		default:
			return nil // the script refuses to set cdrom and bios
		}
		// The script runs in the BMC's namespace; the tap is in the switch's.
		argv := append(append([]string{"ip", "netns", "exec", l.Switch}, qemuArgs(v, tap)...), "-boot", "order="+order)
		if site.offOnReboot {
			argv = append(argv, "-no-reboot")
		}
		return argv
	})
	if err != nil {
		t.Fatal(err)
	}
	m.chassis = bmcsim.ScriptChassis{Path: script}
	l.logs = append(l.logs,
		namedLog{v.Name + "-serial", filepath.Join(m.dir, bmcsim.MachineLog)},
		namedLog{v.Name + "-bmc-calls", filepath.Join(m.dir, bmcsim.CallsLog)},
		namedLog{v.Name + "-boots", filepath.Join(m.dir, bmcsim.BootsLog)})
	m.guardPower(t)

	var address string
	switch protocol {
	case bmcIPMI:
		dir := filepath.Join(m.dir, "ipmi_sim")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sim := bmcsim.StartIPMISim(t, bmcsim.IPMIConfig{
			Script: script, User: bmcUser, Password: bmcPassword,
			Addr: net.JoinHostPort(site.host, "623"), Dir: dir,
			// In the site's namespace. setpriv: if the test binary dies
			// without its cleanups, so does ipmi_sim.
			Prefix: []string{"setpriv", "--pdeathsig", "KILL", "ip", "netns", "exec", site.ns},
		})
		l.logs = append(l.logs, namedLog{v.Name + "-ipmi_sim", filepath.Join(sim.Dir, "ipmi_sim.log")})
		address = "ipmi://" + net.JoinHostPort(sim.Host, sim.Port)
	case bmcRedfish:
		// A socket belongs to the namespace it was made in: this one
		// listens in the site's, served from here.
		var ln net.Listener
		err := inNetns(site.ns, func() (err error) {
			ln, err = net.Listen("tcp4", net.JoinHostPort(site.host, "0"))
			return err
		})
		if err != nil {
			t.Fatalf("redfish listener: %v", err)
		}
		stop, err := bmcsim.NewRedfish(m.chassis, bmcUser, bmcPassword).Serve(ln)
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("redfish BMC of %s: %v", v.Name, err)
			}
		})
		address = "redfish://" + ln.Addr().String()
	default:
		t.Fatalf("unknown BMC protocol %q", protocol)
	}
	envVar := "PVD_E2E_BMC_" + strings.ToUpper(protocol)
	m.credEnv = envVar + "=" + bmcUser + ":" + bmcPassword
	m.BMC = &vmBMC{Address: address, Credentials: "env:" + envVar}
	return m
}

// guardPower makes sure the VM is off when the test ends, however it ends:
// a shell powers it off through the chassis script as soon as its stdin, a
// pipe only this process holds, closes. The cleanup closes it (after the BMC
// is stopped, so no power cycle can follow); a test binary killed by
// -timeout or a signal, which runs no cleanup, closes it by dying.
func (m *bmcMachine) guardPower(t *testing.T) {
	t.Helper()
	logf, err := os.Create(filepath.Join(m.dir, "power-guard.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the shell has its own copy
	cmd := exec.Command("sh", "-c", `read -r _; exec "$0" 0x20 set power 0`, m.chassis.Path)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A group of its own: a Ctrl-C meant for the test must not kill it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("power guard: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b, _ := os.ReadFile(logf.Name())
			t.Errorf("powering %s off: %v: %s", m.Name, err, bytes.TrimSpace(b))
		}
	})
}

// apiPowerResult is the part of a power operation's answer the test reads.
type apiPowerResult struct {
	OK     bool   `json:"ok"`
	Action string `json:"action"`
	Before string `json:"before"`
	Done   string `json:"done"`
	Boot   string `json:"boot"`
	Error  string `json:"error"`
	// DoneBy and Note: a reprovision that found an identical one, asked
	// for at the same time, had network-booted the machine already.
	DoneBy string `json:"done_by"`
	Note   string `json:"note"`
}

// reprovisionAnswer is the part of a reprovision's answer the test reads.
type reprovisionAnswer struct {
	State string          `json:"state"`
	BMC   *apiPowerResult `json:"bmc_result"`
}

// lifecycle powers the machine on through provisiond's CLI, waits for its
// install and its boot from disk, then reprovisions it through the API with
// power and waits for the second install, checking what the BMC, the
// console and the event log show at each step.
func (m *bmcMachine) lifecycle(t *testing.T, l *lab, pd *provisiondRun, all []vm) {
	api := pd.api
	operator := *pd.api
	operator.actor = "e2e-operator"
	var events []apiEvent
	defer func() {
		if !t.Failed() {
			return
		}
		if mach, err := api.machine(m.MAC); err == nil {
			t.Logf("%s: machine at the end: %s", m.Name, mach)
		}
		evs, _ := api.events(m.MAC)
		for _, e := range evs {
			t.Logf("%s: event %s", m.Name, e)
		}
	}()
	// The test OS prints the phone-home's status once it has the answer,
	// a moment after provisiond recorded the install.
	phonedHomeSince := func(from int) string {
		t.Helper()
		m.waitFor(t, "the phone-home's status on the console", from, 30*time.Second, func() (bool, error) {
			_, ok := consoleLine(m.serialSince(from), phonedHome+" ")
			return ok, nil
		})
		return m.serialSince(from)
	}

	// 1. Power on, as an operator does: `provisiond power on <machine>`.
	// The machine never booted: provisiond knows it from Git alone.
	from1 := m.serialSize()
	start := time.Now()
	var on apiPowerResult
	if err := pd.cli(l, &on, "power", "on", m.Name); err != nil {
		t.Fatal(err)
	}
	if !on.OK {
		t.Fatalf("power on answered %+v, want ok", on)
	}
	if on.Done != "on" || on.Before != "off" {
		t.Errorf("power on answered %+v, want done on, before off", on)
	}
	// No boot override pending: the chassis boots its default, the disk.
	m.waitBoots(t, "disk")
	if running, err := m.chassis.Power(); err != nil || !running {
		t.Fatalf("%s: the chassis says the VM runs: %v (%v), want true", m.Name, running, err)
	}
	t.Logf("%s: power on through %s took %s", m.Name, m.protocol, seconds(time.Since(start)))
	var status struct {
		State string `json:"state"`
	}
	if err := pd.cli(l, &status, "power", "status", m.Name); err != nil {
		t.Fatal(err)
	}
	if status.State != "on" {
		t.Errorf("provisiond power status %s: %q, want on", m.Name, status.State)
	}

	// 2-4. PXE from provisiond, Ignition fetched, phone-home: installed.
	events = m.waitEvents(t, api, "the machine installed", from1, bootTimeout, "installed", 1)
	fetched1 := since(start, events, "config-served", 0)
	installed1 := since(start, events, "installed", 0)
	// The test OS reboots after its phone-home; the VM boots its default
	// again (disk, then network) and provisiond sends the installed
	// machine to its disk: it is up as after an install.
	events = m.waitEvents(t, api, "a boot-local event", from1, secondBootTimeout, "boot-local", 1)
	bootLocal := since(start, events, "boot-local", 0)
	t.Logf("%s: power on to config fetched %s, to installed %s, to boot-local %s",
		m.Name, seconds(fetched1), seconds(installed1), seconds(bootLocal))
	serial1 := phonedHomeSince(from1)
	token1 := checkConfig(t, m.vm, all, serial1)
	checkPhoneHome(t, serial1, token1)

	// 5. Reprovision with power (POST /machines/{id}/reprovision): next boot
	// PXE, then a power cycle.
	from2 := m.serialSize()
	calls0 := len(m.calls(t))
	reprovisionAt := time.Now()
	var answer reprovisionAnswer
	if _, err := operator.post("/machines/"+url.PathEscape(m.Name)+"/reprovision",
		map[string]any{"reason": "e2e: reinstall through the BMC", "power": true}, &answer); err != nil {
		t.Fatal(err)
	}
	switch p := answer.BMC; {
	case p == nil:
		t.Fatal("reprovision answered without a bmc_result: the BMC was not driven")
	case !p.OK:
		t.Fatalf("reprovision's bmc_result is %+v, want ok", *p)
	case p.Done != "cycle" || p.Before != "on":
		t.Errorf("reprovision's bmc_result is %+v, want done cycle, before on", *p)
	}
	t.Logf("%s: reprovision answered in %s: state %s, bmc_result %+v", m.Name, seconds(time.Since(reprovisionAt)), answer.State, *answer.BMC)
	if answer.State != "provisioning" {
		t.Errorf("reprovision answered state %q, want provisioning", answer.State)
	}
	m.waitBoots(t, "disk", "pxe")
	m.checkPXEThenCycle(t, m.calls(t)[calls0:])

	events = m.waitEvents(t, api, "the machine installed again", from2, bootTimeout, "installed", 2)
	fetched2 := since(reprovisionAt, events, "config-served", 1)
	installed2 := since(reprovisionAt, events, "installed", 1)
	t.Logf("%s: reprovision to config fetched %s, to installed %s", m.Name, seconds(fetched2), seconds(installed2))
	serial2 := phonedHomeSince(from2)
	token2 := checkConfig(t, m.vm, all, serial2)
	checkPhoneHome(t, serial2, token2)
	if token2 == token1 {
		t.Errorf("the reinstall was served the first install's session token %s", token1)
	}

	mach, err := api.machine(m.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if p := mach.Provisioning; mach.State != "installed" || p == nil || p.SessionOpen || p.ConfigFetches != 1 {
		t.Errorf("machine at the end: %s; want installed, its session closed after 1 config fetch", mach)
	}
	m.checkEvents(t, events, operator.actor)
}

// since is the time from t0 to the i-th event of type typ; zero if there is
// no such event.
func since(t0 time.Time, events []apiEvent, typ string, i int) time.Duration {
	if of := ofType(events, typ); i < len(of) {
		return of[i].Time.Sub(t0)
	}
	return 0
}

// checkPXEThenCycle checks the BMC's chassis calls since the reprovision:
// the next boot set to PXE, then the running machine restarted: powered off
// and on (ipmi_sim's power cycle), or reset (bmclib's gofish provider asks
// Redfish for a ForceRestart), each honouring the pending override.
func (m *bmcMachine) checkPXEThenCycle(t *testing.T, calls []string) {
	t.Helper()
	var sets []string // what was changed, in order; reads are left out
	for _, c := range calls {
		if rest, ok := strings.CutPrefix(c, "0x20 set "); ok {
			sets = append(sets, rest)
		}
	}
	t.Logf("%s: BMC changes since the reprovision: %q", m.Name, sets)
	pxe := slices.IndexFunc(sets, func(s string) bool { return strings.HasPrefix(s, "boot pxe") })
	if pxe < 0 {
		t.Errorf("the BMC was not told to boot from the network (set boot pxe)")
		return
	}
	after := sets[pxe+1:]
	if slices.ContainsFunc(after, func(s string) bool { return strings.HasPrefix(s, "boot ") }) {
		t.Errorf("the boot device changed again after boot pxe: %q", after)
	}
	off, on := slices.Index(after, "power 0"), slices.Index(after, "power 1")
	reset := slices.Index(after, "reset 1")
	if !(off >= 0 && on > off) && reset < 0 {
		t.Errorf("after boot pxe the BMC did %q; want power 0 then power 1, or reset 1", after)
	}
}

// checkEvents checks the machine's event log over its life: the power
// operations, each by its operator and ok, and the two installs around the
// reprovision, in order.
func (m *bmcMachine) checkEvents(t *testing.T, events []apiEvent, operator string) {
	t.Helper()
	power := ofType(events, "power")
	reprovision := ofType(events, "reprovision")
	provisioning := ofType(events, "provisioning")
	served := ofType(events, "config-served")
	installed := ofType(events, "installed")
	bootLocal := ofType(events, "boot-local")
	// Everything is asked from the provisioner's host: the CLI names the
	// local user (root), the test's API client its operator.
	wantPower := []struct{ action, actor, before, done string }{
		{"on", "root/api@" + provAddr, "off", "on"},
		{"reprovision", operator + "/api@" + provAddr, "on", "cycle"},
	}
	if len(power) != len(wantPower) {
		t.Fatalf("%d power events, want %d: %v", len(power), len(wantPower), power)
	}
	for i, w := range wantPower {
		e := power[i]
		f := e.Fields
		if f["action"] != w.action || e.Actor != w.actor || f["result"] != "ok" || f["before"] != w.before || f["done"] != w.done || f["error"] != "" {
			t.Errorf("power event %v; want action %s by %s, result ok, before %s, done %s", e, w.action, w.actor, w.before, w.done)
		}
		if f["bmc"] != m.BMC.Address {
			t.Errorf("power event %v names BMC %q, want %q", e, f["bmc"], m.BMC.Address)
		}
	}
	if m.protocol == bmcRedfish {
		// Redfish reads the override back; IPMI's provider cannot.
		if got, want := power[1].Fields["boot"], "pxe (once, legacy)"; got != want {
			t.Errorf("reprovision's power event reads the next boot back as %q, want %q", got, want)
		}
	}
	if len(reprovision) != 1 || reprovision[0].Actor != operator+"/api@"+provAddr {
		t.Fatalf("reprovision events %v, want one by %s/api@%s", reprovision, operator, provAddr)
	}
	for _, want := range []struct {
		typ    string
		events []apiEvent
	}{{"provisioning", provisioning}, {"config-served", served}, {"installed", installed}} {
		if len(want.events) != 2 {
			t.Fatalf("%d %s events, want 2: %v", len(want.events), want.typ, want.events)
		}
	}
	for _, e := range installed {
		if e.Actor != "machine" {
			t.Errorf("installed by %q, want by the machine's phone-home: %v", e.Actor, e)
		}
	}
	for _, typ := range []string{"script-refused", "config-refused", "phone-home-refused"} {
		if got := ofType(events, typ); len(got) > 0 {
			t.Errorf("%s: %v", typ, got)
		}
	}
	// The life in order. The second install reboots into a second
	// boot-local, which may or may not be on record yet.
	order := []apiEvent{power[0], provisioning[0], served[0], installed[0], bootLocal[0],
		reprovision[0], power[1], provisioning[1], served[1], installed[1]}
	for i := 1; i < len(order); i++ {
		if order[i].Seq < order[i-1].Seq {
			t.Errorf("event %v before %v", order[i], order[i-1])
		}
	}
}

// waitFor calls cond every pollEvery until it reports true. It fails t when
// timeout passes, the test OS reports a failure on the console after offset
// from, or the VM is found off (checked every few seconds, after one last
// call of cond). An error of cond is retried, and shown if it is the last word.
func (m *bmcMachine) waitFor(t *testing.T, what string, from int, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	start := time.Now()
	var last error
	check := keepLastError(cond, &last)
	lastPowerCheck := start
	for !check() {
		if i := strings.Index(m.serialSince(from), testOSFailure); i >= 0 {
			line, _, _ := strings.Cut(m.serialSince(from)[i:], "\n")
			t.Fatalf("%s: waiting for %s: the test OS failed: %s", m.Name, what, strings.TrimSpace(line))
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: no %s within %v%s", m.Name, what, timeout, lastErr(last))
		}
		// Through the chassis script, which logs each call: not too often.
		if time.Since(lastPowerCheck) > 5*time.Second {
			lastPowerCheck = time.Now()
			if on, err := m.chassis.Power(); err == nil && !on && !check() {
				t.Fatalf("%s: the VM is off after %s without %s%s", m.Name, seconds(time.Since(start)), what, lastErr(last))
			}
		}
		time.Sleep(pollEvery)
	}
}

// waitEvents waits, as waitFor does, until api shows n events of type typ
// for the machine, and returns its events then.
func (m *bmcMachine) waitEvents(t *testing.T, api *apiClient, what string, from int, timeout time.Duration, typ string, n int) []apiEvent {
	t.Helper()
	var events []apiEvent
	m.waitFor(t, what, from, timeout, func() (bool, error) {
		var err error
		events, err = api.events(m.MAC)
		return len(ofType(events, typ)) >= n, err
	})
	return events
}

// waitBoots waits until the chassis has started the VM exactly for want, in
// order, a few seconds at most: a BMC's power-on is done within a second or so.
func (m *bmcMachine) waitBoots(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := m.boots(t)
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			t.Fatalf("%s: the chassis started the VM for %q, want %q", m.Name, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// boots is what the chassis started the VM for so far, in order.
func (m *bmcMachine) boots(t *testing.T) []string {
	t.Helper()
	boots, err := bmcsim.ReadBoots(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	return boots
}

// calls is every call the BMC made to the chassis script so far.
func (m *bmcMachine) calls(t *testing.T) []string {
	t.Helper()
	calls, err := bmcsim.ReadCalls(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// serialSize is how much the VM's console log holds now: the console of the
// next boot starts there.
func (m *bmcMachine) serialSize() int {
	fi, err := os.Stat(filepath.Join(m.dir, bmcsim.MachineLog))
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// serialSince returns the VM's console from offset from on.
func (m *bmcMachine) serialSince(from int) string {
	b, _ := os.ReadFile(filepath.Join(m.dir, bmcsim.MachineLog))
	if from > len(b) {
		return ""
	}
	return string(b[from:])
}

// cli runs provisiond's CLI on the provisioner's host, as an operator there
// would, and decodes its JSON output into v.
func (pd *provisiondRun) cli(l *lab, v any, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{pd.bin}, args...)
	argv = append(argv, "--server", pd.url, "--token-file", pd.tokenFile, "-o", "json")
	cmd := l.command(ctx, pd.ns, argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("provisiond %s: %v: %s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("provisiond %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// requireBMCLab skips the test, or fails it with PROVISIOND_REQUIRE_LAB=1 as
// test/bmcsim does, unless the BMC simulators' tools are installed.
func requireBMCLab(t *testing.T) {
	t.Helper()
	testutil.RequireTools(t,
		testutil.Tool{Command: "ipmi_sim", Package: "openipmi"},
		testutil.Tool{Command: "ipmitool", Package: "ipmitool"},
		testutil.Tool{Command: "bash", Package: "bash"},
		testutil.Tool{Command: "setsid", Package: "util-linux"},
		testutil.Tool{Command: "flock", Package: "util-linux"},
		testutil.Tool{Command: "setpriv", Package: "util-linux"})
}
