package store

import (
	"cmp"
	"fmt"
	"maps"
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
