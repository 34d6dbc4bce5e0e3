package leases

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	a = netip.MustParseAddr
	// prov is the Network most tests use: ten addresses, .100 to .109.
	prov = Network{
		Name:      "prov",
		Subnet:    netip.MustParsePrefix("10.99.0.0/24"),
		First:     a("10.99.0.100"),
		Last:      a("10.99.0.109"),
		Router:    a("10.99.0.1"),
		DNS:       []netip.Addr{a("10.99.0.1")},
		LeaseTime: time.Hour,
	}
	lab = Network{
		Name:   "lab",
		Subnet: netip.MustParsePrefix("10.98.0.0/16"),
		First:  a("10.98.1.0"),
		Last:   a("10.98.1.255"),
	}
)

func TestNewPlanRefuses(t *testing.T) {
	with := func(edit func(n *Network)) []Network {
		n := prov
		edit(&n)
		return []Network{n}
	}
	tests := []struct {
		name     string
		nets     []Network
		reserved map[string]netip.Addr
		want     string
	}{
		{"no name", with(func(n *Network) { n.Name = "" }), nil, "no name"},
		{"twice", []Network{prov, prov}, nil, "defined twice"},
		{"ipv6 subnet", with(func(n *Network) { n.Subnet = netip.MustParsePrefix("fd00::/64") }), nil, "not an IPv4 prefix"},
		{"subnet too small", with(func(n *Network) { n.Subnet = netip.MustParsePrefix("10.99.0.100/31") }), nil, "not an IPv4 prefix"},
		{"range outside subnet", with(func(n *Network) { n.Last = a("10.99.1.5") }), nil, "not a host address"},
		{"range over broadcast", with(func(n *Network) { n.Last = a("10.99.0.255") }), nil, "not a host address"},
		{"range over network address", with(func(n *Network) { n.First = a("10.99.0.0") }), nil, "not a host address"},
		{"range backwards", with(func(n *Network) { n.First, n.Last = n.Last, n.First }), nil, "ends before it starts"},
		{"router in range", with(func(n *Network) { n.Router = a("10.99.0.105") }), nil, "inside the range"},
		{"router outside subnet", with(func(n *Network) { n.Router = a("10.98.0.1") }), nil, "outside"},
		{"negative lease time", with(func(n *Network) { n.LeaseTime = -time.Second }), nil, "negative lease time"},
		{"overlapping subnets", []Network{prov, {Name: "big", Subnet: netip.MustParsePrefix("10.99.0.0/16"), First: a("10.99.5.1"), Last: a("10.99.5.9")}}, nil, "overlaps"},
		{"reservation in no network", []Network{prov}, map[string]netip.Addr{"52:54:00:00:00:01": a("10.1.0.5")}, "in no network"},
		{"reservation on the router", []Network{prov}, map[string]netip.Addr{"52:54:00:00:00:01": a("10.99.0.1")}, "router"},
		{"reservation twice", []Network{prov}, map[string]netip.Addr{"52:54:00:00:00:01": a("10.99.0.5"), "52-54-00-00-00-02": a("10.99.0.5")}, "reserved for both"},
		{"same MAC twice", []Network{prov}, map[string]netip.Addr{"52:54:00:00:00:01": a("10.99.0.5"), "52-54-00-00-00-01": a("10.99.0.6")}, "two reservations"},
		{"bad MAC", []Network{prov}, map[string]netip.Addr{"nope": a("10.99.0.5")}, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPlan(tt.nets, tt.reserved)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewPlan = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestPlanNetwork(t *testing.T) {
	dmz := Network{Name: "dmz", Subnet: netip.MustParsePrefix("192.168.7.0/24"), First: a("192.168.7.10"), Last: a("192.168.7.20")}
	p, err := NewPlan([]Network{prov, lab, dmz}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		link netip.Addr
		want string
	}{
		{a("10.99.0.1"), "prov"},
		{a("10.99.0.255"), "prov"},
		{a("::ffff:10.99.0.7"), ""}, // the callers unmap; Plan itself sees IPv4 only
		{a("10.98.200.3"), "lab"},
		{a("192.168.7.0"), "dmz"},
		{a("10.97.255.255"), ""},
		{a("10.100.0.1"), ""},
		{a("192.168.8.1"), ""},
		{a("fd00::1"), ""},
		{netip.Addr{}, ""},
	}
	for _, tt := range tests {
		got := ""
		if n := p.network(tt.link); n != nil {
			got = n.Name
		}
		if got != tt.want {
			t.Errorf("network(%s) = %q, want %q", tt.link, got, tt.want)
		}
	}
	var none *Plan
	if none.network(a("10.99.0.1")) != nil {
		t.Error("a nil plan has a network")
	}
}

func TestNewPlanDefaultsAndCanonicalMAC(t *testing.T) {
	n := lab
	p, err := NewPlan([]Network{n}, map[string]netip.Addr{"52-54-00-AA-BB-CC": a("10.98.0.9")})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.network(a("10.98.0.1")).LeaseTime; got != DefaultLeaseTime {
		t.Errorf("lease time %s, want the default %s", got, DefaultLeaseTime)
	}
	if got := p.reservation["52:54:00:aa:bb:cc"]; got != a("10.98.0.9") {
		t.Errorf("reservation by canonical MAC = %s", got)
	}
	if got := p.network(a("10.98.0.1")).size; got != 256 {
		t.Errorf("range size %d, want 256", got)
	}
}
