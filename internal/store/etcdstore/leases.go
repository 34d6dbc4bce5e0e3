package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/store"
)

// Leases are kept under P/leases/<ip> and P/lease-macs/<mac>, the index of
// the address each MAC holds. Every write keeps the index exact in the same
// transaction, so a MAC is in it iff a lease of that MAC is stored under
// the address it says; each compares the ModRevisions of what it read and
// is re-run from a fresh read when another writer got there first. Lease
// writes put no P/meta/revision: Revision counts machines and events only.

var _ store.Leases = (*Store)(nil)

func (s *Store) leaseKey(ip string) string     { return s.dir("leases") + ip }
func (s *Store) leaseMACKey(mac string) string { return s.dir("lease-macs") + mac }

// ClaimLease implements store.Leases: one transaction writes the lease and
// the index, drops the index entry of the address's previous holder (an
// expired lease), and deletes l.MAC's lease of another address.
func (s *Store) ClaimLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return store.Lease{}, err
	}
	l, err := l.Claim(now)
	if err != nil {
		return store.Lease{}, fmt.Errorf("etcdstore: %w", err)
	}
	l.Updated = s.now()
	put, err := putJSON(s.leaseKey(l.IP), l)
	if err != nil {
		return store.Lease{}, fmt.Errorf("etcdstore: claim lease %s: %w", l.IP, err)
	}
	var held store.Lease
	err = s.retry(ctx, func() error {
		held = store.Lease{}
		resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.leaseKey(l.IP)), clientv3.OpGet(s.leaseMACKey(l.MAC))).Commit()
		if err != nil {
			return err
		}
		var cur store.Lease
		curRev, err := getJSON(resp.Responses[0].GetResponseRange().Kvs, &cur)
		if err != nil {
			return err
		}
		if !cur.FreeFor(l.MAC, now) {
			held = cur
			return cur.Taken(l.MAC)
		}
		cmps := []clientv3.Cmp{unchanged(s.leaseKey(l.IP), curRev)}
		ops := []clientv3.Op{put, clientv3.OpPut(s.leaseMACKey(l.MAC), l.IP)}
		if cur.MAC != "" && cur.MAC != l.MAC {
			ops = append(ops, s.unindexLease(cur.MAC, l.IP))
		}
		var idxRev int64
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			idxRev = kvs[0].ModRevision
			if prev := string(kvs[0].Value); prev != l.IP {
				// The MAC moves: its lease of prev goes if it is still its.
				var p store.Lease
				pr, err := s.cli.Get(ctx, s.leaseKey(prev))
				if err != nil {
					return err
				}
				pRev, err := getJSON(pr.Kvs, &p)
				if err != nil {
					return err
				}
				cmps = append(cmps, unchanged(s.leaseKey(prev), pRev))
				if p.MAC == l.MAC {
					ops = append(ops, clientv3.OpDelete(s.leaseKey(prev)))
				}
			}
		}
		cmps = append(cmps, unchanged(s.leaseMACKey(l.MAC), idxRev))
		return s.commit(ctx, cmps, ops)
	})
	if err != nil {
		return held, fmt.Errorf("etcdstore: %w", err)
	}
	return l, nil
}

// unindexLease is the operation dropping mac from the index if it still
// points at ip, decided by etcd at commit.
func (s *Store) unindexLease(mac, ip string) clientv3.Op {
	k := s.leaseMACKey(mac)
	return clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(k), "=", ip)}, []clientv3.Op{clientv3.OpDelete(k)}, nil)
}

// ReleaseLease implements store.Leases.
func (s *Store) ReleaseLease(ctx context.Context, ip, mac string) error {
	err := s.changeLease(ctx, ip, mac, func(cur store.Lease) ([]clientv3.Op, error) {
		return []clientv3.Op{clientv3.OpDelete(s.leaseKey(cur.IP))}, nil
	})
	if err != nil {
		return fmt.Errorf("etcdstore: release lease: %w", err)
	}
	return nil
}

// DeclineLease implements store.Leases.
func (s *Store) DeclineLease(ctx context.Context, ip, mac string, until time.Time) error {
	updated := s.now()
	err := s.changeLease(ctx, ip, mac, func(cur store.Lease) ([]clientv3.Op, error) {
		op, err := putJSON(s.leaseKey(cur.IP), store.Lease{IP: cur.IP, Network: cur.Network, Expires: until, Declined: true, Updated: updated})
		return []clientv3.Op{op}, err
	})
	if err != nil {
		return fmt.Errorf("etcdstore: decline lease: %w", err)
	}
	return nil
}

// changeLease commits the operations fn makes of the lease of ip that mac
// holds, with mac leaving the index, provided the lease is as read.
// ErrInvalid for a bad ip or mac, ErrNotFound if mac holds no lease on ip.
func (s *Store) changeLease(ctx context.Context, ip, mac string, fn func(cur store.Lease) ([]clientv3.Op, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := store.Lease{IP: ip, MAC: mac}.Canonical()
	if err != nil {
		return err
	}
	return s.retry(ctx, func() error {
		resp, err := s.cli.Get(ctx, s.leaseKey(k.IP))
		if err != nil {
			return err
		}
		var cur store.Lease
		rev, err := getJSON(resp.Kvs, &cur)
		if err != nil {
			return err
		}
		if rev == 0 || cur.MAC != k.MAC {
			return fmt.Errorf("lease %s of %s: %w", k.IP, k.MAC, store.ErrNotFound)
		}
		ops, err := fn(cur)
		if err != nil {
			return err
		}
		return s.commit(ctx, []clientv3.Cmp{unchanged(s.leaseKey(k.IP), rev)}, append(ops, s.unindexLease(k.MAC, k.IP)))
	})
}

// Lease implements store.Leases.
func (s *Store) Lease(ctx context.Context, ip string) (store.Lease, error) {
	return store.FindLease(ctx, "etcdstore", ip, func(ip string) (store.Lease, error) { return s.lease(ctx, ip) })
}

// lease reads the lease of ip (canonical). ErrNotFound.
func (s *Store) lease(ctx context.Context, ip string) (store.Lease, error) {
	resp, err := s.cli.Get(ctx, s.leaseKey(ip))
	if err != nil {
		return store.Lease{}, err
	}
	var l store.Lease
	rev, err := getJSON(resp.Kvs, &l)
	if err != nil {
		return store.Lease{}, err
	}
	if rev == 0 {
		return store.Lease{}, store.ErrNotFound
	}
	return l, nil
}

// MACLease implements store.Leases: the index, then the lease it names.
// A writer between the two reads may have moved the lease: the MAC must
// still hold it.
func (s *Store) MACLease(ctx context.Context, mac string) (store.Lease, error) {
	return store.FindMACLease(ctx, "etcdstore", mac, func(mac string) (store.Lease, error) { return s.macLease(ctx, mac) })
}

func (s *Store) macLease(ctx context.Context, mac string) (store.Lease, error) {
	resp, err := s.cli.Get(ctx, s.leaseMACKey(mac))
	if err != nil {
		return store.Lease{}, err
	}
	if len(resp.Kvs) == 0 {
		return store.Lease{}, store.ErrNotFound
	}
	l, err := s.lease(ctx, string(resp.Kvs[0].Value))
	if err == nil && l.MAC != mac {
		err = store.ErrNotFound
	}
	return l, err
}

// AllLeases implements store.Leases.
func (s *Store) AllLeases(ctx context.Context) ([]store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ls, err := allJSON[store.Lease](ctx, s, s.dir("leases"))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: leases: %w", err)
	}
	store.SortLeases(ls)
	return ls, nil
}

// PruneLeases implements store.Leases. Each deletion compares the lease's
// ModRevision as read (deleteUnchanged): a lease renewed meanwhile stays.
// A lease that does not decode goes too, as a binding does.
func (s *Store) PruneLeases(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var drop []candidate
	err := s.scanDir(ctx, s.dir("leases"), func(kv *mvccpb.KeyValue) (bool, error) {
		var l store.Lease
		if json.Unmarshal(kv.Value, &l) == nil && !l.Expires.Before(cutoff) {
			return true, nil
		}
		c := candidate{key: string(kv.Key), rev: kv.ModRevision}
		if l.MAC != "" {
			c.also = []clientv3.Op{s.unindexLease(l.MAC, l.IP)}
		}
		drop = append(drop, c)
		return true, nil
	})
	n := 0
	if err == nil {
		n, err = s.deleteUnchanged(ctx, drop)
	}
	if err != nil {
		return n, fmt.Errorf("etcdstore: prune leases: %w", err)
	}
	return n, nil
}
