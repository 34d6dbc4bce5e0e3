package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
)

// A write through one instance moves every instance's Revision, which each
// answers from its watch: the dashboard's live refresh on B sees A's write
// without B polling etcd for it, and a writer always reads at least its own
// write's revision.
func TestRevisionFollowsOtherInstances(t *testing.T) {
	ctx := context.Background()
	prefix := freshPrefix()
	a, b := open(t, prefix, store.Options{}), open(t, prefix, store.Options{})
	before, err := b.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, _, err := a.Seen(ctx, store.Machine{MAC: mac1, Name: fmt.Sprintf("n%d", i)}, nil); err != nil {
			t.Fatal(err)
		}
		own, err := a.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := rawRevision(t, prefix); own != want {
			t.Fatalf("after its own write A reads revision %d, etcd has %d", own, want)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := b.Revision(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Equal from B's watch, not from a read of etcd: B's cache is
			// live and holds A's write.
			cached, live := etcdstore.CachedRevision(b)
			if got == own && live && cached == own {
				break
			}
			if got > own || time.Now().After(deadline) {
				t.Fatalf("B's revision %d (cached %d, watch live %v), want A's %d from the watch (before: %d)", got, cached, live, own, before)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// rawRevision reads the revision key's ModRevision through a client of
// its own: what every instance's Revision must agree with.
func rawRevision(t *testing.T, prefix string) uint64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(context.Background(), prefix+"/meta/revision")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read the revision key: %v %v", resp, err)
	}
	return uint64(resp.Kvs[0].ModRevision)
}

// Health on a member that answers: one endpoint, up, naming itself leader,
// and a read that went through.
func TestHealth(t *testing.T) {
	s := open(t, freshPrefix(), store.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h := s.Health(ctx)
	if h.Err != nil || h.Backend != "etcd" || h.Leader == "" || len(h.Endpoints) != 1 {
		t.Fatalf("health = %+v", h)
	}
	if e := h.Endpoints[0]; e.Err != nil || e.Endpoint != endpoint || e.Member != h.Leader || e.Leader != h.Leader || e.Version == "" {
		t.Errorf("endpoint = %+v", e)
	}
}
