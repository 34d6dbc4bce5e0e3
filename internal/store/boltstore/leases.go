package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// Leases are kept in two buckets written together: bucketLeases by address
// and bucketLeaseMACs, the index of the address each MAC holds. putLease and
// deleteLease keep the index exact: a MAC is in it iff a lease of that MAC
// is stored, under the address the index says. Lease writes go through
// db.batch (the DHCP server claims at packet rate from many goroutines, and
// a batch shares one fsync), so every closure here is safe to re-run: it
// reads the current state and decides from it and its arguments alone.

var _ store.Leases = (*DB)(nil)

// ClaimLease implements store.Leases.
func (db *DB) ClaimLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return store.Lease{}, err
	}
	l, err := l.Claim(now)
	if err != nil {
		return store.Lease{}, fmt.Errorf("store: %w", err)
	}
	l.Updated = db.now()
	var held store.Lease
	err = db.batch(func(tx *bolt.Tx) error {
		held = store.Lease{}
		cur, err := getLease(tx, l.IP)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if !cur.FreeFor(l.MAC, now) {
			held = cur
			return refused{cur.Taken(l.MAC)}
		}
		return putLease(tx, l)
	})
	if err != nil {
		return held, fmt.Errorf("store: %w", err)
	}
	return l, nil
}

// ReleaseLease implements store.Leases.
func (db *DB) ReleaseLease(ctx context.Context, ip, mac string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ip, mac, err := leaseOf(ip, mac)
	if err != nil {
		return fmt.Errorf("store: release lease: %w", err)
	}
	err = db.batch(func(tx *bolt.Tx) error {
		cur, err := heldBy(tx, ip, mac)
		if err != nil {
			return err
		}
		return deleteLease(tx, cur)
	})
	if err != nil {
		return fmt.Errorf("store: release lease %s of %s: %w", ip, mac, err)
	}
	return nil
}

// DeclineLease implements store.Leases.
func (db *DB) DeclineLease(ctx context.Context, ip, mac string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ip, mac, err := leaseOf(ip, mac)
	if err != nil {
		return fmt.Errorf("store: decline lease: %w", err)
	}
	updated := db.now()
	err = db.batch(func(tx *bolt.Tx) error {
		cur, err := heldBy(tx, ip, mac)
		if err != nil {
			return err
		}
		return putLease(tx, store.Lease{IP: ip, Network: cur.Network, Expires: until, Declined: true, Updated: updated})
	})
	if err != nil {
		return fmt.Errorf("store: decline lease %s of %s: %w", ip, mac, err)
	}
	return nil
}

// leaseOf returns ip and mac in canonical form, or ErrInvalid.
func leaseOf(ip, mac string) (string, string, error) {
	l, err := store.Lease{IP: ip, MAC: mac}.Canonical()
	if err != nil {
		return "", "", err
	}
	return l.IP, l.MAC, nil
}

// heldBy returns the lease of ip if mac holds it, else a refused ErrNotFound.
func heldBy(tx *bolt.Tx, ip, mac string) (store.Lease, error) {
	cur, err := getLease(tx, ip)
	if errors.Is(err, store.ErrNotFound) || err == nil && cur.MAC != mac {
		return store.Lease{}, refused{store.ErrNotFound}
	}
	return cur, err
}

// Lease implements store.Leases.
func (db *DB) Lease(ctx context.Context, ip string) (store.Lease, error) {
	return store.FindLease(ctx, "store", ip, func(ip string) (l store.Lease, err error) {
		err = db.bdb.View(func(tx *bolt.Tx) error {
			l, err = getLease(tx, ip)
			return err
		})
		return l, err
	})
}

// MACLease implements store.Leases.
func (db *DB) MACLease(ctx context.Context, mac string) (store.Lease, error) {
	return store.FindMACLease(ctx, "store", mac, func(mac string) (l store.Lease, err error) {
		err = db.bdb.View(func(tx *bolt.Tx) error {
			ip := bucket(tx, bucketLeaseMACs).Get([]byte(mac))
			if ip == nil {
				return store.ErrNotFound
			}
			l, err = heldBy(tx, string(ip), mac)
			return err
		})
		return l, err
	})
}

// AllLeases implements store.Leases.
func (db *DB) AllLeases(ctx context.Context) ([]store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ls, err := decodeAll[store.Lease](db, bucketLeases, "lease")
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	store.SortLeases(ls)
	return ls, nil
}

// PruneLeases implements store.Leases. A lease that does not decode goes
// too, as a binding does.
func (db *DB) PruneLeases(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deleted := 0
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		holders := map[string]string{} // address -> MAC of the leases pruned
		drop, err := prune(bucket(tx, bucketLeases), 0, func(k, v []byte) (verdict, time.Time) {
			var l store.Lease
			if json.Unmarshal(v, &l) != nil || l.Expires.Before(cutoff) {
				holders[string(k)] = l.MAC
				return expired, time.Time{}
			}
			return exempt, time.Time{}
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := unindexLease(tx, holders[string(k)], string(k)); err != nil {
				return err
			}
		}
		deleted = len(drop)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune leases: %w", err)
	}
	return deleted, nil
}

// getLease returns the lease of address ip (canonical). ErrNotFound.
func getLease(tx *bolt.Tx, ip string) (store.Lease, error) {
	v := bucket(tx, bucketLeases).Get([]byte(ip))
	if v == nil {
		return store.Lease{}, store.ErrNotFound
	}
	var l store.Lease
	if err := json.Unmarshal(v, &l); err != nil {
		return store.Lease{}, fmt.Errorf("decode lease %s: %w", ip, err)
	}
	return l, nil
}

// putLease stores l (canonical) in place of whatever lease its address had,
// keeping the index exact: the address's previous holder leaves the index,
// and l.MAC's lease of another address, if any, is deleted.
func putLease(tx *bolt.Tx, l store.Lease) error {
	old, err := getLease(tx, l.IP)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if old.MAC != l.MAC {
		if err := unindexLease(tx, old.MAC, l.IP); err != nil {
			return err
		}
	}
	if l.MAC != "" {
		macs := bucket(tx, bucketLeaseMACs)
		if prev := string(macs.Get([]byte(l.MAC))); prev != "" && prev != l.IP {
			if p, err := getLease(tx, prev); err == nil && p.MAC == l.MAC {
				if err := bucket(tx, bucketLeases).Delete([]byte(prev)); err != nil {
					return err
				}
			}
		}
		if err := macs.Put([]byte(l.MAC), []byte(l.IP)); err != nil {
			return err
		}
	}
	v, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return bucket(tx, bucketLeases).Put([]byte(l.IP), v)
}

// deleteLease deletes l, a stored lease, and its index entry.
func deleteLease(tx *bolt.Tx, l store.Lease) error {
	if err := bucket(tx, bucketLeases).Delete([]byte(l.IP)); err != nil {
		return err
	}
	return unindexLease(tx, l.MAC, l.IP)
}

// unindexLease drops mac ("": none) from the index if it points at ip.
func unindexLease(tx *bolt.Tx, mac, ip string) error {
	if mac == "" {
		return nil
	}
	macs := bucket(tx, bucketLeaseMACs)
	if string(macs.Get([]byte(mac))) != ip {
		return nil
	}
	return macs.Delete([]byte(mac))
}
