package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/store"
)

// Health asks every configured endpoint for its status in parallel and does
// one linearizable read (Ping), all within ctx: /healthz and the metrics
// call it, so it must not outlast their deadlines. Leader is the one a
// majority of the endpoints name.
func (s *Store) Health(ctx context.Context) store.Health {
	names := s.memberNames(ctx)
	eps := s.cli.Endpoints()
	h := store.Health{Backend: "etcd", Endpoints: make([]store.EndpointHealth, len(eps))}
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Go(func() {
			st := store.EndpointHealth{Endpoint: ep}
			start := time.Now()
			resp, err := s.cli.Status(ctx, ep)
			st.Latency = time.Since(start)
			if err != nil {
				st.Err = fmt.Errorf("status of %s: %w", ep, err)
			} else {
				st.Version = resp.Version
				st.Member = names[resp.Header.MemberId]
				if resp.Leader != 0 {
					st.Leader = names[resp.Leader]
					if st.Leader == "" {
						st.Leader = fmt.Sprintf("%x", resp.Leader)
					}
				}
			}
			h.Endpoints[i] = st
		})
	}
	start := time.Now()
	h.Err = s.Ping(ctx)
	h.Latency = time.Since(start)
	wg.Wait()
	votes := map[string]int{}
	for _, e := range h.Endpoints {
		if e.Leader != "" {
			votes[e.Leader]++
		}
	}
	for name, n := range votes {
		if n > len(h.Endpoints)/2 {
			h.Leader = name
		}
	}
	return h
}

// memberNames maps member IDs to names; empty if the list cannot be read
// (the statuses then show IDs). Serializable: any member answers it, even
// without quorum, which is when the names matter most.
func (s *Store) memberNames(ctx context.Context) map[uint64]string {
	names := map[uint64]string{}
	resp, err := s.cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return names
	}
	for _, m := range resp.Members {
		names[m.ID] = m.Name
	}
	return names
}

// Ping is a linearizable read: it answers only while the cluster has quorum.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.cli.Get(ctx, s.revisionKey()); err != nil {
		return fmt.Errorf("etcdstore: ping: %w", err)
	}
	return nil
}
