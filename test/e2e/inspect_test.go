package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The inspection VM: a BIOS machine with knownHardware, unknown to the
// profiles at first, so that it boots the Default (discovery) profile.
var inspectVM = vm{Name: "vm-inspect", MAC: "52:54:00:e2:e1:01", Hostname: "box1.e2e"}

// installDisk is the file the install profile's config names its install
// disk in, by the serial the inspection found: a name that survives the
// kernel's reordering of /dev/vdX, as a root-device hint does.
const installDisk = "/etc/provisiond/install-disk"

// TestInspect boots a VM whose hardware the test chose (two CPUs, 1.5 GiB,
// two virtio disks with serials, an SMBIOS identity) through provisiond
// (proxyDHCP next to the site's DHCP server) into a discovery profile with
// inspect: true. The test OS downloads the agent from provisiond
// (/agent/amd64), runs it with no flags (it finds provisiond.url=,
// provisiond.mac= and provisiond.token= on its kernel command line), and
// powers off. The inventory must then hold exactly the VM's facts. A Machine
// matching the SMBIOS serial (not the MAC) is then added to the profiles;
// the VM's next power-on must get that Machine's profile, whose Butane
// template names the install disk by serial from .hardware.
func TestInspect(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	requireStaticAgent(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox, diskModules...)
	l.startSiteDHCP()
	profiles := t.TempDir()
	writeDiscovery(t, profiles, tos, "console=ttyS0")
	pr := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: profiles, assets: tos.Dir, data: t.TempDir(),
	})
	api := pr.api
	m := l.addMachine(inspectVM)
	args, err := knownHardware.qemuHardware(qemuArgs(m.vm, m.tap), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "-no-reboot", "-boot", "n")

	inspectionEvents := inspectBoot(t, m, api, args, "x86_64")

	// Adoption: a Machine matched by the serial the inspection found.
	writeFile(t, profiles, "box1.bu", adoptButane(t))
	writeFile(t, profiles, "box1.yaml", fmt.Sprintf(`kind: Profile
name: install
boot:
  kernel: /assets/%s
  initrd: [/assets/%s]
  args: [console=ttyS0, panic=10]
config:
  butane: box1.bu
once: true
---
kind: Machine
name: box1
match: {serial: %q}
profile: install
metadata: {hostname: %s}
`, tos.Kernel, tos.Initrd, knownHardware.Serial, inspectVM.Hostname))
	pr.reloadedMachines(l, 1, 30*time.Second)

	p, err := m.powerOnArgs(args, bootTimeout, ignitionEnd, phonedHome)
	if err != nil {
		t.Fatal(err)
	}
	second := p.wait()
	if second.Err != nil {
		t.Errorf("install boot: %v", second.Err)
	}
	if strings.Contains(second.Serial, agentBegin) {
		t.Errorf("the install boot ran the agent: its profile does not inspect")
	}
	raw, err := ignitionConfig(second.Serial)
	if err != nil {
		t.Fatalf("install boot: %v (the Machine matching serial %s did not give its profile)", err, knownHardware.Serial)
	}
	config, err := parseIgnition(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	for path, want := range map[string]string{
		"/etc/hostname": inspectVM.Hostname,
		installDisk:     "/dev/disk/by-id/virtio-" + knownHardware.Disks[0].Serial,
	} {
		if got, err := config.fileContents(path); err != nil {
			t.Errorf("%v\n%s", err, raw)
		} else if got != want {
			t.Errorf("%s is %q, want %q", path, got, want)
		}
	}
	token, err := cmdlineToken(second.Serial)
	if err != nil {
		t.Fatal(err)
	}
	checkPhoneHome(t, second.Serial, token)
	after, _, err := api.inventory(m.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != "installed" || after.Hardware == nil || after.Hardware.System.Serial != knownHardware.Serial {
		t.Errorf("after the install: %s, hardware %+v; want installed with the inspected hardware kept", after.apiMachine, after.Hardware)
	}
	events, err := api.events(m.MAC)
	if err == nil {
		t.Logf("figure: events of the install boot: %d (all %d: %v)", len(events)-inspectionEvents, len(events), eventCounts(events))
	}
	if t.Failed() {
		for _, e := range events {
			t.Logf("event %s", e)
		}
	}
}

// writeDiscovery writes the discovery profile to the profiles directory:
// the test OS with inspect: true for every machine no Machine matches.
func writeDiscovery(t *testing.T, profiles string, tos *testOS, console string) {
	t.Helper()
	writeFile(t, profiles, "discovery.yaml", fmt.Sprintf(`kind: Profile
name: discovery
inspect: true
boot:
  kernel: /assets/%s
  initrd: [/assets/%s]
  args: [%s, panic=10]
---
kind: Default
profile: discovery
`, tos.Kernel, tos.Initrd, console))
}

// inspectBoot powers m on with args into the discovery profile, where the
// test OS runs the agent and powers off, and checks the inventory then
// holds knownHardware, with arch as uname names it. It returns the number of
// the machine's events after that boot.
func inspectBoot(t *testing.T, m *machine, api *apiClient, args []string, arch string) int {
	t.Helper()
	p, err := m.powerOnArgs(args, inspectTimeout, inspectedOff)
	if err != nil {
		t.Fatal(err)
	}
	boot := p.wait()
	if boot.Err != nil {
		t.Fatalf("inspection boot: %v", boot.Err)
	}
	run, err := agentResult(boot.Serial)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent output:\n%s", run.Output)
	if run.Exit != 0 {
		t.Fatalf("the agent exited %d, want 0:\n%s", run.Exit, run.Output)
	}
	mach, hwJSON, err := api.inventory(m.MAC)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inventory after inspection: %s, hardware %s", mach.apiMachine, hwJSON)
	checkHardware(t, knownHardware, m.MAC, arch, mach.Hardware)
	if t.Failed() {
		t.FailNow()
	}
	events, err := api.events(m.MAC)
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	if err := json.Compact(&report, hwJSON); err != nil {
		t.Fatalf("hardware JSON: %v", err)
	}
	t.Logf("figure: %s agent runtime %.2f s under TCG (-smp %d), agent binary %d bytes, hardware %d bytes as compact JSON; power-on to powered off %.1f s",
		arch, run.Seconds, knownHardware.CPUs, run.Bytes, report.Len(), p.elapsed().Seconds())
	t.Logf("figure: events of the inspection boot: %d %v", len(events), eventCounts(events))
	return len(events)
}

// adoptButane is the install profile's config: testdata/e2e.bu (hostname,
// phone-home) and the install disk named by the serial of the machine's
// first disk, from the inspection. provisiond renders a Machine's config at
// load as never inspected (no disks), so the template must allow for that.
func adoptButane(t *testing.T) string {
	t.Helper()
	bu, err := os.ReadFile(filepath.Join("testdata", "e2e.bu"))
	if err != nil {
		t.Fatalf("read Butane template: %v", err)
	}
	const files = "  files:\n"
	if !strings.Contains(string(bu), files) {
		t.Fatalf("testdata/e2e.bu has no %q", files)
	}
	disk := `    - path: ` + installDisk + `
      mode: 0644
      contents:
        inline: "{{ with .hardware.disks }}/dev/disk/by-id/virtio-{{ (index . 0).serial }}{{ end }}"
`
	return strings.Replace(string(bu), files, files+disk, 1)
}

// TestStalledAssetMissing boots the inspection VM as a known machine whose
// profile's kernel is missing from --assets. iPXE gets its script, a 404 for
// the kernel, and retries every 10 s. provisiond must record one
// asset-missing event naming the kernel, mark the machine stalled (here
// after --stall-after 20s) with the kernel as its last step, in the API, an
// event and the provisiond_machines_stalled metric, and not add events per
// retry.
func TestStalledAssetMissing(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	l.startSiteDHCP()
	const missing = "/assets/flatcar/missing.vmlinuz"
	profiles := t.TempDir()
	writeFile(t, profiles, "broken.yaml", fmt.Sprintf(`kind: Profile
name: broken
boot:
  kernel: %s
  initrd: [/assets/%s]
  args: [console=ttyS0, panic=10]
---
kind: Machine
name: box1
match: {mac: %q}
profile: broken
`, missing, tos.Initrd, inspectVM.MAC))
	pr := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: profiles, assets: tos.Dir, data: t.TempDir(),
		args: []string{"--stall-after", "20s"},
	})
	api := pr.api
	client := l.httpClient(pr.ns)
	if body, err := httpGet(client, pr.url+"/healthz"); err != nil || !strings.Contains(string(body), missing) {
		t.Errorf("/healthz does not list the missing kernel %s (err %v):\n%s", missing, err, body)
	}

	m := l.addMachine(inspectVM)
	args, err := knownHardware.qemuHardware(qemuArgs(m.vm, m.tap), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The window: until the first asset-missing event, then a minute of
	// iPXE's retries (every 10 s), in which the stall mark must come.
	const retries = 60 * time.Second
	p, err := m.powerOnArgs(append(args, "-no-reboot", "-boot", "n"), bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var firstMissing time.Duration
	var mach apiInventory
	var stalledAt time.Duration
	err = p.poll("a stall mark and a minute of retries after the first asset-missing event", func() (bool, error) {
		events, err := api.events(m.MAC)
		if err != nil {
			return false, err
		}
		if firstMissing == 0 && len(ofType(events, "asset-missing")) > 0 {
			firstMissing = p.elapsed()
		}
		if mach, _, err = api.inventory(m.MAC); err != nil {
			return false, err
		}
		if stalledAt == 0 && mach.Stalled != nil {
			stalledAt = p.elapsed()
		}
		return firstMissing > 0 && stalledAt > 0 && p.elapsed() > firstMissing+retries, nil
	})
	ran := p.elapsed()
	boot := p.powerOff()
	if err != nil {
		t.Error(err)
	}
	events, evErr := api.events(m.MAC)
	if evErr != nil {
		t.Fatal(evErr)
	}
	defer func() {
		if t.Failed() {
			t.Logf("machine: %s, stalled %+v", mach.apiMachine, mach.Stalled)
			for _, e := range events {
				t.Logf("event %s", e)
			}
		}
	}()
	console := printable([]byte(boot.Serial))
	tries := strings.Count(console, "retrying")
	t.Logf("first asset-missing event %s after power-on, stalled mark %s (%+v); iPXE retried %d times in %s",
		seconds(firstMissing), seconds(stalledAt), mach.Stalled, tries, seconds(ran))
	if tries < 3 {
		t.Errorf("iPXE retried %d times, want several: the event counts below would prove nothing:\n%s", tries, tail(console, 30))
	}
	if strings.Contains(console, "could not fetch the script for this machine") {
		t.Errorf("iPXE says it could not fetch the script, but the script was served and the kernel was not:\n%s", tail(console, 20))
	}

	missingEvents := ofType(events, "asset-missing")
	if len(missingEvents) != 1 {
		t.Errorf("%d asset-missing events, want 1 for the whole boot: %v", len(missingEvents), missingEvents)
	}
	for _, e := range missingEvents {
		if !strings.Contains(e.Message+fmt.Sprint(e.Fields), missing) {
			t.Errorf("asset-missing event does not name %s: %v", missing, e)
		}
	}
	if mach.Stalled == nil {
		t.Errorf("machine not marked stalled after %s of retries with --stall-after 20s: %s", retries, mach.apiMachine)
	} else if step := mach.Stalled.LastStep; !strings.Contains(step, "kernel") && !strings.Contains(step, missing) {
		t.Errorf("stalled with last step %q, want the kernel (%s)", step, missing)
	}
	if n := len(ofType(events, "stalled")); n != 1 {
		t.Errorf("%d stalled events, want 1", n)
	}
	if body, err := httpGet(client, pr.url+"/metrics"); err != nil {
		t.Error(err)
	} else if v, ok := metricValue(body, "provisiond_machines_stalled"); !ok || v != 1 {
		t.Errorf("provisiond_machines_stalled is %v (present %v), want 1", v, ok)
	}
	// No storm: each step of the boot once, however often iPXE retries.
	counts := eventCounts(events)
	t.Logf("figure: events of one boot stuck on a missing kernel, %d iPXE retries: %d %v", tries, len(events), counts)
	if counts["boot-step"] == 0 {
		t.Errorf("no boot-step events: no timeline")
	}
	for typ, n := range counts {
		if n > 6 {
			t.Errorf("%d %s events in one boot with %d retries: an event storm", n, typ, tries)
		}
	}
	if len(events) > 15 {
		t.Errorf("%d events in one boot with %d retries, want a handful", len(events), tries)
	}
}

// writeFile writes data to dir/name.
func writeFile(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
}

// TestInspectArm64 is TestInspect's inspection on an arm64 UEFI machine
// (QEMU virt, EDK2, the same hardware): provisiond serves /agent/arm64 from
// --agent-dir (a cross-compiled provisiond-linux-arm64), and the inventory
// must hold the same facts, with arch aarch64.
func TestInspectArm64(t *testing.T) {
	requireLab(t)
	kernel, modDir, busybox := requireArm64(t)
	agents := buildAgent(t, "arm64")
	l := newLab(t)
	tos := buildTestOSFrom(t, kernel, modDir, busybox, slices.Concat(virtioModules, diskModules))
	l.startSiteDHCP()
	profiles := t.TempDir()
	writeDiscovery(t, profiles, tos, "console=ttyAMA0")
	pr := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: profiles, assets: tos.Dir, data: t.TempDir(),
		args: []string{"--agent-dir", agents},
	})
	m := l.addMachine(vm{Name: "vm-arm64", MAC: "52:54:00:e2:e1:64"})
	args, err := arm64Args(m, knownHardware, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	inspectBoot(t, m, pr.api, args, "aarch64")
}
