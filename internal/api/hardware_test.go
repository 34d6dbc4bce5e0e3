package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/testutil"
)

// hardwareReport is a report as provisiond agent sends it.
const hardwareReport = `{
  "system": {"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)", "serial": "SN-0001", "bios_version": "1.16.3"},
  "cpu": {"model": "AMD EPYC 7543", "arch": "x86_64", "sockets": 1, "cores": 2, "threads": 2},
  "memory_bytes": 1610612736,
  "disks": [{"name": "vda", "serial": "disk-a", "size_bytes": 8589934592, "rotational": false, "by_id": ["/dev/disk/by-id/virtio-disk-a"]}],
  "nics": [{"name": "eth0", "mac": "52:54:00:00:00:01", "driver": "virtio_net", "speed_mbps": 0, "link": true}]
}`

func TestReportHardwareAPI(t *testing.T) {
	f := newFixture(t)
	tok := f.boot(t, boot.Request{MAC: "52:54:00:00:00:01"})
	f.boot(t, boot.Request{MAC: "52:54:00:00:00:99"}) // discovered, never inspected
	disks := make([]string, boot.MaxReportDisks+1)
	for i := range disks {
		disks[i] = fmt.Sprintf(`{"name":"d%d"}`, i)
	}
	tooMany := `{"disks":[` + strings.Join(disks, ",") + `]}`
	huge := `{"system":{"vendor":"` + strings.Repeat("x", maxHardwareBody) + `"}}`

	unauthorized := `"error": "unauthorized: send Authorization: Bearer <token>"`
	for _, tc := range []struct {
		name, method, path, token, body string
		code                            int
		contains, lacks                 []string
	}{
		{name: "never inspected: null", method: "GET", path: "/machines/node1", token: apiToken, code: 200, contains: []string{`"hardware": null`}},
		{name: "no token", method: "POST", path: "/machines/node1/hardware", body: hardwareReport, code: 401, contains: []string{unauthorized}},
		{name: "a wrong token", method: "POST", path: "/machines/node1/hardware", token: "WRONG", body: hardwareReport, code: 401, contains: []string{unauthorized}},
		{name: "its token for another machine", method: "POST", path: "/machines/52:54:00:00:00:99/hardware", token: tok, body: hardwareReport, code: 401, contains: []string{unauthorized}},
		{name: "an unknown machine", method: "POST", path: "/machines/52:54:00:00:00:77/hardware", token: tok, body: hardwareReport, code: 401, contains: []string{unauthorized}},
		{name: "an unknown field", method: "POST", path: "/machines/node1/hardware", token: tok, body: `{"gpu": "x"}`, code: 400, contains: []string{"unknown field"}},
		{name: "an empty report", method: "POST", path: "/machines/node1/hardware", token: tok, code: 400, contains: []string{"says nothing"}},
		{name: "too many disks", method: "POST", path: "/machines/node1/hardware", token: tok, body: tooMany, code: 400, contains: []string{"65 disks, at most 64"}},
		{name: "over 1 MiB", method: "POST", path: "/machines/node1/hardware", token: tok, body: huge, code: 400, contains: []string{"request body"}},
		{name: "the machine's report", method: "POST", path: "/machines/52-54-00-00-00-01/hardware", token: tok, body: hardwareReport, code: 200,
			contains: []string{`"serial": "SN-0001"`, `"memory_bytes": 1610612736`, `"/dev/disk/by-id/virtio-disk-a"`, `"state": "provisioning"`}},
		{name: "show", method: "GET", path: "/machines/node1", token: apiToken, code: 200, contains: []string{`"vendor": "QEMU"`, `"session_open": true`}},
		{name: "list carries it", method: "GET", path: "/machines", token: apiToken, code: 200, contains: []string{`"serial": "SN-0001"`, `"hardware": null`}},
		{name: "by serial, any case", method: "GET", path: "/machines?serial=sn-0001", token: apiToken, code: 200, contains: []string{"52:54:00:00:00:01"}, lacks: []string{"52:54:00:00:00:99"}},
		{name: "by part of a serial: none", method: "GET", path: "/machines?serial=SN", token: apiToken, code: 200, lacks: []string{"52:54:00:00:00:01"}},
		{name: "by vendor", method: "GET", path: "/machines?vendor=qemu", token: apiToken, code: 200, contains: []string{"52:54:00:00:00:01"}, lacks: []string{"52:54:00:00:00:99"}},
		{name: "by product", method: "GET", path: "/machines?product=Q35", token: apiToken, code: 200, contains: []string{"52:54:00:00:00:01"}},
		{name: "by memory", method: "GET", path: "/machines?min_memory=1.5GiB", token: apiToken, code: 200, contains: []string{"52:54:00:00:00:01"}},
		{name: "by memory, too much", method: "GET", path: "/machines?min_memory=16GiB", token: apiToken, code: 200, lacks: []string{"52:54:00:00:00:01"}},
		{name: "by cpus", method: "GET", path: "/machines?min_cpus=2&state=provisioning", token: apiToken, code: 200, contains: []string{"52:54:00:00:00:01"}},
		{name: "by cpus, too many", method: "GET", path: "/machines?min_cpus=3", token: apiToken, code: 200, lacks: []string{"52:54:00:00:00:01"}},
		{name: "bad min_memory", method: "GET", path: "/machines?min_memory=lots", token: apiToken, code: 400, contains: []string{"min_memory"}},
		{name: "bad min_cpus", method: "GET", path: "/machines?min_cpus=-1", token: apiToken, code: 400, contains: []string{"min_cpus"}},
		{name: "the operator's report", method: "POST", path: "/machines/52:54:00:00:00:99/hardware", token: apiToken, body: `{"memory_bytes": 1024}`, code: 200, contains: []string{`"memory_bytes": 1024`}},
		{name: "events", method: "GET", path: "/events?type=inspected", token: apiToken, code: 200, contains: []string{`"actor": "machine"`, `"actor": "api"`, `"serial": "SN-0001"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.call(t, tc.method, tc.path, tc.token, tc.body)
			if code != tc.code {
				t.Fatalf("%s %s = %d, want %d\n%s", tc.method, tc.path, code, tc.code, body)
			}
			var v any
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Errorf("body is not JSON: %v\n%s", err, body)
			}
			for _, c := range tc.contains {
				if !strings.Contains(body, c) {
					t.Errorf("body lacks %q:\n%s", c, body)
				}
			}
			for _, c := range tc.lacks {
				if strings.Contains(body, c) {
					t.Errorf("body has %q:\n%s", c, body)
				}
			}
		})
	}
}

// Over HTTP, the report must come from the machine's own address: the
// test client is 127.0.0.1, which the neighbour table calls this host, or
// another machine's address.
func TestReportHardwareIdentityAPI(t *testing.T) {
	for _, tc := range []struct {
		name, loopback string // what the neighbour table says 127.0.0.1 is
		code           int
	}{
		{"the machine itself", "52:54:00:00:00:01", 200},
		{"this host", "local", 403},
		{"another machine", "52:54:00:00:00:66", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureWith(t, boot.Config{Neighbors: testutil.Neighbors{"127.0.0.1": tc.loopback, "10.0.0.5": "52:54:00:00:00:01"}},
				map[string]string{"p.yaml": testProfiles})
			tok := f.boot(t, boot.Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"})
			if code, body := f.call(t, "POST", "/machines/node1/hardware", tok, hardwareReport); code != tc.code {
				t.Fatalf("report = %d, want %d\n%s", code, tc.code, body)
			}
			_, body := f.call(t, "GET", "/machines/node1", apiToken, "")
			if stored := !strings.Contains(body, `"hardware": null`); stored != (tc.code == 200) {
				t.Errorf("hardware stored = %v after a %d:\n%s", stored, tc.code, body)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"1000", 1000, true},
		{"16GiB", 16 << 30, true},
		{"16 gib", 16 << 30, true},
		{"1.5G", 3 << 29, true},
		{"2 MB", 2 << 20, true},
		{"512b", 512, true}, // lower case without a unit, as with one
		{"1TiB", 1 << 40, true},
		{"", 0, false},
		{"GiB", 0, false},
		{"-1", 0, false},
		{"NaN", 0, false},
		{"1e30", 0, false}, // past uint64
		{"lots", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
