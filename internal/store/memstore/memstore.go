// Package memstore is an in-memory store.Store for unit tests: mutex-guarded
// maps, with the bbolt store's canonical keys, errors, merge rules and event
// caps, checked by the same conformance suite (storetest).
//
// Values are copied in and out, so callers cannot alias its state. Nothing
// is persisted.
//
// The rules on sightings, merges and Changes are package store's own
// (Machine.Sighting, Machine.Merge, CheckChange), so both backends apply
// the same ones.
package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// Store is an in-memory store.Store. It is safe for concurrent use.
type Store struct {
	rev         atomic.Uint64 // bumped with each machine or event write
	maxEvents   int
	maxEventAge time.Duration
	clock       func() time.Time

	mu        sync.Mutex
	machines  map[string]store.Machine      // canonical MAC -> machine
	uuids     map[string]string             // canonical UUID -> canonical MAC
	prov      map[string]store.Provisioning // canonical MAC -> provisioning
	events    []store.Event                 // oldest first
	seq       uint64                        // the last Seq handed out
	secrets   map[string][]byte             // canonical MAC "/" name -> blob
	bindIP    map[string]store.Binding      // canonical IP -> binding
	bindMAC   map[string]store.Binding      // canonical MAC -> binding
	leases    map[string]store.Lease        // canonical IPv4 -> lease
	leaseMACs map[string]string             // canonical MAC -> the IPv4 of its lease
}

var _ store.Store = (*Store)(nil)

// New returns an empty store. opts.Timeout is ignored; the other zero
// values mean the defaults of store.Open.
func New(opts store.Options) *Store {
	opts = opts.WithDefaults()
	return &Store{
		maxEvents:   opts.MaxEvents,
		maxEventAge: opts.MaxEventAge,
		clock:       opts.Clock,
		machines:    map[string]store.Machine{},
		uuids:       map[string]string{},
		prov:        map[string]store.Provisioning{},
		secrets:     map[string][]byte{},
		bindIP:      map[string]store.Binding{},
		bindMAC:     map[string]store.Binding{},
		leases:      map[string]store.Lease{},
		leaseMACs:   map[string]string{},
	}
}

// now is the store's UTC time without a monotonic reading, as bbolt's JSON
// round trip leaves it.
func (s *Store) now() time.Time { return s.clock().UTC() }

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.rev.Load(), nil
}

// copyMachine returns m with its own labels map; an empty map becomes nil,
// as it does through bbolt's JSON.
func copyMachine(m store.Machine) store.Machine {
	if len(m.Labels) == 0 {
		m.Labels = nil
	} else {
		m.Labels = maps.Clone(m.Labels)
	}
	return m
}

func copyEvent(e store.Event) store.Event {
	if len(e.Fields) == 0 {
		e.Fields = nil
	} else {
		e.Fields = maps.Clone(e.Fields)
	}
	return e
}

// Seen implements store.Store.
func (s *Store) Seen(ctx context.Context, sighting store.Machine, fn store.Change) (store.Machine, store.Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	sighting, err := sighting.Sighting()
	if err != nil {
		return store.Machine{}, store.Provisioning{}, fmt.Errorf("memstore: %w", err)
	}
	mac := sighting.MAC
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	old := copyMachine(s.machines[mac])
	m := old.Merge(sighting, now)
	oldUUID := old.UUID

	out, p, err := s.apply(m, fn, now)
	if err != nil {
		return store.Machine{}, store.Provisioning{}, fmt.Errorf("memstore: machine %s: %w", mac, err)
	}
	if sighting.UUID != "" {
		if oldUUID != "" && oldUUID != sighting.UUID && s.uuids[oldUUID] == mac {
			delete(s.uuids, oldUUID)
		}
		// Last sighting wins: several NICs of one machine share its UUID.
		s.uuids[sighting.UUID] = mac
	}
	return out, p, nil
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, key string, fn store.Change) (store.Machine, store.Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(key)
	if err != nil {
		return store.Machine{}, store.Provisioning{}, fmt.Errorf("memstore: machine %s: %w", key, err)
	}
	out, p, err := s.apply(m, fn, s.now())
	if err != nil {
		return store.Machine{}, store.Provisioning{}, fmt.Errorf("memstore: machine %s: %w", key, err)
	}
	return out, p, nil
}

// apply runs fn on a copy of m and its provisioning data and, unless fn
// fails or breaks store.CheckChange, stores the results and appends fn's
// events. The caller holds s.mu.
func (s *Store) apply(m store.Machine, fn store.Change, now time.Time) (store.Machine, store.Provisioning, error) {
	p := s.prov[m.MAC]
	var events []store.Event
	if fn != nil {
		mac := m.MAC
		var err error
		if events, err = fn(&m, &p); err != nil {
			return store.Machine{}, store.Provisioning{}, err
		}
		if err := store.CheckChange(mac, m); err != nil {
			return store.Machine{}, store.Provisioning{}, err
		}
		s.prov[mac] = p
	}
	s.machines[m.MAC] = copyMachine(m)
	for _, e := range events {
		e.MAC = m.MAC
		s.appendEvent(e, now)
	}
	s.rev.Add(1)
	return copyMachine(m), p, nil
}

// lookup finds a machine by MAC or UUID in any spelling. The caller holds s.mu.
func (s *Store) lookup(key string) (store.Machine, error) {
	mac, err := store.CanonicalMAC(key)
	if err != nil {
		uuid, err := store.CanonicalUUID(key)
		if err != nil {
			return store.Machine{}, fmt.Errorf("neither a MAC nor a UUID: %w", store.ErrInvalid)
		}
		var ok bool
		if mac, ok = s.uuids[uuid]; !ok {
			return store.Machine{}, store.ErrNotFound
		}
	}
	m, ok := s.machines[mac]
	if !ok {
		return store.Machine{}, store.ErrNotFound
	}
	return copyMachine(m), nil
}

// Machine implements store.Store.
func (s *Store) Machine(ctx context.Context, key string) (store.Machine, error) {
	if err := ctx.Err(); err != nil {
		return store.Machine{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(key)
	if err != nil {
		return store.Machine{}, fmt.Errorf("memstore: machine %s: %w", key, err)
	}
	return m, nil
}

// Machines implements store.Store.
func (s *Store) Machines(ctx context.Context) ([]store.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []store.Machine
	for _, mac := range slices.Sorted(maps.Keys(s.machines)) {
		ms = append(ms, copyMachine(s.machines[mac]))
	}
	return ms, nil
}

// Provisioning implements store.Store.
func (s *Store) Provisioning(ctx context.Context, key string) (store.Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return store.Provisioning{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.lookup(key)
	if err != nil {
		return store.Provisioning{}, fmt.Errorf("memstore: machine %s: provisioning: %w", key, err)
	}
	return s.prov[m.MAC], nil
}

// CountByState counts the machines in each lifecycle state, like *boltstore.DB's.
func (s *Store) CountByState(ctx context.Context) (map[store.State]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	counts := map[store.State]int{}
	for _, m := range s.machines {
		counts[m.State]++
	}
	return counts, nil
}

// AppendEvent implements store.Store.
func (s *Store) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if err := ctx.Err(); err != nil {
		return store.Event{}, err
	}
	e, err := e.Canonical()
	if err != nil {
		return store.Event{}, fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e = s.appendEvent(e, s.now())
	s.rev.Add(1)
	return e, nil
}

// appendEvent stamps e with the next Seq and now, and trims the log to
// MaxEvents and MaxEventAge. The caller holds s.mu.
func (s *Store) appendEvent(e store.Event, now time.Time) store.Event {
	s.seq++
	e.Seq, e.Time = s.seq, now
	e = copyEvent(e)
	s.events = append(s.events, e)
	drop := int(store.TrimCount(uint64(len(s.events)), s.maxEvents))
	cutoff := now.Add(-s.maxEventAge)
	for drop < len(s.events) && s.events[drop].Time.Before(cutoff) {
		drop++
	}
	if drop > 0 {
		clear(s.events[:drop]) // let the dropped events go
		s.events = s.events[drop:]
	}
	return copyEvent(e)
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := q.Canonical()
	if err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	if q.Empty() {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var es []store.Event
	for i := range s.events {
		e := s.events[i]
		if q.Newest {
			e = s.events[len(s.events)-1-i]
		}
		if !q.Matches(e) {
			continue
		}
		es = append(es, copyEvent(e))
		if q.Limit > 0 && len(es) == q.Limit {
			break
		}
	}
	return es, nil
}

// PutSecret implements store.Store.
func (s *Store) PutSecret(ctx context.Context, mac, name string, blob []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.SecretKey(mac, name)
	if err != nil {
		return fmt.Errorf("memstore: put secret: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[key] = append([]byte{}, blob...) // a copy, never nil

	return nil
}

// Secret implements store.Store.
func (s *Store) Secret(ctx context.Context, mac, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := store.SecretKey(mac, name)
	if err != nil {
		return nil, fmt.Errorf("memstore: secret: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	blob, ok := s.secrets[key]
	if !ok {
		return nil, fmt.Errorf("memstore: secret %s: %w", key, store.ErrNotFound)
	}
	return append([]byte{}, blob...), nil
}

// DeleteSecret implements store.Store.
func (s *Store) DeleteSecret(ctx context.Context, mac, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.SecretKey(mac, name)
	if err != nil {
		return fmt.Errorf("memstore: delete secret: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.secrets[key]; !ok {
		return fmt.Errorf("memstore: delete secret %s: %w", key, store.ErrNotFound)
	}
	delete(s.secrets, key)
	return nil
}

// macsWithSecrets returns the MACs holding at least one secret. The caller holds s.mu.
func (s *Store) macsWithSecrets() map[string]bool {
	out := map[string]bool{}
	for k := range s.secrets {
		mac, _, _ := strings.Cut(k, "/")
		out[mac] = true
	}
	return out
}

// Bind implements store.Store.
func (s *Store) Bind(ctx context.Context, b store.Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := b.Canonical()
	if err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if b.IP != "" {
		s.bindIP[b.IP] = store.Binding{MAC: b.MAC, IP: b.IP, Seen: now}
	}
	if b.UUID != "" {
		s.bindMAC[b.MAC] = store.Binding{MAC: b.MAC, UUID: b.UUID, Seen: now}
	}
	return nil
}

// IPBinding implements store.Store.
func (s *Store) IPBinding(ctx context.Context, ip string) (store.Binding, error) {
	a, err := store.CanonicalIP(ip)
	if err != nil {
		return store.Binding{}, fmt.Errorf("memstore: binding: %w", err)
	}
	return s.binding(ctx, s.bindIP, a)
}

// UUIDBinding implements store.Store.
func (s *Store) UUIDBinding(ctx context.Context, mac string) (store.Binding, error) {
	m, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Binding{}, fmt.Errorf("memstore: binding of %q: %w", mac, err)
	}
	return s.binding(ctx, s.bindMAC, m)
}

func (s *Store) binding(ctx context.Context, bs map[string]store.Binding, key string) (store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return store.Binding{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := bs[key]
	if !ok {
		return store.Binding{}, fmt.Errorf("memstore: binding of %s: %w", key, store.ErrNotFound)
	}
	return b, nil
}

// PruneBindings implements store.Store.
func (s *Store) PruneBindings(ctx context.Context, cutoff time.Time, max int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	deleted := 0
	for _, bs := range []map[string]store.Binding{s.bindIP, s.bindMAC} {
		var kept []string
		for _, k := range slices.Sorted(maps.Keys(bs)) {
			if bs[k].Seen.Before(cutoff) {
				delete(bs, k)
				deleted++
			} else {
				kept = append(kept, k)
			}
		}
		for _, k := range store.OldestBeyond(kept, func(k string) time.Time { return bs[k].Seen }, max) {
			delete(bs, k)
			deleted++
		}
	}
	return deleted, nil
}

// PruneDiscovered implements store.Store.
func (s *Store) PruneDiscovered(ctx context.Context, max int) ([]store.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	withSecrets := s.macsWithSecrets()
	var cands []string
	for _, mac := range slices.Sorted(maps.Keys(s.machines)) {
		if s.machines[mac].State == store.StateDiscovered && !withSecrets[mac] {
			cands = append(cands, mac)
		}
	}
	var out []store.Machine
	for _, mac := range store.OldestBeyond(cands, func(mac string) time.Time { return s.machines[mac].LastSeen }, max) {
		m := s.machines[mac]
		out = append(out, copyMachine(m))
		delete(s.machines, mac)
		delete(s.prov, mac)
		if m.UUID != "" && s.uuids[m.UUID] == mac {
			delete(s.uuids, m.UUID)
		}
	}
	if len(out) > 0 {
		s.rev.Add(1)
	}
	return out, nil
}
