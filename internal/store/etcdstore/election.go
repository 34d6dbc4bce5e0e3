package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// GitLeaderTTL (seconds) is the lease behind a Git leader's term: when the
// leader dies or loses etcd, another instance takes over about this long
// after. A leader that stops cleanly resigns, and hands over at once.
const GitLeaderTTL = 10

// ErrNotGitLeader: the term ended (its lease expired, or another instance
// was elected) before a write that only the leader may make.
var ErrNotGitLeader = errors.New("etcdstore: no longer the Git leader")

// GitTerm is one instance's term as the leader that follows the profiles'
// Git repository: etcd's own election (concurrency.Election at
// P/git/leader) on a Session of its own whose lease the client keeps alive.
// Only the leader writes P/git/published and P/git/rejected, and each such
// write is fenced on the term's election key, so a deposed leader's late
// write fails instead of overwriting its successor's.
type GitTerm struct {
	s    *Store
	sess *concurrency.Session
	e    *concurrency.Election
	// key and rev are the election key won and its create revision: the
	// fence. Kept apart because Resign clears the Election's.
	key string
	rev int64
}

// CampaignGit blocks until this instance is elected, or ctx ends. identity
// names it to the other instances (GitState.Leader, GitCommit.Leader).
func (s *Store) CampaignGit(ctx context.Context, identity string) (*GitTerm, error) {
	// Granted under ctx, so an unreachable cluster fails the campaign
	// rather than hanging it; the Session then lives with the client.
	lease, err := s.cli.Grant(ctx, GitLeaderTTL)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: git leader lease: %w", err)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(GitLeaderTTL), concurrency.WithLease(lease.ID))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: git leader session: %w", err)
	}
	e := concurrency.NewElection(sess, s.key("git/leader"))
	if err := e.Campaign(ctx, identity); err != nil {
		sess.Close()
		return nil, fmt.Errorf("etcdstore: campaign for git leader: %w", err)
	}
	select {
	case <-sess.Done():
		// The lease expired while waiting: the key that won went with it.
		sess.Close()
		return nil, fmt.Errorf("etcdstore: campaign for git leader: %w", ErrNotGitLeader)
	default:
	}
	return &GitTerm{s: s, sess: sess, e: e, key: e.Key(), rev: e.Rev()}, nil
}

// Done is closed when the term ends: its lease expired or was revoked
// (etcd unreachable for GitLeaderTTL, Resign, Close), or a fenced write
// found another leader.
func (t *GitTerm) Done() <-chan struct{} { return t.sess.Done() }

// Resign ends the term at once, so that another instance takes over
// without waiting for the lease to expire. ctx bounds it all: an
// unreachable cluster delays a shutdown no longer than ctx allows.
func (t *GitTerm) Resign(ctx context.Context) error {
	err := t.e.Resign(ctx)
	// Not Session.Close, whose revoke waits up to the TTL whatever ctx says.
	t.sess.Orphan()
	if _, rerr := t.s.cli.Revoke(ctx, t.sess.Lease()); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("etcdstore: resign as git leader: %w", err)
	}
	return nil
}

// Publish records c as the commit every instance serves.
func (t *GitTerm) Publish(ctx context.Context, c GitCommit) error {
	return t.put(ctx, gitPublishedKey, c)
}

// Reject records c as the last commit that did not validate (c.Error says
// why), for the other instances' status.
func (t *GitTerm) Reject(ctx context.Context, c GitCommit) error {
	return t.put(ctx, gitRejectedKey, c)
}

// put writes k if this term still holds the election key it won.
func (t *GitTerm) put(ctx context.Context, k string, c GitCommit) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("etcdstore: encode %s: %w", k, err)
	}
	resp, err := t.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
		Then(clientv3.OpPut(t.s.key(k), string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: write %s: %w", k, err)
	}
	if !resp.Succeeded {
		t.sess.Close() // the term is over: Done tells the caller
		return fmt.Errorf("etcdstore: write %s: %w", k, ErrNotGitLeader)
	}
	return nil
}
