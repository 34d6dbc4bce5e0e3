package etcdstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/etcdmember"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
	"github.com/provisiond/provisiond/internal/store/storetest"
	"github.com/provisiond/provisiond/internal/testutil"
)

// TestConformanceThreeMembers runs the conformance suite on three-member
// clusters, the client given every member: etcd processes (test/etcdserver),
// and members embedded as provisiond serve --etcd-name runs them. Each
// suite test works under its own prefix of the one cluster.
func TestConformanceThreeMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two three-member etcd clusters")
	}
	t.Run("processes", func(t *testing.T) {
		start := time.Now()
		c := etcdtest.StartCluster(t, 3)
		t.Logf("three etcd processes ready in %v", time.Since(start).Round(time.Millisecond))
		conformance(t, c.Endpoints())
		memberFailures(t, c)
	})
	t.Run("embedded", func(t *testing.T) {
		start := time.Now()
		endpoints := embeddedCluster(t, 3)
		t.Logf("three embedded members ready in %v", time.Since(start).Round(time.Millisecond))
		conformance(t, endpoints)
	})
}

func conformance(t *testing.T, endpoints []string) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return openOn(t, endpoints, freshPrefix(), opts)
	})
}

// embeddedCluster starts n etcdmember members in this process, together,
// and returns their client URLs.
func embeddedCluster(t *testing.T, n int) []string {
	t.Helper()
	cfgs := make([]etcdmember.Config, n)
	var initial []string
	for i := range cfgs {
		cfgs[i] = etcdmember.Config{
			Name:      fmt.Sprintf("e%d", i),
			DataDir:   filepath.Join(t.TempDir(), "etcd"),
			PeerURL:   "http://" + testutil.FreeAddr(t),
			ClientURL: "http://" + testutil.FreeAddr(t),
		}
		initial = append(initial, cfgs[i].Name+"="+cfgs[i].PeerURL)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	urls := make([]string, n)
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
		cfgs[i].ReadyTimeout = 30 * time.Second
		wg.Go(func() {
			m, err := etcdmember.Start(context.Background(), cfgs[i])
			if err != nil {
				errs[i] = err
				return
			}
			t.Cleanup(m.Close)
			urls[i] = m.ClientURL()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return urls
}

// memberFailures is what an instance sees of member failures on a real
// three-member cluster: with one member down, Health answers at once with
// the leader and that endpoint down; an instance started while the cluster
// elects a new leader still opens; with two down, Health reports the lost
// quorum within its deadline.
func memberFailures(t *testing.T, c *etcdtest.Cluster) {
	ctx := context.Background()
	s := openOn(t, c.Endpoints(), freshPrefix(), store.Options{})
	health := func() (store.Health, time.Duration) {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		h := s.Health(hctx)
		return h, time.Since(start)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	c.Kill(follower)
	h, took := health()
	if h.Err != nil || h.Leader == "" || took > time.Second {
		t.Errorf("one follower down: health %+v in %v; want ok with a leader within 1s", h, took)
	}
	for i, e := range h.Endpoints {
		if down := e.Err != nil; down != (e.Endpoint == c.Endpoint(follower)) {
			t.Errorf("endpoint %d %s: err %v; only %s is down", i, e.Endpoint, e.Err, c.Endpoint(follower))
		}
	}
	c.Start(follower)

	// Kill the leader and open at once, mid-election.
	if leader, err = c.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	c.Kill(leader)
	start := time.Now()
	late, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: c.Endpoints(), Prefix: freshPrefix(), DialTimeout: 5 * time.Second}, store.Options{})
	if err != nil {
		t.Fatalf("open during a leader election: %v", err)
	}
	t.Logf("opened during a leader election in %v", time.Since(start).Round(time.Millisecond))
	late.Close()

	// The leader is still down: kill another, and the quorum is gone.
	other := (leader + 1) % 3
	c.Kill(other)
	h, took = health()
	if h.Err == nil || took > 2500*time.Millisecond {
		t.Errorf("two of three down: health %+v in %v; want an error within the deadline", h, took)
	}
	c.Start(leader)
	c.Start(other)
	deadline := time.Now().Add(15 * time.Second)
	for h, _ = health(); h.Err != nil && time.Now().Before(deadline); h, _ = health() {
		time.Sleep(100 * time.Millisecond)
	}
	if h.Err != nil || h.Leader == "" {
		t.Errorf("quorum back: health %+v", h)
	}
}
