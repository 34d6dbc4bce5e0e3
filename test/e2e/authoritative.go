package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// The load link of the authoritative DHCP tests that need more addresses
// than the VLAN's /24 holds: a bridge of its own between the provisioner's
// eth1 and a "load" host, which sends DHCP as a relay agent would (perfdhcp
// always does), so each request carries giaddr 10.96.0.1 and is answered
// from the Network that holds it.
const (
	loadBridge     = "br2"
	loadSubnet     = "10.96.0.0/16"
	loadProvAddr   = "10.96.0.2" // provisiond's eth1: --dhcp-interface eth1
	loadRelayAddr  = "10.96.0.1" // the load host: perfdhcp's and relayClient's giaddr
	loadRangeFirst = "10.96.1.0"
	loadRangeLast  = "10.96.255.254"
)

// loadNetwork is the Network of the load link: 65,279 addresses.
var loadNetwork = network{
	Name: "load", Subnet: loadSubnet, First: loadRangeFirst, Last: loadRangeLast,
	Router: loadRelayAddr, DNS: loadRelayAddr, LeaseTime: "1h",
}

// network is a kind: Network of the profiles, an address plan of the
// authoritative DHCP server.
type network struct {
	Name, Subnet, First, Last, Router, DNS, LeaseTime string
}

func (n network) yaml() string {
	return fmt.Sprintf("kind: Network\nname: %s\nsubnet: %s\nrange: [%s, %s]\nrouter: %s\ndns: [%s]\nleaseTime: %s\n",
		n.Name, n.Subnet, n.First, n.Last, n.Router, n.DNS, n.LeaseTime)
}

// inRange reports whether ip is in n's dynamic range.
func (n network) inRange(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	first, last := netip.MustParseAddr(n.First), netip.MustParseAddr(n.Last)
	return first.Compare(a) <= 0 && a.Compare(last) <= 0
}

// writeNetworks adds nets to the profiles directory dir, in a file of their
// own; dir "" makes a directory that holds only them.
func writeNetworks(t *testing.T, dir string, nets ...network) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	docs := make([]string, len(nets))
	for i, n := range nets {
		docs[i] = n.yaml()
	}
	if err := os.WriteFile(filepath.Join(dir, "networks.yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatalf("write networks: %v", err)
	}
	return dir
}

// authoritativeOn are the serve flags of the authoritative DHCP server (and
// TFTP) on the provisioner's interface iface.
func authoritativeOn(iface string) []string {
	return []string{"--dhcp-interface", iface, "--dhcp-mode", "authoritative"}
}

// addLoadLink adds the load link (see loadBridge) and returns the load
// host's namespace.
func (l *lab) addLoadLink() string {
	l.t.Helper()
	l.addBridge(loadBridge)
	l.join(l.Prov, "eth1", loadBridge, "prov1", "")
	l.mustIP("-n", l.Prov, "addr", "add", loadProvAddr+"/16", "dev", "eth1")
	ns := l.addNetns("load")
	l.join(ns, "eth0", loadBridge, "load0", "")
	l.mustIP("-n", ns, "addr", "add", loadRelayAddr+"/16", "dev", "eth0")
	return ns
}

// stop ends the daemon with SIGTERM (SIGKILL after 10 s) before the test
// does, so that another can take its addresses and ports.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Errorf("%s did not exit within 10 s of SIGTERM", d.name)
	}
}

// crash ends the daemon with SIGKILL: no shutdown of any kind.
func (d *daemon) crash(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", d.name, err)
	}
	<-d.done
}

// requireNetns skips the test unless this host can build namespaced links
// and has tools (or fails it under PROVISIOND_REQUIRE_LAB=1).
func requireNetns(t *testing.T, tools ...testutil.Tool) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds network namespaces and runs DHCP load; skipped in -short mode")
	}
	missing := testutil.Missing(append([]testutil.Tool{{Command: "ip", Package: "iproute2"}}, tools...)...)
	if os.Geteuid() != 0 {
		missing = append(missing, "root (creates network namespaces and a bridge)")
	}
	testutil.RequireLab(t, missing...)
}

// apiLease is one entry of GET /api/v1/leases.
type apiLease struct {
	IP      string    `json:"ip"`
	MAC     string    `json:"mac"`
	Network string    `json:"network"`
	State   string    `json:"state"` // active, expired or declined
	Expires time.Time `json:"expires"`
}

func (l apiLease) String() string {
	return fmt.Sprintf("%s %s (%s, %s until %s)", l.IP, l.MAC, l.Network, l.State, l.Expires.Format(time.TimeOnly))
}

// leases returns every lease the authoritative DHCP server holds.
func (a *apiClient) leases() ([]apiLease, error) {
	var list struct {
		Leases []apiLease `json:"leases"`
	}
	_, err := a.get("/leases", &list)
	return list.Leases, err
}

// leaseTable is the lease list by MAC, checked on the way: no address is
// listed twice, no MAC holds two leases.
type leaseTable map[string]apiLease

// indexLeases builds the table of ls and returns what breaks its rules.
func indexLeases(ls []apiLease) (leaseTable, []string) {
	byMAC := leaseTable{}
	byIP := map[string]apiLease{}
	var problems []string
	for _, l := range ls {
		if prev, ok := byIP[l.IP]; ok {
			problems = append(problems, fmt.Sprintf("address %s listed twice: %v and %v", l.IP, prev, l))
		}
		byIP[l.IP] = l
		if l.MAC == "" {
			continue // declined: no one holds it
		}
		if prev, ok := byMAC[l.MAC]; ok {
			problems = append(problems, fmt.Sprintf("%s holds two leases: %v and %v", l.MAC, prev, l))
		}
		byMAC[l.MAC] = l
	}
	return byMAC, problems
}

// fetchLeases asks for the lease list and fails t if it breaks the table's
// rules.
func fetchLeases(t *testing.T, api *apiClient) leaseTable {
	t.Helper()
	ls, err := api.leases()
	if err != nil {
		t.Fatalf("lease list: %v", err)
	}
	table, problems := indexLeases(ls)
	for _, p := range problems {
		t.Error(p)
	}
	return table
}
