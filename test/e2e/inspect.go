package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// The inspection tests' machine has hardware the test chose, so that the
// inventory can be checked fact by fact: CPUs, memory, SMBIOS identity, and
// virtio disks with serials. The agent runs inside the test OS (init.sh runs
// it when provisiond.url= is on the kernel command line) and prints these
// markers on the serial console.
const (
	agentBegin   = "PVD-AGENT-BEGIN"
	agentEnd     = "PVD-AGENT-END"
	agentExit    = "PVD-AGENT-EXIT "
	agentSeconds = "PVD-AGENT-SECONDS "
	agentBytes   = "PVD-AGENT-BYTES " // size of the agent binary it downloaded
	// inspectedOff is the test OS powering off after the agent, when its
	// profile names no config to install.
	inspectedOff = "PVD-E2E-DONE"
)

// hardwareSpec is the hardware of a VM as QEMU is told to build it.
type hardwareSpec struct {
	CPUs                    int
	MemoryMiB               int
	Vendor, Product, Serial string // SMBIOS type 1
	Disks                   []diskSpec
}

// diskSpec is one virtio-blk disk: its serial (virtio-blk's, which Linux
// shows in /sys/block/vdX/serial) and size.
type diskSpec struct {
	Serial string
	Size   int64
}

// knownHardware is the inspection tests' machine.
var knownHardware = hardwareSpec{
	CPUs: 2, MemoryMiB: 1536,
	Vendor: "Provisiond Labs", Product: "Test Box", Serial: "PVD-SN-0001",
	Disks: []diskSpec{{"PVD-DISK-0", 1 << 30}, {"PVD-DISK-1", 3 << 30}},
}

// qemuHardware returns args, a QEMU command line, with h's CPUs, memory,
// SMBIOS identity and disks; the disks are sparse raw images made in dir.
func (h hardwareSpec) qemuHardware(args []string, dir string) ([]string, error) {
	args = setOption(slices.Clone(args), "-smp", strconv.Itoa(h.CPUs))
	args = setOption(args, "-m", strconv.Itoa(h.MemoryMiB))
	args = append(args, "-smbios", fmt.Sprintf("type=1,manufacturer=%s,product=%s,serial=%s", h.Vendor, h.Product, h.Serial))
	for i, d := range h.Disks {
		img := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		f, err := os.Create(img)
		if err != nil {
			return nil, fmt.Errorf("disk image: %w", err)
		}
		err = f.Truncate(d.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("disk image %s: %w", img, err)
		}
		id := fmt.Sprintf("d%d", i)
		args = append(args,
			"-drive", "file="+img+",format=raw,if=none,id="+id,
			"-device", "virtio-blk-pci,drive="+id+",serial="+d.Serial)
	}
	return args, nil
}

// setOption sets the value of QEMU option flag in args, adding it if absent.
// QEMU takes the last of a repeated option for some and merges others, so a
// value is replaced rather than repeated.
func setOption(args []string, flag, value string) []string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		args[i+1] = value
		return args
	}
	return append(args, flag, value)
}

// agentRun is what the test OS printed of its run of the agent.
type agentRun struct {
	Exit    int     // the agent's exit status
	Seconds float64 // its runtime, from the guest's uptime
	Bytes   int64   // size of the binary the test OS downloaded
	Output  string  // what the agent printed
}

// agentResult reads the agent's run off a serial console.
func agentResult(serial string) (agentRun, error) {
	serial = strings.ReplaceAll(serial, "\r", "")
	if i := strings.Index(serial, testOSFailure); i >= 0 {
		line, _, _ := strings.Cut(serial[i:], "\n")
		return agentRun{}, fmt.Errorf("test OS failed: %s", line)
	}
	var r agentRun
	exit, ok := consoleLine(serial, agentExit)
	if !ok {
		return r, fmt.Errorf("no %q line on the serial console: the test OS did not run the agent", strings.TrimSpace(agentExit))
	}
	var err error
	if r.Exit, err = strconv.Atoi(exit); err != nil {
		return r, fmt.Errorf("agent exit status %q: %w", exit, err)
	}
	if s, ok := consoleLine(serial, agentSeconds); ok {
		r.Seconds, _ = strconv.ParseFloat(s, 64)
	}
	if s, ok := consoleLine(serial, agentBytes); ok {
		r.Bytes, _ = strconv.ParseInt(s, 10, 64)
	}
	if _, after, ok := strings.Cut(serial, "\n"+agentBegin+"\n"); ok {
		r.Output, _, _ = strings.Cut(after, "\n"+agentEnd+"\n")
	}
	return r, nil
}

// apiInventory is the part of GET /api/v1/machines/{id} the inspection
// tests read, on top of apiMachine's.
type apiInventory struct {
	apiMachine
	Profile  string       `json:"profile"`
	Hardware *apiHardware `json:"hardware"` // null until the agent reported
	Stalled  *struct {
		Since    time.Time `json:"since"`
		LastStep string    `json:"last_step"`
	} `json:"stalled"` // null unless stalled
}

// apiHardware is the API's hardware object, by its JSON names.
type apiHardware struct {
	ReportedAt time.Time `json:"reported_at"`
	System     struct {
		Vendor  string `json:"vendor"`
		Product string `json:"product"`
		Serial  string `json:"serial"`
	} `json:"system"`
	CPU struct {
		Model   string `json:"model"`
		Arch    string `json:"arch"`
		Sockets int    `json:"sockets"`
		Cores   int    `json:"cores"`
		Threads int    `json:"threads"`
	} `json:"cpu"`
	Memory uint64    `json:"memory_bytes"`
	Disks  []apiDisk `json:"disks"`
	NICs   []apiNIC  `json:"nics"`
}

type apiDisk struct {
	Name   string `json:"name"`
	Serial string `json:"serial"`
	Size   uint64 `json:"size_bytes"`
}

type apiNIC struct {
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	Driver string `json:"driver"`
	Link   bool   `json:"link"`
}

// inventory returns machine id as the API shows it, and the raw JSON of its
// hardware object (nil if none); a machine the stack has never seen has
// State "", as machine says.
func (a *apiClient) inventory(id string) (apiInventory, json.RawMessage, error) {
	var raw json.RawMessage
	code, err := a.get("/machines/"+url.PathEscape(id), &raw)
	if code == http.StatusNotFound {
		return apiInventory{}, nil, nil
	}
	if err != nil {
		return apiInventory{}, nil, err
	}
	var m apiInventory
	if err := json.Unmarshal(raw, &m); err != nil {
		return apiInventory{}, nil, fmt.Errorf("api: machine %s: %w", id, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return apiInventory{}, nil, fmt.Errorf("api: machine %s: %w", id, err)
	}
	return m, fields["hardware"], nil
}

// checkHardware checks hw against the machine's spec h, its NIC's mac and
// its CPU architecture as uname names it (x86_64, aarch64). The memory the
// kernel reports is less than QEMU's -m by what firmware and the kernel keep.
func checkHardware(t *testing.T, h hardwareSpec, mac, arch string, hw *apiHardware) {
	t.Helper()
	if hw == nil {
		t.Fatal("no hardware in the inventory: the agent's report never arrived")
	}
	if s := hw.System; s.Vendor != h.Vendor || s.Product != h.Product || s.Serial != h.Serial {
		t.Errorf("system is %q %q serial %q, want %q %q serial %q", s.Vendor, s.Product, s.Serial, h.Vendor, h.Product, h.Serial)
	}
	if hw.CPU.Threads != h.CPUs {
		t.Errorf("cpu threads %d, want %d (-smp %d)", hw.CPU.Threads, h.CPUs, h.CPUs)
	}
	if hw.CPU.Arch != arch {
		t.Errorf("cpu arch %q, want %q", hw.CPU.Arch, arch)
	}
	mib := uint64(h.MemoryMiB) << 20
	if hw.Memory > mib || hw.Memory < mib*8/10 {
		t.Errorf("memory %d bytes (%.0f MiB), want between 80%% and 100%% of -m %d MiB", hw.Memory, float64(hw.Memory)/(1<<20), h.MemoryMiB)
	}
	if len(hw.Disks) != len(h.Disks) {
		t.Errorf("%d disks, want %d: %+v", len(hw.Disks), len(h.Disks), hw.Disks)
	}
	for i, want := range h.Disks {
		name := fmt.Sprintf("vd%c", 'a'+i) // virtio-blk, in PCI order
		j := slices.IndexFunc(hw.Disks, func(d apiDisk) bool { return d.Serial == want.Serial })
		if j < 0 {
			t.Errorf("no disk with serial %s: %+v", want.Serial, hw.Disks)
			continue
		}
		if d := hw.Disks[j]; d.Name != name || d.Size != uint64(want.Size) {
			t.Errorf("disk %s is %s of %d bytes, want %s of %d", want.Serial, d.Name, d.Size, name, want.Size)
		}
	}
	if len(hw.NICs) != 1 {
		t.Errorf("%d NICs, want 1 (the VM's virtio-net): %+v", len(hw.NICs), hw.NICs)
	}
	for _, n := range hw.NICs {
		if !strings.EqualFold(n.MAC, mac) || n.Driver != "virtio_net" || n.Name != "eth0" || !n.Link {
			t.Errorf("NIC %+v, want eth0 %s driver virtio_net with link", n, mac)
		}
	}
}

// reloadedMachines waits until provisiond's live profiles hold n Machines
// (after a change to its profiles directory, which it watches).
func (pr *provisiondRun) reloadedMachines(l *lab, n int, timeout time.Duration) {
	l.t.Helper()
	client := l.httpClient(pr.ns)
	pr.daemon.waitFor(l.t, fmt.Sprintf("a profile reload with %d machines", n), timeout, func() bool {
		var h struct {
			Profiles struct {
				Machines     int  `json:"machines"`
				LastReloadOK bool `json:"last_reload_ok"`
			} `json:"profiles"`
		}
		body, err := httpGet(client, pr.url+"/healthz")
		return err == nil && json.Unmarshal(body, &h) == nil && h.Profiles.LastReloadOK && h.Profiles.Machines == n
	})
}

// httpGet returns the body of a 200 answer to GET u.
func httpGet(client *http.Client, u string) ([]byte, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return body, nil
}

// metricValue returns the value of the unlabelled sample name in a
// Prometheus text exposition, if present.
func metricValue(exposition []byte, name string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.eE+-]+)$`).FindSubmatch(exposition)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return v, err == nil
}

// eventCounts is the number of events of each type, for a figure line.
func eventCounts(events []apiEvent) map[string]int {
	n := map[string]int{}
	for _, e := range events {
		n[e.Type]++
	}
	return n
}

// inspectTimeout bounds a power-on that runs the agent: the boot (~25 s
// under TCG) and the download of the agent (provisiond, ~65 MB) into the
// test OS, up to twice that on arm64's heavier emulation.
const inspectTimeout = 300 * time.Second

// requireStaticAgent fails t unless the provisiond the lab runs is linked
// statically: it serves its own executable as the agent of its architecture,
// and a discovery image has no C library to load it with.
func requireStaticAgent(t *testing.T) {
	t.Helper()
	if bin := testutil.Binary(t); !isStatic(bin) {
		t.Fatalf("%s is dynamically linked: served as /agent/%s it cannot run in a discovery image without libc (build it with CGO_ENABLED=0)", bin, runtime.GOARCH)
	}
}

// The arm64 machine: QEMU's virt board under EDK2 (qemu-efi-aarch64).
const aavmf = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"

// arm64RootEnv names a directory where an arm64 Debian cloud kernel and
// busybox-static are unpacked, as LAB.md's arm64 test OS is made:
//
//	dpkg --add-architecture arm64 && apt-get update
//	apt-get download linux-image-<ver>-cloud-arm64:arm64 busybox-static:arm64
//	for d in *.deb; do dpkg -x "$d" "$PROVISIOND_ARM64_ROOT"; done
//	depmod -b "$PROVISIOND_ARM64_ROOT" <ver>-cloud-arm64   # the package has no modules.dep
const arm64RootEnv = "PROVISIOND_ARM64_ROOT"

// requireArm64 skips t (fails it under PROVISIOND_REQUIRE_LAB=1) unless
// this host can run an arm64 VM, and returns the arm64 test OS's kernel, its
// module tree and its static busybox.
func requireArm64(t *testing.T) (kernel, modDir, busybox string) {
	t.Helper()
	missing := testutil.Missing(testutil.Tool{Command: "qemu-system-aarch64", Package: "qemu-system-arm"})
	if _, err := os.Stat(aavmf); err != nil {
		missing = append(missing, aavmf+" (qemu-efi-aarch64)")
	}
	root := os.Getenv(arm64RootEnv)
	if root == "" {
		missing = append(missing, arm64RootEnv+" (a directory where linux-image-*-cloud-arm64 and busybox-static, arm64, are unpacked with dpkg -x)")
	} else {
		kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*-cloud-arm64"))
		busybox = filepath.Join(root, "bin", "busybox")
		switch {
		case len(kernels) == 0:
			missing = append(missing, "an arm64 cloud kernel in "+filepath.Join(root, "boot"))
		case !isStatic(busybox):
			missing = append(missing, "a static arm64 busybox at "+busybox)
		default:
			kernel = kernels[len(kernels)-1] // Glob sorts; the last is the newest.
			modDir = filepath.Join(root, "lib", "modules", strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-"))
		}
	}
	testutil.RequireLab(t, missing...)
	return kernel, modDir, busybox
}

// buildAgent cross-compiles provisiond for arch (a GOARCH) into a fresh
// directory, as make build names it beside the daemon (provisiond-linux-ARCH),
// and returns the directory: what serve's --agent-dir takes.
func buildAgent(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "provisiond-linux-"+arch), "./cmd/provisiond")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the %s agent: %v\n%s", arch, err, out)
	}
	return dir
}

// arm64Args is the QEMU command line of an arm64 UEFI machine with m's NIC
// on its tap port and the hardware h (disks in dir), as LAB.md's arm64 VM:
// pointer authentication emulated the cheap way, and a virtio RNG, which
// saves iPXE seconds of gathering entropy.
func arm64Args(m *machine, h hardwareSpec, dir string) ([]string, error) {
	args := []string{
		"qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "1", "-m", "1024",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-bios", aavmf, "-device", "virtio-rng-pci",
		"-netdev", "tap,id=n0,ifname=" + m.tap + ",script=no,downscript=no",
		// No option ROM: EDK2's own PXE client boots. bootindex puts the NIC
		// before the (empty) disks.
		"-device", "virtio-net-pci,netdev=n0,romfile=,bootindex=1,mac=" + m.MAC,
	}
	args, err := h.qemuHardware(args, dir)
	if err != nil {
		return nil, err
	}
	return append(args, "-no-reboot"), nil
}
