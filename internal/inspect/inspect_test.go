package inspect

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
)

func TestCollectFixtures(t *testing.T) {
	tests := []struct {
		name string
		want store.Hardware
	}{
		{
			// Two sockets of 2 cores x 2 threads, an NVMe and a SATA disk
			// with udev's by-id links, a DVD drive, loop and dm devices,
			// one NIC up and one down, a bridge.
			name: "x86-server",
			want: store.Hardware{
				System: store.System{
					Vendor: "Dell Inc.", Product: "PowerEdge R640", Serial: "7XK2QW2",
					BoardVendor: "Dell Inc.", BoardProduct: "0H28RR", BoardSerial: ".7XK2QW2.CNFCP0097Q0123.",
					BIOSVendor: "Dell Inc.", BIOSVersion: "2.17.1",
					// "To Be Filled By O.E.M.": a placeholder.
				},
				CPU:    store.CPU{Model: "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", Arch: "x86_64", Sockets: 2, Cores: 4, Threads: 8},
				Memory: 394823660 << 10,
				Disks: []store.Disk{
					{
						Name: "nvme0n1", Model: "SAMSUNG MZQLB1T9HAJR-00007", Serial: "S439NA0N301234",
						WWN: "eui.0025388b71b2c3d4", Size: 3750748848 * 512,
						ByID: []string{"/dev/disk/by-id/nvme-SAMSUNG_MZQLB1T9HAJR-00007_S439NA0N301234", "/dev/disk/by-id/nvme-eui.0025388b71b2c3d4"},
					},
					{
						Name: "sda", Model: "ST4000NM0035-1V4", Serial: "ZC1A2B3C", WWN: "0x5000c500a1b2c3d4",
						Size: 7814037168 * 512, Rotational: true,
						ByID: []string{"/dev/disk/by-id/ata-ST4000NM0035-1V4_ZC1A2B3C", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"},
					},
				},
				NICs: []store.NIC{
					{Name: "eno1", MAC: "b0:26:28:11:22:33", Driver: "i40e", Speed: 10000, Link: true},
					{Name: "eno2", MAC: "b0:26:28:11:22:34", Driver: "i40e"},
				},
			},
		},
		{
			// QEMU with -smp 2 -m 1536, two virtio disks with serial=,
			// -smbios type=1: memory from the online memory blocks, not
			// MemTotal; no udev, so no by-id links.
			name: "qemu-vm",
			want: store.Hardware{
				System: store.System{Vendor: "Acme", Product: "Inspectable 1", Serial: "ACME-0001", BIOSVendor: "SeaBIOS", BIOSVersion: "1.16.2-debian-1.16.2-1"},
				CPU:    store.CPU{Model: "QEMU Virtual CPU version 2.5+", Arch: "x86_64", Sockets: 1, Cores: 2, Threads: 2},
				Memory: 1536 << 20,
				Disks: []store.Disk{
					{Name: "vda", Serial: "disk-a-serial", Size: 10 << 30, Rotational: true},
					{Name: "vdb", Serial: "disk-b-serial", Size: 2 << 30, Rotational: true},
				},
				NICs: []store.NIC{{Name: "ens3", MAC: "52:54:00:12:34:56", Driver: "virtio_net", Link: true}},
			},
		},
		{
			// The arm64 VM of LAB.md as it read itself (-cpu max -smp 2
			// -m 1536, -smbios type=1, two virtio disks with serial=):
			// memory0 is online but holds flash, not RAM.
			name: "arm64-vm",
			want: store.Hardware{
				System: store.System{Vendor: "Acme", Product: "Inspectable-arm64", Serial: "ARM-0001", BIOSVendor: "EFI Development Kit II / OVMF", BIOSVersion: "0.0.0"},
				CPU:    store.CPU{Model: "implementer 0x00 part 0x051", Arch: "aarch64", Sockets: 1, Cores: 2, Threads: 2},
				Memory: 1536 << 20,
				Disks: []store.Disk{
					{Name: "vda", Serial: "arm-disk-a", Size: 2 << 30, Rotational: true},
					{Name: "vdb", Serial: "arm-disk-b", Size: 512 << 20, Rotational: true},
				},
				NICs: []store.NIC{{Name: "eth0", MAC: "52:54:00:ab:cd:01", Driver: "virtio_net", Link: true}},
			},
		},
		{
			// A Raspberry Pi 4 like board: no SMBIOS, a cpuinfo without
			// model or topology (sysfs has it), an eMMC with its boot and
			// RPMB partitions.
			name: "arm64-board",
			want: store.Hardware{
				CPU:    store.CPU{Model: "ARM Cortex-A72", Arch: "aarch64", Sockets: 1, Cores: 4, Threads: 4},
				Memory: 3884332 << 10,
				Disks:  []store.Disk{{Name: "mmcblk0", Model: "SC64G", Serial: "0x1a2b3c4d", Size: 62521344 * 512}},
				NICs: []store.NIC{
					{Name: "end0", MAC: "dc:a6:32:01:02:03", Driver: "bcmgenet", Speed: 1000, Link: true},
					{Name: "wlan0", MAC: "dc:a6:32:01:02:04", Driver: "brcmfmac"},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Collect(filepath.Join("testdata", tt.name))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(tt.want, "", "  ")
				t.Errorf("Collect:\n%s\nwant:\n%s", g, w)
			}
		})
	}
}

// TestCollectThisMachine reads the real / of the machine the test runs on.
func TestCollectThisMachine(t *testing.T) {
	hw, err := Collect("/")
	if err != nil {
		t.Fatal(err)
	}
	if hw.CPU.Threads < 1 || hw.CPU.Cores < 1 || hw.CPU.Sockets < 1 || hw.CPU.Arch == "" {
		t.Errorf("CPU = %+v, want sockets, cores, threads and arch", hw.CPU)
	}
	if hw.Memory == 0 {
		t.Error("Memory = 0")
	}
	b, _ := json.Marshal(hw)
	t.Logf("%d bytes: %s", len(b), b)
}

func TestCollectErrors(t *testing.T) {
	// An initramfs that did not mount /proc: say so, not an empty report.
	_, err := Collect(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "/proc/cpuinfo") || !strings.Contains(err.Error(), "mounted") {
		t.Errorf("Collect(empty dir) = %v, want an error naming /proc/cpuinfo and mounts", err)
	}
	root := t.TempDir()
	write(t, root, "proc/cpuinfo", "processor : 0\n")
	write(t, root, "proc/meminfo", "MemTotal: lots\n")
	if _, err := Collect(root); err == nil || !strings.Contains(err.Error(), "MemTotal") {
		t.Errorf("Collect(bad meminfo) = %v, want an error naming MemTotal", err)
	}
	write(t, root, "proc/cpuinfo", "vendor_id : nobody\n")
	if _, err := Collect(root); err == nil || !strings.Contains(err.Error(), "no processor") {
		t.Errorf("Collect(no processor) = %v, want an error", err)
	}
}

func write(t *testing.T, root, name, body string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Memory is the blocks holding RAM; MemTotal when /proc/iomem hides the
// addresses, as it does from anyone but root.
func TestMemory(t *testing.T) {
	root := t.TempDir()
	write(t, root, "proc/meminfo", "MemTotal:        1485428 kB\n")
	write(t, root, "sys/devices/system/memory/block_size_bytes", "8000000\n")
	write(t, root, "sys/devices/system/memory/memory0/state", "online\n")
	write(t, root, "sys/devices/system/memory/memory1/state", "online\n")
	write(t, root, "sys/devices/system/memory/memory2/state", "offline\n")
	for _, tc := range []struct {
		iomem string
		want  uint64
	}{
		{"00001000-0009fbff : System RAM\n00100000-0fffffff : System RAM\n", 256 << 20},
		{"00100000-07ffffff : System RAM\n", 128 << 20},
		{"00000000-00000000 : System RAM\n00000000-00000000 : System RAM\n", 1485428 << 10}, // not root
		{"", 1485428 << 10},
	} {
		write(t, root, "proc/iomem", tc.iomem)
		if got, err := readMemory(root); err != nil || got != tc.want {
			t.Errorf("iomem %q: readMemory = %d, %v; want %d", tc.iomem, got, err, tc.want)
		}
	}
}

func TestSMBIOSValue(t *testing.T) {
	for in, want := range map[string]string{
		"PowerEdge R640":         "PowerEdge R640",
		"To Be Filled By O.E.M.": "",
		"Default string":         "",
		"0123456789":             "",
		"System Serial Number":   "",
		"00000000":               "",
		"\xff\xff\xff\xff":       "",
		"..........":             "",
		"":                       "",
		"ACME-0001":              "ACME-0001",
	} {
		if got := smbiosValue(in); got != want {
			t.Errorf("smbiosValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCPUInfo(t *testing.T) {
	// arm64 kernels before 3.8 named the model on a "Processor" line
	// before the per-CPU entries.
	es := parseCPUInfo([]byte("Processor\t: AArch64 Processor rev 4 (aarch64)\nprocessor\t: 0\nprocessor\t: 1\nHardware\t: Board\n"))
	if len(es) != 2 || es[1]["model name"] != "AArch64 Processor rev 4 (aarch64)" || es[0]["processor"] != "0" {
		t.Errorf("parseCPUInfo = %v", es)
	}
}

func TestARMModel(t *testing.T) {
	for _, tt := range []struct{ impl, part, want string }{
		{"0x41", "0xd0c", "ARM Neoverse-N1"},
		{"0xc0", "0xac3", "Ampere part 0xac3"},
		{"0x00", "0x051", "implementer 0x00 part 0x051"}, // QEMU -cpu max
		{"", "", ""},
	} {
		if got := armModel(tt.impl, tt.part); got != tt.want {
			t.Errorf("armModel(%q, %q) = %q, want %q", tt.impl, tt.part, got, tt.want)
		}
	}
}
