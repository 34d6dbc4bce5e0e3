package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/provisiond/provisiond/internal/store"
)

// scrapeTimeout bounds each store read a scrape makes: a store that lost
// its quorum must make the scrape report it, not hang it.
const scrapeTimeout = 2 * time.Second

// storeCollector probes the store at scrape time: whether a read goes
// through, how long it took, and for etcd each endpoint and the leader.
// Endpoint labels are the operator's --etcd-endpoints, a fixed set.
type storeCollector struct {
	probe                           func(context.Context) store.Health
	up, latency, endpointUp, leader *prometheus.Desc
}

func newStoreCollector(probe func(context.Context) store.Health) storeCollector {
	return storeCollector{
		probe: probe,
		up: prometheus.NewDesc("provisiond_store_up",
			"1 if a read of the store went through at this scrape (etcd: a linearizable read, so with quorum), else 0; by backend (bolt, etcd).", []string{"backend"}, nil),
		latency: prometheus.NewDesc("provisiond_store_probe_seconds",
			"Time the store's probe read took at this scrape.", nil, nil),
		endpointUp: prometheus.NewDesc("provisiond_store_endpoint_up",
			"1 if the etcd client endpoint answered a status request at this scrape, else 0.", []string{"endpoint"}, nil),
		leader: prometheus.NewDesc("provisiond_store_has_leader",
			"1 if a majority of the etcd endpoints name a leader at this scrape, else 0 (etcd only).", nil, nil),
	}
}

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.latency
	ch <- c.endpointUp
	ch <- c.leader
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	h := c.probe(ctx)
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, bool01(h.Err == nil), h.Backend)
	ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, h.Latency.Seconds())
	if len(h.Endpoints) == 0 {
		return // bbolt: no endpoints, no leader
	}
	for _, e := range h.Endpoints {
		ch <- prometheus.MustNewConstMetric(c.endpointUp, prometheus.GaugeValue, bool01(e.Err == nil), e.Endpoint)
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, bool01(h.Leader != ""))
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
