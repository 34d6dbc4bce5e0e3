package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// Bind records b: b.IP now belongs to b.MAC (the newest claim of an address
// wins) and b.MAC sent b.UUID (the newest UUID of a MAC wins). Seen is set
// by the store.
func (db *DB) Bind(ctx context.Context, b store.Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := b.Canonical()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	b.Seen = db.now()
	err = db.batch(func(tx *bolt.Tx) error {
		if b.IP != "" {
			if err := putBinding(tx, bucketBindIP, b.IP, store.Binding{MAC: b.MAC, IP: b.IP, Seen: b.Seen}); err != nil {
				return err
			}
		}
		if b.UUID != "" {
			return putBinding(tx, bucketBindMAC, b.MAC, store.Binding{MAC: b.MAC, UUID: b.UUID, Seen: b.Seen})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: bind %s: %w", b.MAC, err)
	}
	return nil
}

// IPBinding returns the binding of address ip: the MAC that last claimed it.
// ErrNotFound if no DHCP packet has shown it (or it was pruned).
func (db *DB) IPBinding(ctx context.Context, ip string) (store.Binding, error) {
	a, err := store.CanonicalIP(ip)
	if err != nil {
		return store.Binding{}, fmt.Errorf("store: binding: %w", err)
	}
	return db.binding(ctx, bucketBindIP, a)
}

// UUIDBinding returns the UUID that mac last sent in DHCP. ErrNotFound if none.
func (db *DB) UUIDBinding(ctx context.Context, mac string) (store.Binding, error) {
	m, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Binding{}, fmt.Errorf("store: binding of %q: %w", mac, err)
	}
	return db.binding(ctx, bucketBindMAC, m)
}

func (db *DB) binding(ctx context.Context, name, key string) (store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return store.Binding{}, err
	}
	var b store.Binding
	err := db.bdb.View(func(tx *bolt.Tx) error {
		v := bucket(tx, name).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		return json.Unmarshal(v, &b)
	})
	if err != nil {
		return store.Binding{}, fmt.Errorf("store: binding of %s: %w", key, err)
	}
	return b, nil
}

// PruneBindings deletes the bindings last seen before cutoff and, of the
// rest, all but the newest max of each kind (address and UUID bindings), so
// that a flood of made-up clients cannot grow the store without bound. It
// returns how many it deleted.
func (db *DB) PruneBindings(ctx context.Context, cutoff time.Time, max int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deleted := 0
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		deleted = 0
		for _, name := range [...]string{bucketBindIP, bucketBindMAC} {
			drop, err := prune(bucket(tx, name), max, func(_, v []byte) (verdict, time.Time) {
				var b store.Binding
				if json.Unmarshal(v, &b) != nil || b.Seen.Before(cutoff) {
					return expired, time.Time{}
				}
				return candidate, b.Seen
			})
			if err != nil {
				return fmt.Errorf("prune %s: %w", name, err)
			}
			deleted += len(drop)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune bindings: %w", err)
	}
	return deleted, nil
}

func putBinding(tx *bolt.Tx, name, key string, b store.Binding) error {
	v, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return bucket(tx, name).Put([]byte(key), v)
}
