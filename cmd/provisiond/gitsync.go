package main

// serve --profiles-git: the profiles come from a Git repository that
// internal/gitsync follows, each new commit's tree loaded into the core.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/gitsync"
	"github.com/provisiond/provisiond/internal/profiles"
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
// tree the first sync must bring a commit that validates.
func startGitSync(ctx context.Context, cfg serveConfig, core *boot.Core, log *slog.Logger) (*gitsync.Syncer, error) {
	gc := gitConfig(cfg)
	gc.Logger = log
	gc.Load = func(dir string, rev gitsync.Revision) error { return core.LoadRevision(dir, bootRevision(&rev)) }
	var s *gitsync.Syncer
	gc.OnSync = func(r gitsync.Result) {
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
// --profiles-git: SyncProfiles runs the syncer.
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
	return boot.SyncStatus{
		Time: r.Time, Duration: r.Duration, Result: string(r.Outcome),
		Remote: s.Remote(), Ref: s.Ref(),
		Fetched: bootRevision(r.Fetched), Live: bootRevision(r.Live),
		Tried: r.Tried, Err: r.Err,
	}
}
