package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// revisionCache keeps Store.Revision current from a watch on
// P/meta/revision, so the dashboard's live refreshes (one Revision per
// poll, every instance) cost no round trip, and a write made through any
// instance shows on every dashboard as soon as etcd delivers the event.
//
// The cache answers only while its watch is established: a watch that
// fails (compaction, lost leader: it is opened WithRequireLeader) stops it
// answering until the watch is re-established, and Revision then reads
// etcd, failing as etcd does. Local commits update it at once, so a writer
// never reads a revision older than its own write.
type revisionCache struct {
	mu   sync.Mutex
	rev  uint64
	live bool // the watch is established and has not failed since
}

// get returns the cached revision, and whether it may be used.
func (c *revisionCache) get() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev, c.live
}

// observe raises the revision to rev (never lowers it: events and commit
// answers may arrive out of order).
func (c *revisionCache) observe(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rev = max(c.rev, uint64(rev))
}

func (c *revisionCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
}

// watchRevision runs until ctx ends: it reads the revision key, then
// watches it from just after that read, and starts over after a failure.
func (s *Store) watchRevision(ctx context.Context) {
	const retry = time.Second
	for {
		// Why it ended does not matter here: meanwhile Revision reads etcd,
		// and /healthz reports what etcd answers.
		_ = s.watchRevisionOnce(ctx)
		s.revs.setLive(false)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

func (s *Store) watchRevisionOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	resp, err := s.cli.Get(ctx, s.revisionKey())
	if err != nil {
		return fmt.Errorf("read revision: %w", err)
	}
	if len(resp.Kvs) > 0 {
		s.revs.observe(resp.Kvs[0].ModRevision)
	}
	wc := s.cli.Watch(ctx, s.revisionKey(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithCreatedNotify())
	for wr := range wc {
		if err := wr.Err(); err != nil {
			return err
		}
		if wr.Created {
			s.revs.setLive(true)
		}
		for _, ev := range wr.Events {
			s.revs.observe(ev.Kv.ModRevision)
		}
	}
	return fmt.Errorf("watch closed")
}

// committed notes a successful commit's revision when the transaction put
// the revision key, whose ModRevision is then the commit's.
func (s *Store) committed(resp *clientv3.TxnResponse, ops []clientv3.Op) {
	rk := s.revisionKey()
	for _, op := range ops {
		if op.IsPut() && string(op.KeyBytes()) == rk {
			s.revs.observe(resp.Header.Revision)
			return
		}
	}
}
