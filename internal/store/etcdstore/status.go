package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/store"
)

// endpointTimeout bounds one endpoint's status request within Health: a
// dead member must not hold the whole answer (a /healthz probe gives up
// after a second or two) when the cluster itself is fine.
const endpointTimeout = 500 * time.Millisecond

// Health asks every configured endpoint for its status and does one
// linearizable read (Ping), all at once and within ctx: /healthz and the
// metrics call it, so it must not outlast their deadlines. Leader is the
// one a majority of the endpoints name.
func (s *Store) Health(ctx context.Context) store.Health {
	eps := s.cli.Endpoints()
	h := store.Health{Backend: "etcd", Endpoints: make([]store.EndpointHealth, len(eps))}
	type status struct {
		member, leader uint64
		version        string
	}
	statuses := make([]status, len(eps))
	var names map[uint64]string
	var wg sync.WaitGroup
	wg.Go(func() { names = s.memberNames(ctx) })
	wg.Go(func() {
		start := time.Now()
		h.Err = s.Ping(ctx)
		h.Latency = time.Since(start)
	})
	for i, ep := range eps {
		wg.Go(func() {
			ectx, cancel := context.WithTimeout(ctx, endpointTimeout)
			defer cancel()
			start := time.Now()
			resp, err := s.cli.Status(ectx, ep)
			h.Endpoints[i] = store.EndpointHealth{Endpoint: ep, Latency: time.Since(start)}
			if err != nil {
				h.Endpoints[i].Err = fmt.Errorf("status of %s: %w", ep, err)
				return
			}
			statuses[i] = status{member: resp.Header.MemberId, leader: resp.Leader, version: resp.Version}
		})
	}
	wg.Wait()
	name := func(id uint64) string {
		if n := names[id]; n != "" {
			return n
		}
		return fmt.Sprintf("%x", id)
	}
	votes := map[string]int{}
	for i, st := range statuses {
		if h.Endpoints[i].Err != nil {
			continue
		}
		e := &h.Endpoints[i]
		e.Member, e.Version = name(st.member), st.version
		if st.leader != 0 {
			e.Leader = name(st.leader)
			votes[e.Leader]++
		}
	}
	for leader, n := range votes {
		if n > len(eps)/2 {
			h.Leader = leader
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
