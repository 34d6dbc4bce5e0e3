package boot

import (
	"context"
	"net/netip"

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
// ip, else the MAC a DHCP binding gives ip (however old), then the
// inventory's UUID and the Machine that MAC matches. It decides nothing: an
// address is no proof of who asked. The zero Identity when nothing knows ip.
func (d *Decider) Identify(ctx context.Context, ip netip.Addr) Identity {
	ip = ip.Unmap()
	var id Identity
	if d.neighbors != nil {
		if mac, onLink, err := d.neighbors.Lookup(ip); onLink && err == nil {
			id.MAC = mac
		}
	}
	if id.MAC == "" {
		if b, err := d.store.IPBinding(ctx, ip.String()); err == nil {
			id.MAC = b.MAC
		}
	}
	if id.MAC == "" {
		return id
	}
	var hw *store.Hardware
	if m, err := d.store.Machine(ctx, id.MAC); err == nil {
		id.UUID, id.Machine, hw = m.UUID, m.Name, m.Hardware
	}
	// What Git says now wins, as for every request; the inventory keeps the
	// name of machines matched by labels, which an address cannot present.
	if set := d.live.Profiles(); set != nil {
		if res, err := set.Match(profiles.Query{MAC: id.MAC, UUID: id.UUID, Hardware: hw}); err == nil && res.Machine != nil {
			id.Machine = res.Machine.Name
		}
	}
	return id
}
