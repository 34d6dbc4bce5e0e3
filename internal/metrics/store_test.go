package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/provisiond/provisiond/internal/store"
)

// The store's probe shows at every scrape: up, latency, and for etcd each
// endpoint and whether there is a leader; a lost quorum reads as down.
func TestStoreHealth(t *testing.T) {
	var h store.Health
	m := New(Config{Store: func(context.Context) store.Health { return h }})
	h = store.Health{Backend: "etcd", Latency: 2 * time.Millisecond, Leader: "e1", Endpoints: []store.EndpointHealth{
		{Endpoint: "http://127.0.0.1:2379"}, {Endpoint: "http://127.0.0.1:2479", Err: errors.New("timeout")},
	}}
	want := `
# HELP provisiond_store_up 1 if a read of the store went through at this scrape (etcd: a linearizable read, so with quorum), else 0; by backend (bolt, etcd).
# TYPE provisiond_store_up gauge
provisiond_store_up{backend="etcd"} 1
# HELP provisiond_store_endpoint_up 1 if the etcd client endpoint answered a status request at this scrape, else 0.
# TYPE provisiond_store_endpoint_up gauge
provisiond_store_endpoint_up{endpoint="http://127.0.0.1:2379"} 1
provisiond_store_endpoint_up{endpoint="http://127.0.0.1:2479"} 0
# HELP provisiond_store_has_leader 1 if a majority of the etcd endpoints name a leader at this scrape, else 0 (etcd only).
# TYPE provisiond_store_has_leader gauge
provisiond_store_has_leader 1
# HELP provisiond_store_probe_seconds Time the store's probe read took at this scrape.
# TYPE provisiond_store_probe_seconds gauge
provisiond_store_probe_seconds 0.002
`
	names := []string{"provisiond_store_up", "provisiond_store_endpoint_up", "provisiond_store_has_leader", "provisiond_store_probe_seconds"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	h = store.Health{Backend: "etcd", Err: errors.New("etcdserver: request timed out"), Endpoints: h.Endpoints}
	down := `
# HELP provisiond_store_up 1 if a read of the store went through at this scrape (etcd: a linearizable read, so with quorum), else 0; by backend (bolt, etcd).
# TYPE provisiond_store_up gauge
provisiond_store_up{backend="etcd"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(down), "provisiond_store_up"); err != nil {
		t.Error(err)
	}
}

// A store that does not answer (etcd without quorum, its endpoints
// unreachable) makes the scrape report it down within scrapeTimeout; the
// probe is bounded by the collector's deadline, not left to hang.
func TestStoreHealthBounded(t *testing.T) {
	m := New(Config{Store: func(ctx context.Context) store.Health {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the store probe has no deadline")
			return store.Health{Backend: "etcd", Err: errors.New("no deadline")}
		}
		<-ctx.Done() // as an etcd client does with no endpoint answering
		return store.Health{Backend: "etcd", Err: ctx.Err()}
	}})
	start := time.Now()
	down := `
# HELP provisiond_store_up 1 if a read of the store went through at this scrape (etcd: a linearizable read, so with quorum), else 0; by backend (bolt, etcd).
# TYPE provisiond_store_up gauge
provisiond_store_up{backend="etcd"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(down), "provisiond_store_up"); err != nil {
		t.Error(err)
	}
	if took := time.Since(start); took < scrapeTimeout || took > scrapeTimeout+time.Second {
		t.Errorf("a scrape with the store hung took %v; want the probe cut at %v", took, scrapeTimeout)
	}
}
