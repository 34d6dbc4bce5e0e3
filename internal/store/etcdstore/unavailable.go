package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/provisiond/provisiond/internal/store"
)

// Transient failures. While a member dies or the cluster elects a leader,
// etcd answers some requests with "leader changed", "no leader", "request
// timed out" or a reset connection (all gRPC Unavailable). They are the
// store's being unavailable for a moment, not the request's fault: kv marks
// them store.ErrUnavailable (HTTP 503, which iPXE and installers retry).
// Nothing is repeated here: the client's own retry interceptor already
// repeats a Get (a Range) on Unavailable, up to 100 times within its ctx,
// and repeats a Txn or Put only if it never reached a server. Writes must
// not be repeated: one that timed out may have committed, and re-running
// its Change could refuse what it already did (a phone-home whose session
// it closed).

// kv is the client's KV with transient failures marked.
type kv struct{ clientv3.KV }

func (k kv) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := k.KV.Get(ctx, key, opts...)
	return resp, markUnavailable(err)
}

func (k kv) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	resp, err := k.KV.Put(ctx, key, val, opts...)
	return resp, markUnavailable(err)
}

func (k kv) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	resp, err := k.KV.Delete(ctx, key, opts...)
	return resp, markUnavailable(err)
}

func (k kv) Txn(ctx context.Context) clientv3.Txn { return txn{k.KV.Txn(ctx)} }

// txn is a Txn whose Commit marks transient failures.
type txn struct{ clientv3.Txn }

func (t txn) If(cs ...clientv3.Cmp) clientv3.Txn   { return txn{t.Txn.If(cs...)} }
func (t txn) Then(ops ...clientv3.Op) clientv3.Txn { return txn{t.Txn.Then(ops...)} }
func (t txn) Else(ops ...clientv3.Op) clientv3.Txn { return txn{t.Txn.Else(ops...)} }

func (t txn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	return resp, markUnavailable(err)
}

// transient reports whether err is etcd being unavailable for now.
func transient(err error) bool {
	if e, ok := errors.AsType[rpctypes.EtcdError](err); ok {
		return e.Code() == codes.Unavailable
	}
	if s, ok := status.FromError(err); ok {
		return s.Code() == codes.Unavailable
	}
	return false
}

// markUnavailable wraps a transient err in store.ErrUnavailable.
func markUnavailable(err error) error {
	if err != nil && transient(err) && !errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}
