package e2e

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The VMs of TestPXEBoot: one per firmware, each its own machine in the
// profiles so each must get its own config.
var labVMs = []vm{
	{Name: "vm-bios", MAC: "52:54:00:e2:e0:01", Hostname: "vm-bios.e2e"},
	// Matched by SMBIOS UUID alone: the proxyDHCP must read it from option 97
	// (EFI byte order) and iPXE's ${uuid} must agree, or this VM gets no offer.
	{Name: "vm-uefi", MAC: "52:54:00:e2:e0:02", UUID: "12345678-1234-5678-1234-56789abcdef0", Hostname: "vm-uefi.e2e", UEFI: true},
}

// Power-on to config fetched, both VMs at once under TCG on 2 cores, measured
// ~21 s for BIOS and ~32 s for UEFI (up to ~60 s on a loaded machine). The
// margin covers a slow CI runner; a VM that never gets its config is killed
// at this point.
const bootTimeout = 240 * time.Second

// advertiseURL is where the VMs reach the stack under test.
const advertiseURL = "http://" + provAddr + ":8080"

func TestPXEBoot(t *testing.T) {
	runPXEBoot(t, startProvisiond)
}

// stack starts the PXE services under test (proxyDHCP, TFTP, HTTP) in the
// lab's Prov namespace, serving tos to vms, and returns once they answer.
// Whatever it starts must stop in t.Cleanup.
type stack func(t *testing.T, l *lab, tos *testOS, vms []vm)

// runPXEBoot builds the lab, starts the stack under test next to the site's
// DHCP server, PXE-boots every VM of labVMs at once and checks that each
// printed an Ignition 3.x config whose /etc/hostname is its own hostname.
func runPXEBoot(t *testing.T, start stack) {
	kernel, release, busybox := requireLab(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	l.startSiteDHCP()
	start(t, l, tos, labVMs)

	// Both VMs at once: one emulated CPU each on the 2 cores.
	// Every machine is wired up before any boots, so a failure while wiring
	// one cannot leave another's QEMU running.
	machines := make([]*machine, len(labVMs))
	for i, v := range labVMs {
		machines[i] = l.addMachine(v)
	}
	results := make([]bootResult, len(labVMs))
	var wg sync.WaitGroup
	for i, m := range machines {
		wg.Go(func() { results[i] = m.boot(bootTimeout) })
	}
	wg.Wait()

	for i, v := range labVMs {
		t.Run(v.Name, func(t *testing.T) {
			checkBoot(t, v, results[i])
		})
	}
}

// checkBoot checks what one VM printed: its own config, and nobody else's.
func checkBoot(t *testing.T, v vm, r bootResult) {
	if r.Err != nil {
		t.Error(r.Err)
	}
	raw, err := ignitionConfig(r.Serial)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %.1f s from power-on to config fetched", v.Name, r.Fetched.Seconds())
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
	for _, other := range labVMs {
		if other.Name != v.Name && strings.Contains(string(raw), other.Hostname) {
			t.Errorf("config mentions %s, another machine's hostname:\n%s", other.Hostname, raw)
		}
	}
}

// requireLab skips the test unless this host can run the lab, and returns the
// kernel, its release, and the static busybox the test OS is built from.
func requireLab(t *testing.T) (kernel, release, busybox string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots two emulated VMs (~35 s, minutes on a loaded host); skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a bridge and tap devices")
	}
	var missing []string
	for _, tool := range []struct{ cmd, pkg string }{
		{"ip", "iproute2"},
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"dnsmasq", "dnsmasq-base"},
		{"busybox", "busybox-static"},
	} {
		if _, err := exec.LookPath(tool.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", tool.cmd, tool.pkg))
		}
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
	if len(missing) > 0 {
		t.Skipf("missing: %s", strings.Join(missing, ", "))
	}
	return kernel, release, busybox
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
func startProvisiond(t *testing.T, l *lab, tos *testOS, vms []vm) {
	bin := buildProvisiond(t)
	profiles := writeProfiles(t, tos, vms)
	d := l.start(l.Prov, "provisiond", bin, "serve",
		"--profiles", profiles,
		"--data-dir", t.TempDir(),
		"--assets", tos.Dir,
		"--http-addr", provAddr+":8080",
		"--advertise-url", advertiseURL,
		"--dhcp-interface", "eth0")
	l.waitHTTP(d, l.Prov, advertiseURL+"/healthz", 30*time.Second)
}

// buildProvisiond compiles ./cmd/provisiond of the module this test is in.
func buildProvisiond(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "provisiond")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/provisiond")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build provisiond: %v\n%s", err, out)
	}
	return bin
}

// writeProfiles writes the profiles directory provisiond serves: one
// profile booting the test OS with a Butane config (testdata/e2e.bu) that
// templates each machine's hostname, and one Machine per VM.
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
	}
	for name, data := range map[string][]byte{"e2e.bu": bu, "e2e.yaml": []byte(b.String())} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatalf("write profiles: %v", err)
		}
	}
	return dir
}
