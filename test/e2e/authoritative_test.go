package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// The VMs of TestAuthoritative: the BIOS one by its reservation, the UEFI
// one from the range. Matched by MAC: a reservation needs it.
var authVMs = []vm{
	{Name: "auth-bios", MAC: "52:54:00:e2:e2:01", Hostname: "auth-bios.e2e", IP: "10.99.0.50"},
	{Name: "auth-uefi", MAC: "52:54:00:e2:e2:02", Hostname: "auth-uefi.e2e", UEFI: true},
}

// provNetwork is the VLAN's address plan, as the issue writes it.
var provNetwork = network{
	Name: "prov", Subnet: "10.99.0.0/24", First: "10.99.0.100", Last: "10.99.0.199",
	Router: siteAddr, DNS: siteAddr, LeaseTime: "1h",
}

// Where a console shows the address its boot stage leased: EDK2's PXE
// client, then iPXE's `dhcp`.
var consoleAddrs = []*regexp.Regexp{
	regexp.MustCompile(`Station IP address is (\d+\.\d+\.\d+\.\d+)`),
	regexp.MustCompile(`net0: (\d+\.\d+\.\d+\.\d+)/`),
}

// TestAuthoritative boots a BIOS VM (its NIC ROM is iPXE) and a UEFI VM
// (OVMF's PXE client, which loads ipxe.efi over TFTP first) on a VLAN with
// no DHCP server but provisiond in --dhcp-mode authoritative: each must lease
// its address from provisiond (the BIOS VM its Machine's ip: reservation, the
// UEFI VM one of the Network's range), boot to its own config and phone home;
// every stage of the boot (firmware, iPXE, the test OS's own udhcpc) must
// hold the same address, the one GET /api/v1/leases (and `provisiond
// leases`) lists as that MAC's only lease. No NAK may be sent.
//
// Then, as the reference the figures compare against, the same VMs
// boot again in the same run with dnsmasq as the full DHCP server, naming
// provisiond (the docs' configuration, as TestSiteDHCP), and provisiond
// serving TFTP and HTTP only. Both runs boot the two VMs at once, one per
// core, and log power-on to config fetched as "figure:" lines.
func TestAuthoritative(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	prov := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: writeNetworks(t, writeProfiles(t, tos, authVMs), provNetwork),
		assets:   tos.Dir, data: t.TempDir(), pxe: authoritativeOn("eth0"),
	})
	machines := make([]*machine, len(authVMs))
	for i, v := range authVMs {
		machines[i] = l.addMachine(v)
	}

	auth := bootTogether(machines)
	table := fetchLeases(t, prov.api)
	// The operator's view: `provisiond leases` lists the same.
	var cli struct {
		Leases []apiLease `json:"leases"`
	}
	if err := prov.cli(l, &cli, "leases"); err != nil {
		t.Error(err)
	} else if cliTable, _ := indexLeases(cli.Leases); len(cliTable) != len(table) {
		t.Errorf("provisiond leases lists %v, the API %v", cli.Leases, table)
	} else {
		for mac, lease := range table {
			if cliTable[mac].IP != lease.IP {
				t.Errorf("provisiond leases lists %v for %s, the API %v", cliTable[mac], mac, lease)
			}
		}
	}
	for i, v := range authVMs {
		t.Run(v.Name, func(t *testing.T) {
			checkFirstBoot(t, prov.api, v, authVMs, auth[i])
			checkVMLease(t, v, table, auth[i].Serial)
		})
	}
	for mac, lease := range table {
		if !isVM(mac) {
			t.Errorf("a lease for no VM of the lab: %v", lease)
		}
	}
	metrics := scrapeMetrics(t, prov)
	if n := metrics.sum("provisiond_dhcp_packets_total", `outcome="nak"`); n != 0 {
		t.Errorf("provisiond sent %v NAKs to clients that only ever asked for their own address", n)
	}
	t.Logf("authoritative DHCP packets: %v offers, %v ACKs", metrics.sum("provisiond_dhcp_packets_total", `outcome="offer"`), metrics.sum("provisiond_dhcp_packets_total", `outcome="ack"`))
	prov.daemon.stop(t)

	// The reference: dnsmasq hands out the addresses and names provisiond.
	conf := filepath.Join(t.TempDir(), "provisiond.conf")
	if err := os.WriteFile(conf, []byte(docDnsmasqConf(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	l.startDnsmasq(l.Site, "site-dnsmasq", "DHCP, IP range", "--interface=eth0", "--bind-interfaces", "--conf-file="+conf)
	plain := make([]vm, len(authVMs))
	for i, v := range authVMs {
		v.IP = "" // no Networks: nothing to reserve in
		plain[i] = v
	}
	ref := l.serveProvisiond(provisiondSpec{
		name: "provisiond-reference", ns: l.Prov, addr: provAddr,
		profiles: writeProfiles(t, tos, plain), assets: tos.Dir, data: t.TempDir(),
		pxe: []string{"--tftp-addr", provAddr + ":69"},
	})
	reference := bootTogether(machines)
	for i, v := range plain {
		t.Run(v.Name+"-dnsmasq-reference", func(t *testing.T) {
			checkFirstBoot(t, ref.api, v, plain, reference[i])
		})
	}
	for i, v := range authVMs {
		t.Logf("figure: %s (%s) power-on to config fetched: authoritative provisiond %s, dnsmasq as DHCP server naming provisiond %s (two VMs at once, TCG)",
			v.Name, firmwareName(v), seconds(auth[i].Fetched()), seconds(reference[i].Fetched()))
	}
}

// bootTogether powers every machine on at once until its test OS has phoned home
// and rebooted.
func bootTogether(machines []*machine) []bootResult {
	results := make([]bootResult, len(machines))
	var wg sync.WaitGroup
	for i, m := range machines {
		wg.Go(func() {
			p, err := m.powerOn(bootTimeout, ignitionEnd, phonedHome)
			if err != nil {
				results[i] = bootResult{Err: err}
				return
			}
			results[i] = p.wait()
		})
	}
	wg.Wait()
	return results
}

func firmwareName(v vm) string {
	if v.UEFI {
		return "UEFI"
	}
	return "BIOS"
}

func isVM(mac string) bool {
	for _, v := range authVMs {
		if v.MAC == mac {
			return true
		}
	}
	return false
}

// checkVMLease checks v's lease: its only one, active, its reservation or
// from the range, and the address every boot stage on its console showed.
func checkVMLease(t *testing.T, v vm, table leaseTable, serial string) {
	t.Helper()
	l, ok := table[v.MAC]
	if !ok {
		t.Fatalf("no lease for %s in GET /api/v1/leases", v.MAC)
	}
	if l.State != "active" || l.Network != provNetwork.Name {
		t.Errorf("lease %v: want active, from Network %s", l, provNetwork.Name)
	}
	switch {
	case v.IP != "" && l.IP != v.IP:
		t.Errorf("lease %v: want the Machine's reservation %s", l, v.IP)
	case v.IP == "" && !provNetwork.inRange(l.IP):
		t.Errorf("lease %v: not in the range %s-%s", l, provNetwork.First, provNetwork.Last)
	}
	serial = printable([]byte(serial))
	osLease, ok := consoleLine(serial, "PVD-E2E-LEASE eth0 ")
	osIP, _, _ := strings.Cut(osLease, "/")
	if !ok || osIP != l.IP {
		t.Errorf("the test OS's udhcpc leased %q, want %s, the lease of its boot", osLease, l.IP)
	}
	stages := []string{"udhcpc " + osIP}
	for _, re := range consoleAddrs {
		for _, m := range re.FindAllStringSubmatch(serial, -1) {
			stages = append(stages, m[0])
			if m[1] != l.IP {
				t.Errorf("the console shows %q, not the lease %s", m[0], l.IP)
			}
		}
	}
	t.Logf("%s: lease %v; the console's addresses: %q", v.Name, l, stages)
}

// perfdhcp runs of TestAuthoritativePerfdhcp: the 1,000/s for 10 s.
const (
	perfRate         = 1000
	perfSeconds      = 10
	perfClients      = 5000 // MACs the rate run picks from, at random
	avalancheClients = 1000 // clients of the avalanche run
)

var (
	ackLine    = regexp.MustCompile(`msg="dhcp ack".* mac=(\S+).* yiaddr=(\S+)`)
	nakLogLine = regexp.MustCompile(`msg="dhcp nak"`)
)

// TestAuthoritativePerfdhcp loads the authoritative server with perfdhcp's
// full DORA exchanges, relayed (giaddr 10.96.0.1, a /16 Network): first
// 1,000 new clients at once (--scenario avalanche, which retransmits until
// each has its ACK: the time to hand out 1,000 leases), then 1,000 exchanges
// a second for 10 s among 5,000 clients. Then no address may have been ACKed
// to two MACs (provisiond's log of every ACK), every address perfdhcp saw
// ACKed must be leased (GET /api/v1/leases), as each MAC's last ACKed
// address, no lease listed twice, and no NAK sent.
func TestAuthoritativePerfdhcp(t *testing.T) {
	requireNetns(t, testutil.Tool{Command: "perfdhcp", Package: "kea-admin"})
	l := newLab(t)
	loadNS := l.addLoadLink()
	prov := l.serveProvisiond(provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: writeNetworks(t, "", loadNetwork), assets: t.TempDir(), data: t.TempDir(),
		pxe: authoritativeOn("eth1"),
	})

	// Three exchanges first, so that a server that answers nothing fails
	// here rather than as an avalanche that never ends.
	probe := l.perfdhcp(t, loadNS, "probe", "-r", "10", "-n", "3", "-W", "1000000", "-b", "mac=02:9f:00:00:00:00")
	if probe.RA.Received == 0 {
		t.Fatal("no ACK to 3 DORA exchanges: the authoritative server does not answer relayed DHCP (see its log)")
	}
	av := l.perfdhcp(t, loadNS, "avalanche", "--scenario", "avalanche", "-R", fmt.Sprint(avalancheClients), "-b", "mac=02:a0:00:00:00:00")
	if av.RA.Received < avalancheClients {
		t.Errorf("avalanche: %d of %d clients got their ACK", av.RA.Received, avalancheClients)
	}
	rate := l.perfdhcp(t, loadNS, "rate", "-r", fmt.Sprint(perfRate), "-p", fmt.Sprint(perfSeconds), "-R", fmt.Sprint(perfClients),
		"-W", "2000000", "-b", "mac=02:b0:00:00:00:00")
	if want := perfRate * perfSeconds * 9 / 10; rate.DO.Sent < want {
		t.Errorf("perfdhcp sent only %d DISCOVERs, want about %d: the load was not applied", rate.DO.Sent, perfRate*perfSeconds)
	}
	// Drops are weighed by the figures, not failed on (the host's cores are
	// shared), but a server that completes most exchanges is what the
	// checks below are about.
	if rate.RA.Received < rate.DO.Sent/2 {
		t.Errorf("only %d of %d exchanges completed DORA: the server did not keep up with %d/s", rate.RA.Received, rate.DO.Sent, perfRate)
	}

	table := fetchLeases(t, prov.api)
	byIP := map[string]apiLease{}
	for _, lease := range table {
		byIP[lease.IP] = lease
	}
	var unleased []string
	acked := map[string]bool{}
	for _, ip := range slices.Concat(probe.AckedAddrs, av.AckedAddrs, rate.AckedAddrs) {
		acked[ip] = true
		if lease, ok := byIP[ip]; !ok || lease.State != "active" || !loadNetwork.inRange(ip) {
			unleased = append(unleased, fmt.Sprintf("%s (lease %v)", ip, lease))
		}
	}
	if len(unleased) > 0 {
		t.Errorf("%d addresses perfdhcp got ACKed are not leased: %v", len(unleased), unleased[:min(len(unleased), 20)])
	}
	checkAckLog(t, prov.daemon.log, table, probe.RA.Received+av.RA.Received+rate.RA.Received)
	metrics := scrapeMetrics(t, prov)
	if n := metrics.sum("provisiond_dhcp_packets_total", `outcome="nak"`); n != 0 {
		t.Errorf("provisiond sent %v NAKs; every REQUEST took the address it was offered", n)
	}

	t.Logf("figure: time to hand out %d leases (perfdhcp avalanche, %d new clients at once, retransmitting): %.2f s (%.0f DORA/s)",
		avalancheClients, avalancheClients, av.Took.Seconds(), av.Rate)
	t.Logf("figure: perfdhcp %d DORA/s offered for %d s among %d clients: %.0f DORA/s completed (%.0f/s by perfdhcp's count, which includes its 2 s wait at the end); DISCOVER %d sent, %d OFFERs (avg %s); REQUEST %d sent, %d ACKs (avg %s), %d drops, %d rejected",
		perfRate, perfSeconds, perfClients, float64(rate.RA.Received)/perfSeconds, rate.Rate, rate.DO.Sent, rate.DO.Received, rate.DO.AvgDelay,
		rate.RA.Sent, rate.RA.Received, rate.RA.AvgDelay, rate.RA.Drops, rate.RA.Rejected)
	t.Logf("%d distinct addresses ACKed to perfdhcp, %d leases listed", len(acked), len(table))
}

// perfdhcp runs perfdhcp with args from namespace ns as the relay of the
// load link, against provisiond there, and returns its report. It lists
// every lease received (-x l).
func (l *lab) perfdhcp(t *testing.T, ns, name string, args ...string) perfReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	argv := append([]string{"perfdhcp", "-4", "-l", "eth0", "-x", "l"}, args...)
	start := time.Now()
	out, err := l.command(ctx, ns, append(argv, loadProvAddr)...).CombinedOutput()
	took := time.Since(start)
	if f, _ := l.logFile("perfdhcp-" + name); f != nil {
		f.Write(out)
		f.Close()
	}
	// Exit status 3: some exchanges did not complete, which the checks weigh.
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		t.Fatalf("perfdhcp %s: %v\n%s", name, err, tail(string(out), 40))
	}
	r, err := parsePerf(string(out))
	if err != nil {
		t.Fatalf("perfdhcp %s: %v\n%s", name, err, tail(string(out), 40))
	}
	t.Logf("perfdhcp %s (%.1f s): %.0f DORA/s; DISCOVER-OFFER %+v; REQUEST-ACK %+v; %d leases listed",
		name, took.Seconds(), r.Rate, r.DO, r.RA, len(r.AckedAddrs))
	return r
}

// checkAckLog checks provisiond's log of every ACK it sent: no address to
// two MACs, each MAC's last ACKed address its lease, and at least as many
// ACKs as perfdhcp received.
func checkAckLog(t *testing.T, logPath string, table leaseTable, received int) {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	holder := map[string]string{} // address -> MAC
	last := map[string]string{}   // MAC -> address
	acks, naks := 0, 0
	var twice []string
	for line := range strings.Lines(string(b)) {
		if nakLogLine.MatchString(line) {
			naks++
		}
		m := ackLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		acks++
		mac, ip := m[1], m[2]
		if h, ok := holder[ip]; ok && h != mac {
			twice = append(twice, fmt.Sprintf("%s to %s and %s", ip, h, mac))
		}
		holder[ip], last[mac] = mac, ip
	}
	if len(twice) > 0 {
		t.Errorf("%d addresses ACKed to two MACs: %v", len(twice), twice[:min(len(twice), 20)])
	}
	if acks < received {
		t.Errorf("provisiond logged %d ACKs, perfdhcp received %d", acks, received)
	}
	if naks > 0 {
		t.Errorf("provisiond logged %d NAKs", naks)
	}
	var notHeld []string
	for mac, ip := range last {
		if l := table[mac]; l.IP != ip {
			notHeld = append(notHeld, fmt.Sprintf("%s ACKed %s, lease %v", mac, ip, l))
		}
	}
	if len(notHeld) > 0 {
		t.Errorf("%d MACs do not hold the address last ACKed to them: %v", len(notHeld), notHeld[:min(len(notHeld), 20)])
	}
	t.Logf("provisiond's log: %d ACKs to %d MACs, %d addresses", acks, len(last), len(holder))
}
