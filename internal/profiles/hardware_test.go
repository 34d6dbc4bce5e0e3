package profiles

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// inspected is a machine as the agent reports one: two virtio disks with
// serials, the smaller first by size but not by name.
func inspected(serial string) *store.Hardware {
	return &store.Hardware{
		ReportedAt: time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC),
		System:     store.System{Vendor: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Serial: serial},
		CPU:        store.CPU{Model: "AMD EPYC", Sockets: 1, Cores: 2, Threads: 2},
		Memory:     1536 << 20,
		Disks: []store.Disk{
			{Name: "vda", Serial: "DATA1", Size: 64 << 30, ByID: []string{"/dev/disk/by-id/virtio-DATA1"}},
			{Name: "vdb", Serial: "ROOT1", Size: 20 << 30, ByID: []string{"/dev/disk/by-id/virtio-ROOT1"}},
		},
	}
}

func TestMatchHardware(t *testing.T) {
	set, err := Load(writeTree(t, map[string]string{
		"p.yaml": "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n---\nkind: Profile\nname: d\ninspect: true\nboot: {kernel: /assets/k}\n---\nkind: Default\nprofile: d\n",
		"m.yaml": `kind: Machine
name: by-serial
match: {serial: " SN-0001 "}
profile: x
---
kind: Machine
name: by-mac
match: {mac: "52:54:00:00:00:01"}
profile: x
---
kind: Machine
name: q35-rack
match: {hardware: {system.product: "Standard PC (Q35 + ICH9, 2009)", cpu.cores: 2}, labels: {rack: r1}}
profile: x
---
kind: Machine
name: q35
match: {hardware: {system.product: "Standard PC (Q35 + ICH9, 2009)"}}
profile: x
`,
	}), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !set.MatchesHardware() || set.HasLabelled() != true {
		t.Fatalf("MatchesHardware = %v, HasLabelled = %v; want both", set.MatchesHardware(), set.HasLabelled())
	}
	for _, tc := range []struct {
		name string
		q    Query
		want string // "" = the Default
	}{
		{"serial, padded by the firmware", Query{MAC: "52:54:00:00:00:09", Hardware: inspected("SN-0001  ")}, "by-serial"},
		{"serial is case-sensitive", Query{MAC: "52:54:00:00:00:09", Hardware: inspected("sn-0001")}, "q35"},
		{"serial beats hardware facts and labels", Query{MAC: "52:54:00:00:00:09", Labels: map[string]string{"rack": "r1"}, Hardware: inspected("SN-0001")}, "by-serial"},
		{"mac and serial of two Machines: the name decides", Query{MAC: "52:54:00:00:00:01", Hardware: inspected("SN-0001")}, "by-mac"},
		{"never inspected: no serial, no facts", Query{MAC: "52:54:00:00:00:09"}, ""},
		{"a placeholder serial is none", Query{MAC: "52:54:00:00:00:09", Hardware: &store.Hardware{System: store.System{Serial: "To Be Filled By O.E.M."}}}, ""},
		{"more facts and labels beat fewer", Query{MAC: "52:54:00:00:00:09", Labels: map[string]string{"rack": "r1"}, Hardware: inspected("other")}, "q35-rack"},
		{"a number fact compares as written", Query{MAC: "52:54:00:00:00:09", Labels: map[string]string{"rack": "r1"}, Hardware: func() *store.Hardware { h := inspected(""); h.CPU.Cores = 4; return h }()}, "q35"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := set.Match(tc.q)
			got := ""
			if res.Machine != nil {
				got = res.Machine.Name
			}
			if err != nil || got != tc.want {
				t.Fatalf("Match = %q (%s), %v; want %q", got, res.Reason, err, tc.want)
			}
		})
	}
	if res, _ := set.Match(Query{MAC: "52:54:00:00:00:09", Hardware: inspected("SN-0001")}); !strings.Contains(res.Reason, "matches serial SN-0001") {
		t.Errorf("Reason = %q; want it to name the serial", res.Reason)
	}
}

func TestHardwareValidation(t *testing.T) {
	const profile = "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "two Machines claim one serial",
			files: map[string]string{"p.yaml": profile, "m.yaml": "kind: Machine\nname: a\nmatch: {serial: SN1}\nprofile: x\n---\nkind: Machine\nname: b\nmatch: {serial: \"SN1 \"}\nprofile: x\n"},
			want:  []string{`m.yaml:6: machine "b" claims serial SN1, already claimed by machine "a" at m.yaml:1`},
		},
		{
			name:  "placeholder serial",
			files: map[string]string{"p.yaml": profile, "m.yaml": "kind: Machine\nname: a\nmatch: {serial: Default string}\nprofile: x\n"},
			want:  []string{`m.yaml:3: match.serial: "Default string" is a placeholder`},
		},
		{
			name:  "unknown, empty and serial facts",
			files: map[string]string{"p.yaml": profile, "m.yaml": "kind: Machine\nname: a\nmatch:\n  hardware:\n    system.prodct: R640\n    cpu.model: \"\"\n    system.serial: SN1\nprofile: x\n"},
			want: []string{
				`m.yaml:5: match.hardware: unknown fact "system.prodct", did you mean "system.product"? (known: cpu.arch, cpu.cores`,
				"m.yaml:6: match.hardware.cpu.model has no value",
				"m.yaml:7: match.hardware.system.serial: write it as match.serial",
			},
		},
		{
			name:  "inspect with loader uki",
			files: map[string]string{"p.yaml": "kind: Profile\nname: u\ninspect: true\nboot: {loader: uki, uki: /assets/u.efi}\n"},
			want:  []string{"p.yaml:3: inspect: true cannot apply with loader uki"},
		},
		{
			name:  "agent args written by hand",
			files: map[string]string{"p.yaml": "kind: Profile\nname: x\ninspect: true\nboot: {kernel: /assets/k, args: [provisiond.url=http://x]}\n"},
			want:  []string{`p.yaml:4: boot.args: "provisiond.url=http://x" is added by provisiond`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeTree(t, tc.files), LoadOptions{})
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load error = %v; want Problems", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(probs.Error(), w) {
					t.Errorf("problems do not contain %q; got:\n%v", w, probs)
				}
			}
		})
	}
}

// A Machine matched by serial only is reached through an inspection: the
// set says so unless the Default inspects.
func TestSerialOnlyWarning(t *testing.T) {
	machine := "kind: Machine\nname: a\nmatch: {serial: SN1}\nprofile: x\n"
	for _, tc := range []struct {
		name, profiles string
		warn           bool
	}{
		{"no Default", "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n", true},
		{"a Default that does not inspect", "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n---\nkind: Default\nprofile: x\n", true},
		{"an inspecting Default", "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n---\nkind: Profile\nname: d\ninspect: true\nboot: {kernel: /assets/k}\n---\nkind: Default\nprofile: d\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Load(writeTree(t, map[string]string{"p.yaml": tc.profiles, "m.yaml": machine}), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			warned := strings.Contains(set.Warnings.Error(), `machine "a" matches by serial or hardware only`)
			if warned != tc.warn {
				t.Errorf("warnings = %v; want the serial-only warning: %v", set.Warnings, tc.warn)
			}
		})
	}
}

func TestHardwareTemplateData(t *testing.T) {
	data := hardwareData(nil)
	for _, path := range [][]string{{"system", "serial"}, {"system", "chassis_asset_tag"}, {"cpu", "cores"}} {
		m := data
		for _, k := range path[:len(path)-1] {
			m = m[k].(map[string]any)
		}
		if _, ok := m[path[len(path)-1]]; !ok {
			t.Errorf(".hardware.%s missing for a machine never inspected: missingkey=error templates could not read it", strings.Join(path, "."))
		}
	}
	if data["reported_at"] != "" || len(data["disks"].([]any)) != 0 || data["memory_bytes"] != uint64(0) {
		t.Errorf("never inspected = %v; want reported_at \"\", no disks, memory 0", data)
	}
	data = hardwareData(inspected("SN-0001"))
	disk := data["disks"].([]any)[1].(map[string]any)
	if disk["serial"] != "ROOT1" || disk["size_bytes"] != uint64(20<<30) || disk["by_id"].([]any)[0] != "/dev/disk/by-id/virtio-ROOT1" || data["reported_at"] != "2026-12-05T03:00:00Z" {
		t.Errorf(".hardware = %v; want the report in the API's JSON names", data)
	}
	keys := hardwareKeys()
	for _, k := range []string{"system.product", "system.board_serial", "system.chassis_asset_tag", "cpu.model", "cpu.cores", "memory_bytes"} {
		if !slices.Contains(keys, k) {
			t.Errorf("hardwareKeys lacks %s: %v", k, keys)
		}
	}
	if slices.Contains(keys, "reported_at") || slices.Contains(keys, "system.serial") || slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "disks") }) {
		t.Errorf("hardwareKeys = %v; want no report time, no serial (match.serial) and no per-disk facts", keys)
	}
}

func TestInstallDisk(t *testing.T) {
	with := func(disks ...store.Disk) any { return hardwareData(&store.Hardware{Disks: disks}) }
	for _, tc := range []struct {
		name     string
		hardware any
		want     string
	}{
		{"never inspected", hardwareData(nil), "/dev/sda"},
		{"the smallest disk of 4 GiB or more", hardwareData(inspected("")), "/dev/disk/by-id/virtio-ROOT1"},
		{"a USB stick is too small", with(store.Disk{Name: "sdb", Size: 1 << 30}), "/dev/sda"},
		{"a wwn- link first", with(store.Disk{Name: "sda", Size: 8 << 30, ByID: []string{"/dev/disk/by-id/ata-X_S1", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"}}), "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"},
		{"no stable link: the kernel name", with(store.Disk{Name: "nvme0n1", Size: 8 << 30}), "/dev/nvme0n1"},
		{"equal sizes: the first reported", with(store.Disk{Name: "vdb", Size: 8 << 30}, store.Disk{Name: "vda", Size: 8 << 30}), "/dev/vdb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := installDisk("/dev/sda", tc.hardware); err != nil || got != tc.want {
				t.Errorf("installDisk = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := installDisk("/dev/sda", "vda"); err == nil || !strings.Contains(err.Error(), "installDisk takes a fallback and .hardware") {
		t.Errorf("installDisk of a string = %v; want an error saying what it takes", err)
	}
}

// Configs render .hardware at load as never inspected (what validate
// checks) and, once the machine reported its hardware, on request with it;
// a template that reads no hardware is served what load translated.
func TestConfigWithHardware(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": "kind: Profile\nname: install\nboot: {kernel: /assets/k}\nconfig: {template: install.sh}\n---\nkind: Profile\nname: plain\nboot: {kernel: /assets/k}\nconfig: {template: plain.sh}\n",
		"m.yaml": "kind: Machine\nname: n1\nmatch: {serial: SN-0001}\nprofile: install\n---\nkind: Machine\nname: n2\nmatch: {mac: \"52:54:00:00:00:02\"}\nprofile: plain\n",
		"install.sh": "install to {{ installDisk \"/dev/sda\" .hardware }} on {{ .hardware.system.product | default \"an uninspected machine\" }}\n" +
			"{{ range .hardware.disks }}{{ .name }}={{ .serial }} {{ end }}\n",
		"plain.sh": "hello {{ .machine.name }}\n",
	})
	set, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n1 := set.Machine("n1")
	if got := string(set.configs[n1].Body); got != "install to /dev/sda on an uninspected machine\n\n" {
		t.Errorf("load-time config = %q; want the fallbacks", got)
	}
	hw := inspected("SN-0001")
	res, err := set.Match(Query{MAC: "52:54:00:00:00:01", Hardware: hw})
	if err != nil || res.Machine != n1 {
		t.Fatalf("Match = %+v, %v; want n1 by serial", res, err)
	}
	out, err := set.Config(res, Query{MAC: "52:54:00:00:00:01", Hardware: hw})
	want := "install to /dev/disk/by-id/virtio-ROOT1 on Standard PC (Q35 + ICH9, 2009)\nvda=DATA1 vdb=ROOT1 \n"
	if err != nil || string(out.Body) != want {
		t.Errorf("config with hardware = %q, %v; want %q", out.Body, err, want)
	}

	n2 := set.Machine("n2")
	res = Result{Machine: n2, Profile: set.Profiles["plain"]}
	out, err = set.Config(res, Query{MAC: "52:54:00:00:00:02", Hardware: hw})
	if err != nil || out != set.configs[n2] {
		t.Errorf("config of a template that reads no hardware = %p, %v; want the one load rendered (%p)", out, err, set.configs[n2])
	}
}

// BenchmarkConfigWithHardware is a config request of an inspected machine
// whose Butane reads no hardware: a render and a cache lookup, no
// translation; "load-time" is the uninspected machine's map lookup.
func BenchmarkConfigWithHardware(b *testing.B) {
	set, err := Load(benchTree(b, 10), LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	m := set.Machine("node00005")
	res := Result{Machine: m, Profile: set.Profiles[m.Profile]}
	for _, bc := range []struct {
		name string
		hw   *store.Hardware
	}{{"load-time", nil}, {"inspected", inspected("SN-0001")}} {
		b.Run(bc.name, func(b *testing.B) {
			q := Query{MAC: m.Match.MAC, Hardware: bc.hw}
			for b.Loop() {
				if out, err := set.Config(res, q); err != nil || out != set.configs[m] {
					b.Fatalf("Config = %p, %v; want the load-time config", out, err)
				}
			}
		})
	}
}
