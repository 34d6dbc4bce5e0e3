package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/store"
)

// snapshot is what one attempt of a Change read, at one etcd revision; the
// revisions are what its commit compares.
type snapshot struct {
	machine    store.Machine // zero if absent
	machineRev int64         // 0: absent
	prov       store.Provisioning
	provRev    int64
	log        eventLog
	logRev     int64
}

// read takes a machine's snapshot in one read-only transaction.
func (s *Store) read(ctx context.Context, mac string) (snapshot, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.machineKey(mac)),
		clientv3.OpGet(s.provKey(mac)),
		clientv3.OpGet(s.eventLogKey()),
	).Commit()
	if err != nil {
		return snapshot{}, err
	}
	var snap snapshot
	kvs := func(i int) []*mvccpb.KeyValue { return resp.Responses[i].GetResponseRange().Kvs }
	if snap.machineRev, err = getJSON(kvs(0), &snap.machine); err != nil {
		return snapshot{}, err
	}
	if snap.provRev, err = getJSON(kvs(1), &snap.prov); err != nil {
		return snapshot{}, err
	}
	if snap.log, snap.logRev, err = decodeEventLog(kvs(2)); err != nil {
		return snapshot{}, err
	}
	return snap, nil
}

// refused is an outcome no retry can change (a Change's own error, a
// refused edit, an unknown machine): retry hands it back as it is.
type refused struct{ err error }

func (r refused) Error() string { return r.err.Error() }
func (r refused) Unwrap() error { return r.err }

// Seen implements store.Store: one transaction writes the merged machine,
// what fn made of it and its provisioning data, fn's events, the UUID index
// and the revision, or nothing.
func (s *Store) Seen(ctx context.Context, sighting store.Machine, fn store.Change) (store.Machine, store.Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	sighting, err := sighting.Sighting()
	if err != nil {
		return store.Machine{}, store.Provisioning{}, fmt.Errorf("etcdstore: %w", err)
	}
	mac := sighting.MAC
	now := s.now()
	var out store.Machine
	var prov store.Provisioning
	err = s.retry(ctx, func() error {
		snap, err := s.read(ctx, mac)
		if err != nil {
			return err
		}
		m := snap.machine.Merge(sighting, now)
		var ops []clientv3.Op
		if u := sighting.UUID; u != "" {
			// The last sighting wins: several NICs of one machine share its
			// UUID. The previous UUID leaves the index unless another MAC
			// has claimed it since, decided by etcd at commit.
			if prev := snap.machine.UUID; prev != "" && prev != u {
				ops = append(ops, clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.Value(s.uuidKey(prev)), "=", mac)},
					[]clientv3.Op{clientv3.OpDelete(s.uuidKey(prev))}, nil))
			}
			ops = append(ops, clientv3.OpPut(s.uuidKey(u), mac))
		}
		out, prov, err = s.apply(ctx, snap, m, fn, now, nil, ops)
		return err
	})
	if err != nil {
		return store.Machine{}, store.Provisioning{}, fmt.Errorf("etcdstore: machine %s: %w", mac, err)
	}
	return out, prov, nil
}

// Update implements store.Store, in one transaction like Seen.
func (s *Store) Update(ctx context.Context, key string, fn store.Change) (store.Machine, store.Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	now := s.now()
	var out store.Machine
	var prov store.Provisioning
	err := s.retry(ctx, func() error {
		mac, cmps, err := s.resolve(ctx, key)
		if err != nil {
			return err
		}
		snap, err := s.read(ctx, mac)
		if err != nil {
			return err
		}
		if snap.machineRev == 0 {
			return refused{store.ErrNotFound}
		}
		out, prov, err = s.apply(ctx, snap, snap.machine, fn, now, cmps, nil)
		return err
	})
	if r, ok := errors.AsType[refused](err); ok {
		err = r.err
	}
	if err != nil {
		return store.Machine{}, store.Provisioning{}, fmt.Errorf("etcdstore: machine %s: %w", key, err)
	}
	return out, prov, nil
}

// apply runs fn on m (snap's machine, merged with a sighting for Seen) and
// commits the result with ops, provided nothing snap read has changed.
// fn may not rename the machine or give it an unknown state.
func (s *Store) apply(ctx context.Context, snap snapshot, m store.Machine, fn store.Change, now time.Time, cmps []clientv3.Cmp, ops []clientv3.Op) (store.Machine, store.Provisioning, error) {
	mac := m.MAC
	p := snap.prov
	cmps = append(cmps, unchanged(s.machineKey(mac), snap.machineRev), unchanged(s.provKey(mac), snap.provRev))
	var events []store.Event
	if fn != nil {
		var err error
		if events, err = fn(&m, &p); err != nil {
			return store.Machine{}, store.Provisioning{}, refused{err}
		}
		if err := store.CheckChange(mac, m); err != nil {
			return store.Machine{}, store.Provisioning{}, refused{err}
		}
		op, err := putJSON(s.provKey(mac), p)
		if err != nil {
			return store.Machine{}, store.Provisioning{}, err
		}
		ops = append(ops, op)
	}
	op, err := putJSON(s.machineKey(mac), m)
	if err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	ops = append(ops, op, s.bumpRevision())
	if len(events) > 0 {
		for i := range events {
			events[i].MAC = mac
		}
		evOps, _, err := s.appendOps(ctx, snap.log, events, now)
		if err != nil {
			return store.Machine{}, store.Provisioning{}, err
		}
		ops = append(ops, evOps...)
		cmps = append(cmps, unchanged(s.eventLogKey(), snap.logRev))
	}
	if err := s.commit(ctx, cmps, ops); err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	return m, p, nil
}

// resolve turns a MAC or UUID in any spelling into the canonical MAC; for a
// UUID it also returns the compare that keeps the index as read.
func (s *Store) resolve(ctx context.Context, key string) (string, []clientv3.Cmp, error) {
	if mac, err := store.CanonicalMAC(key); err == nil {
		return mac, nil, nil
	}
	uuid, err := store.CanonicalUUID(key)
	if err != nil {
		return "", nil, refused{fmt.Errorf("neither a MAC nor a UUID: %w", store.ErrInvalid)}
	}
	resp, err := s.cli.Get(ctx, s.uuidKey(uuid))
	if err != nil {
		return "", nil, err
	}
	if len(resp.Kvs) == 0 {
		return "", nil, refused{store.ErrNotFound}
	}
	kv := resp.Kvs[0]
	return string(kv.Value), []clientv3.Cmp{unchanged(s.uuidKey(uuid), kv.ModRevision)}, nil
}

// Machine implements store.Store.
func (s *Store) Machine(ctx context.Context, key string) (store.Machine, error) {
	if err := ctx.Err(); err != nil {
		return store.Machine{}, err
	}
	m, _, err := s.machine(ctx, key, false)
	if err != nil {
		return store.Machine{}, fmt.Errorf("etcdstore: machine %s: %w", key, err)
	}
	return m, nil
}

// machine reads a machine by MAC or UUID, and with prov its provisioning
// data at the same revision.
func (s *Store) machine(ctx context.Context, key string, prov bool) (store.Machine, store.Provisioning, error) {
	mac, _, err := s.resolve(ctx, key)
	if r, ok := errors.AsType[refused](err); ok {
		return store.Machine{}, store.Provisioning{}, r.err
	}
	if err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	gets := []clientv3.Op{clientv3.OpGet(s.machineKey(mac))}
	if prov {
		gets = append(gets, clientv3.OpGet(s.provKey(mac)))
	}
	resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	var m store.Machine
	var p store.Provisioning
	rev, err := getJSON(resp.Responses[0].GetResponseRange().Kvs, &m)
	if err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	if rev == 0 {
		return store.Machine{}, store.Provisioning{}, store.ErrNotFound
	}
	if prov {
		if _, err := getJSON(resp.Responses[1].GetResponseRange().Kvs, &p); err != nil {
			return store.Machine{}, store.Provisioning{}, err
		}
	}
	return m, p, nil
}

// Machines implements store.Store. Keys sort as canonical MACs do.
func (s *Store) Machines(ctx context.Context) ([]store.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ms, err := allJSON[store.Machine](ctx, s, s.dir("machines"))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: machines: %w", err)
	}
	return ms, nil
}

// Provisioning implements store.Store.
func (s *Store) Provisioning(ctx context.Context, key string) (store.Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return store.Provisioning{}, err
	}
	_, p, err := s.machine(ctx, key, true)
	if err != nil {
		return store.Provisioning{}, fmt.Errorf("etcdstore: machine %s: provisioning: %w", key, err)
	}
	return p, nil
}

// CountByState implements store.Store. It decodes each record's state only.
func (s *Store) CountByState(ctx context.Context) (map[store.State]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	counts := map[store.State]int{}
	err := s.scanDir(ctx, s.dir("machines"), func(kv *mvccpb.KeyValue) (bool, error) {
		var m struct {
			State store.State `json:"state"`
		}
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return false, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		counts[m.State]++
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: count machines by state: %w", err)
	}
	return counts, nil
}
