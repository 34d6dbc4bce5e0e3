package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/store"
)

// secretKeyOf is the key of (mac, name), or ErrInvalid.
func (s *Store) secretKeyOf(mac, name string) (string, error) {
	k, err := store.SecretKey(mac, name)
	if err != nil {
		return "", err
	}
	return s.dir("secrets") + k, nil
}

// PutSecret implements store.Store. The machine need not be known yet.
func (s *Store) PutSecret(ctx context.Context, mac, name string, blob []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := s.secretKeyOf(mac, name)
	if err != nil {
		return fmt.Errorf("etcdstore: put secret: %w", err)
	}
	if _, err := s.cli.Put(ctx, key, string(blob)); err != nil {
		return fmt.Errorf("etcdstore: put secret %s/%s: %w", mac, name, err)
	}
	return nil
}

// Secret implements store.Store.
func (s *Store) Secret(ctx context.Context, mac, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := s.secretKeyOf(mac, name)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: secret: %w", err)
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: secret %s/%s: %w", mac, name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdstore: secret %s/%s: %w", mac, name, store.ErrNotFound)
	}
	return append([]byte{}, resp.Kvs[0].Value...), nil
}

// DeleteSecret implements store.Store.
func (s *Store) DeleteSecret(ctx context.Context, mac, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := s.secretKeyOf(mac, name)
	if err != nil {
		return fmt.Errorf("etcdstore: delete secret: %w", err)
	}
	resp, err := s.cli.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("etcdstore: delete secret %s/%s: %w", mac, name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("etcdstore: delete secret %s/%s: %w", mac, name, store.ErrNotFound)
	}
	return nil
}

// Bind implements store.Store: both bindings in one transaction. Bindings
// are no machine and no event: the revision stays.
func (s *Store) Bind(ctx context.Context, b store.Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := b.Canonical()
	if err != nil {
		return fmt.Errorf("etcdstore: %w", err)
	}
	mac, ip := b.MAC, b.IP
	now := s.now()
	var ops []clientv3.Op
	if ip != "" {
		op, err := putJSON(s.bindIPKey(ip), store.Binding{MAC: mac, IP: ip, Seen: now})
		if err != nil {
			return fmt.Errorf("etcdstore: bind %s: %w", mac, err)
		}
		ops = append(ops, op)
	}
	if b.UUID != "" {
		op, err := putJSON(s.bindMACKey(mac), store.Binding{MAC: mac, UUID: b.UUID, Seen: now})
		if err != nil {
			return fmt.Errorf("etcdstore: bind %s: %w", mac, err)
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		return nil
	}
	if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("etcdstore: bind %s: %w", mac, err)
	}
	return nil
}

// IPBinding implements store.Store.
func (s *Store) IPBinding(ctx context.Context, ip string) (store.Binding, error) {
	ip, err := store.CanonicalIP(ip)
	if err != nil {
		return store.Binding{}, fmt.Errorf("etcdstore: binding: %w", err)
	}
	return s.binding(ctx, s.bindIPKey(ip), ip)
}

// UUIDBinding implements store.Store.
func (s *Store) UUIDBinding(ctx context.Context, mac string) (store.Binding, error) {
	m, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Binding{}, fmt.Errorf("etcdstore: binding of %q: %w", mac, err)
	}
	return s.binding(ctx, s.bindMACKey(m), m)
}

func (s *Store) binding(ctx context.Context, key, what string) (store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return store.Binding{}, err
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return store.Binding{}, fmt.Errorf("etcdstore: binding of %s: %w", what, err)
	}
	var b store.Binding
	rev, err := getJSON(resp.Kvs, &b)
	if err != nil {
		return store.Binding{}, fmt.Errorf("etcdstore: binding of %s: %w", what, err)
	}
	if rev == 0 {
		return store.Binding{}, fmt.Errorf("etcdstore: binding of %s: %w", what, store.ErrNotFound)
	}
	return b, nil
}

// candidate is a record a prune may delete: its key, the ModRevision it was
// read at (the delete compares it), its age key, and operations that go
// with its delete (a lease's index entry).
type candidate struct {
	key  string
	rev  int64
	seen time.Time
	also []clientv3.Op
}

func (c candidate) seenAt() time.Time { return c.seen }

// PruneBindings implements store.Store. Each deletion compares the
// binding's ModRevision as read, on its own (deleteUnchanged): a binding
// renewed meanwhile by another instance stays, the others go regardless,
// and no lost compare makes the prune re-read.
func (s *Store) PruneBindings(ctx context.Context, cutoff time.Time, max int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deleted := 0
	for _, dir := range [...]string{s.dir("bind-ip"), s.dir("bind-mac")} {
		var drop, kept []candidate
		err := s.scanDir(ctx, dir, func(kv *mvccpb.KeyValue) (bool, error) {
			c := candidate{key: string(kv.Key), rev: kv.ModRevision}
			var b store.Binding
			if json.Unmarshal(kv.Value, &b) != nil || b.Seen.Before(cutoff) {
				drop = append(drop, c)
			} else {
				c.seen = b.Seen
				kept = append(kept, c)
			}
			return true, nil
		})
		if err == nil {
			var n int
			n, err = s.deleteUnchanged(ctx, append(drop, store.OldestBeyond(kept, candidate.seenAt, max)...))
			deleted += n
		}
		if err != nil {
			return deleted, fmt.Errorf("etcdstore: prune bindings: %w", err)
		}
	}
	return deleted, nil
}

// deleteUnchanged deletes each candidate still at the ModRevision read, with
// its also operations, in transactions of maxTxnOps nested ones (each its
// own compare, delete and also), and returns how many it deleted.
func (s *Store) deleteUnchanged(ctx context.Context, cs []candidate) (int, error) {
	deleted := 0
	for chunk := range slices.Chunk(cs, maxTxnOps) {
		ops := make([]clientv3.Op, 0, len(chunk))
		for _, c := range chunk {
			then := append([]clientv3.Op{clientv3.OpDelete(c.key)}, c.also...)
			ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{unchanged(c.key, c.rev)}, then, nil))
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return deleted, err
		}
		for _, r := range resp.Responses {
			if r.GetResponseTxn().GetSucceeded() {
				deleted++
			}
		}
	}
	return deleted, nil
}

// PruneDiscovered implements store.Store. A machine goes with its
// provisioning data and UUID (unless another MAC claimed it) only if its
// record is as read and it still holds no secret, both compared at commit;
// a lost compare re-runs the prune from a fresh read.
func (s *Store) PruneDiscovered(ctx context.Context, max int) ([]store.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []store.Machine
	err := s.retry(ctx, func() error {
		withSecrets := map[string]bool{}
		err := s.scanDir(ctx, s.dir("secrets"), func(kv *mvccpb.KeyValue) (bool, error) {
			mac, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), s.dir("secrets")), "/")
			withSecrets[mac] = true
			return true, nil
		}, clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		var cands []candidate
		byKey := map[string]store.Machine{}
		err = s.scanDir(ctx, s.dir("machines"), func(kv *mvccpb.KeyValue) (bool, error) {
			var m store.Machine
			if json.Unmarshal(kv.Value, &m) != nil || m.State != store.StateDiscovered || withSecrets[m.MAC] {
				return true, nil
			}
			c := candidate{key: string(kv.Key), rev: kv.ModRevision, seen: m.LastSeen}
			cands = append(cands, c)
			byKey[c.key] = m
			return true, nil
		})
		if err != nil {
			return err
		}
		// Two compares and three operations a machine, plus the revision.
		for chunk := range slices.Chunk(store.OldestBeyond(cands, candidate.seenAt, max), (maxTxnOps-1)/3) {
			cmps := make([]clientv3.Cmp, 0, 2*len(chunk))
			ops := []clientv3.Op{s.bumpRevision()}
			for _, c := range chunk {
				m := byKey[c.key]
				cmps = append(cmps, unchanged(c.key, c.rev),
					clientv3.Compare(clientv3.CreateRevision(s.secretDir(m.MAC)), "=", 0).WithPrefix())
				ops = append(ops, clientv3.OpDelete(c.key), clientv3.OpDelete(s.provKey(m.MAC)))
				if m.UUID != "" {
					ops = append(ops, clientv3.OpTxn(
						[]clientv3.Cmp{clientv3.Compare(clientv3.Value(s.uuidKey(m.UUID)), "=", m.MAC)},
						[]clientv3.Op{clientv3.OpDelete(s.uuidKey(m.UUID))}, nil))
				}
			}
			if err := s.commit(ctx, cmps, ops); err != nil {
				return err
			}
			for _, c := range chunk {
				out = append(out, byKey[c.key])
			}
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("etcdstore: prune discovered machines: %w", err)
	}
	return out, nil
}
