package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// dumpBuckets maps the record kinds to their buckets, in Dump order (meta aside).
var dumpBuckets = [...]struct{ kind, bucket string }{
	{store.KindMachine, bucketMachines},
	{store.KindProvisioning, bucketProvisioning},
	{store.KindUUID, bucketUUIDs},
	{store.KindEvent, bucketEvents},
	{store.KindSecret, bucketSecrets},
	{store.KindBindIP, bucketBindIP},
	{store.KindBindMAC, bucketBindMAC},
	{store.KindLease, bucketLeases},
}

// Dump implements store.Store: one read transaction is the snapshot,
// copied out whole before fn sees any of it. fn may be slow (a backup
// streamed to a remote client), and an open read transaction blocks every
// write that needs bbolt to grow its mmap: the daemon would stop recording
// sightings until the download ended. The copy is bounded by the caps on
// events and discovered machines.
func (db *DB) Dump(ctx context.Context, fn func(store.Record) error) error {
	var records []store.Record
	err := db.bdb.View(func(tx *bolt.Tx) error {
		records = append(records, store.MetaRecord(store.MetaRevision, revision(tx)),
			store.MetaRecord(store.MetaEventSeq, bucket(tx, bucketEvents).Sequence()))
		for _, d := range dumpBuckets {
			err := bucket(tx, d.bucket).ForEach(func(k, v []byte) error {
				r := store.Record{Kind: d.kind, Key: string(k), Value: bytes.Clone(v)} // v is the mmap's
				switch d.kind {
				case store.KindEvent:
					r.Key = store.EventKey(binary.BigEndian.Uint64(k))
				case store.KindUUID:
					r.Value, _ = json.Marshal(string(v)) // a string always marshals
				}
				records = append(records, r)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: dump: %w", err)
	}
	for _, r := range records {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return fmt.Errorf("store: dump: %w", err)
		}
	}
	return nil
}

// Restore implements store.Store in one write transaction: a failed
// restore leaves the store as it was.
func (db *DB) Restore(ctx context.Context, records iter.Seq2[store.Record, error]) error {
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		if k, _ := bucket(tx, bucketMachines).Cursor().First(); k != nil {
			return store.ErrNotEmpty
		}
		if k, _ := bucket(tx, bucketEvents).Cursor().First(); k != nil {
			return store.ErrNotEmpty
		}
		var rs store.Restoring
		buckets := map[string]string{}
		for _, d := range dumpBuckets {
			buckets[d.kind] = d.bucket
		}
		for r, err := range records {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			write, err := rs.Check(r)
			if err != nil {
				return err
			}
			if !write {
				continue
			}
			key, value := []byte(r.Key), r.Value
			switch r.Kind {
			case store.KindLease:
				// putLease, so the MAC index is rebuilt with the leases.
				var l store.Lease
				_ = json.Unmarshal(r.Value, &l) // checked by rs.Check
				if err := putLease(tx, l); err != nil {
					return fmt.Errorf("put %s %s: %w", r.Kind, r.Key, err)
				}
				continue
			case store.KindEvent:
				seq, _ := strconv.ParseUint(r.Key, 10, 64) // checked by rs.Check
				key = seqKey(seq)
			case store.KindUUID:
				var mac string
				_ = json.Unmarshal(r.Value, &mac) // checked by rs.Check
				value = []byte(mac)
			}
			if err := bucket(tx, buckets[r.Kind]).Put(key, value); err != nil {
				return fmt.Errorf("put %s %s: %w", r.Kind, r.Key, err)
			}
		}
		events := bucket(tx, bucketEvents)
		if err := events.SetSequence(max(events.Sequence(), rs.LastSeq)); err != nil {
			return err
		}
		return setRevision(tx, max(revision(tx), rs.Revision)+1)
	})
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	return nil
}
