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
		s, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: endpoints, Prefix: freshPrefix(), DialTimeout: 5 * time.Second}, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		return s
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
