package web_test

import (
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
)

// testHardware is what the agent reports from a small QEMU VM.
func testHardware() store.Hardware {
	return store.Hardware{
		System: store.System{Vendor: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Serial: "SN-0001", BIOSVendor: "SeaBIOS", BIOSVersion: "1.16.3"},
		CPU:    store.CPU{Model: "AMD EPYC 7543", Arch: "x86_64", Sockets: 1, Cores: 2, Threads: 2},
		Memory: 1536 << 20,
		Disks: []store.Disk{
			{Name: "vda", Serial: "disk-a", Size: 8 << 30, ByID: []string{"/dev/disk/by-id/virtio-disk-a"}},
			{Name: "sda", Model: "QEMU HARDDISK", Serial: "disk-b", WWN: "0x5000c500a0b1c2d3", Size: 16 << 30, Rotational: true},
		},
		NICs: []store.NIC{{Name: "eth0", MAC: node1MAC, Driver: "virtio_net", Speed: 1000, Link: true}},
	}
}

// The machines table sums up each machine's hardware and filters on its
// vendor, product, serial and CPU model; the machine page shows it all.
func TestHardwareTableAndPage(t *testing.T) {
	f := startFleet(t, "")
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	f.install(t, node1MAC)
	hw := testHardware()
	hw.System.Product = `<script>alert(1)</script>`
	if _, err := f.core.ReportHardware(t.Context(), node1MAC, "", hw, "", true); err != nil {
		t.Fatal(err)
	}
	o := newOperator(t, f.url)
	o.signIn()

	_, page := o.do("GET", "/", nil)
	for _, want := range []string{`<th scope="col">Hardware</th>`, `id="f-hw" name="hw"`, "1×2c, 1.5 GiB, 2 disks", "not inspected"} {
		if !strings.Contains(page, want) {
			t.Errorf("the machines page lacks %q", want)
		}
	}
	for _, c := range []struct {
		hw   string
		want []string // MACs listed; the others are not
	}{
		{"qemu", []string{node1MAC}},
		{"EPYC", []string{node1MAC}},
		{"sn-00", []string{node1MAC}},
		{"script", []string{node1MAC}},
		{"xeon", nil},
		{"", []string{node1MAC, strayMAC}},
	} {
		_, rows := o.do("GET", "/ui/machines/rows?hw="+c.hw, nil)
		for _, mac := range []string{node1MAC, strayMAC} {
			listed := strings.Contains(rows, `data-mac="`+mac+`"`)
			if want := strings.Contains(strings.Join(c.want, " "), mac); listed != want {
				t.Errorf("hw=%q: %s listed %v, want %v", c.hw, mac, listed, want)
			}
		}
	}
	if _, page := o.do("GET", "/?hw=epyc", nil); !strings.Contains(page, `value="epyc"`) || !strings.Contains(page, `href="/">Clear</a>`) {
		t.Errorf("/?hw=epyc does not show the filter back with a Clear link")
	}

	_, page = o.do("GET", "/ui/machines/"+node1MAC, nil)
	for _, want := range []string{`id="hardware-title">Hardware`, "SN-0001", "SeaBIOS 1.16.3", "AMD EPYC 7543 (x86_64): 1 socket, 2 cores, 2 threads",
		"1.5 GiB", "16 GiB", "QEMU HARDDISK", "0x5000c500a0b1c2d3", "rotational", "solid-state", "/dev/disk/by-id/virtio-disk-a",
		"virtio_net", "1000 Mb/s", "&lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("node1's page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert(1)") {
		t.Error("the reported product is not escaped")
	}
	if _, page := o.do("GET", "/ui/machines/"+strayMAC, nil); !strings.Contains(page, "Never inspected") {
		t.Errorf("the stray's page does not say it was never inspected")
	}
}
