package boot

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/testutil"
)

// testHardware is a report as the agent sends it from a small QEMU VM.
func testHardware() store.Hardware {
	return store.Hardware{
		ReportedAt: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), // the machine's clock: ignored
		System:     store.System{Vendor: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Serial: "SN-0001", BIOSVersion: "1.16.3"},
		CPU:        store.CPU{Model: "AMD EPYC 7543", Arch: "x86_64", Sockets: 1, Cores: 2, Threads: 2},
		Memory:     1536 << 20,
		Disks: []store.Disk{
			{Name: "vda", Serial: "disk-a", Size: 8 << 30, ByID: []string{"/dev/disk/by-id/virtio-disk-a"}},
			{Name: "vdb", Serial: "disk-b", Size: 16 << 30, Rotational: true},
		},
		NICs: []store.NIC{{Name: "eth0", MAC: "52-54-00-00-00-01", Driver: "virtio_net", Link: true}},
	}
}

// The machine's own report, from its address with its session token, is
// stored with the server's time and an event; the session stays open.
func TestReportHardware(t *testing.T) {
	const n1 = "52:54:00:00:00:01"
	c, db := lifecycleCore(t, Config{Neighbors: testutil.Neighbors{"10.0.0.5": n1}})
	ctx := context.Background()
	_, tok := script(t, c, Request{MAC: n1, IP: "10.0.0.5"})
	before, _ := db.Provisioning(ctx, n1)

	start := time.Now()
	m, err := c.ReportHardware(ctx, "n1", tok, testHardware(), "10.0.0.5", false)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := db.Machine(ctx, n1)
	hw := stored.Hardware
	switch {
	case hw == nil || m.Hardware == nil:
		t.Fatalf("no hardware stored: %+v", stored)
	case hw.ReportedAt.Before(start):
		t.Errorf("reported_at %v: want the server's clock, not the machine's", hw.ReportedAt)
	case hw.System.Serial != "SN-0001" || hw.Memory != 1536<<20 || len(hw.Disks) != 2 || hw.Disks[0].ByID[0] != "/dev/disk/by-id/virtio-disk-a":
		t.Errorf("stored hardware %+v", hw)
	case hw.NICs[0].MAC != n1:
		t.Errorf("NIC MAC %q: want it normalised to %s", hw.NICs[0].MAC, n1)
	}
	if p, _ := db.Provisioning(ctx, n1); p.TokenHash != before.TokenHash || p.TokenHash == "" {
		t.Errorf("the report closed or changed the session: %+v -> %+v", before, p)
	}
	es, _ := db.Events(ctx, store.EventQuery{MAC: n1, Type: EventInspected})
	if len(es) != 1 {
		t.Fatalf("inspected events: %+v", es)
	}
	want := map[string]string{"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)", "serial": "SN-0001", "cpus": "2", "memory": "1.5 GiB", "disks": "2"}
	for k, v := range want {
		if es[0].Fields[k] != v {
			t.Errorf("event field %s = %q, want %q (%+v)", k, es[0].Fields[k], v, es[0])
		}
	}
	if es[0].Actor != "machine" || !strings.Contains(es[0].Message, "1×2c, 1.5 GiB, 2 disks") {
		t.Errorf("event %+v", es[0])
	}

	// A machine no Machine claims, booted by the Default profile (the
	// discovery image), reports from its own session too and stays discovered.
	const stray = "52:54:00:00:00:77"
	c2, db2 := lifecycleCore(t, Config{Neighbors: testutil.Neighbors{"10.0.0.7": stray}})
	_, strayTok := script(t, c2, Request{MAC: stray, IP: "10.0.0.7"})
	if m, err := c2.ReportHardware(ctx, "52-54-00-00-00-77", strayTok, testHardware(), "10.0.0.7", false); err != nil || m.State != store.StateDiscovered || m.Hardware == nil {
		t.Fatalf("a discovered machine's report: %+v, %v", m, err)
	}
	if m, _ := db2.Machine(ctx, stray); m.Hardware == nil || m.Hardware.System.Serial != "SN-0001" {
		t.Errorf("the discovered machine's hardware was not stored: %+v", m.Hardware)
	}

	// A second report replaces the first; the operator may report too.
	hw2 := testHardware()
	hw2.Disks = hw2.Disks[:1]
	if m, err := c.ReportHardware(ctx, n1, "", hw2, "", true); err != nil || len(m.Hardware.Disks) != 1 {
		t.Fatalf("operator's report: %+v, %v", m.Hardware, err)
	}
	if es, _ := db.Events(ctx, store.EventQuery{MAC: n1, Type: EventInspected}); len(es) != 2 || es[1].Actor != "api" {
		t.Errorf("operator's report event: %+v", es)
	}
}

// A report for n1 from anything but n1's open session is refused, and
// nothing is stored.
func TestReportHardwareRefused(t *testing.T) {
	const n1, n2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
	nb := testutil.Neighbors{"10.0.0.5": n1, "10.0.0.7": n2, "10.0.0.6": "52:54:00:00:00:66", "127.0.0.1": "local"}
	for _, tc := range []struct {
		name   string
		ip     string
		token  func(own, other string) string
		reason string // the refusal's; "": ErrUnauthorized
		noSess bool   // n1's session is closed first
	}{
		{name: "another host on the VLAN", ip: "10.0.0.6", token: func(own, _ string) string { return own }, reason: ReasonNeighbor},
		{name: "loopback", ip: "127.0.0.1", token: func(own, _ string) string { return own }, reason: ReasonLocal},
		{name: "routed, unbound", ip: "192.0.2.9", token: func(own, _ string) string { return own }, reason: ReasonUnbound},
		{name: "another machine from its own address", ip: "10.0.0.7", token: func(own, _ string) string { return own }, reason: ReasonNeighbor},
		{name: "a wrong token", ip: "10.0.0.5", token: func(string, string) string { return "WRONG" }},
		{name: "no token", ip: "10.0.0.5", token: func(string, string) string { return "" }},
		{name: "another machine's token", ip: "10.0.0.5", token: func(_, other string) string { return other }},
		{name: "no open session", ip: "10.0.0.5", token: func(own, _ string) string { return own }, noSess: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, db := lifecycleCore(t, Config{Neighbors: nb})
			ctx := context.Background()
			_, own := script(t, c, Request{MAC: n1, IP: "10.0.0.5"})
			_, other := script(t, c, Request{MAC: n2, IP: "10.0.0.7"})
			if tc.noSess {
				if _, err := c.Installed(ctx, "n1", own, "", "10.0.0.5", false); err != nil {
					t.Fatal(err)
				}
			}
			_, err := c.ReportHardware(ctx, "n1", tc.token(own, other), testHardware(), tc.ip, false)
			if got := refusedFor(err); got != tc.reason || (tc.reason == "" && !errors.Is(err, ErrUnauthorized)) {
				t.Errorf("report = %v; want refusal %q", err, tc.reason)
			}
			// Refused as what it is: a hardware report, not a phone-home.
			if re := (*RefusedError)(nil); errors.As(err, &re) && re.What != whatReport {
				t.Errorf("refused as a %q", re.What)
			}
			for _, mac := range []string{n1, n2} {
				if m, _ := db.Machine(ctx, mac); m.Hardware != nil {
					t.Errorf("%s: hardware stored by a refused report: %+v", mac, m.Hardware)
				}
			}
			if es, _ := db.Events(ctx, store.EventQuery{Type: EventInspected}); len(es) != 0 {
				t.Errorf("inspected events: %+v", es)
			}
		})
	}
	t.Run("unknown machine", func(t *testing.T) {
		c, _ := lifecycleCore(t, Config{Neighbors: nb})
		if _, err := c.ReportHardware(context.Background(), "52:54:00:00:00:77", "X", testHardware(), "10.0.0.5", false); !errors.Is(err, ErrNotFound) {
			t.Errorf("report for an unknown machine = %v, want ErrNotFound", err)
		}
	})
}

// Reports past the bounds or with unfit text are refused before anything
// is read or stored.
func TestReportHardwareInvalid(t *testing.T) {
	const n1 = "52:54:00:00:00:01"
	long := strings.Repeat("x", MaxReportText+1)
	for _, tc := range []struct {
		name string
		edit func(*store.Hardware)
		want string
	}{
		{"an empty report", func(h *store.Hardware) { *h = store.Hardware{ReportedAt: h.ReportedAt} }, "it says nothing"},
		{"too many disks", func(h *store.Hardware) { h.Disks = make([]store.Disk, MaxReportDisks+1) }, "65 disks, at most 64"},
		{"too many NICs", func(h *store.Hardware) { h.NICs = make([]store.NIC, MaxReportNICs+1) }, "65 NICs, at most 64"},
		{"too many by-id paths", func(h *store.Hardware) { h.Disks[0].ByID = make([]string, MaxReportByID+1) }, "disks[0].by_id: 17 paths"},
		{"a long vendor", func(h *store.Hardware) { h.System.Vendor = long }, "system.vendor: 257 bytes, at most 256"},
		{"a long disk serial", func(h *store.Hardware) { h.Disks[1].Serial = long }, "disks[1].serial: 257 bytes"},
		{"an escape sequence", func(h *store.Hardware) { h.CPU.Model = "\x1b[2J" }, "cpu.model"},
		{"invalid UTF-8", func(h *store.Hardware) { h.NICs[0].Driver = "\xff" }, "nics[0].driver"},
		{"a by-id path elsewhere", func(h *store.Hardware) { h.Disks[0].ByID[0] = "/dev/sda" }, "want a path under /dev/disk/by-id/"},
		{"a by-id path escaping", func(h *store.Hardware) { h.Disks[0].ByID[0] = "/dev/disk/by-id/../sda" }, "by_id[0]"},
		{"a by-id path with a space", func(h *store.Hardware) { h.Disks[0].ByID[0] = "/dev/disk/by-id/a b" }, "by_id[0]"},
		{"a disk without a name", func(h *store.Hardware) { h.Disks[0].Name = "" }, "disks[0].name"},
		{"a NIC MAC", func(h *store.Hardware) { h.NICs[0].MAC = "nope" }, "nics[0].mac"},
		{"a negative speed", func(h *store.Hardware) { h.NICs[0].Speed = -1 }, "speed_mbps -1"},
		{"negative cores", func(h *store.Hardware) { h.CPU.Cores = -2 }, "negative count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, db := lifecycleCore(t, Config{})
			ctx := context.Background()
			script(t, c, Request{MAC: n1})
			hw := testHardware()
			tc.edit(&hw)
			_, err := c.ReportHardware(ctx, "n1", "", hw, "", true)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("report = %v; want ErrInvalid saying %q", err, tc.want)
			}
			if m, _ := db.Machine(ctx, n1); m.Hardware != nil {
				t.Errorf("invalid report stored: %+v", m.Hardware)
			}
		})
	}
}

func TestHardwareQuery(t *testing.T) {
	hw := testHardware()
	for _, tc := range []struct {
		name string
		q    HardwareQuery
		hw   *store.Hardware
		want bool
	}{
		{"zero query, never inspected", HardwareQuery{}, nil, true},
		{"any filter, never inspected", HardwareQuery{MinCPUs: 1}, nil, false},
		{"serial, any case", HardwareQuery{Serial: "sn-0001"}, &hw, true},
		{"serial is whole", HardwareQuery{Serial: "SN-000"}, &hw, false},
		{"vendor substring", HardwareQuery{Vendor: "qem"}, &hw, true},
		{"product substring", HardwareQuery{Product: "q35"}, &hw, true},
		{"product mismatch", HardwareQuery{Product: "PowerEdge"}, &hw, false},
		{"memory enough", HardwareQuery{MinMemory: 1536 << 20}, &hw, true},
		{"memory short", HardwareQuery{MinMemory: 2 << 30}, &hw, false},
		{"cpus enough", HardwareQuery{MinCPUs: 2}, &hw, true},
		{"cpus short", HardwareQuery{MinCPUs: 3}, &hw, false},
		{"text in the CPU model", HardwareQuery{Text: "epyc"}, &hw, true},
		{"text in the serial", HardwareQuery{Text: "n-00"}, &hw, true},
		{"text nowhere", HardwareQuery{Text: "xeon"}, &hw, false},
		{"all together", HardwareQuery{Vendor: "QEMU", Serial: "SN-0001", MinCPUs: 2, MinMemory: 1 << 30, Text: "AMD"}, &hw, true},
	} {
		if got := tc.q.Match(tc.hw); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHardwareSummary(t *testing.T) {
	hw := testHardware()
	big := store.Hardware{CPU: store.CPU{Sockets: 2, Cores: 32, Threads: 64}, Memory: 128 << 30, Disks: make([]store.Disk, 4)}
	threads := store.Hardware{CPU: store.CPU{Threads: 4}, Memory: 512 << 20, Disks: make([]store.Disk, 1)}
	for _, tc := range []struct {
		hw   *store.Hardware
		want string
	}{
		{nil, ""},
		{&hw, "1×2c, 1.5 GiB, 2 disks"},
		{&big, "2×16c, 128 GiB, 4 disks"},
		{&threads, "4 CPUs, 512 MiB, 1 disk"},
		{&store.Hardware{CPU: store.CPU{Sockets: 4, Cores: 2, Threads: 2}}, "2 CPUs, 0 disks"}, // not "4×0c"
	} {
		if got := Summary(tc.hw); got != tc.want {
			t.Errorf("Summary = %q, want %q", got, tc.want)
		}
	}
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536 << 20: "1.5 GiB", 4 << 40: "4 TiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
