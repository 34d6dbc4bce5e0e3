package main

// serve --profiles-git: the profiles come from a Git repository that
// internal/gitsync follows, each new commit's tree loaded into the core.
// With --store etcd the instances elect one to follow the repository and
// load the commits it publishes (etcdCluster).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/gitsync"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
)

// gitConfig is the Syncer configuration of cfg; load and onSync are wired
// by the caller.
func gitConfig(cfg serveConfig) gitsync.Config {
	return gitsync.Config{
		URL:            cfg.ProfilesGit,
		Ref:            cfg.ProfilesGitRef,
		Dir:            filepath.Join(cfg.DataDir, "profiles-git"),
		Interval:       cfg.ProfilesGitInterval,
		SSHKeyFile:     cfg.ProfilesGitSSHKey,
		KnownHostsFile: cfg.ProfilesGitKnownHosts,
		TokenFile:      cfg.ProfilesGitTokenFile,
	}
}

// checkGitFlags refuses --profiles-git settings that can never work, before
// anything starts.
func checkGitFlags(cfg serveConfig) error {
	gc := gitConfig(cfg)
	gc.Load = func(string, gitsync.Revision) error { return nil }
	if _, err := gitsync.New(gc); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// startGitSync readies the profiles from Git before the daemon serves. The
// tree that was live at the last run is loaded first, so that a restart
// while the remote is unreachable, or names a commit that does not
// validate, still serves; Run's first sync then catches up. Without such a
// tree the first sync must bring a commit that validates: with --store etcd,
// the commit the leader published (or, before any, the ref's).
func startGitSync(ctx context.Context, cfg serveConfig, core *boot.Core, db store.Store, m *metrics.Metrics, log *slog.Logger) (*gitsync.Syncer, error) {
	gc := gitConfig(cfg)
	gc.Logger = log
	gc.Load = func(dir string, rev gitsync.Revision) error { return core.LoadRevision(dir, bootRevision(&rev)) }
	if es, ok := db.(*etcdstore.Store); ok {
		gc.Cluster = etcdCluster{s: es, id: instanceID(cfg.AdvertiseURL)}
	}
	m.GitLeader(gc.Cluster == nil) // alone, this instance follows the ref itself
	var s *gitsync.Syncer
	gc.OnSync = func(r gitsync.Result) {
		m.GitLeader(r.Role == nil || r.Role.Leader)
		// Detached: the event is written even if the asker has gone.
		core.RecordSync(context.WithoutCancel(ctx), syncStatus(s, r))
	}
	s, err := gitsync.New(gc)
	if err != nil {
		return nil, usagef("%v", err)
	}
	restored, err := s.Restore()
	if err != nil {
		log.Warn("the profiles tree live at the last run does not load; syncing from the remote", "error", err)
	}
	if restored != nil {
		log.Info("serving the profiles commit live at the last run until the first sync", "commit", restored.Short, "subject", restored.Subject)
		return s, nil
	}
	res, err := s.Sync(ctx)
	if err == nil {
		return s, nil
	}
	var probs profiles.Problems
	if res.Outcome == gitsync.Rejected && res.Fetched != nil && errors.As(err, &probs) {
		return nil, fmt.Errorf("profiles of %s at commit %s (%s) do not validate:\n%w", s.Remote(), res.Fetched.Short, res.Fetched.Subject, err)
	}
	return nil, fmt.Errorf("first sync of the profiles from %s: %w", s.Remote(), err)
}

// gitBackend is the boot core as the API and the dashboard see it with
// --profiles-git: SyncProfiles runs the syncer, which on an instance that
// does not lead only loads the commit the leader published.
type gitBackend struct {
	*boot.Core
	syncer *gitsync.Syncer
}

func (b gitBackend) SyncProfiles(ctx context.Context) (boot.SyncStatus, error) {
	res, err := b.syncer.Sync(ctx)
	if err != nil && res.Time.IsZero() {
		return boot.SyncStatus{}, err // the caller gave up waiting
	}
	return syncStatus(b.syncer, res), nil
}

func bootRevision(r *gitsync.Revision) *boot.Revision {
	if r == nil {
		return nil
	}
	return &boot.Revision{Commit: r.Commit, Short: r.Short, Subject: r.Subject, Author: r.Author, Time: r.Time, Ref: r.Ref}
}

func syncStatus(s *gitsync.Syncer, r gitsync.Result) boot.SyncStatus {
	st := boot.SyncStatus{
		Time: r.Time, Duration: r.Duration, Result: string(r.Outcome),
		Remote: s.Remote(), Ref: s.Ref(),
		Fetched: bootRevision(r.Fetched), Live: bootRevision(r.Live),
		Tried: r.Tried, Err: r.Err,
	}
	if r.Role != nil {
		st.Instance, st.Leader, st.LeaderID = r.Role.Instance, r.Role.Leader, r.Role.LeaderID
	}
	return st
}

// instanceID names this instance to the others in the Git leader election:
// the host name and the advertised URL, unique per instance without a flag.
func instanceID(advertiseURL string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return host + " " + advertiseURL
}

// etcdCluster is etcd's election and shared keys (etcdstore, under
// <prefix>/git/) as gitsync's Cluster.
type etcdCluster struct {
	s  *etcdstore.Store
	id string
}

func (c etcdCluster) Identity() string { return c.id }

func (c etcdCluster) Campaign(ctx context.Context) (gitsync.Term, error) {
	t, err := c.s.CampaignGit(ctx, c.id)
	if err != nil {
		return nil, err
	}
	return etcdTerm{t}, nil
}

func (c etcdCluster) State(ctx context.Context) (gitsync.ClusterState, error) {
	st, err := c.s.GitState(ctx)
	return clusterState(st), err
}

func (c etcdCluster) Watch(ctx context.Context, fn func(gitsync.ClusterState)) {
	c.s.WatchGit(ctx, func(st etcdstore.GitState) { fn(clusterState(st)) })
}

// etcdTerm is an etcdstore.GitTerm as a gitsync.Term.
type etcdTerm struct{ *etcdstore.GitTerm }

func (t etcdTerm) Publish(ctx context.Context, p gitsync.Published) error {
	return t.GitTerm.Publish(ctx, gitCommit(p))
}

func (t etcdTerm) Reject(ctx context.Context, p gitsync.Published) error {
	return t.GitTerm.Reject(ctx, gitCommit(p))
}

func gitCommit(p gitsync.Published) etcdstore.GitCommit {
	return etcdstore.GitCommit{Commit: p.Commit, Ref: p.Ref, Subject: p.Subject, Author: p.Author, Time: p.Time,
		Leader: p.Leader, At: p.At, Error: p.Err}
}

func gitPublished(c *etcdstore.GitCommit) *gitsync.Published {
	if c == nil || len(c.Commit) < 12 {
		return nil // not a commit this code wrote
	}
	return &gitsync.Published{
		Revision: gitsync.Revision{Commit: c.Commit, Short: c.Commit[:12], Subject: c.Subject, Author: c.Author, Time: c.Time, Ref: c.Ref},
		Leader:   c.Leader, At: c.At, Err: c.Error,
	}
}

func clusterState(st etcdstore.GitState) gitsync.ClusterState {
	return gitsync.ClusterState{Published: gitPublished(st.Published), Rejected: gitPublished(st.Rejected), Leader: st.Leader}
}
