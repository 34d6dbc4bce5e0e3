package boot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/provisiond/provisiond/internal/neigh"
	"github.com/provisiond/provisiond/internal/store"
)

// Identity from what provisiond observed, not from what a request claims.
//
// A machine's config can hold a cluster's keys, so the core answers a
// request for machine M only when the request's source address is M's:
//   - on-link, the kernel's neighbour table names the MAC behind the address
//     (a TCP handshake cannot complete without an entry);
//   - routed, a DHCP packet provisiond saw (relayed ones included) bound the
//     address to a MAC within the last BindingTTL;
//   - loopback and this host's own addresses are no machine at all.
//
// The request then acts as the MAC observed, with the UUID that MAC sent in
// DHCP: a claimed UUID counts only if DHCP showed it from that MAC. Labels
// never identify a machine for a config. Policy relaxes each rule by flag.
//
// Neither the neighbour table nor DHCP is authenticated: a host that spoofs
// ARP, or forges DHCP packets that a relay forwards, can still pose as a
// machine of its own segment. What they keep out is everyone else: other
// segments, processes on the server, and requests that merely name a MAC,
// UUID or label.

// Neighbors tells which MAC the kernel's neighbour table holds for an on-link
// requester, and which requesters are this host; internal/neigh implements it.
type Neighbors interface {
	// Lookup returns onLink false for routed, loopback and local addresses;
	// on-link with no usable entry is an error wrapping neigh.ErrNoEntry.
	Lookup(ip netip.Addr) (mac string, onLink bool, err error)
	// Local reports loopback and this host's own addresses.
	Local(ip netip.Addr) bool
}

// Refusal reasons of the identity check, also metric label values.
const (
	ReasonLocal   = "local"            // loopback or the server's own address, not a machine
	ReasonUnbound = "unbound"          // a routed source no DHCP binding names
	ReasonBindMAC = "binding-mismatch" // a routed source DHCP bound to another MAC
)

// DefaultBindingTTL is how long a DHCP binding identifies a routed requester
// when Config.BindingTTL is zero: a machine's DHCP, its HTTP boot and its
// install's phone-home (after a reboot, which DHCPs again) fit well within
// it, while an address a DHCP server has since handed to another machine
// (which rebinds it at once with its own DHCP) stops counting soon after.
const DefaultBindingTTL = 2 * time.Hour

// observed is what provisiond saw of a request's source address.
type observed struct {
	local    bool   // loopback or this host's own address
	onLink   bool   // on a directly attached subnet with neighbour resolution
	neighMAC string // on-link: the MAC the neighbour table holds; "" for no entry
	failed   bool   // the address or the neighbour lookup was unusable
	bound    string // the MAC a live DHCP binding gives the address; ""
	uuid     string // the UUID the observed MAC last sent in DHCP, if live; ""
}

// verify decides who a request is from what was observed of its source:
// the request it may act as, or the reason it is refused. It is pure; see
// the package comment above for the rules, Policy for the relaxations.
func verify(r Request, o observed, pol Policy) (Request, string) {
	if o.local {
		if pol.TrustLoopback {
			return r, ""
		}
		return r, ReasonLocal
	}
	if o.failed {
		return r, ReasonNeighbor
	}
	var mac string
	switch {
	case o.onLink && pol.SkipNeighborCheck:
		// Taken at its word, but proven when the table agrees anyway.
		r.proven = r.MAC != "" && r.MAC == o.neighMAC
		return r, ""
	case o.onLink && o.neighMAC != "":
		if r.MAC != "" && r.MAC != o.neighMAC {
			return r, ReasonNeighbor
		}
		mac = o.neighMAC
	case o.bound != "":
		// Routed, or on-link with no neighbour entry (the request came
		// through a trusted proxy): the DHCP binding speaks.
		if r.MAC != "" && r.MAC != o.bound {
			return r, ReasonBindMAC
		}
		mac = o.bound
	case o.onLink:
		return r, ReasonNeighbor
	case pol.AllowUnbound:
		return r, ""
	default:
		return r, ReasonUnbound
	}
	r.MAC, r.UUID, r.proven = mac, o.uuid, true
	return r, ""
}

// observe gathers what provisiond knows of the source address ip: the
// neighbour table first, then the DHCP bindings in the store. An error is
// the store's: the caller fails closed.
func (d *Decider) observe(ctx context.Context, ip string) (observed, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return observed{failed: true}, nil
	}
	a = a.Unmap()
	if d.neighbors.Local(a) {
		return observed{local: true}, nil
	}
	var o observed
	mac, onLink, err := d.neighbors.Lookup(a)
	switch {
	case err == nil:
		o.onLink, o.neighMAC = onLink, mac
	case errors.Is(err, neigh.ErrNoEntry):
		o.onLink = true
	default:
		// A lookup that failed must not pass for "not on-link".
		return observed{failed: true}, nil
	}
	now := time.Now()
	if o.neighMAC == "" {
		b, err := d.store.IPBinding(ctx, a.String())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return o, fmt.Errorf("binding of %s: %w", a, err)
		}
		if err == nil && d.bindingLive(b, now) {
			o.bound = b.MAC
		}
	}
	if mac := cmp.Or(o.neighMAC, o.bound); mac != "" {
		b, err := d.store.UUIDBinding(ctx, mac)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return o, fmt.Errorf("uuid binding of %s: %w", mac, err)
		}
		if err == nil && d.bindingLive(b, now) {
			o.uuid = b.UUID
		}
	}
	return o, nil
}

// bindingLive reports whether binding b still identifies its machine at now.
func (d *Decider) bindingLive(b store.Binding, now time.Time) bool {
	return now.Sub(b.Seen) < d.bindingTTL
}

// authenticate returns the request r may act as, or the refusal of what
// ("script", "config", "phone-home") it earned, recorded and counted. Without
// a neighbour table (tests) requests are taken at their word.
func (d *Decider) authenticate(ctx context.Context, r Request, what string) (Request, error) {
	if d.neighbors == nil {
		return r, nil
	}
	o, err := d.observe(ctx, r.IP)
	if err != nil {
		return r, err
	}
	v, reason := verify(r, o, d.policy)
	if reason != "" {
		return r, d.refuse(ctx, r, &RefusedError{What: what, Reason: reason})
	}
	if r.UUID != "" && v.UUID != r.UUID {
		d.log.Debug("uuid claim not seen in DHCP from this mac; ignored", append(Identity{MAC: v.MAC, UUID: r.UUID}.Attrs(), "ip", r.IP, "dhcp_uuid", v.UUID)...)
	}
	return v, nil
}
