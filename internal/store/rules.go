package store

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// The rules every backend applies the same way, as pure functions: what a
// sighting may hold, how it merges into the stored machine, and what a Change
// may not do. storetest checks that a backend applies them.

// Sighting returns s with its MAC and UUID in canonical form, or an error
// wrapping ErrInvalid for a bad MAC, UUID or state, or a field over its
// limit (see checkSizes).
func (s Machine) Sighting() (Machine, error) {
	mac, err := CanonicalMAC(s.MAC)
	if err != nil {
		return Machine{}, fmt.Errorf("seen: %w", err)
	}
	s.MAC = mac
	if s.UUID != "" {
		if s.UUID, err = CanonicalUUID(s.UUID); err != nil {
			return Machine{}, fmt.Errorf("machine %s: %w", mac, err)
		}
	}
	if s.State != "" && !s.State.Valid() {
		return Machine{}, fmt.Errorf("machine %s: state %q: %w", mac, s.State, ErrInvalid)
	}
	if err := s.checkSizes(); err != nil {
		return Machine{}, fmt.Errorf("machine %s: %w", mac, err)
	}
	return s, nil
}

// Merge applies sighting s (canonical, from Sighting) at now to the stored
// machine m, the zero Machine if there is none: FirstSeen on insert, the
// sighting's State on insert (default discovered), LastSeen always, and
// every non-empty field of the sighting over the stored one. The result does
// not alias s's labels.
func (m Machine) Merge(s Machine, now time.Time) Machine {
	if m.FirstSeen.IsZero() {
		m.MAC, m.FirstSeen = s.MAC, now
	}
	if m.State == "" {
		m.State = cmp.Or(s.State, StateDiscovered)
	}
	m.UUID = cmp.Or(s.UUID, m.UUID)
	m.Arch = cmp.Or(s.Arch, m.Arch)
	m.LastIP = cmp.Or(s.LastIP, m.LastIP)
	m.Name = cmp.Or(s.Name, m.Name)
	m.Profile = cmp.Or(s.Profile, m.Profile)
	if len(s.Labels) > 0 {
		m.Labels = maps.Clone(s.Labels)
	}
	m.LastSeen = now
	return m
}

// Canonical returns e with its MAC, if any, in canonical form, or an error
// wrapping ErrInvalid.
func (e Event) Canonical() (Event, error) {
	if e.MAC != "" {
		mac, err := CanonicalMAC(e.MAC)
		if err != nil {
			return Event{}, fmt.Errorf("append event: %w", err)
		}
		e.MAC = mac
	}
	return e, nil
}

// SecretKey is the key of secret name of machine mac: "<mac>/<name>" with
// the MAC canonical. A canonical MAC has a fixed length, so the key is
// unambiguous. Errors wrap ErrInvalid.
func SecretKey(mac, name string) (string, error) {
	mac, err := CanonicalMAC(mac)
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", fmt.Errorf("empty secret name: %w", ErrInvalid)
	}
	return mac + "/" + name, nil
}

// Canonical returns b with its MAC, UUID and IP in canonical form (an
// IPv4-mapped address as IPv4), or an error wrapping ErrInvalid. Seen is
// left as it is: the store stamps it.
func (b Binding) Canonical() (Binding, error) {
	mac, err := CanonicalMAC(b.MAC)
	if err != nil {
		return Binding{}, fmt.Errorf("bind: %w", err)
	}
	b.MAC = mac
	if b.UUID != "" {
		if b.UUID, err = CanonicalUUID(b.UUID); err != nil {
			return Binding{}, fmt.Errorf("bind %s: %w", mac, err)
		}
	}
	if b.IP != "" {
		if b.IP, err = CanonicalIP(b.IP); err != nil {
			return Binding{}, fmt.Errorf("bind %s: %w", mac, err)
		}
	}
	return b, nil
}

// CheckChange refuses what a Change made of a machine stored under mac: it
// may not rename it or give it an unknown state.
func CheckChange(mac string, m Machine) error {
	if m.MAC != mac || !m.State.Valid() {
		return fmt.Errorf("change to mac %q state %q: %w", m.MAC, m.State, ErrInvalid)
	}
	return nil
}

// WithDefaults fills in the zero values of o.
func (o Options) WithDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 100_000
	}
	if o.MaxEventAge <= 0 {
		o.MaxEventAge = 30 * 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// OldestBeyond returns the items a prune deletes to keep the newest keep (a
// negative keep counts as 0): the rest, oldest first by seen. Items seen at
// the same time go in the order given, the backends' key order, so every
// backend prunes the same ones. items is left as it is.
func OldestBeyond[T any](items []T, seen func(T) time.Time, keep int) []T {
	keep = max(keep, 0)
	if len(items) <= keep {
		return nil
	}
	items = slices.Clone(items)
	slices.SortStableFunc(items, func(a, b T) int { return seen(a).Compare(seen(b)) })
	return items[:len(items)-keep]
}

// FreeFor reports whether the address of lease l (the lease stored for it)
// may go to mac at now: it has expired, or mac holds it and it is not
// declined. Every backend's ClaimLease decides with it.
func (l Lease) FreeFor(mac string, now time.Time) bool {
	if !now.Before(l.Expires) {
		return true
	}
	return !l.Declined && l.MAC == mac
}

// Canonical returns l with its IP (IPv4 only) and MAC in canonical form, or
// an error wrapping ErrInvalid. A declined lease has no MAC; any other has one.
func (l Lease) Canonical() (Lease, error) {
	var err error
	if l.IP, err = LeaseIP(l.IP); err != nil {
		return Lease{}, err
	}
	switch {
	case l.Declined && l.MAC != "":
		return Lease{}, fmt.Errorf("lease %s: declined with mac %q: %w", l.IP, l.MAC, ErrInvalid)
	case !l.Declined:
		if l.MAC, err = CanonicalMAC(l.MAC); err != nil {
			return Lease{}, fmt.Errorf("lease %s: %w", l.IP, err)
		}
	}
	if len(l.Network) > MaxName {
		return Lease{}, fmt.Errorf("lease %s: network name over %d bytes: %w", l.IP, MaxName, ErrInvalid)
	}
	return l, nil
}

// LeaseIP is the key of an address's lease: s as a canonical IPv4 address,
// or an error wrapping ErrInvalid.
func LeaseIP(s string) (string, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Unmap().Is4() {
		return "", fmt.Errorf("lease ip %.64q is not an IPv4 address: %w", s, ErrInvalid)
	}
	return ip.Unmap().String(), nil
}

// Claim returns l, given to ClaimLease at now, in canonical form, or an
// error wrapping ErrInvalid: a claim needs a MAC (so it is never a declined
// lease) and an expiry after now.
func (l Lease) Claim(now time.Time) (Lease, error) {
	l, err := l.Canonical()
	if err != nil {
		return Lease{}, fmt.Errorf("claim: %w", err)
	}
	if l.MAC == "" {
		return Lease{}, fmt.Errorf("claim lease %s: no mac: %w", l.IP, ErrInvalid)
	}
	if !l.Expires.After(now) {
		return Lease{}, fmt.Errorf("claim lease %s for %s: expires %s, not after %s: %w",
			l.IP, l.MAC, l.Expires.Format(time.RFC3339), now.Format(time.RFC3339), ErrInvalid)
	}
	return l, nil
}

// Taken is the error ClaimLease refuses mac with when held, the lease
// stored for the address, is not FreeFor it.
func (held Lease) Taken(mac string) error {
	if held.Declined {
		return fmt.Errorf("lease %s for %s: declined until %s: %w", held.IP, mac, held.Expires.Format(time.RFC3339), ErrTaken)
	}
	return fmt.Errorf("lease %s for %s: held by %s until %s: %w", held.IP, mac, held.MAC, held.Expires.Format(time.RFC3339), ErrTaken)
}

// SortLeases orders leases by address, numerically (10.0.0.9 before
// 10.0.0.10), as AllLeases lists them; the backends keep them by the
// address's text.
func SortLeases(ls []Lease) {
	slices.SortFunc(ls, func(a, b Lease) int {
		x, _ := netip.ParseAddr(a.IP) // canonical: stored leases were checked
		y, _ := netip.ParseAddr(b.IP)
		return cmp.Or(x.Compare(y), cmp.Compare(a.IP, b.IP))
	})
}
