package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
)

// healthReport is the /healthz body.
type healthReport struct {
	Status   string        `json:"status"` // ok, degraded (last reload or Git fetch failed, older set serving), unavailable
	Profiles profileHealth `json:"profiles"`
}

type profileHealth struct {
	Dir            string     `json:"dir"`
	LiveLoadedAt   *time.Time `json:"live_loaded_at,omitempty"`
	Machines       int        `json:"machines"`
	Profiles       int        `json:"profiles"`
	LastReload     *time.Time `json:"last_reload,omitempty"`
	LastReloadMS   float64    `json:"last_reload_ms"`
	LastReloadOK   bool       `json:"last_reload_ok"`
	LastReloadErrs []string   `json:"last_reload_errors,omitempty"`
	Git            *gitHealth `json:"git,omitempty"` // only with --profiles-git
}

// gitHealth is the Git side of the profiles: what is live, what was last
// rejected and why, and whether the remote answered.
type gitHealth struct {
	Remote         string     `json:"remote,omitempty"`
	LiveCommit     string     `json:"live_commit,omitempty"`
	LiveSubject    string     `json:"live_subject,omitempty"`
	RejectedCommit string     `json:"rejected_commit,omitempty"`
	RejectedErrs   []string   `json:"rejected_errors,omitempty"`
	LastSync       *time.Time `json:"last_sync,omitempty"`
	LastSyncResult string     `json:"last_sync_result,omitempty"` // updated, unchanged, rejected, error
	LastSyncError  string     `json:"last_sync_error,omitempty"`  // the fetch's error
}

// health serves /healthz: 200 while a profile set is live (even if the latest
// reload failed, which it reports), 503 before any set has loaded.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	rep := healthReport{Status: "ok"}
	st := s.cfg.Core.Status() // one snapshot for the whole answer
	if st != nil {
		t := st.Time
		rep.Profiles.LastReload = &t
		rep.Profiles.LastReloadMS = float64(st.Duration.Microseconds()) / 1000
		rep.Profiles.LastReloadOK = st.Err == nil
		if st.Err != nil {
			rep.Status = "degraded"
			rep.Profiles.LastReloadErrs = profiles.Lines(st.Err)
		}
	}
	if g := s.gitHealth(st); g != nil {
		rep.Profiles.Git = g
		if g.LastSyncResult == boot.SyncError {
			rep.Status = "degraded" // serving, but no longer following Git
		}
	}
	code := http.StatusOK
	if set := s.cfg.Core.Profiles(); set != nil {
		t := set.LoadedAt
		rep.Profiles.Dir = set.Dir
		rep.Profiles.LiveLoadedAt = &t
		rep.Profiles.Machines = len(set.Machines)
		rep.Profiles.Profiles = len(set.Profiles)
	} else {
		rep.Status = "unavailable"
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(rep)
}

// gitHealth reports the profiles' Git sync, or nil for a plain directory.
func (s *Server) gitHealth(st *boot.ReloadStatus) *gitHealth {
	sync := s.cfg.Core.Sync()
	if !boot.UsesGit(st, sync) {
		return nil
	}
	g := &gitHealth{}
	if st != nil && st.Live != nil {
		g.LiveCommit, g.LiveSubject = st.Live.Commit, st.Live.Subject
	}
	if st != nil && st.Rejected != nil {
		g.RejectedCommit, g.RejectedErrs = st.Rejected.Revision.Commit, profiles.Lines(st.Rejected.Err)
	}
	if sync != nil {
		t := sync.Time
		g.Remote, g.LastSync, g.LastSyncResult = sync.Remote, &t, sync.Result
		if sync.Result == boot.SyncError && sync.Err != nil {
			g.LastSyncError = sync.Err.Error()
		}
	}
	return g
}
