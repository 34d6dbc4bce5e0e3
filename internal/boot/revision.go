package boot

import (
	"context"
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// Revision names the Git commit a profile set was loaded from. It mirrors
// gitsync.Revision: boot does not import gitsync, cmd/provisiond converts.
type Revision struct {
	Commit  string    // full hash
	Short   string    // abbreviated hash, for people and the metric label
	Subject string    // first line of the commit message
	Author  string    // author name
	Time    time.Time // commit time
	Ref     string    // what was followed: refs/heads/main, refs/tags/v1, or the hash
}

// Rejection is a commit whose profiles did not validate, so it never went live.
type Rejection struct {
	Revision Revision
	Time     time.Time
	Err      error // profiles.Problems when validation failed
}

// Event types of the profiles' Git sync; they name no machine.
const (
	EventProfilesLive     = "profiles-live"     // a new commit's profiles went live
	EventProfilesRejected = "profiles-rejected" // a new commit's profiles did not validate
	EventProfilesBehind   = "profiles-behind"   // an instance could not fetch the commit its leader published (--store etcd)
)

// Sync results, also the values of the syncs metric's label.
const (
	SyncUpdated   = "updated"   // a new commit went live
	SyncUnchanged = "unchanged" // the ref still names the live commit
	SyncRejected  = "rejected"  // the ref names a commit that does not validate
	SyncError     = "error"     // the fetch failed; the live set keeps serving
)

// SyncStatus is the outcome of one sync with the profiles' Git repository.
type SyncStatus struct {
	Time     time.Time
	Duration time.Duration
	Result   string    // one of the Sync constants
	Remote   string    // the repository URL, without credentials
	Ref      string    // the ref as configured; "" follows the remote's HEAD
	Fetched  *Revision // the commit the ref names; nil when the fetch failed
	Live     *Revision // the live commit after the sync; nil if none
	Tried    bool      // Fetched was new and loaded in this sync (updated, or rejected for the first time)
	Err      error     // the fetch error, or the rejected commit's problems
	// With --store etcd one elected instance follows Git and the others
	// load the commits it publishes; all "" and false for a lone instance.
	Instance string // this instance's identity
	Leader   bool   // this instance is the one that follows Git
	LeaderID string // the leader's identity; "" while none is elected
}

// LoadRevision loads the profiles in dir, the exported tree of rev, exactly as
// Reload loads the profiles directory, and only if they validate swaps in both
// the set and dir (a later Reload reads dir). A failed load leaves the last
// good set serving and records rev as rejected with its problems.
func (l *Live) LoadRevision(dir string, rev *Revision) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.load(context.Background(), dir, rev)
}

// RecordSync keeps the outcome of a Git sync for Sync, /healthz and the API,
// counts it, and writes a new commit's going live or its rejection to the
// event log. A sync that found nothing new records no event.
func (l *Live) RecordSync(ctx context.Context, st SyncStatus) {
	l.sync.Store(&st)
	l.obs.Synced(st.Result)
	if !st.Tried || st.Fetched == nil {
		return
	}
	rev := st.Fetched
	ev := store.Event{Type: EventProfilesLive, Actor: "system",
		Message: fmt.Sprintf("profiles commit %s live: %s", rev.Short, rev.Subject),
		Fields:  map[string]string{"commit": rev.Commit, "ref": rev.Ref, "author": rev.Author}}
	if st.Result == SyncRejected {
		ev.Type = EventProfilesRejected
		ev.Message = fmt.Sprintf("profiles commit %s rejected (%d problem(s)): %s", rev.Short, countProblems(st.Err), rev.Subject)
		if st.Live != nil {
			ev.Fields["live"] = st.Live.Commit
		}
	}
	if st.Result == SyncError {
		ev.Type = EventProfilesBehind
		ev.Message = fmt.Sprintf("profiles commit %s published by %s not loaded: %v", rev.Short, st.LeaderID, st.Err)
	}
	if st.Instance != "" {
		ev.Fields["instance"] = st.Instance
	}
	if _, err := l.store.AppendEvent(ctx, ev); err != nil {
		l.log.Warn("record profiles sync event", "commit", rev.Short, "error", err)
	}
}

// Sync returns the outcome of the latest Git sync, or nil before the first
// and when the profiles are a plain directory.
func (l *Live) Sync() *SyncStatus { return l.sync.Load() }

// SyncProfiles syncs with the profiles' Git repository now. Live itself
// follows a directory and answers ErrNoSync; with --profiles-git,
// cmd/provisiond wraps the core in a Backend whose SyncProfiles runs the
// syncer.
func (l *Live) SyncProfiles(context.Context) (SyncStatus, error) {
	return SyncStatus{}, ErrNoSync
}

// UsesGit reports whether the profiles come from Git, given the latest
// reload and sync status (either may be nil).
func UsesGit(st *ReloadStatus, sync *SyncStatus) bool {
	return sync != nil || (st != nil && (st.Live != nil || st.Rejected != nil))
}
