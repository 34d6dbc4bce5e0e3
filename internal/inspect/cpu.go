package inspect

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/store"
)

// cpuinfoEntry is one processor's block of /proc/cpuinfo.
type cpuinfoEntry map[string]string

// readCPU counts sockets, cores and threads over the processors
// /proc/cpuinfo lists (the online ones), taking each one's package and core
// from cpuinfo (x86) or from sysfs topology (arm64, whose cpuinfo has
// neither), and names the model.
func readCPU(root string) (store.CPU, error) {
	b, err := os.ReadFile(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return store.CPU{}, fmt.Errorf("read /proc/cpuinfo: %w%s", err, mountHint(err))
	}
	entries := parseCPUInfo(b)
	if len(entries) == 0 {
		return store.CPU{}, fmt.Errorf("read /proc/cpuinfo: no processor listed")
	}
	type core struct{ pkg, id string }
	sockets, cores := map[string]bool{}, map[core]bool{}
	for _, e := range entries {
		pkg, id := cpuTopology(root, e)
		sockets[pkg] = true
		cores[core{pkg, id}] = true
	}
	return store.CPU{
		Model:   cpuModel(root, entries[0]),
		Arch:    readArch(root),
		Sockets: len(sockets),
		Cores:   len(cores),
		Threads: len(entries),
	}, nil
}

// parseCPUInfo splits /proc/cpuinfo into one entry per "processor" line.
// Lines before the first (arm64 kernels before 3.8 put the model there) go
// into every entry.
func parseCPUInfo(b []byte) []cpuinfoEntry {
	var out []cpuinfoEntry
	common := cpuinfoEntry{}
	cur := common
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20) // x86 flags lines run to kilobytes
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			cur = cpuinfoEntry{k: v}
			out = append(out, cur)
		case "Processor": // "Processor : AArch64 Processor rev 4 (aarch64)"
			common["model name"] = v
		default:
			cur[k] = v
		}
	}
	for _, e := range out {
		for k, v := range common {
			if _, ok := e[k]; !ok {
				e[k] = v
			}
		}
	}
	return out
}

// cpuTopology is the package and core of a processor: cpuinfo's physical id
// and core id when it has them, else sysfs topology. A processor with
// neither counts as its own core of package 0.
func cpuTopology(root string, e cpuinfoEntry) (pkg, core string) {
	pkg, core = e["physical id"], e["core id"]
	if pkg != "" && core != "" {
		return pkg, core
	}
	topo := filepath.Join(root, "sys/devices/system/cpu", "cpu"+e["processor"], "topology")
	if p, ok := readInt(filepath.Join(topo, "physical_package_id")); ok && p >= 0 {
		pkg = strconv.FormatInt(p, 10)
	} else {
		pkg = "0" // -1 on arm64 kernels before 5.x: firmware gave no package
	}
	if c, ok := readInt(filepath.Join(topo, "core_id")); ok {
		return pkg, strconv.FormatInt(c, 10)
	}
	return pkg, "cpu" + e["processor"]
}

// cpuModel names the processor: x86 cpuinfo's "model name"; on arm64 the
// core its MIDR fields (CPU implementer, CPU part) name, else the device
// tree's compatible string of the first CPU.
func cpuModel(root string, e cpuinfoEntry) string {
	if m := e["model name"]; m != "" {
		return m
	}
	if m := armModel(e["CPU implementer"], e["CPU part"]); m != "" {
		return m
	}
	compat := readValue(filepath.Join(root, "sys/firmware/devicetree/base/cpus/cpu@0/compatible"))
	first, _, _ := strings.Cut(compat, "\x00")
	return first
}

// armImplementers are the MIDR implementer codes of arm64 vendors.
var armImplementers = map[uint64]string{
	0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon",
	0x4e: "NVIDIA", 0x50: "Applied Micro", 0x51: "Qualcomm", 0x61: "Apple",
	0x6d: "Microsoft", 0xc0: "Ampere",
}

// armParts are ARM Ltd's part numbers (implementer 0x41) of the cores found
// in servers and boards; others are named by number.
var armParts = map[uint64]string{
	0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57",
	0xd08: "Cortex-A72", 0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76",
	0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
	0xd44: "Cortex-X1", 0xd46: "Cortex-A510", 0xd47: "Cortex-A710", 0xd48: "Cortex-X2",
	0xd49: "Neoverse-N2", 0xd4d: "Cortex-A715", 0xd4e: "Cortex-X3", 0xd4f: "Neoverse-V2",
	0xd80: "Cortex-A520", 0xd81: "Cortex-A720", 0xd82: "Cortex-X4", 0xd84: "Neoverse-V3",
	0xd8e: "Neoverse-N3",
}

// armModel names an arm64 core from cpuinfo's hex MIDR fields, "" if they
// are absent: "ARM Neoverse-N1", "Ampere part 0xac3".
func armModel(implementer, part string) string {
	impl, err1 := strconv.ParseUint(strings.TrimPrefix(implementer, "0x"), 16, 16)
	p, err2 := strconv.ParseUint(strings.TrimPrefix(part, "0x"), 16, 16)
	if err1 != nil || err2 != nil {
		return ""
	}
	vendor, ok := armImplementers[impl]
	if !ok {
		vendor = fmt.Sprintf("implementer 0x%02x", impl)
	}
	if name, ok := armParts[p]; ok && impl == 0x41 {
		return vendor + " " + name
	}
	return fmt.Sprintf("%s part 0x%03x", vendor, p)
}

// unameArch maps GOARCH to the kernel's name of it, for kernels without
// /proc/sys/kernel/arch (it is recent), in the agent's own build.
var unameArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}

// readArch is the machine's architecture as uname names it.
func readArch(root string) string {
	if a := readValue(filepath.Join(root, "proc/sys/kernel/arch")); a != "" {
		return a
	}
	return unameArch[runtime.GOARCH]
}
