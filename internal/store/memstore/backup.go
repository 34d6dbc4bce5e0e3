package memstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"

	"github.com/provisiond/provisiond/internal/store"
)

// Dump implements store.Store: the snapshot is taken under the lock, the
// state at one moment, and handed to fn after, so writers need not wait for
// fn. Keys come in order, as from the other backends.
func (s *Store) Dump(ctx context.Context, fn func(store.Record) error) error {
	for _, r := range s.snapshot() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return fmt.Errorf("memstore: dump: %w", err)
		}
	}
	return nil
}

func (s *Store) snapshot() []store.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var records []store.Record
	add := func(kind, key string, v any) {
		b, _ := json.Marshal(v) // the records' types always marshal
		records = append(records, store.Record{Kind: kind, Key: key, Value: b})
	}
	records = append(records, store.MetaRecord(store.MetaRevision, s.rev.Load()), store.MetaRecord(store.MetaEventSeq, s.seq))
	for _, mac := range slices.Sorted(maps.Keys(s.machines)) {
		add(store.KindMachine, mac, s.machines[mac])
	}
	for _, mac := range slices.Sorted(maps.Keys(s.prov)) {
		add(store.KindProvisioning, mac, s.prov[mac])
	}
	for _, uuid := range slices.Sorted(maps.Keys(s.uuids)) {
		add(store.KindUUID, uuid, s.uuids[uuid])
	}
	for _, e := range s.events {
		add(store.KindEvent, store.EventKey(e.Seq), e)
	}
	for _, k := range slices.Sorted(maps.Keys(s.secrets)) {
		records = append(records, store.Record{Kind: store.KindSecret, Key: k, Value: bytes.Clone(s.secrets[k])})
	}
	for _, ip := range slices.Sorted(maps.Keys(s.bindIP)) {
		add(store.KindBindIP, ip, s.bindIP[ip])
	}
	for _, mac := range slices.Sorted(maps.Keys(s.bindMAC)) {
		add(store.KindBindMAC, mac, s.bindMAC[mac])
	}
	for _, ip := range slices.Sorted(maps.Keys(s.leases)) { // text order, as the other backends dump
		add(store.KindLease, ip, s.leases[ip])
	}
	return records
}

// Restore implements store.Store. Records are decoded into a staging copy
// and swapped in at the end, so a failed restore changes nothing.
func (s *Store) Restore(ctx context.Context, records iter.Seq2[store.Record, error]) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.machines) > 0 || len(s.events) > 0 {
		return fmt.Errorf("memstore: restore: %w", store.ErrNotEmpty)
	}
	// Secrets, bindings and leases may be there already (none makes the
	// store non-empty): records add to them, as in the other backends.
	n := New(store.Options{})
	n.secrets, n.bindIP, n.bindMAC = maps.Clone(s.secrets), maps.Clone(s.bindIP), maps.Clone(s.bindMAC)
	n.leases, n.leaseMACs = maps.Clone(s.leases), maps.Clone(s.leaseMACs)
	var rs store.Restoring
	for r, err := range records {
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("memstore: restore: %w", err)
		}
		write, err := rs.Check(r)
		if err != nil {
			return fmt.Errorf("memstore: restore: %w", err)
		}
		if write {
			n.put(r)
		}
	}
	slices.SortFunc(n.events, func(a, b store.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	s.machines, s.prov, s.uuids, s.events, s.secrets, s.bindIP, s.bindMAC = n.machines, n.prov, n.uuids, n.events, n.secrets, n.bindIP, n.bindMAC
	s.leases, s.leaseMACs = n.leases, n.leaseMACs
	s.seq = max(s.seq, rs.LastSeq)
	s.rev.Store(max(s.rev.Load(), rs.Revision) + 1)
	return nil
}

// put stores r, a record store.CheckRecord accepted, so it decodes.
func (s *Store) put(r store.Record) {
	decode := func(v any) { _ = json.Unmarshal(r.Value, v) }
	switch r.Kind {
	case store.KindMachine:
		var m store.Machine
		decode(&m)
		s.machines[r.Key] = copyMachine(m)
	case store.KindProvisioning:
		var p store.Provisioning
		decode(&p)
		s.prov[r.Key] = p
	case store.KindUUID:
		var mac string
		decode(&mac)
		s.uuids[r.Key] = mac
	case store.KindEvent:
		var e store.Event
		decode(&e)
		s.events = append(s.events, copyEvent(e))
	case store.KindSecret:
		s.secrets[r.Key] = bytes.Clone(r.Value)
	case store.KindBindIP, store.KindBindMAC:
		var b store.Binding
		decode(&b)
		if r.Kind == store.KindBindIP {
			s.bindIP[r.Key] = b
		} else {
			s.bindMAC[r.Key] = b
		}
	case store.KindLease:
		var l store.Lease
		decode(&l)
		s.putLease(l) // the MAC index is rebuilt with the leases
	}
}
