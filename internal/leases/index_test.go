package leases

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

const (
	macA = "52:54:00:00:00:0a"
	macB = "52:54:00:00:00:0b"
	macR = "52:54:00:00:00:01" // reserved 10.99.0.105, inside the range
	macS = "52:54:00:00:00:02" // reserved 10.99.0.50, outside it
)

var reserved = map[string]netip.Addr{macR: a("10.99.0.105"), macS: a("10.99.0.50")}

func lease(ip, mac string, expires time.Duration) store.Lease {
	return store.Lease{IP: ip, MAC: mac, Network: "prov", Expires: t0.Add(expires)}
}

func declined(ip string, expires time.Duration) store.Lease {
	return store.Lease{IP: ip, Network: "prov", Expires: t0.Add(expires), Declined: true}
}

// taken leases .100 to .10(n-1) to other machines for an hour.
func taken(n int) []store.Lease {
	var ls []store.Lease
	for i := range n {
		ls = append(ls, lease(fmt.Sprintf("10.99.0.%d", 100+i), fmt.Sprintf("52:54:00:00:01:%02x", i), time.Hour))
	}
	return ls
}

// pick is what Allocator.pickLocked decides, less its memory of full
// ranges: the address preferred for mac, else the first free one scanned
// from cursor, with the cursor for the next pick; false if none is free.
func (x *index) pick(p *Plan, n *network, mac string, requested netip.Addr, now time.Time, cursor uint32) (netip.Addr, uint32, bool) {
	if ip, ok := x.preferred(p, n, mac, requested, now); ok {
		return ip, cursor, true
	}
	return x.scan(p, n, mac, now, cursor)
}

func TestPick(t *testing.T) {
	p, err := NewPlan([]Network{prov}, reserved)
	if err != nil {
		t.Fatal(err)
	}
	n := p.network(a("10.99.0.1"))
	tests := []struct {
		name      string
		mac       string
		requested string
		cursor    uint32
		leases    []store.Lease
		holds     map[string]string // address -> MAC holding an offer of it until t0+30s
		want      string            // "": nothing free
	}{
		{name: "first of an empty range", mac: macA, want: "10.99.0.100"},
		{name: "from the cursor", mac: macA, cursor: 3, want: "10.99.0.103"},
		{name: "cursor past the end wraps", mac: macA, cursor: 12, want: "10.99.0.102"},
		{name: "reservation inside the range", mac: macR, want: "10.99.0.105"},
		{name: "reservation outside the range", mac: macS, want: "10.99.0.50"},
		{name: "reservation before requested and sticky", mac: macR, requested: "10.99.0.101", leases: []store.Lease{lease("10.99.0.102", macR, -time.Minute)}, want: "10.99.0.105"},
		{name: "reserved addresses skipped for others", mac: macA, leases: taken(5), want: "10.99.0.106"},
		{name: "reservation held by another falls back to the range", mac: macR, leases: []store.Lease{lease("10.99.0.105", macA, time.Hour)}, want: "10.99.0.100"},
		{name: "sticky: its live lease", mac: macA, leases: []store.Lease{lease("10.99.0.107", macA, time.Hour)}, want: "10.99.0.107"},
		{name: "sticky: its expired lease", mac: macA, leases: []store.Lease{lease("10.99.0.107", macA, -time.Hour)}, want: "10.99.0.107"},
		{name: "sticky before requested", mac: macA, requested: "10.99.0.103", leases: []store.Lease{lease("10.99.0.107", macA, time.Hour)}, want: "10.99.0.107"},
		{name: "sticky no more: now reserved for another", mac: macA, leases: []store.Lease{lease("10.99.0.105", macA, time.Hour)}, want: "10.99.0.100"},
		{name: "sticky no more: out of the range", mac: macA, leases: []store.Lease{lease("10.99.0.20", macA, time.Hour)}, want: "10.99.0.100"},
		{name: "sticky no more: offered to another", mac: macA, leases: []store.Lease{lease("10.99.0.107", macA, -time.Hour)}, holds: map[string]string{"10.99.0.107": macB}, want: "10.99.0.100"},
		{name: "requested honoured", mac: macA, requested: "10.99.0.108", want: "10.99.0.108"},
		{name: "requested outside the range", mac: macA, requested: "10.99.0.20", want: "10.99.0.100"},
		{name: "requested in another subnet", mac: macA, requested: "10.1.0.108", want: "10.99.0.100"},
		{name: "requested reserved for another", mac: macA, requested: "10.99.0.105", want: "10.99.0.100"},
		{name: "requested held by another", mac: macA, requested: "10.99.0.108", leases: []store.Lease{lease("10.99.0.108", macB, time.Minute)}, want: "10.99.0.100"},
		{name: "requested expired from another", mac: macA, requested: "10.99.0.108", leases: []store.Lease{lease("10.99.0.108", macB, -time.Minute)}, want: "10.99.0.108"},
		{name: "requested declined", mac: macA, requested: "10.99.0.108", leases: []store.Lease{declined("10.99.0.108", time.Minute)}, want: "10.99.0.100"},
		{name: "requested offered to another", mac: macA, requested: "10.99.0.108", holds: map[string]string{"10.99.0.108": macB}, want: "10.99.0.100"},
		{name: "its own earlier offer", mac: macA, holds: map[string]string{"10.99.0.104": macA}, want: "10.99.0.104"},
		{name: "requested before its own earlier offer", mac: macA, requested: "10.99.0.108", holds: map[string]string{"10.99.0.104": macA}, want: "10.99.0.108"},
		{name: "others' offers skipped", mac: macA, holds: map[string]string{"10.99.0.100": macB, "10.99.0.101": macR}, want: "10.99.0.102"},
		{name: "declined skipped", mac: macA, leases: []store.Lease{declined("10.99.0.100", time.Minute)}, want: "10.99.0.101"},
		{name: "declined after its hold ends, behind never leased", mac: macA, leases: []store.Lease{declined("10.99.0.100", -time.Minute)}, want: "10.99.0.101"},
		{name: "declined after its hold ends, as a last resort", mac: macA, leases: append(taken(10)[1:], declined("10.99.0.100", -time.Minute)), want: "10.99.0.100"},
		{name: "never leased before recently expired", mac: macA, leases: []store.Lease{lease("10.99.0.100", macB, -5*time.Minute)}, want: "10.99.0.101"},
		{name: "long expired as good as never leased", mac: macA, leases: []store.Lease{lease("10.99.0.100", macB, -2*time.Hour)}, want: "10.99.0.100"},
		{name: "recently expired when nothing else", mac: macA, leases: append(taken(10)[1:], lease("10.99.0.100", macB, -time.Minute)), want: "10.99.0.100"},
		{name: "exhausted", mac: macA, leases: taken(10)},
		{name: "exhausted but for a reservation", mac: macA, leases: taken(5), holds: map[string]string{"10.99.0.106": macB, "10.99.0.107": macB, "10.99.0.108": macR, "10.99.0.109": macS}},
		{name: "exhausted but its reservation outside the range", mac: macS, leases: taken(10), want: "10.99.0.50"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := indexOf(tt.leases)
			for ip, mac := range tt.holds {
				x.holds[a(ip)] = hold{mac: mac, until: t0.Add(30 * time.Second)}
				x.holdOf[mac] = a(ip)
			}
			var requested netip.Addr
			if tt.requested != "" {
				requested = a(tt.requested)
			}
			got, _, ok := x.pick(p, n, tt.mac, requested, t0, tt.cursor)
			switch {
			case tt.want == "" && ok:
				t.Fatalf("pick = %s, want nothing free", got)
			case tt.want != "" && (!ok || got != a(tt.want)):
				t.Fatalf("pick = %s %v, want %s", got, ok, tt.want)
			}
		})
	}
}

// TestScanCursor checks that consecutive picks walk the range instead of
// rescanning it: the cursor moves past each pick.
func TestScanCursor(t *testing.T) {
	p, err := NewPlan([]Network{prov}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := p.network(a("10.99.0.1"))
	x := newIndex()
	var cursor uint32
	for i := range 10 {
		mac := fmt.Sprintf("52:54:00:00:02:%02x", i)
		ip, next, ok := x.pick(p, n, mac, netip.Addr{}, t0, cursor)
		if want := a(fmt.Sprintf("10.99.0.%d", 100+i)); !ok || ip != want {
			t.Fatalf("pick %d = %s %v, want %s", i, ip, ok, want)
		}
		x.hold(ip, mac, t0.Add(time.Minute))
		cursor = next
	}
	if ip, _, ok := x.pick(p, n, "52:54:00:00:02:ff", netip.Addr{}, t0, cursor); ok {
		t.Fatalf("pick from a held range = %s", ip)
	}
	if ip, _, ok := x.pick(p, n, "52:54:00:00:02:ff", netip.Addr{}, t0.Add(time.Minute), cursor); !ok || ip != a("10.99.0.100") {
		t.Fatalf("pick after the holds ended = %s %v, want 10.99.0.100", ip, ok)
	}
}
