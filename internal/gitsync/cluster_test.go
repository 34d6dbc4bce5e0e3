package gitsync

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/gitsync/gitsynctest"
)

// memCluster is a Cluster in memory, for the follower's rules; the etcd
// one runs against a real etcd in cmd/provisiond's tests. Its Campaign
// blocks until the test calls elect.
type memCluster struct {
	id      string
	mu      sync.Mutex
	state   ClusterState
	changed chan struct{} // closed and replaced at every change
	elected chan Term
}

func newMemCluster(id string) *memCluster {
	return &memCluster{id: id, changed: make(chan struct{}), elected: make(chan Term)}
}

func (c *memCluster) Identity() string { return c.id }

func (c *memCluster) Campaign(ctx context.Context) (Term, error) {
	select {
	case t := <-c.elected:
		return t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *memCluster) State(context.Context) (ClusterState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, nil
}

func (c *memCluster) Watch(ctx context.Context, fn func(ClusterState)) {
	for {
		c.mu.Lock()
		st, ch := c.state, c.changed
		c.mu.Unlock()
		fn(st)
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

func (c *memCluster) set(f func(*ClusterState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.state)
	close(c.changed)
	c.changed = make(chan struct{})
}

// publish makes another instance, leader, publish commit.
func (c *memCluster) publish(commit, leader string) {
	c.set(func(st *ClusterState) {
		st.Leader = leader
		st.Published = &Published{Revision: Revision{Commit: commit, Short: commit[:12], Ref: "refs/heads/main"}, Leader: leader, At: time.Now()}
	})
}

// memTerm is a term of memCluster's.
type memTerm struct {
	c    *memCluster
	done chan struct{}
	once sync.Once
	lost bool // the lease is lost at the first Publish, which fails
}

func (t *memTerm) Done() <-chan struct{} { return t.done }

func (t *memTerm) Publish(_ context.Context, p Published) error {
	if t.lost {
		t.once.Do(func() { close(t.done) })
		return errors.New("lease lost")
	}
	t.c.set(func(st *ClusterState) { st.Published = &p })
	return nil
}

func (t *memTerm) Reject(_ context.Context, p Published) error {
	t.c.set(func(st *ClusterState) { st.Rejected = &p })
	return nil
}

func (t *memTerm) Resign(context.Context) error {
	t.once.Do(func() { close(t.done) })
	return nil
}

// results collects OnSync's Results.
type results struct {
	mu  sync.Mutex
	all []Result
}

func (r *results) add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, res)
}

func (r *results) list() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// A follower loads exactly the published commit, not what the ref names,
// keeps serving it when a published commit cannot be fetched (reporting
// the failure as tried once, and retrying every Interval), and its Sync
// re-reads the published commit rather than fetch the ref. Elected, it
// follows the ref itself and publishes what goes live.
func TestFollowerLoadsThePublishedCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo := gitsynctest.NewFileRepo(t)
	a := repo.Commit(t, "a", map[string]string{"all.yaml": goodProfiles})
	b := repo.Commit(t, "b", map[string]string{"all.yaml": goodProfiles + "# b\n"})
	c := newMemCluster("me")
	c.publish(a, "other")
	var l loader
	var got results
	s, _ := newSyncer(t, repo.URL(), &l, Config{Cluster: c, Interval: 50 * time.Millisecond, OnSync: got.add})

	// Started, it loads the published A although main names B.
	res, err := s.Sync(ctx)
	if err != nil || res.Outcome != Updated || res.Live == nil || res.Live.Commit != a || res.Live.Ref != "refs/heads/main" {
		t.Fatalf("first sync: %+v %v; want A live", res, err)
	}
	if r := res.Role; r == nil || r.Leader || r.LeaderID != "other" || r.Instance != "me" {
		t.Errorf("role %+v; want a follower of other", res.Role)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	c.publish(b, "other")
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "B live", func() bool { return s.Live() != nil && s.Live().Commit == b })

	// A commit the remote does not have: B keeps serving.
	missing := "0123456789abcdef0123456789abcdef01234567"
	c.publish(missing, "other")
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "retries of the missing commit", func() bool {
		n := 0
		for _, r := range got.list() {
			if r.Fetched != nil && r.Fetched.Commit == missing && r.Outcome == Failed {
				n++
			}
		}
		return n >= 3
	})
	tried := 0
	for _, r := range got.list() {
		if r.Fetched != nil && r.Fetched.Commit == missing && r.Tried {
			tried++
		}
	}
	if tried != 1 || s.Live().Commit != b {
		t.Errorf("the missing commit: %d results tried, live %s; want one tried, B live", tried, s.Live().Short)
	}
	if res, err := s.Sync(ctx); err == nil || res.Outcome != Failed || res.Fetched.Commit != missing || res.Live.Commit != b {
		t.Errorf("a follower's Sync with the missing commit published: %+v %v; want failed, B live", res, err)
	}

	// Elected: it syncs the ref at once and publishes main's head.
	head := repo.Commit(t, "c", map[string]string{"all.yaml": goodProfiles + "# c\n"})
	term := &memTerm{c: c, done: make(chan struct{})}
	c.elected <- term
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "the new leader publishes C", func() bool {
		st, _ := c.State(ctx)
		return st.Published.Commit == head && st.Published.Leader == "me" && s.Live().Commit == head
	})
	l.mu.Lock()
	if slices.Contains(l.calls, missing) {
		t.Errorf("loads %v: the missing commit was handed to the loader", l.calls)
	}
	l.mu.Unlock()
	// Its term ends: it follows again, and says so.
	term.Resign(ctx)
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "a follower again", func() bool {
		all := got.list()
		last := all[len(all)-1]
		return last.Role != nil && !last.Role.Leader
	})
	if _, err := s.Sync(ctx); errors.Is(err, context.Canceled) {
		t.Errorf("a follower's Sync after the term: %v", err)
	}
}

// A leader whose term ends before it can publish the commit it made live
// goes back to the published commit at once, without waiting for the
// follower's retry (an hour here): no instance serves a commit the others
// were never told of.
func TestLostTermReturnsToThePublishedCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo := gitsynctest.NewFileRepo(t)
	a := repo.Commit(t, "a", map[string]string{"all.yaml": goodProfiles})
	c := newMemCluster("me")
	c.publish(a, "other")
	var l loader
	s, _ := newSyncer(t, repo.URL(), &l, Config{Cluster: c, Interval: time.Hour})
	if res, err := s.Sync(ctx); err != nil || res.Live == nil || res.Live.Commit != a {
		t.Fatalf("first sync: %+v %v; want A live", res, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	b := repo.Commit(t, "b", map[string]string{"all.yaml": goodProfiles + "# b\n"})
	c.elected <- &memTerm{c: c, done: make(chan struct{}), lost: true}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "B loaded by the leader", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return slices.Contains(l.calls, b)
	})
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "A live again", func() bool {
		live := s.Live()
		return live != nil && live.Commit == a && !s.leading()
	})
	if st, _ := c.State(ctx); st.Published.Commit != a {
		t.Errorf("published %s; want A still", st.Published.Short)
	}
}
