package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
)

type reloadJSON struct {
	OK         bool      `json:"ok"`
	Time       time.Time `json:"time"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
	Problems   []Problem `json:"problems,omitempty"`
}

// Problem is one validation finding of a profiles tree.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// String is file:line: message, as `provisiond validate` prints it.
func (p Problem) String() string {
	return profiles.Problem{File: p.File, Line: p.Line, Msg: p.Message}.String()
}

type profileJSON struct {
	Name   string `json:"name"`
	Config string `json:"config,omitempty"` // butane, ignition, talos or template
	Once   bool   `json:"once"`
	Kernel string `json:"kernel"`
}

type profilesJSON struct {
	Reload   *reloadJSON   `json:"reload,omitempty"` // nil before the first load
	Git      *GitStatus    `json:"git,omitempty"`    // nil without --profiles-git
	Profiles []profileJSON `json:"profiles"`
	Machines []string      `json:"machines"`
	Default  string        `json:"default,omitempty"`
}

// Revision is a commit of the profiles repository.
type Revision struct {
	Commit  string    `json:"commit"`
	Short   string    `json:"short"`
	Subject string    `json:"subject"`
	Author  string    `json:"author,omitempty"`
	Time    time.Time `json:"time"`
	Ref     string    `json:"ref,omitempty"`
}

// Rejected is a commit whose profiles did not validate.
type Rejected struct {
	Revision
	RejectedAt time.Time `json:"rejected_at"`
	Error      string    `json:"error"`
	Problems   []Problem `json:"problems,omitempty"`
}

// GitStatus is the Git side of GET /profiles.
type GitStatus struct {
	Remote   string      `json:"remote,omitempty"` // without credentials
	Ref      string      `json:"ref,omitempty"`    // as configured; "" follows HEAD
	Live     *Revision   `json:"live,omitempty"`
	Rejected *Rejected   `json:"rejected,omitempty"` // the last rejected commit, even if a later one went live
	LastSync *SyncResult `json:"last_sync,omitempty"`
}

// SyncResult is the answer of POST /profiles/sync, and the last sync in GET
// /profiles.
type SyncResult struct {
	Result     string    `json:"result"` // updated, unchanged, rejected or error
	Live       *Revision `json:"live"`
	Fetched    *Revision `json:"fetched"` // null when the fetch failed
	Time       time.Time `json:"time"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
	Problems   []Problem `json:"problems,omitempty"`
	// With --store etcd: whether this instance leads (follows Git itself;
	// the others load what it published, never the ref) and who does.
	Leader   *bool  `json:"leader,omitempty"`
	LeaderID string `json:"leader_id,omitempty"`
}

func problemList(err error) []Problem {
	var probs profiles.Problems
	if !errors.As(err, &probs) {
		return nil
	}
	out := make([]Problem, len(probs))
	for i, p := range probs {
		out[i] = Problem{File: p.File, Line: p.Line, Message: p.Msg}
	}
	return out
}

func revisionJSON(r *boot.Revision) *Revision {
	if r == nil {
		return nil
	}
	return &Revision{Commit: r.Commit, Short: r.Short, Subject: r.Subject, Author: r.Author, Time: r.Time, Ref: r.Ref}
}

func syncJSON(st boot.SyncStatus) SyncResult {
	out := SyncResult{Result: st.Result, Live: revisionJSON(st.Live), Fetched: revisionJSON(st.Fetched), Time: st.Time, DurationMS: st.Duration.Milliseconds()}
	if st.Err != nil {
		out.Error = st.Err.Error()
		out.Problems = problemList(st.Err)
	}
	if st.Instance != "" {
		out.Leader, out.LeaderID = &st.Leader, st.LeaderID
	}
	return out
}

// gitStatus is the Git side of the profiles, or nil for a plain directory.
func (a *api) gitStatus(st *boot.ReloadStatus) *GitStatus {
	sync := a.b.Sync()
	if !boot.UsesGit(st, sync) {
		return nil
	}
	g := &GitStatus{}
	if sync != nil {
		s := syncJSON(*sync)
		g.Remote, g.Ref, g.LastSync = sync.Remote, sync.Ref, &s
	}
	if st != nil {
		g.Live = revisionJSON(st.Live)
		if rj := st.Rejected; rj != nil {
			g.Rejected = &Rejected{Revision: *revisionJSON(&rj.Revision), RejectedAt: rj.Time, Error: rj.Err.Error(), Problems: problemList(rj.Err)}
		}
	}
	return g
}

// profiles serves GET /profiles: the live set and the last reload's result,
// which may be a failure while an older set keeps serving, and with
// --profiles-git the live and last rejected commits and the last sync.
func (a *api) profiles(w http.ResponseWriter, _ *http.Request) {
	out := profilesJSON{Profiles: []profileJSON{}, Machines: []string{}}
	st := a.b.Status()
	if st != nil {
		rj := &reloadJSON{OK: st.Err == nil, Time: st.Time, DurationMS: st.Duration.Milliseconds()}
		if st.Err != nil {
			rj.Error = st.Err.Error()
			rj.Problems = problemList(st.Err)
		}
		out.Reload = rj
	}
	out.Git = a.gitStatus(st)
	if set := a.b.Profiles(); set != nil {
		for _, p := range set.Profiles {
			kind, _ := p.Config.Source()
			out.Profiles = append(out.Profiles, profileJSON{Name: p.Name, Config: string(kind), Once: p.Once, Kernel: p.Boot.Kernel})
		}
		slices.SortFunc(out.Profiles, func(a, b profileJSON) int { return strings.Compare(a.Name, b.Name) })
		for _, m := range set.Machines {
			out.Machines = append(out.Machines, m.Name)
		}
		slices.Sort(out.Machines)
		if set.Default != nil {
			out.Default = set.Default.Profile
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// syncProfiles serves POST /profiles/sync: fetch the profiles' Git ref now
// and load its commit if new, for a CI job or a webhook relay. 200 when the
// ref's commit is live (updated or unchanged), 422 when it is rejected, 502
// when the fetch failed; the body says which in every case.
func (a *api) syncProfiles(w http.ResponseWriter, r *http.Request) {
	st, err := a.b.SyncProfiles(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return // the caller left; the sync goes on
		}
		a.fail(w, r, err)
		return
	}
	code := http.StatusOK
	switch st.Result {
	case boot.SyncRejected:
		code = http.StatusUnprocessableEntity
	case boot.SyncError:
		code = http.StatusBadGateway
	}
	a.log.Info("profiles sync requested through the API", "result", st.Result, "actor", actor(r))
	writeJSON(w, code, syncJSON(st))
}
