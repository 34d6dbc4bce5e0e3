package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/store"
)

// dumpDirs maps the record kinds to their key directories, in Dump order (meta aside).
var dumpDirs = [...]struct{ kind, dir string }{
	{store.KindMachine, "machines"},
	{store.KindProvisioning, "provisioning"},
	{store.KindUUID, "uuids"},
	{store.KindEvent, "events"},
	{store.KindSecret, "secrets"},
	{store.KindBindIP, "bind-ip"},
	{store.KindBindMAC, "bind-mac"},
	{store.KindLease, "leases"},
}

// Dump implements store.Store: every read is at the etcd revision of the
// first, paged, so the snapshot is consistent while writers go on. A
// compaction of that revision mid-dump fails it; a new dump then starts
// from a newer one.
func (s *Store) Dump(ctx context.Context, fn func(store.Record) error) error {
	if err := s.dump(ctx, fn); err != nil {
		return fmt.Errorf("etcdstore: dump: %w", err)
	}
	return nil
}

func (s *Store) dump(ctx context.Context, fn func(store.Record) error) error {
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.revisionKey()), clientv3.OpGet(s.eventLogKey())).Commit()
	if err != nil {
		return err
	}
	at := resp.Header.Revision
	var rev uint64
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		rev = uint64(kvs[0].ModRevision)
	}
	lg, _, err := decodeEventLog(resp.Responses[1].GetResponseRange().Kvs)
	if err != nil {
		return err
	}
	if err := fn(store.MetaRecord(store.MetaRevision, rev)); err != nil {
		return err
	}
	if err := fn(store.MetaRecord(store.MetaEventSeq, lg.Last)); err != nil {
		return err
	}
	for _, d := range dumpDirs {
		dir := s.dir(d.dir)
		_, err := s.scan(ctx, dir, clientv3.GetPrefixRangeEnd(dir), false, at, func(kv *mvccpb.KeyValue) (bool, error) {
			r := store.Record{Kind: d.kind, Key: strings.TrimPrefix(string(kv.Key), dir), Value: kv.Value}
			switch d.kind {
			case store.KindEvent:
				seq, err := s.seqOf(kv.Key)
				if err != nil {
					return false, err
				}
				r.Key = store.EventKey(seq)
			case store.KindUUID:
				r.Value, _ = json.Marshal(string(kv.Value)) // a string always marshals
			}
			return true, fn(r)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// maxTxnBytes bounds the keys and values of one restore transaction, under
// etcd's default --max-request-bytes (1.5 MiB): 120 machines with many
// long labels would not fit.
const maxTxnBytes = 1 << 20

// Restore implements store.Store in transactions of at most maxTxnOps
// puts and maxTxnBytes (a larger record goes alone); the first also checks that the prefix holds
// no machine and no event. The last sets the event log's bounds and the
// revision. A failed restore leaves what it had written: delete the prefix
// before trying again.
func (s *Store) Restore(ctx context.Context, records iter.Seq2[store.Record, error]) error {
	if err := s.restore(ctx, records); err != nil {
		return fmt.Errorf("etcdstore: restore to prefix %q: %w", s.prefix, err)
	}
	return nil
}

func (s *Store) restore(ctx context.Context, records iter.Seq2[store.Record, error]) error {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.dir("machines"), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(s.dir("events"), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(s.eventLogKey()),
	).Commit()
	if err != nil {
		return err
	}
	if resp.Responses[0].GetResponseRange().Count > 0 || resp.Responses[1].GetResponseRange().Count > 0 {
		return store.ErrNotEmpty
	}
	lg, _, err := decodeEventLog(resp.Responses[2].GetResponseRange().Kvs)
	if err != nil {
		return err
	}
	// The compares keep a daemon that starts writing meanwhile from being
	// mixed in: whatever it wrote first, the restore stops.
	empty := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(s.dir("machines")), "=", 0).WithPrefix(),
		clientv3.Compare(clientv3.CreateRevision(s.dir("events")), "=", 0).WithPrefix(),
	}
	var ops []clientv3.Op
	size := 0 // of the keys and values in ops
	flush := func() error {
		err := s.commit(ctx, empty, ops)
		if errors.Is(err, errConflict) {
			return store.ErrNotEmpty
		}
		empty, ops, size = nil, ops[:0], 0
		return err
	}
	var rs store.Restoring
	for r, err := range records {
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return err
		}
		write, err := rs.Check(r)
		if err != nil {
			return err
		}
		if !write {
			continue
		}
		puts := s.restoreOps(r)
		n := 0
		for _, op := range puts {
			n += len(op.KeyBytes()) + len(op.ValueBytes())
		}
		// Flushed before the puts that would cross a bound, so that a large
		// record never lands on top of an almost full transaction.
		if len(ops)+len(puts) > maxTxnOps || len(ops) > 0 && size+n > maxTxnBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, puts...)
		size += n
	}
	next := eventLog{Last: max(lg.Last, rs.LastSeq), First: rs.FirstSeq}
	if rs.FirstSeq == 0 {
		next.First = next.Last + 1
	}
	op, err := putJSON(s.eventLogKey(), next)
	if err != nil {
		return err
	}
	if len(ops)+2 > maxTxnOps {
		if err := flush(); err != nil {
			return err
		}
	}
	ops = append(ops, op, s.bumpRevision())
	return flush()
}

// restoreOps are the puts of r, a record store.Restoring accepted: a lease
// goes with its index entry (a backup holds one lease per MAC).
func (s *Store) restoreOps(r store.Record) []clientv3.Op {
	if r.Kind == store.KindLease {
		var l store.Lease
		_ = json.Unmarshal(r.Value, &l) // checked
		ops := []clientv3.Op{clientv3.OpPut(s.leaseKey(r.Key), string(r.Value))}
		if l.MAC != "" {
			ops = append(ops, clientv3.OpPut(s.leaseMACKey(l.MAC), l.IP))
		}
		return ops
	}
	return []clientv3.Op{s.restoreOp(r)}
}

// restoreOp is the put of r, a record store.Restoring accepted, of any
// kind but a lease.
func (s *Store) restoreOp(r store.Record) clientv3.Op {
	switch r.Kind {
	case store.KindMachine:
		return clientv3.OpPut(s.machineKey(r.Key), string(r.Value))
	case store.KindProvisioning:
		return clientv3.OpPut(s.provKey(r.Key), string(r.Value))
	case store.KindUUID:
		var mac string
		_ = json.Unmarshal(r.Value, &mac) // checked
		return clientv3.OpPut(s.uuidKey(r.Key), mac)
	case store.KindEvent:
		seq, _ := strconv.ParseUint(r.Key, 10, 64) // checked
		return clientv3.OpPut(s.eventKey(seq), string(r.Value))
	case store.KindSecret:
		return clientv3.OpPut(s.dir("secrets")+r.Key, string(r.Value))
	case store.KindBindIP:
		return clientv3.OpPut(s.bindIPKey(r.Key), string(r.Value))
	default: // store.KindBindMAC: Check accepts no other kind for writing
		return clientv3.OpPut(s.bindMACKey(r.Key), string(r.Value))
	}
}
