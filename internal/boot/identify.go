package boot

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Identity is who a log line is about: canonical MAC and UUID, and the
// Machine in Git; each "" when unknown.
type Identity struct {
	MAC     string
	UUID    string
	Machine string
}

// Attrs are the fields every log line about a machine carries, so that one
// boot can be followed with a grep on its MAC.
func (id Identity) Attrs() []any {
	return []any{"mac", id.MAC, "uuid", id.UUID, "machine", id.Machine}
}

// machineID is who stored machine m is.
func machineID(m store.Machine) Identity { return Identity{MAC: m.MAC, UUID: m.UUID, Machine: m.Name} }

// identity is who target t is.
func (t target) identity() Identity { return Identity{MAC: t.mac, UUID: t.uuid, Machine: t.name()} }

// Identify puts an address to a machine for the log lines of requests that
// name none (TFTP, /nbp/): the MAC the neighbour table holds for an on-link
// ip, else the MAC whose /ipxe request last came from ip, then the
// inventory's UUID and the Machine that MAC matches. It decides nothing: an
// address is no proof of who asked. The zero Identity when nothing knows ip.
func (c *Core) Identify(ctx context.Context, ip netip.Addr) Identity {
	ip = ip.Unmap()
	var id Identity
	if c.neighbors != nil {
		if mac, onLink, err := c.neighbors.Lookup(ip); onLink && err == nil {
			id.MAC = mac
		}
	}
	if id.MAC == "" {
		id.MAC = c.addrs.lookup(ip)
	}
	if id.MAC == "" {
		return id
	}
	if m, err := c.store.Machine(ctx, id.MAC); err == nil {
		id.UUID, id.Machine = m.UUID, m.Name
	}
	// What Git says now wins, as for every request; the inventory keeps the
	// name of machines matched by labels, which an address cannot present.
	if set := c.set.Load(); set != nil {
		if res, err := set.Match(profiles.Query{MAC: id.MAC, UUID: id.UUID}); err == nil && res.Machine != nil {
			id.Machine = res.Machine.Name
		}
	}
	return id
}

// addrBook remembers the address each MAC last asked from, for Identify:
// a routed client's MAC is not in the neighbour table. It keeps one address
// per MAC, so it grows no faster than the inventory.
type addrBook struct {
	mu    sync.Mutex
	byIP  map[netip.Addr]string // -> MAC
	byMAC map[string]netip.Addr
}

func newAddrBook() *addrBook {
	return &addrBook{byIP: map[netip.Addr]string{}, byMAC: map[string]netip.Addr{}}
}

// note records that mac asked from ip; either "" is nothing to note.
func (b *addrBook) note(mac, ip string) {
	b.add(mac, ip, true)
}

func (b *addrBook) add(mac, ip string, replace bool) {
	a, err := netip.ParseAddr(ip)
	if mac == "" || err != nil {
		return
	}
	a = a.Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.byMAC[mac]
	if _, taken := b.byIP[a]; !replace && (ok || taken) {
		return
	}
	if ok && old == a {
		return
	}
	if ok && b.byIP[old] == mac {
		delete(b.byIP, old)
	}
	b.byMAC[mac] = a
	b.byIP[a] = mac
}

// lookup returns the MAC that last asked from ip, or "".
func (b *addrBook) lookup(ip netip.Addr) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byIP[ip]
}

// seed learns the inventory's last addresses without overwriting anything:
// newest sighting first, so that of two machines seen at one address the
// later keeps it, and what was noted since the start is newer still.
func (b *addrBook) seed(ctx context.Context, inv store.Store) error {
	ms, err := inv.Machines(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(ms, func(x, y store.Machine) int { return y.LastSeen.Compare(x.LastSeen) })
	for _, m := range ms {
		b.add(m.MAC, m.LastIP, false)
	}
	return nil
}
