package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// The lease tests: their clock is the caller's (the now given to
// ClaimLease), the store's only stamps Updated.
var leasesTests = []test{
	{"ClaimAndRenew", testLeaseClaimRenew},
	{"TakenByAnother", testLeaseTaken},
	{"FreeAfterExpiry", testLeaseFreeAfterExpiry},
	{"OneLeasePerMAC", testLeaseOnePerMAC},
	{"Release", testLeaseRelease},
	{"Decline", testLeaseDecline},
	{"AllLeasesOrder", testAllLeasesOrder},
	{"Prune", testPruneLeases},
	{"Invalid", testLeaseInvalid},
	{"NoRevisionNoEvents", testLeaseNoRevision},
	{"Context", testLeaseContext},
	{"Race", testLeaseRace},
	{"RaceOneMAC", testLeaseRaceOneMAC},
}

const (
	ip1 = "10.99.0.100"
	ip2 = "10.99.0.101"
	ip3 = "10.99.0.102"
)

func mustClaim(t *testing.T, st store.Store, l store.Lease, now time.Time) store.Lease {
	t.Helper()
	got, err := st.ClaimLease(ctx, l, now)
	if err != nil {
		t.Fatalf("ClaimLease(%+v, %v): %v", l, now, err)
	}
	return got
}

// sameLease reports whether a and b are the same lease; times compare with Equal.
func sameLease(a, b store.Lease) bool {
	return a.IP == b.IP && a.MAC == b.MAC && a.Network == b.Network && a.Declined == b.Declined &&
		a.Expires.Equal(b.Expires) && a.Updated.Equal(b.Updated)
}

// checkLease fails t unless the lease of ip is want, or absent if want is zero.
func checkLease(t *testing.T, st store.Store, ip string, want store.Lease) {
	t.Helper()
	got, err := st.Lease(ctx, ip)
	if want == (store.Lease{}) {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Lease(%s) = %+v, %v; want ErrNotFound", ip, got, err)
		}
		return
	}
	if err != nil || !sameLease(got, want) {
		t.Errorf("Lease(%s) = %+v, %v; want %+v", ip, got, err, want)
	}
}

// checkMACLease fails t unless mac (any spelling) holds the lease of ip ("": none).
func checkMACLease(t *testing.T, st store.Store, mac, ip string) {
	t.Helper()
	got, err := st.MACLease(ctx, mac)
	if ip == "" {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("MACLease(%s) = %+v, %v; want ErrNotFound", mac, got, err)
		}
		return
	}
	if canon, _ := store.CanonicalMAC(mac); err != nil || got.IP != ip || got.MAC != canon {
		t.Errorf("MACLease(%s) = %+v, %v; want the lease of %s", mac, got, err, ip)
	}
}

func allLeases(t *testing.T, st store.Store) []store.Lease {
	t.Helper()
	ls, err := st.AllLeases(ctx)
	if err != nil {
		t.Fatalf("AllLeases: %v", err)
	}
	return ls
}

func leaseIPs(ls []store.Lease) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.IP)
	}
	return out
}

func testLeaseClaimRenew(t *testing.T, s suite) {
	st, c := s.store(t)
	got := mustClaim(t, st, store.Lease{IP: "::ffff:10.99.0.100", MAC: "52-54-00-AB-CD-01", Network: "lab", Expires: t0.Add(time.Hour)}, t0)
	want := store.Lease{IP: ip1, MAC: mac1, Network: "lab", Expires: t0.Add(time.Hour), Updated: t0}
	if !sameLease(got, want) {
		t.Errorf("ClaimLease = %+v, want %+v (canonical, stamped by the store's clock)", got, want)
	}
	checkLease(t, st, ip1, want)
	checkMACLease(t, st, "525400abcd01", ip1)

	// Renewed by its holder before and after it expired.
	for _, at := range []time.Time{t0.Add(30 * time.Minute), t0.Add(3 * time.Hour)} {
		want = store.Lease{IP: ip1, MAC: mac1, Network: "lab", Expires: at.Add(time.Hour), Updated: c.Advance(time.Minute)}
		if got := mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Network: "lab", Expires: at.Add(time.Hour)}, at); !sameLease(got, want) {
			t.Errorf("renewal at %v = %+v, want %+v", at, got, want)
		}
		checkLease(t, st, ip1, want)
	}
	if ls := allLeases(t, st); len(ls) != 1 {
		t.Errorf("AllLeases = %+v, want the one lease", ls)
	}
}

func testLeaseTaken(t *testing.T, s suite) {
	st, _ := s.store(t)
	held := mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Network: "lab", Expires: t0.Add(time.Hour)}, t0)
	got, err := st.ClaimLease(ctx, store.Lease{IP: ip1, MAC: mac2, Network: "lab", Expires: t0.Add(2 * time.Hour)}, t0.Add(59*time.Minute))
	wantErr(t, "ClaimLease of a held address", err, store.ErrTaken)
	if !sameLease(got, held) {
		t.Errorf("refused ClaimLease returned %+v, want the holder's %+v", got, held)
	}
	checkLease(t, st, ip1, held)
	checkMACLease(t, st, mac2, "")
}

func testLeaseFreeAfterExpiry(t *testing.T, s suite) {
	st, c := s.store(t)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	// At Expires exactly the address is free: FreeFor.
	at := t0.Add(time.Hour)
	want := store.Lease{IP: ip1, MAC: mac2, Network: "lab", Expires: at.Add(time.Hour), Updated: c.Advance(time.Hour)}
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac2, Network: "lab", Expires: at.Add(time.Hour)}, at)
	checkLease(t, st, ip1, want)
	checkMACLease(t, st, mac2, ip1)
	checkMACLease(t, st, mac1, "") // the expired holder lost its lease with the address
	// ... and its index entry: claiming elsewhere takes nothing from mac2.
	mustClaim(t, st, store.Lease{IP: ip2, MAC: mac1, Expires: at.Add(time.Hour)}, at)
	checkLease(t, st, ip1, want)
	checkMACLease(t, st, mac1, ip2)
}

func testLeaseOnePerMAC(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	mustClaim(t, st, store.Lease{IP: ip3, MAC: mac3, Expires: t0.Add(time.Hour)}, t0)
	second := mustClaim(t, st, store.Lease{IP: ip2, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	checkLease(t, st, ip1, store.Lease{})
	checkLease(t, st, ip2, second)
	checkMACLease(t, st, mac1, ip2)
	if got := leaseIPs(allLeases(t, st)); !slices.Equal(got, []string{ip2, ip3}) {
		t.Errorf("AllLeases = %v, want %v", got, []string{ip2, ip3})
	}
	// A refused claim of another address keeps the MAC's lease.
	_, err := st.ClaimLease(ctx, store.Lease{IP: ip3, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	wantErr(t, "ClaimLease of a held address", err, store.ErrTaken)
	checkLease(t, st, ip2, second)
	checkMACLease(t, st, mac1, ip2)
	// The freed address is free for anyone.
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac2, Expires: t0.Add(time.Hour)}, t0)
}

func testLeaseRelease(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	wantErr(t, "ReleaseLease by another MAC", st.ReleaseLease(ctx, ip1, mac2), store.ErrNotFound)
	wantErr(t, "ReleaseLease of an unleased address", st.ReleaseLease(ctx, ip2, mac1), store.ErrNotFound)
	checkMACLease(t, st, mac1, ip1)
	if err := st.ReleaseLease(ctx, "::ffff:"+ip1, "52:54:00:AB:CD:01"); err != nil {
		t.Fatalf("ReleaseLease by the holder: %v", err)
	}
	checkLease(t, st, ip1, store.Lease{})
	checkMACLease(t, st, mac1, "")
	wantErr(t, "ReleaseLease again", st.ReleaseLease(ctx, ip1, mac1), store.ErrNotFound)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac2, Expires: t0.Add(time.Hour)}, t0.Add(time.Minute))
}

func testLeaseDecline(t *testing.T, s suite) {
	st, c := s.store(t)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Network: "lab", Expires: t0.Add(time.Hour)}, t0)
	until := t0.Add(10 * time.Minute)
	wantErr(t, "DeclineLease by another MAC", st.DeclineLease(ctx, ip1, mac2, until), store.ErrNotFound)
	wantErr(t, "DeclineLease of an unleased address", st.DeclineLease(ctx, ip2, mac1, until), store.ErrNotFound)
	updated := c.Advance(time.Second)
	if err := st.DeclineLease(ctx, ip1, mac1, until); err != nil {
		t.Fatalf("DeclineLease by the holder: %v", err)
	}
	declined := store.Lease{IP: ip1, Network: "lab", Expires: until, Declined: true, Updated: updated}
	checkLease(t, st, ip1, declined)
	checkMACLease(t, st, mac1, "")
	// Refused to everyone, its last holder included, until it expires.
	for _, mac := range []string{mac1, mac2} {
		got, err := st.ClaimLease(ctx, store.Lease{IP: ip1, MAC: mac, Expires: t0.Add(time.Hour)}, until.Add(-time.Second))
		wantErr(t, "ClaimLease of a declined address by "+mac, err, store.ErrTaken)
		if !sameLease(got, declined) {
			t.Errorf("refused ClaimLease returned %+v, want the declined %+v", got, declined)
		}
	}
	// No MAC holds it: neither releases nor declines it.
	wantErr(t, "ReleaseLease of a declined address", st.ReleaseLease(ctx, ip1, mac1), store.ErrNotFound)
	wantErr(t, "DeclineLease of a declined address", st.DeclineLease(ctx, ip1, mac1, until), store.ErrNotFound)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac2, Expires: until.Add(time.Hour)}, until)
	checkMACLease(t, st, mac2, ip1)
}

func testAllLeasesOrder(t *testing.T, s suite) {
	st, _ := s.store(t)
	if ls := allLeases(t, st); len(ls) != 0 {
		t.Errorf("AllLeases of an empty store = %+v", ls)
	}
	want := []string{"9.255.255.255", "10.0.0.9", "10.0.0.10", "10.0.0.100", "10.0.1.1"}
	for i, ip := range []string{"10.0.0.10", "10.0.1.1", "10.0.0.9", "9.255.255.255", "10.0.0.100"} {
		mustClaim(t, st, store.Lease{IP: ip, MAC: macN(i), Expires: t0.Add(time.Duration(i+1) * time.Minute)}, t0)
	}
	// Expired leases are listed too.
	if got := leaseIPs(allLeases(t, st)); !slices.Equal(got, want) {
		t.Errorf("AllLeases = %v, want %v", got, want)
	}
}

func testPruneLeases(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	mustClaim(t, st, store.Lease{IP: ip2, MAC: mac2, Expires: t0.Add(2 * time.Hour)}, t0)
	mustClaim(t, st, store.Lease{IP: ip3, MAC: mac3, Expires: t0.Add(time.Hour)}, t0)
	if err := st.DeclineLease(ctx, ip3, mac3, t0.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, err := st.PruneLeases(ctx, t0.Add(time.Hour)) // expired before: the declined one; ip1 expires at it
	if err != nil || n != 1 {
		t.Errorf("PruneLeases = %d, %v; want 1", n, err)
	}
	n, err = st.PruneLeases(ctx, t0.Add(90*time.Minute))
	if err != nil || n != 1 {
		t.Errorf("PruneLeases = %d, %v; want 1", n, err)
	}
	if got := leaseIPs(allLeases(t, st)); !slices.Equal(got, []string{ip2}) {
		t.Errorf("AllLeases after prune = %v, want %v", got, []string{ip2})
	}
	checkMACLease(t, st, mac1, "")
	checkMACLease(t, st, mac2, ip2)
	// The pruned MAC claims anew without touching anyone's lease.
	mustClaim(t, st, store.Lease{IP: ip3, MAC: mac1, Expires: t0.Add(3 * time.Hour)}, t0.Add(2*time.Hour))
	if got := leaseIPs(allLeases(t, st)); !slices.Equal(got, []string{ip2, ip3}) {
		t.Errorf("AllLeases = %v, want %v", got, []string{ip2, ip3})
	}
	if n, err := st.PruneLeases(ctx, t0); err != nil || n != 0 {
		t.Errorf("PruneLeases of nothing expired = %d, %v", n, err)
	}
}

func testLeaseInvalid(t *testing.T, s suite) {
	st, _ := s.store(t)
	exp := t0.Add(time.Hour)
	for name, l := range map[string]store.Lease{
		"no ip":             {MAC: mac1, Expires: exp},
		"bad ip":            {IP: "10.99.0", MAC: mac1, Expires: exp},
		"ipv6":              {IP: "fd00::1", MAC: mac1, Expires: exp},
		"no mac":            {IP: ip1, Expires: exp},
		"bad mac":           {IP: ip1, MAC: "nope", Expires: exp},
		"declined":          {IP: ip1, Declined: true, Expires: exp},
		"declined with mac": {IP: ip1, MAC: mac1, Declined: true, Expires: exp},
		"expires now":       {IP: ip1, MAC: mac1, Expires: t0},
		"expired":           {IP: ip1, MAC: mac1, Expires: t0.Add(-time.Second)},
		"no expiry":         {IP: ip1, MAC: mac1},
		"long network":      {IP: ip1, MAC: mac1, Network: strings.Repeat("n", store.MaxName+1), Expires: exp},
	} {
		_, err := st.ClaimLease(ctx, l, t0)
		wantErr(t, "ClaimLease "+name, err, store.ErrInvalid)
	}
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Expires: exp}, t0)
	for name, err := range map[string]error{
		"ReleaseLease bad ip":  st.ReleaseLease(ctx, "nope", mac1),
		"ReleaseLease bad mac": st.ReleaseLease(ctx, ip1, "nope"),
		"ReleaseLease no mac":  st.ReleaseLease(ctx, ip1, ""),
		"DeclineLease bad ip":  st.DeclineLease(ctx, "fd00::1", mac1, exp),
		"DeclineLease bad mac": st.DeclineLease(ctx, ip1, "nope", exp),
		"Lease bad ip":         func() error { _, err := st.Lease(ctx, "fd00::1"); return err }(),
		"MACLease bad mac":     func() error { _, err := st.MACLease(ctx, "nope"); return err }(),
	} {
		wantErr(t, name, err, store.ErrInvalid)
	}
	if ls := allLeases(t, st); len(ls) != 1 || ls[0].Declined {
		t.Errorf("refused calls changed the leases: %+v", ls)
	}
}

// testLeaseNoRevision: leases change at DHCP rate and are no machine or
// event: they move no Revision and append no event.
func testLeaseNoRevision(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustSeen(t, st, store.Machine{MAC: mac1})
	before := mustRevision(t, st)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	mustClaim(t, st, store.Lease{IP: ip2, MAC: mac2, Expires: t0.Add(time.Hour)}, t0)
	if err := st.ReleaseLease(ctx, ip1, mac1); err != nil {
		t.Fatal(err)
	}
	if err := st.DeclineLease(ctx, ip2, mac2, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PruneLeases(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := mustRevision(t, st); got != before {
		t.Errorf("lease writes moved Revision from %d to %d", before, got)
	}
	if es := mustEvents(t, st, store.EventQuery{}); len(es) != 0 {
		t.Errorf("lease writes appended events %+v", es)
	}
}

func testLeaseContext(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustClaim(t, st, store.Lease{IP: ip1, MAC: mac1, Expires: t0.Add(time.Hour)}, t0)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for name, do := range map[string]func() error{
		"ClaimLease": func() error {
			_, err := st.ClaimLease(cctx, store.Lease{IP: ip2, MAC: mac2, Expires: t0.Add(time.Hour)}, t0)
			return err
		},
		"ReleaseLease": func() error { return st.ReleaseLease(cctx, ip1, mac1) },
		"DeclineLease": func() error { return st.DeclineLease(cctx, ip1, mac1, t0) },
		"Lease":        func() error { _, err := st.Lease(cctx, ip1); return err },
		"MACLease":     func() error { _, err := st.MACLease(cctx, mac1); return err },
		"AllLeases":    func() error { _, err := st.AllLeases(cctx); return err },
		"PruneLeases":  func() error { _, err := st.PruneLeases(cctx, t0.Add(2*time.Hour)); return err },
	} {
		wantErr(t, name, do(), context.Canceled)
	}
	if got := leaseIPs(allLeases(t, st)); !slices.Equal(got, []string{ip1}) {
		t.Errorf("calls with a canceled context changed the leases: %v", got)
	}
}

// testLeaseRace: 32 machines race twice through the same 8 addresses, each
// claiming every one in turn (a success moves its lease). No address may go
// to two machines and no machine may hold two; and since a lease can only
// be taken from its holder by the holder moving, each machine ends holding
// the address of its last successful claim.
func testLeaseRace(t *testing.T, s suite) {
	st, _ := s.store(t)
	const machines, addrs = 32, 8
	ips := make([]string, addrs)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.99.1.%d", i+1)
	}
	last := make([]string, machines) // each machine's last successful claim
	var wg sync.WaitGroup
	for m := range machines {
		wg.Go(func() {
			mac := macN(m)
			for k := range 2 * addrs {
				ip := ips[(m+k)%addrs]
				got, err := st.ClaimLease(ctx, store.Lease{IP: ip, MAC: mac, Network: "lab", Expires: t0.Add(time.Hour)}, t0)
				switch {
				case err == nil:
					last[m] = ip
				case errors.Is(err, store.ErrTaken):
					if got.IP != ip || got.MAC == mac || got.MAC == "" {
						t.Errorf("%s refused %s held by %+v", mac, ip, got)
					}
				default:
					t.Errorf("ClaimLease(%s, %s): %v", ip, mac, err)
				}
			}
		})
	}
	wg.Wait()
	ls := allLeases(t, st)
	holders := map[string]string{}
	for _, l := range ls {
		if prev, ok := holders[l.MAC]; ok {
			t.Errorf("%s holds both %s and %s", l.MAC, prev, l.IP)
		}
		holders[l.MAC] = l.IP
	}
	winners := 0
	for m := range machines {
		mac := macN(m)
		if last[m] != "" {
			winners++
		}
		if holders[mac] != last[m] {
			t.Errorf("%s holds %q, want %q, its last successful claim", mac, holders[mac], last[m])
		}
		checkMACLease(t, st, mac, last[m])
	}
	if len(ls) != winners || winners < 1 || winners > addrs {
		t.Errorf("%d leases, %d machines claimed one; want as many, between 1 and %d", len(ls), winners, addrs)
	}
}

// testLeaseRaceOneMAC: one machine claims 8 addresses at once, as when two
// instances answer its requests: it ends with exactly one lease, the one
// the index names.
func testLeaseRaceOneMAC(t *testing.T, s suite) {
	st, _ := s.store(t)
	const addrs = 8
	for round := range 4 {
		var wg sync.WaitGroup
		for i := range addrs {
			wg.Go(func() {
				ip := fmt.Sprintf("10.99.2.%d", i+1)
				if _, err := st.ClaimLease(ctx, store.Lease{IP: ip, MAC: mac1, Expires: t0.Add(time.Hour)}, t0); err != nil {
					t.Errorf("round %d: ClaimLease(%s): %v", round, ip, err)
				}
			})
		}
		wg.Wait()
		ls := allLeases(t, st)
		if len(ls) != 1 {
			t.Fatalf("round %d: %s holds %v, want one address", round, mac1, leaseIPs(ls))
		}
		checkMACLease(t, st, mac1, ls[0].IP)
	}
}
