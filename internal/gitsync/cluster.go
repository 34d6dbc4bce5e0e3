package gitsync

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Cluster is how instances that share one inventory share the profiles:
// one elected instance, the leader, follows the remote as a lone Syncer
// does and publishes each commit that goes live; the others never fetch the
// ref and load exactly the published commit. A commit the leader rejected
// is never published, so no instance goes live with it. cmd/provisiond
// adapts etcd's election (internal/store/etcdstore) to it.
type Cluster interface {
	// Identity names this instance to the others.
	Identity() string
	// Campaign blocks until this instance is elected, or ctx ends.
	Campaign(ctx context.Context) (Term, error)
	// State reads the shared state now.
	State(ctx context.Context) (ClusterState, error)
	// Watch calls fn with the state now and after every change, one call
	// at a time, until ctx ends.
	Watch(ctx context.Context, fn func(ClusterState))
}

// Term is one instance's time as the leader.
type Term interface {
	// Done is closed when the term ends: the instance lost etcd for the
	// lease's TTL, resigned, or found another leader.
	Done() <-chan struct{}
	// Publish records p as the commit every instance serves; it fails once
	// the term has ended.
	Publish(ctx context.Context, p Published) error
	// Reject records p (Err says why) as the last commit that did not
	// validate, for the followers' status.
	Reject(ctx context.Context, p Published) error
	// Resign ends the term at once, so that another instance takes over
	// without waiting for the lease to expire.
	Resign(ctx context.Context) error
}

// Published is a commit as the leader shares it.
type Published struct {
	Revision
	Leader string    // the identity of the instance that published it
	At     time.Time // when
	Err    string    // a rejected commit's problems, one a line
}

// ClusterState is what the instances share.
type ClusterState struct {
	Published *Published // the commit every instance serves; nil before the first
	Rejected  *Published // the leader's last rejected commit; nil if none
	Leader    string     // the leader's identity; "" while none is elected
}

// Role is an instance's part in a Cluster, as each Result reports it.
type Role struct {
	Instance string // this instance's identity
	Leader   bool   // this instance is the leader
	LeaderID string // the leader's identity; "" while none is elected
}

// clusterRole is a Syncer's cluster side, guarded by Syncer.mu.
type clusterRole struct {
	term    Term         // non-nil while this instance leads
	state   ClusterState // as last read or watched
	started bool         // Run started: a follower no longer syncs the ref itself
	failed  string       // the published commit whose fetch last failed
}

const (
	// campaignRetry is the pause before campaigning again after etcd
	// failed the campaign.
	campaignRetry = time.Second
	// resignTimeout bounds the resignation at the end of a term.
	resignTimeout = 5 * time.Second
)

// runCluster is Run with a Cluster: it follows the published commits all
// along, and campaigns; while elected it runs the leader's loop.
func (s *Syncer) runCluster(ctx context.Context) error {
	s.mu.Lock()
	s.cluster.started = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.follow(ctx)
	}()
	defer func() { <-done }()
	for {
		term, err := s.cfg.Cluster.Campaign(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Warn("campaign to lead the profiles sync failed; retrying", "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(campaignRetry):
			}
			continue
		}
		s.lead(ctx, term)
	}
}

// lead runs the leader's loop for one term: catch up with the last
// published commit, then sync the ref now and every Interval, sharing what
// goes live, until the term or ctx ends.
func (s *Syncer) lead(ctx context.Context, term Term) {
	id := s.cfg.Cluster.Identity()
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-term.Done():
		case <-tctx.Done():
		}
		cancel()
	}()
	s.mu.Lock()
	s.cluster.term = term
	s.cluster.state.Leader = id
	s.synced = false // a new leader syncs at once
	pub := s.cluster.state.Published
	s.mu.Unlock()
	s.log.Info("elected to lead the profiles sync: this instance follows the remote and publishes its commits", "instance", id)
	// Serve what the last leader published before fetching the ref: a tree
	// restored at start may be older, and the remote may not answer.
	if pub != nil && !s.isLive(pub.Commit) {
		s.syncPublished(tctx, pub)
	}
	_ = s.loop(tctx)
	s.mu.Lock()
	s.cluster.term = nil
	if s.cluster.state.Leader == id {
		s.cluster.state.Leader = ""
	}
	st := s.cluster.state
	s.mu.Unlock()
	// A round that began in the term may still make the ref's commit live:
	// wait for it to end (later ones refuse, see followsRef).
	s.work.Lock()
	//lint:ignore SA2001 waiting for the round is the point
	s.work.Unlock()
	select {
	case <-term.Done(): // the lease is gone: nothing left to hand over
	default:
		// Shutting down: hand over at once rather than after the lease's TTL.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), resignTimeout)
		if err := term.Resign(rctx); err != nil {
			s.log.Warn("resign from leading the profiles sync; another instance takes over when the lease expires", "error", err)
		}
		rcancel()
	}
	if ctx.Err() == nil {
		s.log.Warn("no longer leading the profiles sync (lease lost); following the published commits", "instance", id)
		// Back to the published commit at once: the term may have made live
		// a commit it could not publish, which no other instance serves.
		if !s.catchUp(ctx) {
			prev := st
			prev.Leader = id
			s.note(st, prev, true) // the status says so at once
		}
	}
}

// share, on the leader, publishes the ref's commit once it is live, and a
// commit it rejected. Called after a sync of the ref, under work.
func (s *Syncer) share(ctx context.Context, res Result) {
	s.mu.Lock()
	term, pub := s.cluster.term, s.cluster.state.Published
	s.mu.Unlock()
	if term == nil || res.Fetched == nil {
		return
	}
	p := Published{Revision: *res.Fetched, Leader: s.cfg.Cluster.Identity(), At: time.Now()}
	switch {
	case res.Outcome == Rejected && res.Tried:
		p.Err = strings.Join(errorLines(res.Err), "\n")
		if err := term.Reject(ctx, p); err != nil {
			s.log.Warn("share the rejected profiles commit with the other instances", "commit", p.Short, "error", err)
		}
	case res.Live != nil && res.Live.Commit == res.Fetched.Commit && (pub == nil || pub.Commit != p.Commit):
		if err := term.Publish(ctx, p); err != nil {
			s.log.Error("publish the live profiles commit; the other instances keep serving the last one published", "commit", p.Short, "error", err)
			return
		}
		s.log.Info("profiles commit published to the other instances", "commit", p.Short)
		s.mu.Lock()
		s.cluster.state.Published = &p
		s.mu.Unlock()
	}
}

// errorLines is err's text a line at a time; a loader's Problems print one
// problem a line.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(err.Error()), "\n")
}

// follow tracks the shared state until ctx ends: while another instance
// leads, it loads each newly published commit, and retries every Interval
// one that failed to load.
func (s *Syncer) follow(ctx context.Context) {
	latest := make(chan ClusterState, 1) // the newest state only
	var watching sync.WaitGroup
	defer watching.Wait()
	watching.Go(func() {
		s.cfg.Cluster.Watch(ctx, func(st ClusterState) {
			select {
			case <-latest:
			default:
			}
			latest <- st // the only sender: never blocks after the drain
		})
	})
	retry := time.NewTicker(s.cfg.Interval)
	defer retry.Stop()
	first := true // the status gets the role at once, even with nothing to load
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-latest:
			s.mu.Lock()
			prev := s.cluster.state
			s.cluster.state = st
			s.mu.Unlock()
			if !s.catchUp(ctx) && !s.leading() {
				s.note(st, prev, first)
			}
			first = false
		case <-retry.C:
			s.catchUp(ctx)
		}
	}
}

// catchUp loads the published commit if this instance follows and it is
// not live, and reports whether it tried.
func (s *Syncer) catchUp(ctx context.Context) bool {
	s.mu.Lock()
	pub, leading := s.cluster.state.Published, s.cluster.term != nil
	s.mu.Unlock()
	if leading || pub == nil || s.isLive(pub.Commit) {
		return false
	}
	s.syncPublished(ctx, pub)
	return true
}

// syncPublished loads the published commit pub, within Timeout.
func (s *Syncer) syncPublished(ctx context.Context, pub *Published) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.sync(ctx, pub)
}

// note reports a change of the shared state that loads nothing, so that
// the status names the new leader, or the commit the leader rejected; with
// force, even if nothing changed.
func (s *Syncer) note(st, prev ClusterState, force bool) {
	if st.Leader != prev.Leader {
		s.log.Info("profiles sync leader", "leader", st.Leader, "was", prev.Leader)
	}
	res := Result{Time: time.Now(), Outcome: Unchanged, Live: s.Live()}
	if p := st.Published; p != nil {
		res.Fetched = clone(&p.Revision)
	}
	if r := st.Rejected; r != nil && (prev.Rejected == nil || prev.Rejected.Commit != r.Commit || !prev.Rejected.At.Equal(r.At)) {
		// Tried is false: the leader recorded the rejection's event.
		res.Outcome, res.Fetched, res.Err = Rejected, clone(&r.Revision), fmt.Errorf("rejected by the leader %s: %s", r.Leader, r.Err)
	} else if st.Leader == prev.Leader && !force {
		return
	}
	_, _ = s.finish(res)
}

// syncFollower is Sync on an instance that does not lead: it reads the
// published commit afresh and loads it if it is not live, and never fetches
// the ref. Before Run, in a cluster where no commit was published yet, it
// syncs the ref as a lone instance does (without publishing), so that the
// first instances can start.
func (s *Syncer) syncFollower(ctx context.Context) (Result, error) {
	start := time.Now()
	st, err := s.cfg.Cluster.State(ctx)
	if err != nil {
		return s.finish(Result{Time: start, Duration: time.Since(start), Outcome: Failed, Live: s.Live(),
			Err: fmt.Errorf("read the published profiles commit: %w", err)})
	}
	s.mu.Lock()
	s.cluster.state = st
	started := s.cluster.started
	s.mu.Unlock()
	switch {
	case st.Published != nil:
		return s.syncPublished(ctx, st.Published)
	case !started:
		ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		return s.sync(ctx, nil)
	}
	leader := st.Leader
	if leader == "" {
		leader = "none elected"
	}
	return s.finish(Result{Time: start, Duration: time.Since(start), Outcome: Failed, Live: s.Live(),
		Err: fmt.Errorf("no profiles commit published yet (leader: %s)", leader)})
}

// fetchFailed marks a follower's failed fetch of pub: it names the commit,
// and is Tried the first time, so that the failure is recorded once.
func (s *Syncer) fetchFailed(res *Result, pub *Published) {
	res.Fetched = clone(&pub.Revision)
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Tried = s.cluster.failed != pub.Commit
	s.cluster.failed = pub.Commit
}

// followsRef reports whether this instance may load the ref's commit:
// alone, before a Cluster's Run, or while it leads. Otherwise it loads only
// published commits.
func (s *Syncer) followsRef() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Cluster == nil || !s.cluster.started || s.cluster.term != nil
}

// leading reports whether this instance is the Cluster's leader.
func (s *Syncer) leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cluster.term != nil
}

// role is the Role of this instance, or nil without a Cluster.
func (s *Syncer) role() *Role {
	if s.cfg.Cluster == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Role{Instance: s.cfg.Cluster.Identity(), Leader: s.cluster.term != nil, LeaderID: s.cluster.state.Leader}
	if r.Leader {
		r.LeaderID = r.Instance
	}
	return r
}

func (s *Syncer) isLive(commit string) bool {
	live := s.Live()
	return live != nil && live.Commit == commit
}
