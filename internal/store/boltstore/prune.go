package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// verdict is what prune does with one record.
type verdict int

const (
	exempt    verdict = iota // never pruned, not counted
	candidate                // kept unless more than max candidates are newer
	expired                  // deleted
)

// prune deletes from b every expired record and the oldest candidates beyond
// max. judge tells a record's verdict and, for a candidate, its age key.
// It returns the deleted keys.
func prune(b *bolt.Bucket, max int, judge func(k, v []byte) (verdict, time.Time)) ([][]byte, error) {
	type rec struct {
		key  []byte
		seen time.Time
	}
	var kept []rec
	var drop [][]byte
	err := b.ForEach(func(k, v []byte) error {
		// Copied: keys point into the mmap, and deleting rewrites pages.
		switch vd, seen := judge(k, v); vd {
		case candidate:
			kept = append(kept, rec{key: bytes.Clone(k), seen: seen})
		case expired:
			drop = append(drop, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range store.OldestBeyond(kept, func(r rec) time.Time { return r.seen }, max) {
		drop = append(drop, r.key)
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return nil, err
		}
	}
	return drop, nil
}

// PruneDiscovered deletes the machines that were only discovered (state
// discovered: no Machine in Git claims them), oldest sighting first, until at
// most max remain, with their provisioning data: anyone on the VLAN can make
// up MACs, and each sighting of a new one would otherwise be a record
// forever. Machines holding secrets (BMC credentials an operator set) stay.
// It returns the deleted machines.
func (db *DB) PruneDiscovered(ctx context.Context, max int) ([]store.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []store.Machine
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		out = nil
		secrets := bucket(tx, bucketSecrets).Cursor()
		byMAC := map[string]store.Machine{}
		drop, err := prune(bucket(tx, bucketMachines), max, func(k, v []byte) (verdict, time.Time) {
			if st, ok := recordState(v); ok && st != store.StateDiscovered {
				return exempt, time.Time{} // most records: no decoding
			}
			var m store.Machine
			if json.Unmarshal(v, &m) != nil || m.State != store.StateDiscovered {
				return exempt, time.Time{}
			}
			prefix := append(bytes.Clone(k), '/')
			if sk, _ := secrets.Seek(prefix); bytes.HasPrefix(sk, prefix) {
				return exempt, time.Time{}
			}
			byMAC[m.MAC] = m
			return candidate, m.LastSeen
		})
		if err != nil {
			return err
		}
		if len(drop) > 0 {
			if err := bumpRevision(tx); err != nil {
				return err
			}
		}
		for _, k := range drop {
			m := byMAC[string(k)]
			out = append(out, m)
			if err := bucket(tx, bucketProvisioning).Delete(k); err != nil {
				return err
			}
			if m.UUID != "" {
				if err := unindexUUID(tx, m.UUID, m.MAC); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: prune discovered machines: %w", err)
	}
	return out, nil
}
