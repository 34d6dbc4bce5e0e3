package inspect

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readMemory is the machine's RAM in bytes: the size of the online memory
// blocks (/sys/devices/system/memory) that hold System RAM (/proc/iomem),
// as that counts the RAM installed (a VM given 1536 MiB reports 1536 MiB),
// else /proc/meminfo's MemTotal, which is that less what firmware and the
// kernel reserved at boot. Blocks without RAM are left out: arm64 lists the
// first block online, where the virt board has flash.
func readMemory(root string) (uint64, error) {
	if n := ramBlocks(root); n > 0 {
		return n, nil
	}
	b, err := os.ReadFile(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0, fmt.Errorf("read /proc/meminfo: %w%s", err, mountHint(err))
	}
	return memTotal(b)
}

// memTotal parses MemTotal (in KiB) out of /proc/meminfo.
func memTotal(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("read /proc/meminfo: MemTotal %q is not \"N kB\"", strings.TrimSpace(v))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read /proc/meminfo: MemTotal %q: %w", f[0], err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("read /proc/meminfo: no MemTotal")
}

// ramBlocks is the size of the online memory blocks that overlap System
// RAM, 0 if the kernel has no memory block devices (no
// CONFIG_MEMORY_HOTPLUG) or /proc/iomem shows no addresses (to root alone).
// Block memoryN covers [N*size, (N+1)*size); block_size_bytes is hex.
func ramBlocks(root string) uint64 {
	dir := filepath.Join(root, "sys/devices/system/memory")
	size, err := strconv.ParseUint(readValue(filepath.Join(dir, "block_size_bytes")), 16, 64)
	if err != nil || size == 0 {
		return 0
	}
	ram := systemRAM(readValue(filepath.Join(root, "proc/iomem")))
	ents, err := os.ReadDir(dir)
	if err != nil || len(ram) == 0 {
		return 0
	}
	var total uint64
	for _, e := range ents {
		n, err := strconv.ParseUint(strings.TrimPrefix(e.Name(), "memory"), 10, 64)
		if err != nil || readValue(filepath.Join(dir, e.Name(), "state")) != "online" {
			continue
		}
		start, end := n*size, (n+1)*size-1
		for _, r := range ram {
			if r[0] <= end && start <= r[1] {
				total += size
				break
			}
		}
	}
	return total
}

// systemRAM lists the top-level "System RAM" ranges of /proc/iomem, [start,
// end] inclusive; a non-root reader sees them as 0-0, which are left out.
func systemRAM(iomem string) [][2]uint64 {
	var out [][2]uint64
	for line := range strings.Lines(iomem) {
		rng, name, ok := strings.Cut(strings.TrimRight(line, "\n"), " : ")
		if !ok || name != "System RAM" || strings.HasPrefix(rng, " ") {
			continue
		}
		lo, hi, _ := strings.Cut(rng, "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && b > a {
			out = append(out, [2]uint64{a, b})
		}
	}
	return out
}
