package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of the profiles' Git sync among instances, under P/git/:
//
//	P/git/leader/<lease>   the election (GitTerm); the oldest key names the leader
//	P/git/published        GitCommit JSON: the commit every instance serves
//	P/git/rejected         GitCommit JSON: the leader's last commit that did not validate
const (
	gitPrefix       = "git/"
	gitLeaderPrefix = "git/leader/"
	gitPublishedKey = "git/published"
	gitRejectedKey  = "git/rejected"
)

// gitWatchRetry is the pause before watching again after the watch broke
// (etcd unreachable, or its member lost the raft leader).
const gitWatchRetry = time.Second

// GitCommit is a profiles commit as the leader shares it.
type GitCommit struct {
	Commit  string    `json:"commit"` // full hash
	Ref     string    `json:"ref"`    // what the leader follows: refs/heads/main...
	Subject string    `json:"subject"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`            // committer time
	Leader  string    `json:"leader"`          // the identity of the instance that wrote it
	At      time.Time `json:"at"`              // when it wrote it
	Error   string    `json:"error,omitempty"` // a rejected commit's problems, one a line
}

// GitState is what the instances share of the profiles' Git sync.
type GitState struct {
	Published *GitCommit // nil before a leader published a commit
	Rejected  *GitCommit // nil if no commit was rejected
	Leader    string     // the leader's identity; "" while none is elected
}

// GitState reads the shared state, at one revision.
func (s *Store) GitState(ctx context.Context) (GitState, error) {
	st, _, err := s.gitState(ctx)
	return st, err
}

func (s *Store) gitState(ctx context.Context) (GitState, int64, error) {
	resp, err := s.cli.Get(ctx, s.key(gitPrefix), clientv3.WithPrefix())
	if err != nil {
		return GitState{}, 0, fmt.Errorf("etcdstore: read %s: %w", s.key(gitPrefix), err)
	}
	var st GitState
	var leaderRev int64
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), s.prefix+"/")
		switch {
		case strings.HasPrefix(k, gitLeaderPrefix):
			// The election's order: the oldest key leads, as Election.Leader reads it.
			if leaderRev == 0 || kv.CreateRevision < leaderRev {
				st.Leader, leaderRev = string(kv.Value), kv.CreateRevision
			}
		case k == gitPublishedKey, k == gitRejectedKey:
			var c GitCommit
			if err := json.Unmarshal(kv.Value, &c); err != nil {
				return GitState{}, 0, fmt.Errorf("etcdstore: %s: %w", kv.Key, err)
			}
			if k == gitPublishedKey {
				st.Published = &c
			} else {
				st.Rejected = &c
			}
		}
	}
	return st, resp.Header.Revision, nil
}

// WatchGit calls fn with the shared state now and after every change (a
// new leader, a published or rejected commit), one call at a time, until
// ctx ends. A broken watch is re-established, from a fresh read so that
// nothing is missed.
func (s *Store) WatchGit(ctx context.Context, fn func(GitState)) {
	for ctx.Err() == nil {
		if err := s.watchGit(ctx, fn); err != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(gitWatchRetry):
			}
		}
	}
}

func (s *Store) watchGit(ctx context.Context, fn func(GitState)) error {
	st, rev, err := s.gitState(ctx)
	if err != nil {
		return err
	}
	fn(st)
	// WithRequireLeader: a member cut off from the others ends the watch
	// rather than keep it open and silent.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range s.cli.Watch(wctx, s.key(gitPrefix), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("etcdstore: watch %s: %w", s.key(gitPrefix), err)
		}
		// A read rather than the events: the state is three keys, and a
		// read gives all of them at one revision.
		if st, _, err = s.gitState(ctx); err != nil {
			return err
		}
		fn(st)
	}
	return ctx.Err()
}
