package leases

import (
	"net/netip"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// index is the Allocator's picture of the leases: the store's leases as
// last read or written by this instance, and this instance's offer holds,
// which are never written anywhere. A pick reads only the index; the store
// decides every grant.
type index struct {
	leases map[netip.Addr]store.Lease // by address, expired and declined ones included
	macs   map[string]netip.Addr      // canonical MAC -> the address of its lease
	holds  map[netip.Addr]hold        // offered addresses
	holdOf map[string]netip.Addr      // canonical MAC -> the address offered to it
	// dirty, while a reload reads the store, collects the addresses this
	// instance changed meanwhile: the snapshot may predate those changes.
	dirty map[netip.Addr]struct{}
	// version counts the changes that may free an address, so a pick that
	// found the range full is trusted until the next one.
	version uint64
}

// hold keeps an offered address for mac until its REQUEST may arrive, so
// two DISCOVERs never get the same address from one instance.
type hold struct {
	mac   string
	until time.Time
}

func newIndex() *index {
	return &index{
		leases: map[netip.Addr]store.Lease{},
		macs:   map[string]netip.Addr{},
		holds:  map[netip.Addr]hold{},
		holdOf: map[string]netip.Addr{},
	}
}

// indexOf indexes the leases of a store snapshot, skipping records with a
// malformed address (which no pick could match anyway).
func indexOf(all []store.Lease) *index {
	x := newIndex()
	for _, l := range all {
		if ip, err := netip.ParseAddr(l.IP); err == nil {
			x.set(ip.Unmap(), l)
		}
	}
	return x
}

// set records l as the lease of ip. Like the store, it drops any other
// lease of l's MAC: a MAC holds at most one.
func (x *index) set(ip netip.Addr, l store.Lease) {
	x.drop(ip)
	if l.MAC != "" {
		if old, ok := x.macs[l.MAC]; ok {
			x.drop(old)
		}
		x.macs[l.MAC] = ip
	}
	x.leases[ip] = l
	x.touch(ip)
}

// drop forgets the lease of ip.
func (x *index) drop(ip netip.Addr) {
	l, ok := x.leases[ip]
	if !ok {
		return
	}
	delete(x.leases, ip)
	if x.macs[l.MAC] == ip {
		delete(x.macs, l.MAC)
	}
	x.touch(ip)
}

func (x *index) touch(ip netip.Addr) {
	x.version++
	if x.dirty != nil {
		x.dirty[ip] = struct{}{}
	}
}

// adopt takes this instance's own view of ip from local into x, a snapshot
// read while local changed it.
func (x *index) adopt(ip netip.Addr, local *index) {
	x.drop(ip)
	if l, ok := local.leases[ip]; ok {
		x.set(ip, l)
	}
}

// hold keeps ip offered to mac until until, ending mac's earlier hold.
func (x *index) hold(ip netip.Addr, mac string, until time.Time) {
	x.unhold(mac)
	if h, ok := x.holds[ip]; ok && h.mac != mac { // an expired hold of another MAC
		delete(x.holdOf, h.mac)
	}
	x.holds[ip] = hold{mac: mac, until: until}
	x.holdOf[mac] = ip
}

// unhold ends mac's offer hold, if any.
func (x *index) unhold(mac string) {
	if ip, ok := x.holdOf[mac]; ok {
		delete(x.holdOf, mac)
		delete(x.holds, ip)
		x.version++
	}
}

// sweep ends the holds that expired before now.
func (x *index) sweep(now time.Time) {
	for ip, h := range x.holds {
		if !now.Before(h.until) {
			delete(x.holds, ip)
			delete(x.holdOf, h.mac)
			x.version++
		}
	}
}

// freeFor reports whether ip may be offered to mac at now: not reserved for
// another MAC, its lease (if any) free for mac, and no other MAC's offer
// hold on it.
func (x *index) freeFor(p *Plan, ip netip.Addr, mac string, now time.Time) bool {
	if p.reservedForOther(ip, mac) {
		return false
	}
	if l, ok := x.leases[ip]; ok && !l.FreeFor(mac, now) {
		return false
	}
	h, held := x.holds[ip]
	return !held || h.mac == mac || !now.Before(h.until)
}

// fallbackScan is how many more addresses a pick looks at, once it has
// found a recently expired one, for one never leased or long expired.
const fallbackScan = 64

// preferred returns, if free for mac at now, in this order: mac's
// reservation on n (even outside the range); the address it holds or last
// held in the range; requested if in the range; the one last offered to it.
func (x *index) preferred(p *Plan, n *network, mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if ip, ok := p.reservation[mac]; ok && n.Subnet.Contains(ip) && x.freeFor(p, ip, mac, now) {
		return ip, true
	}
	for _, ip := range []netip.Addr{x.macs[mac], requested, x.holdOf[mac]} {
		if n.inRange(ip) && x.freeFor(p, ip, mac, now) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// scan returns the first address of n's range from cursor that is free for
// mac at now and reserved for no one, preferring one never leased or
// expired for over a lease time to a recently expired one (whose last
// holder may come back for it), and the cursor for the next scan.
func (x *index) scan(p *Plan, n *network, mac string, now time.Time, cursor uint32) (netip.Addr, uint32, bool) {
	var (
		fallback netip.Addr
		next     uint32
		budget   = fallbackScan
	)
	recent := now.Add(-n.LeaseTime)
	cursor %= n.size
	for i := range n.size {
		if fallback.IsValid() {
			if budget == 0 {
				break
			}
			budget--
		}
		off := (cursor + i) % n.size
		ip := n.addr(off)
		if _, reserved := p.reservedFor[ip]; reserved || !x.freeFor(p, ip, mac, now) {
			continue
		}
		l, leased := x.leases[ip]
		if !leased || l.Expires.Before(recent) {
			return ip, off + 1, true
		}
		if !fallback.IsValid() {
			fallback, next = ip, off+1
		}
	}
	return fallback, next, fallback.IsValid()
}
