package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
)

// A prune's deletions race the renewals of other instances: a binding
// renewed after the prune read it stays, and the one beside it, unchanged,
// goes all the same, in the same transaction.
func TestPruneKeepsRenewedBinding(t *testing.T) {
	ctx := context.Background()
	prefix := freshPrefix()
	s := open(t, prefix, store.Options{})
	for _, b := range []store.Binding{{MAC: mac1, IP: "192.0.2.1"}, {MAC: mac2, IP: "192.0.2.2"}} {
		if err := s.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, prefix+"/bind-ip/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 2 {
		t.Fatalf("read the bindings: %v %v", resp, err)
	}
	read := map[string]int64{} // what the prune read
	for _, kv := range resp.Kvs {
		read[string(kv.Key)] = kv.ModRevision
	}
	if err := s.Bind(ctx, store.Binding{MAC: mac1, IP: "192.0.2.1"}); err != nil { // renewed meanwhile
		t.Fatal(err)
	}
	if n, err := etcdstore.DeleteUnchanged(ctx, s, read); n != 1 || err != nil {
		t.Errorf("deleted %d, %v; want 1: the unchanged binding", n, err)
	}
	if b, err := s.IPBinding(ctx, "192.0.2.1"); err != nil || b.MAC != mac1 {
		t.Errorf("renewed binding: %+v, %v; want it kept", b, err)
	}
	if _, err := s.IPBinding(ctx, "192.0.2.2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unchanged binding: %v; want it deleted", err)
	}
}
