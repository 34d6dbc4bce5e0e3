package leases

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// link is the server's own address on prov, as a packet arriving there names it.
var link = a("10.99.0.1")

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func mustPlan(t testing.TB, reserved map[string]netip.Addr, nets ...Network) *Plan {
	t.Helper()
	p, err := NewPlan(nets, reserved)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newAllocator returns an Allocator on st with plan p and clock c.
func newAllocator(st store.Leases, p *Plan, c *clock) *Allocator {
	al := New(st, Options{Clock: c.Now})
	al.SetPlan(p)
	return al
}

func openBolt(t testing.TB, path string) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func offer(t *testing.T, al *Allocator, mac, requested string) netip.Addr {
	t.Helper()
	var req netip.Addr
	if requested != "" {
		req = a(requested)
	}
	as, err := al.Offer(context.Background(), link, mac, req)
	if err != nil {
		t.Fatalf("offer to %s: %v", mac, err)
	}
	return as.IP
}

func ack(t *testing.T, al *Allocator, mac, ip string) {
	t.Helper()
	if _, err := al.Ack(context.Background(), link, mac, a(ip)); err != nil {
		t.Fatalf("ack %s for %s: %v", ip, mac, err)
	}
}

func wantIP(t *testing.T, what string, got netip.Addr, want string) {
	t.Helper()
	if got != a(want) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

func TestOfferAck(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(store.Options{})
	c := newClock()
	al := newAllocator(st, mustPlan(t, nil, prov), c)

	as, err := al.Offer(ctx, link, "52-54-00-00-00-0A", netip.Addr{}) // any spelling
	if err != nil {
		t.Fatal(err)
	}
	want := dhcp.Assignment{IP: a("10.99.0.100"), Network: "prov", Subnet: prov.Subnet, Router: prov.Router, DNS: prov.DNS, LeaseTime: time.Hour}
	if as.IP != want.IP || as.Network != want.Network || as.Subnet != want.Subnet || as.Router != want.Router || !slices.Equal(as.DNS, want.DNS) || as.LeaseTime != want.LeaseTime {
		t.Fatalf("offer = %+v, want %+v", as, want)
	}
	if all, _ := st.AllLeases(ctx); len(all) != 0 {
		t.Fatalf("an offer wrote leases: %v", all)
	}
	wantIP(t, "offer to another MAC while the first is held", offer(t, al, macB, ""), "10.99.0.101")
	wantIP(t, "repeated DISCOVER", offer(t, al, macA, ""), "10.99.0.100")

	if _, err := al.Ack(ctx, a("::ffff:10.99.0.1"), macA, a("::ffff:10.99.0.100")); err != nil {
		t.Fatal(err)
	}
	l, err := st.Lease(ctx, "10.99.0.100")
	if err != nil {
		t.Fatal(err)
	}
	if l.MAC != macA || l.Network != "prov" || !l.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("stored lease %+v", l)
	}
	c.Advance(40 * time.Minute) // a renewal extends the lease
	ack(t, al, macA, "10.99.0.100")
	if l, _ = st.Lease(ctx, "10.99.0.100"); !l.Expires.Equal(t0.Add(100 * time.Minute)) {
		t.Fatalf("renewed lease expires %s", l.Expires)
	}
}

func TestNoNetwork(t *testing.T) {
	ctx := context.Background()
	al := New(memstore.New(store.Options{}), Options{})
	if _, err := al.Offer(ctx, link, macA, netip.Addr{}); !errors.Is(err, dhcp.ErrNoNetwork) {
		t.Fatalf("offer with no plan: %v, want ErrNoNetwork", err)
	}
	al.SetPlan(mustPlan(t, nil, prov))
	if _, err := al.Offer(ctx, a("10.98.0.1"), macA, netip.Addr{}); !errors.Is(err, dhcp.ErrNoNetwork) {
		t.Fatalf("offer on a link in no network: %v, want ErrNoNetwork", err)
	}
	if _, err := al.Ack(ctx, a("10.98.0.1"), macA, a("10.98.0.100")); !errors.Is(err, dhcp.ErrNoNetwork) {
		t.Fatalf("ack on a link in no network: %v, want ErrNoNetwork", err)
	}
	if _, err := al.Offer(ctx, link, "not a mac", netip.Addr{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("offer to a bad MAC: %v, want ErrInvalid", err)
	}
}

func TestReservations(t *testing.T) {
	ctx := context.Background()
	al := newAllocator(memstore.New(store.Options{}), mustPlan(t, reserved, prov), newClock())
	wantIP(t, "offer to the MAC reserved inside the range", offer(t, al, macR, "10.99.0.101"), "10.99.0.105")
	wantIP(t, "offer to the MAC reserved outside the range", offer(t, al, macS, ""), "10.99.0.50")
	ack(t, al, macS, "10.99.0.50")
	ack(t, al, macR, "10.99.0.105")

	refused := []struct{ mac, ip string }{
		{macA, "10.99.0.50"},  // reserved for macS, outside the range
		{macA, "10.99.0.105"}, // reserved for macR
		{macA, "10.99.0.20"},  // outside the range
		{macA, "10.99.1.20"},  // outside the network
		{macS, "10.99.0.51"},  // outside the range, not its reservation
	}
	for _, r := range refused {
		if _, err := al.Ack(ctx, link, r.mac, a(r.ip)); !errors.Is(err, dhcp.ErrRefused) {
			t.Errorf("ack %s for %s: %v, want ErrRefused", r.ip, r.mac, err)
		}
	}
	// A reserved machine asking for another address (its old dynamic one,
	// say) is told no while its reservation is free, so it rediscovers.
	al2 := newAllocator(memstore.New(store.Options{}), mustPlan(t, reserved, prov), newClock())
	if _, err := al2.Ack(ctx, link, macR, a("10.99.0.101")); !errors.Is(err, dhcp.ErrRefused) {
		t.Fatalf("ack of another address for a reserved MAC: %v, want ErrRefused", err)
	}
}

func TestReservationHeldByAnother(t *testing.T) {
	// The reservation was added while another machine held the address:
	// the reserved machine gets a dynamic address until the lease ends,
	// and the holder cannot renew it.
	ctx := context.Background()
	st := memstore.New(store.Options{})
	c := newClock()
	ack(t, newAllocator(st, mustPlan(t, nil, prov), c), macA, "10.99.0.105")
	al := newAllocator(st, mustPlan(t, reserved, prov), c)
	wantIP(t, "offer to the reserved MAC", offer(t, al, macR, ""), "10.99.0.100")
	ack(t, al, macR, "10.99.0.100")
	if _, err := al.Ack(ctx, link, macA, a("10.99.0.105")); !errors.Is(err, dhcp.ErrRefused) {
		t.Fatalf("renewal of an address now reserved for another: %v, want ErrRefused", err)
	}
	c.Advance(time.Hour)
	wantIP(t, "offer to the reserved MAC once the lease ended", offer(t, al, macR, "10.99.0.100"), "10.99.0.105")
	ack(t, al, macR, "10.99.0.105")
}

func TestRequested(t *testing.T) {
	ctx := context.Background()
	al := newAllocator(memstore.New(store.Options{}), mustPlan(t, nil, prov), newClock())
	wantIP(t, "offer of a free requested address", offer(t, al, macA, "10.99.0.108"), "10.99.0.108")
	wantIP(t, "offer of an address offered to another", offer(t, al, macB, "10.99.0.108"), "10.99.0.100")
	ack(t, al, macA, "10.99.0.108")
	wantIP(t, "offer of an address leased to another", offer(t, al, macB, "10.99.0.108"), "10.99.0.100")
	if _, err := al.Ack(ctx, link, macB, a("10.99.0.108")); !errors.Is(err, dhcp.ErrRefused) || !errors.Is(err, store.ErrTaken) {
		t.Fatalf("ack of an address another holds: %v, want ErrRefused and ErrTaken", err)
	}
	wantIP(t, "offer of an address outside the range", offer(t, al, macB, "10.99.0.20"), "10.99.0.100")
}

func TestStickyAddress(t *testing.T) {
	st := memstore.New(store.Options{})
	c := newClock()
	al := newAllocator(st, mustPlan(t, nil, prov), c)
	ack(t, al, macA, offer(t, al, macA, "").String())
	c.Advance(90 * time.Minute) // the lease expired while the machine was off
	wantIP(t, "offer to a new MAC", offer(t, al, macB, ""), "10.99.0.101")
	wantIP(t, "offer to the returning MAC", offer(t, al, macA, ""), "10.99.0.100")
	// Another instance (or a restart) knows it from the store alone.
	wantIP(t, "offer from a fresh Allocator", offer(t, newAllocator(st, mustPlan(t, nil, prov), c), macA, ""), "10.99.0.100")
}

func TestExhausted(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	al := newAllocator(memstore.New(store.Options{}), mustPlan(t, nil, prov), c)
	for i := range 10 {
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
		ip := offer(t, al, mac, "")
		if i < 5 {
			ack(t, al, mac, ip.String())
		}
	}
	for range 2 { // the second answer comes from the remembered full scan
		if _, err := al.Offer(ctx, link, macA, netip.Addr{}); !errors.Is(err, dhcp.ErrExhausted) {
			t.Fatalf("offer from a full range: %v, want ErrExhausted", err)
		}
	}
	if err := al.Release(ctx, "52:54:00:00:01:02", a("10.99.0.102")); err != nil {
		t.Fatal(err)
	}
	wantIP(t, "offer after a release", offer(t, al, macA, ""), "10.99.0.102")
	if _, err := al.Offer(ctx, link, macB, netip.Addr{}); !errors.Is(err, dhcp.ErrExhausted) {
		t.Fatalf("offer from a full range: %v, want ErrExhausted", err)
	}
	c.Advance(DefaultOfferHold) // the five unanswered offers lapse
	wantIP(t, "offer once the holds ended", offer(t, al, macB, ""), "10.99.0.105")
}

// TestNetwork checks what a DHCPINFORM gets: the network's options, even
// from a full range, with no address picked or held.
func TestNetwork(t *testing.T) {
	ctx := context.Background()
	al := newAllocator(memstore.New(store.Options{}), mustPlan(t, nil, prov), newClock())
	for i := range 10 { // every address of the range offered
		offer(t, al, fmt.Sprintf("52:54:00:00:01:%02x", i), "")
	}
	as, err := al.Network(ctx, a("10.99.0.7"))
	if err != nil {
		t.Fatalf("network of a full range: %v", err)
	}
	if as.IP.IsValid() || as.Network != "prov" || as.Subnet != prov.Subnet || as.Router != prov.Router || !slices.Equal(as.DNS, prov.DNS) {
		t.Fatalf("network = %+v, want prov's options and no address", as)
	}
	if _, err := al.Network(ctx, a("10.1.0.7")); !errors.Is(err, dhcp.ErrNoNetwork) {
		t.Fatalf("network of a link in no Network: %v, want ErrNoNetwork", err)
	}
}

func TestConcurrentOffers(t *testing.T) {
	al := newAllocator(memstore.New(store.Options{}), mustPlan(t, nil, lab), newClock())
	// Every client asks for the same address; the range has exactly the
	// 256 addresses they need.
	const workers, each = 32, 8
	got := make(chan netip.Addr, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				as, err := al.Offer(context.Background(), a("10.98.0.1"), fmt.Sprintf("52:54:00:01:%02x:%02x", w, i), a("10.98.1.7"))
				if err != nil {
					t.Error(err)
					return
				}
				got <- as.IP
			}
		})
	}
	wg.Wait()
	close(got)
	seen := map[netip.Addr]bool{}
	for ip := range got {
		if seen[ip] {
			t.Fatalf("%s offered twice", ip)
		}
		seen[ip] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d addresses offered, want %d", len(seen), workers*each)
	}
}

func TestReleaseThenAnother(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(store.Options{})
	al := newAllocator(st, mustPlan(t, nil, prov), newClock())
	ack(t, al, macA, offer(t, al, macA, "10.99.0.104").String())
	if err := al.Release(ctx, macB, a("10.99.0.104")); !errors.Is(err, store.ErrNotFound) || !errors.Is(err, dhcp.ErrRefused) {
		t.Fatalf("release by another MAC: %v, want ErrNotFound and ErrRefused", err)
	}
	wantIP(t, "offer after another's release", offer(t, al, macB, "10.99.0.104"), "10.99.0.100")
	if err := al.Release(ctx, macA, a("10.99.0.104")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Lease(ctx, "10.99.0.104"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lease after release: %v, want ErrNotFound", err)
	}
	wantIP(t, "offer after release", offer(t, al, macB, "10.99.0.104"), "10.99.0.104")
	ack(t, al, macB, "10.99.0.104")
	if err := al.Release(ctx, macA, a("10.99.0.104")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second release: %v, want ErrNotFound", err)
	}
}

func TestDeclineQuarantine(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(store.Options{})
	c := newClock()
	al := newAllocator(st, mustPlan(t, nil, prov), c)
	ack(t, al, macA, offer(t, al, macA, "").String())
	if err := al.Decline(ctx, macB, a("10.99.0.100")); !errors.Is(err, store.ErrNotFound) || !errors.Is(err, dhcp.ErrRefused) {
		t.Fatalf("decline by another MAC: %v, want ErrNotFound and ErrRefused", err)
	}
	if err := al.Decline(ctx, macA, a("10.99.0.100")); err != nil {
		t.Fatal(err)
	}
	if l, err := st.Lease(ctx, "10.99.0.100"); err != nil || !l.Declined || !l.Expires.Equal(t0.Add(DefaultDeclineHold)) {
		t.Fatalf("declined lease %+v %v", l, err)
	}
	wantIP(t, "offer to the decliner", offer(t, al, macA, ""), "10.99.0.101")
	wantIP(t, "offer of the declined address", offer(t, al, macB, "10.99.0.100"), "10.99.0.102")
	if _, err := al.Ack(ctx, link, macB, a("10.99.0.100")); !errors.Is(err, dhcp.ErrRefused) {
		t.Fatalf("ack of a declined address: %v, want ErrRefused", err)
	}
	c.Advance(DefaultDeclineHold)
	ack(t, al, macB, "10.99.0.100")
}

// TestTwoInstances runs two Allocators on one bbolt store, as two
// instances on one etcd: racing ACKs for one address, exactly one wins.
func TestTwoInstances(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	c := newClock()
	one := newAllocator(st, mustPlan(t, nil, lab), c)
	two := newAllocator(st, mustPlan(t, nil, lab), c)
	linkLab := a("10.98.0.1")
	for i := range 256 {
		ip := a(fmt.Sprintf("10.98.1.%d", i))
		macs := [2]string{fmt.Sprintf("52:54:00:02:00:%02x", i), fmt.Sprintf("52:54:00:03:00:%02x", i)}
		var errs [2]error
		var wg sync.WaitGroup
		for j, al := range []*Allocator{one, two} {
			wg.Go(func() { _, errs[j] = al.Ack(ctx, linkLab, macs[j], ip) })
		}
		wg.Wait()
		won := 0
		for j, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, dhcp.ErrRefused):
				t.Fatalf("%s: instance %d: %v", ip, j, err)
			}
		}
		if won != 1 {
			t.Fatalf("%s: %d instances won, want exactly one (%v)", ip, won, errs)
		}
	}
	// Each now knows every address is taken: those it lost from ErrTaken,
	// the others' after a refresh.
	for _, al := range []*Allocator{one, two} {
		if err := al.reload(ctx); err != nil {
			t.Fatal(err)
		}
		if as, err := al.Offer(ctx, linkLab, macA, netip.Addr{}); !errors.Is(err, dhcp.ErrExhausted) {
			t.Fatalf("offer from a range the other instance filled: %v %v, want ErrExhausted", as.IP, err)
		}
	}
}

// TestRunRefreshes checks that Run shows an instance the leases another
// instance wrote, and prunes leases expired for over a day.
func TestRunRefreshes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memstore.New(store.Options{})
	c := newClock()
	one := newAllocator(st, mustPlan(t, nil, prov), c)
	two := New(st, Options{Clock: c.Now, Refresh: 5 * time.Millisecond})
	two.SetPlan(mustPlan(t, nil, prov))
	wantIP(t, "offer from the second instance", offer(t, two, macB, "10.99.0.100"), "10.99.0.100")
	ack(t, one, macA, "10.99.0.100")
	c.Advance(DefaultOfferHold)
	done := make(chan error)
	go func() { done <- two.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for offer(t, two, macB, "10.99.0.100") == a("10.99.0.100") {
		if time.Now().After(deadline) {
			t.Fatal("the second instance never saw the first one's lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}

	c.Advance(25 * time.Hour)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- one.Run(ctx) }()
	for {
		all, err := st.AllLeases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(all) == 0 {
			break
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("Run never pruned %v", all)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// snapshotStore returns, from AllLeases, the leases as they were before
// it lets the call return: the reload race made deterministic.
type snapshotStore struct {
	*memstore.Store
	read, resume chan struct{}
}

func (s snapshotStore) AllLeases(ctx context.Context) ([]store.Lease, error) {
	all, err := s.Store.AllLeases(ctx)
	s.read <- struct{}{}
	<-s.resume
	return all, err
}

func TestReloadKeepsLocalChanges(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(store.Options{})
	c := newClock()
	seed := newAllocator(mem, mustPlan(t, nil, prov), c)
	ack(t, seed, macB, "10.99.0.101")

	st := snapshotStore{Store: mem, read: make(chan struct{}), resume: make(chan struct{})}
	al := newAllocator(st, mustPlan(t, nil, prov), c)
	go func() { <-st.read; st.resume <- struct{}{} }() // the first load
	ack(t, al, macA, "10.99.0.100")

	done := make(chan error)
	go func() { done <- al.reload(ctx) }()
	<-st.read // the snapshot holds .100 for macA and .101 for macB
	ack(t, al, macA, "10.99.0.102")
	if err := al.Release(ctx, macB, a("10.99.0.101")); err != nil {
		t.Fatal(err)
	}
	st.resume <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantIP(t, "offer of the address macA moved from", offer(t, al, "52:54:00:00:00:0c", "10.99.0.100"), "10.99.0.100")
	wantIP(t, "offer of the address released meanwhile", offer(t, al, "52:54:00:00:00:0d", "10.99.0.101"), "10.99.0.101")
	wantIP(t, "offer of macA's new address", offer(t, al, "52:54:00:00:00:0e", "10.99.0.102"), "10.99.0.103")
}

// TestRestartKeepsLeases closes a bbolt store and opens it again with a new
// Allocator, as a restarted daemon does.
func TestRestartKeepsLeases(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	c := newClock()
	db, err := boltstore.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al := newAllocator(db, mustPlan(t, nil, prov), c)
	held := map[string]netip.Addr{}
	for i := range 5 {
		mac := fmt.Sprintf("52:54:00:04:00:%02x", i)
		held[mac] = offer(t, al, mac, "")
		ack(t, al, mac, held[mac].String())
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	al = newAllocator(openBolt(t, path), mustPlan(t, nil, prov), c)
	for mac, ip := range held {
		wantIP(t, "offer after a restart to "+mac, offer(t, al, mac, ""), ip.String())
		if _, err := al.Ack(ctx, link, macA, ip); !errors.Is(err, dhcp.ErrRefused) {
			t.Fatalf("ack after a restart of %s held by %s: %v, want ErrRefused", ip, mac, err)
		}
	}
	wantIP(t, "offer after a restart to a new MAC", offer(t, al, macA, ""), "10.99.0.105")
}

// brokenStore fails every lease call, as a store without quorum does.
type brokenStore struct{ store.Leases }

func (brokenStore) ClaimLease(context.Context, store.Lease, time.Time) (store.Lease, error) {
	return store.Lease{}, store.ErrUnavailable
}

func (brokenStore) AllLeases(context.Context) ([]store.Lease, error) {
	return nil, store.ErrUnavailable
}

func TestStoreOutage(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(store.Options{})
	al := newAllocator(brokenStore{mem}, mustPlan(t, nil, prov), newClock())
	if _, err := al.Offer(ctx, link, macA, netip.Addr{}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("offer with no index: %v, want ErrUnavailable", err)
	}
	al = newAllocator(brokenStore{mem}, mustPlan(t, nil, prov), newClock())
	al.loaded.Store(true) // loaded before the store failed
	offer(t, al, macA, "")
	_, err := al.Ack(ctx, link, macA, a("10.99.0.100"))
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, dhcp.ErrRefused) {
		t.Fatalf("ack during an outage: %v, want ErrUnavailable and no refusal (no NAK)", err)
	}
}

// storm runs DORAs of 300 new clients against two instances, one on each
// store (the same store, or two clients of one), on lab's 256 addresses:
// every ACKed client must hold its address in the store, and no address
// may be ACKed to two clients. A refused client starts over, as a NAKed
// one does; clients left without an address see ErrExhausted.
func storm(t *testing.T, one, two store.Leases) {
	ctx := context.Background()
	c := newClock()
	instances := []*Allocator{newAllocator(one, mustPlan(t, nil, lab), c), newAllocator(two, mustPlan(t, nil, lab), c)}
	linkLab := a("10.98.0.1")
	var (
		mu     sync.Mutex
		acked  = map[string]netip.Addr{}
		owners = map[netip.Addr]string{}
		next   = make(chan int)
		wg     sync.WaitGroup
	)
	for w := range 32 {
		al := instances[w%2]
		wg.Go(func() {
			for i := range next {
				mac := fmt.Sprintf("52:54:00:05:%02x:%02x", i>>8, i&0xff)
				for range 10 {
					as, err := al.Offer(ctx, linkLab, mac, netip.Addr{})
					if errors.Is(err, dhcp.ErrExhausted) {
						break
					}
					if err != nil {
						t.Error(err)
						return
					}
					_, err = al.Ack(ctx, linkLab, mac, as.IP)
					if errors.Is(err, dhcp.ErrRefused) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if other, ok := owners[as.IP]; ok {
						t.Errorf("%s ACKed to %s and %s", as.IP, other, mac)
					}
					owners[as.IP], acked[mac] = mac, as.IP
					mu.Unlock()
					break
				}
			}
		})
	}
	for i := range 300 {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(acked) != 256 {
		t.Errorf("%d clients got an address, want all 256 of the range", len(acked))
	}
	for mac, ip := range acked {
		l, err := one.MACLease(ctx, mac)
		if err != nil || l.IP != ip.String() {
			t.Errorf("%s ACKed %s; the store holds %+v %v", mac, ip, l, err)
		}
	}
}

func TestStormTwoInstances(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	storm(t, st, st)
}
