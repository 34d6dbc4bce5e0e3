package e2e

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The VMs of TestHTTPBoot, both OVMF without an iPXE option ROM: one with
// its PXE clients turned off, so that only UEFI HTTP Boot can boot it, and
// one that PXE-boots as vm-uefi of TestPXEBoot does, to compare with.
var (
	httpBootVM = vm{Name: "vm-httpboot", MAC: "52:54:00:e2:e0:10", Hostname: "vm-httpboot.e2e", UEFI: true, HTTPBoot: true}
	pxeBootVM  = vm{Name: "vm-uefi-pxe", MAC: "52:54:00:e2:e0:11", Hostname: "vm-uefi-pxe.e2e", UEFI: true}
)

// OVMF's console lines as each network boot path starts; its DHCP follows.
const (
	startHTTPBoot = ">>Start HTTP Boot over IPv4"
	startPXE      = ">>Start PXE over IPv4"
)

// TestHTTPBoot boots an OVMF VM whose PXE is off through provisiond alone
// (the site's DHCP leases its address, nothing else): provisiond's proxyDHCP
// answers the firmware's HTTPClient DHCP with the URL of /nbp/ipxe.efi, the
// firmware HEADs then GETs it, iPXE chains /boot.ipxe and /ipxe, and the
// test OS fetches its own config with its session token and phones home.
// No TFTP transfer may happen meanwhile. Then a PXE-booting OVMF VM boots
// in the same lab, for the time each path takes from its firmware's start
// to the config fetched.
func TestHTTPBoot(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	l.startSiteDHCP()
	vms := []vm{httpBootVM, pxeBootVM}
	prov := runProvisiond(t, l, tos, vms)
	httpM, pxeM := l.addMachine(httpBootVM), l.addMachine(pxeBootVM)

	before := scrapeMetrics(t, prov)
	httpRun := firstBoot(t, httpM, startHTTPBoot)
	after := scrapeMetrics(t, prov)
	provLog, err := os.ReadFile(prov.daemon.log)
	if err != nil {
		t.Fatal(err)
	}
	// One at a time, so that neither boot slows the other.
	pxeRun := firstBoot(t, pxeM, startPXE)

	t.Run(httpBootVM.Name, func(t *testing.T) {
		checkFirstBoot(t, prov.api, httpBootVM, vms, httpRun)
		serial := printable([]byte(httpRun.Serial))
		if strings.Contains(serial, startPXE) {
			t.Errorf("the console shows %q: the fw_cfg switches did not turn PXE off", startPXE)
		}
		checkHTTPBootRequests(t, string(provLog), before, after)
	})
	t.Run(pxeBootVM.Name, func(t *testing.T) {
		checkFirstBoot(t, prov.api, pxeBootVM, vms, pxeRun)
		// The counter the HTTP Boot had to leave alone counts this boot's
		// TFTP: its check above was not vacuous.
		sel := []string{`file="ipxe.efi"`, `outcome="ok"`}
		if d := scrapeMetrics(t, prov).sum("provisiond_tftp_transfers_total", sel...) - after.sum("provisiond_tftp_transfers_total", sel...); d < 1 {
			t.Errorf("the PXE boot's TFTP transfers of ipxe.efi counted %v times, want 1 or more", d)
		}
	})
	t.Logf("firmware's network boot start to config fetched: HTTP Boot %s, PXE %s (power-on to config fetched: %s, %s)",
		seconds(sinceStart(httpRun, startHTTPBoot)), seconds(sinceStart(pxeRun, startPXE)),
		seconds(httpRun.Fetched()), seconds(pxeRun.Fetched()))
}

// firstBoot powers m on until its test OS has phoned home and rebooted,
// noting when start appeared on the console.
func firstBoot(t *testing.T, m *machine, start string) bootResult {
	t.Helper()
	p, err := m.powerOn(bootTimeout, start, ignitionEnd, phonedHome)
	if err != nil {
		t.Fatal(err)
	}
	return p.wait()
}

// sinceStart is the time from the start mark to the config fetched; zero if
// either never appeared.
func sinceStart(r bootResult, start string) time.Duration {
	s, ok := r.Marks[start]
	if !ok || r.Fetched() == 0 {
		return 0
	}
	return r.Fetched() - s
}

// checkFirstBoot checks that v's boot printed its own config, whose token
// phoned home, and that the API shows it installed after one config fetch.
func checkFirstBoot(t *testing.T, api *apiClient, v vm, vms []vm, r bootResult) {
	t.Helper()
	if r.Err != nil {
		t.Errorf("boot: %v", r.Err)
	}
	serial := printable([]byte(r.Serial))
	if _, ok := r.Marks[ignitionEnd]; !ok {
		t.Fatalf("%s fetched no config; console:\n%s", v.Name, tail(serial, 40))
	}
	token := checkConfig(t, v, vms, r.Serial)
	checkPhoneHome(t, r.Serial, token)
	m, err := api.machine(v.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != "installed" || m.Provisioning == nil || m.Provisioning.ConfigFetches != 1 {
		t.Errorf("machine at the end: %s, want installed after 1 config fetch", m)
	}
}

// checkHTTPBootRequests checks, from provisiond's log and its metrics before
// and after the HTTP Boot VM's boot, that the proxyDHCP offered the firmware
// the URL of ipxe.efi, that the firmware HEADed then GOT it, that iPXE went
// on through /boot.ipxe and /ipxe to /ignition, and that nothing was sent
// over TFTP.
func checkHTTPBootRequests(t *testing.T, provLog string, before, after metricSamples) {
	t.Helper()
	mac := "mac=" + httpBootVM.MAC
	offer := "file=" + advertiseURL + "/nbp/ipxe.efi"
	var offered bool
	var methods []string
	for line := range strings.Lines(provLog) {
		switch {
		case strings.Contains(line, `msg="dhcp offer"`) && strings.Contains(line, mac) && strings.Contains(line, offer):
			offered = true
		case strings.Contains(line, `msg="ipxe binary served"`) && strings.Contains(line, "file=ipxe.efi"):
			_, m, _ := strings.Cut(line, " method=")
			m, _, _ = strings.Cut(m, " ")
			methods = append(methods, m)
		}
	}
	if !offered {
		t.Errorf("provisiond's log shows no DHCP offer to %s with %s", httpBootVM.MAC, offer)
	}
	if len(methods) < 2 || methods[0] != http.MethodHead || !slices.Contains(methods, http.MethodGet) {
		t.Errorf("/nbp/ipxe.efi was served to %q; want HEAD, then GET", methods)
	}
	t.Logf("/nbp/ipxe.efi requests, in order: %q", methods)

	for _, c := range []struct {
		route, code string
		min         float64
	}{
		{"/nbp/{name}", "200", 2}, // the firmware's HEAD and GET
		{"/boot.ipxe", "200", 1},
		{"/ipxe", "200", 1},
		{"/ignition", "200", 1},
	} {
		sel := []string{`route="` + c.route + `"`, `code="` + c.code + `"`}
		if d := after.sum("provisiond_http_requests_total", sel...) - before.sum("provisiond_http_requests_total", sel...); d < c.min {
			t.Errorf("%s answered %s %v times during the boot, want at least %v", c.route, c.code, d, c.min)
		}
	}
	if n := after.sum("provisiond_http_requests_total", `route="/nbp/{name}"`, `code="405"`); n > 0 {
		t.Errorf("/nbp/ answered 405 %v times", n)
	}
	if b, a := before.sum("provisiond_tftp_transfers_total"), after.sum("provisiond_tftp_transfers_total"); a != b {
		t.Errorf("TFTP transfers went from %v to %v during the HTTP Boot", b, a)
	}
}

// metricSamples is a Prometheus text exposition: each sample line's name
// and labels, and its value.
type metricSamples map[string]float64

// scrapeMetrics reads provisiond's /metrics from its own host.
func scrapeMetrics(t *testing.T, prov *provisiondRun) metricSamples {
	t.Helper()
	resp, err := prov.api.http.Get(prov.url + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape metrics: %s: %.300s", resp.Status, b)
	}
	samples := metricSamples{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Label values may hold spaces (arch="EFI x86-64"); the value
		// is the last field, as promhttp sends no timestamps.
		i := strings.LastIndexByte(line, ' ')
		series, value := line[:max(i, 0)], line[i+1:]
		v, err := strconv.ParseFloat(value, 64)
		if i < 0 || err != nil {
			t.Fatalf("scrape metrics: bad sample line %q", line)
		}
		samples[series] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	return samples
}

// sum adds the samples of metric name whose labels include every one of
// labels (`key="value"`).
func (s metricSamples) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range s {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if ok {
			total += v
		}
	}
	return total
}
