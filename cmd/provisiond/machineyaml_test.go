package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// inspectedHardware is what the agent reports from a small QEMU VM.
func inspectedHardware() store.Hardware {
	return store.Hardware{
		System: store.System{Vendor: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Serial: "SN-0001",
			BIOSVendor: "SeaBIOS", BIOSVersion: "1.16.3", ChassisAssetTag: "A-0042"},
		CPU:    store.CPU{Model: "AMD EPYC 7543", Arch: "x86_64", Sockets: 1, Cores: 2, Threads: 2},
		Memory: 1536 << 20,
		Disks: []store.Disk{
			{Name: "vda", Serial: "disk-a", Size: 8 << 30, ByID: []string{"/dev/disk/by-id/virtio-disk-a"}},
			{Name: "sda", Model: "QEMU HARDDISK", Serial: "disk-b", WWN: "0x5000c500a0b1c2d3", Size: 16 << 30, Rotational: true,
				ByID: []string{"/dev/disk/by-id/wwn-0x5000c500a0b1c2d3", "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_disk-b"}},
		},
		NICs: []store.NIC{{Name: "eth0", MAC: node1MAC, Driver: "virtio_net", Speed: 1000, Link: true}, {Name: "eth1", MAC: "52:54:00:00:00:11"}},
	}
}

func TestMachinesHardware(t *testing.T) {
	d := newTestDaemon(t)
	if _, err := d.core.ReportHardware(context.Background(), node1MAC, "", inspectedHardware(), "", true); err != nil {
		t.Fatal(err)
	}
	list := []string{"machines", "list"}
	runCases(t, d, []cliCase{
		{
			name: "show prints the hardware",
			args: d.args([]string{"machines", "show", "node1"}),
			out: []string{
				"hardware:", "system:", "QEMU Standard PC (Q35 + ICH9, 2009)", "serial:", "SN-0001", "SeaBIOS 1.16.3", "AMD EPYC 7543 (x86_64)",
				"1 socket, 2 cores, 2 threads", "memory:", "1.5 GiB", "asset tag:", "A-0042",
				"disks:", "NAME", "SIZE", "MODEL", "SERIAL", "WWN", "ROTATIONAL", "BY-ID",
				"nics:", "SPEED", "1000 Mb/s", "virtio_net",
			},
			check: func(t *testing.T, out string) {
				if row := rowOf(t, out, "disk-b"); strings.Join(row, " ") != "sda 16 GiB QEMU HARDDISK disk-b 0x5000c500a0b1c2d3 yes /dev/disk/by-id/wwn-0x5000c500a0b1c2d3 /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_disk-b" {
					t.Errorf("disk row %q", row)
				}
				if row := rowOf(t, out, "eth1"); strings.Join(row, " ") != "eth1 52:54:00:00:00:11 - - down" {
					t.Errorf("NIC row %q", row)
				}
			},
		},
		{
			name: "show of a machine never inspected",
			args: d.args([]string{"machines", "show", strayMAC}),
			out:  []string{"hardware:", "never inspected"},
		},
		{
			name: "show -o json carries the hardware",
			args: d.args([]string{"machines", "show", "node1", "-o", "json"}),
			out:  []string{`"hardware": {`, `"serial": "SN-0001"`},
		},
		{
			name:   "list by serial",
			args:   d.args(list, "--serial", "sn-0001"),
			out:    []string{node1MAC},
			notOut: []string{strayMAC},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 1 || sent[0].URL.RawQuery != "serial=sn-0001" {
					t.Errorf("requests = %v", sent)
				}
			},
		},
		{
			name:   "list by vendor",
			args:   d.args(list, "--vendor", "qemu", "--state", "provisioning"),
			out:    []string{node1MAC},
			notOut: []string{strayMAC},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 1 || sent[0].URL.RawQuery != "state=provisioning&vendor=qemu" {
					t.Errorf("requests = %v", sent)
				}
			},
		},
		{
			name:   "list by a vendor nobody has",
			args:   d.args(list, "--vendor", "dell"),
			notOut: []string{node1MAC, strayMAC},
			errOut: []string{"no machines"},
		},
	})
}

// machines yaml prints a Machine document that `provisiond validate`
// accepts next to the examples, and that matches the machine it came from.
func TestMachinesYAML(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(examplesDir)); err != nil {
		t.Fatal(err)
	}
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: "http://127.0.0.1:1", Store: memstore.New(store.Options{})})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const mac, plain = "52:54:00:12:34:56", "52:54:00:12:34:57"
	for _, m := range []string{mac, plain} {
		if _, err := core.Script(ctx, boot.Request{MAC: m, IP: "10.0.0.9"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := core.ReportHardware(ctx, mac, "", inspectedHardware(), "", true); err != nil {
		t.Fatal(err)
	}
	hw := inspectedHardware()
	hw.System.Serial = "To Be Filled By O.E.M."
	if _, err := core.ReportHardware(ctx, plain, "", hw, "", true); err != nil {
		t.Fatal(err)
	}
	d := serveAPI(t, core)

	for _, tc := range []struct {
		name   string
		args   []string
		doc    string // the Machine's name
		want   []string
		absent []string
		match  profiles.Match
	}{
		{name: "a discovered machine with a serial", args: []string{mac}, doc: "node-525400123456",
			want:  []string{"kind: Machine\n", "name: node-525400123456\n", "  mac: \"52:54:00:12:34:56\"\n", "  serial: \"SN-0001\"\n", "NIC swap", "profile: discovery  #", "labels: {}\n"},
			match: profiles.Match{MAC: mac, Serial: "SN-0001"}},
		{name: "a placeholder serial is left out", args: []string{plain, "--name", "rack1-node7"}, doc: "rack1-node7",
			want: []string{"name: rack1-node7\n", "  mac: \"52:54:00:12:34:57\"\n"}, absent: []string{"serial", "O.E.M."},
			match: profiles.Match{MAC: plain}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(d.args(append([]string{"machines", "yaml"}, tc.args...))...)
			if code != 0 {
				t.Fatalf("machines yaml = %d\n%s%s", code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("document lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(out, w) {
					t.Errorf("document has %q:\n%s", w, out)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "adopted.yaml"), []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, vout, verr := runCmd("validate", dir); code != 0 {
				t.Fatalf("validate with the document = %d %s%s\n%s", code, vout, verr, out)
			}
			set, err := profiles.Load(dir, profiles.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m := set.Machine(tc.doc)
			if m == nil || m.Match.MAC != tc.match.MAC || m.Match.Serial != tc.match.Serial || m.Profile != "discovery" {
				t.Errorf("loaded Machine %q: %+v; want match %+v, profile discovery", tc.doc, m, tc.match)
			}
		})
	}
}
