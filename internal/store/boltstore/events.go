package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// ageCheckEvery is how often (in appends) the age cap is checked: it costs a
// decode of the oldest event, the count cap does not.
const ageCheckEvery = 64

// AppendEvent implements Store. It goes through db.Batch so that concurrent
// appends share fsyncs; the closure is idempotent because NextSequence and the
// trimming roll back with a failed batch and it overwrites, not accumulates, e.Seq.
func (db *DB) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if err := ctx.Err(); err != nil {
		return store.Event{}, err
	}
	e, err := e.Canonical()
	if err != nil {
		return store.Event{}, fmt.Errorf("store: %w", err)
	}
	now := db.now()
	var out store.Event
	err = db.bdb.Batch(func(tx *bolt.Tx) error {
		var err error
		if out, err = db.appendEvent(tx, e, now); err != nil {
			return err
		}
		return bumpRevision(tx)
	})
	if err != nil {
		return store.Event{}, fmt.Errorf("store: append event %s: %w", e.Type, err)
	}
	return out, nil
}

// appendEvent stamps e with the next Seq and now, and trims the log. The store
// stamps the time itself so that age trimming can trust it.
func (db *DB) appendEvent(tx *bolt.Tx, e store.Event, now time.Time) (store.Event, error) {
	b := bucket(tx, bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return store.Event{}, err
	}
	e.Seq, e.Time = seq, now
	v, err := json.Marshal(e)
	if err != nil {
		return store.Event{}, err
	}
	if err := b.Put(seqKey(seq), v); err != nil {
		return store.Event{}, err
	}
	return e, db.trimEvents(b, seq, now)
}

// trimEvents keeps the log within MaxEvents and MaxEventAge after appending
// seq. Keys come from NextSequence and are only ever deleted from the front,
// so the count is seq-first+1 without a scan; store.TrimCount says how many
// of the oldest go.
func (db *DB) trimEvents(b *bolt.Bucket, seq uint64, now time.Time) error {
	c := b.Cursor()
	k, v := c.First() // never nil: seq was just put
	drop := store.TrimCount(seq-binary.BigEndian.Uint64(k)+1, db.maxEvents)
	checkAge := seq%ageCheckEvery == 0
	cutoff := now.Add(-db.maxEventAge)
	for ; k != nil && (drop > 0 || checkAge); k, v = c.First() {
		if drop > 0 {
			drop--
		} else {
			var e struct {
				Time time.Time `json:"time"`
			}
			// An event that no longer decodes goes as if expired: failing here
			// would fail every later age check, and with it every append.
			if err := json.Unmarshal(v, &e); err == nil && !e.Time.Before(cutoff) {
				break
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Events implements Store.
func (db *DB) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := q.Canonical()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if q.Empty() {
		return nil, nil
	}
	// Needles skip records before decoding them, so that a query for one
	// machine or type over a full log stays cheap; the decoded event is
	// checked all the same.
	var needles [][]byte
	if q.MAC != "" {
		needles = append(needles, []byte(`"mac":"`+q.MAC+`"`))
	}
	if q.Type != "" {
		t, _ := json.Marshal(q.Type)
		needles = append(needles, append([]byte(`"type":`), t...))
	}
	before := seqKey(q.BeforeSeq) // once, not per event scanned
	below := func(k []byte) bool { return q.BeforeSeq == 0 || bytes.Compare(k, before) < 0 }
	var es []store.Event
	err = db.bdb.View(func(tx *bolt.Tx) error {
		c := bucket(tx, bucketEvents).Cursor()
		from := seqKey(q.AfterSeq + 1)
		first, next := func() ([]byte, []byte) { return c.Seek(from) }, c.Next
		if q.Newest {
			first, next = c.Last, c.Prev
			if q.BeforeSeq > 0 {
				first = func() ([]byte, []byte) {
					if k, _ := c.Seek(before); k == nil {
						return c.Last() // every event is older
					}
					return c.Prev()
				}
			}
		}
		for k, v := first(); k != nil && bytes.Compare(k, from) >= 0 && below(k); k, v = next() {
			if !containsAll(v, needles) {
				continue
			}
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if !q.Matches(e) {
				continue
			}
			es = append(es, e)
			if q.Limit > 0 && len(es) == q.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return es, nil
}

// seqKey encodes big-endian so that byte order is sequence order.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

func containsAll(v []byte, needles [][]byte) bool {
	for _, n := range needles {
		if !bytes.Contains(v, n) {
			return false
		}
	}
	return true
}
