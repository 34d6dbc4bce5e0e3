package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// healthReport is the /healthz body.
type healthReport struct {
	Status   string        `json:"status"` // ok, degraded (last reload or Git fetch failed, older set serving; or the store does not answer), unavailable
	Profiles profileHealth `json:"profiles"`
	Store    *storeHealth  `json:"store,omitempty"`
	// AssetsMissing lists the files the live profiles boot that are not
	// in --assets: their machines get a 404 and loop. Absent without an
	// assets directory or a live set.
	AssetsMissing []boot.MissingFile `json:"assets_missing,omitzero"`
}

// StoreInfo is what /healthz tells of the store: which one, and a probe
// that shows whether it answers, how fast, and for etcd each endpoint and
// the leader.
type StoreInfo struct {
	Backend string // bolt or etcd
	Prefix  string // etcd's key prefix
	Probe   func(context.Context) store.Health
}

type storeHealth struct {
	Backend   string           `json:"backend"`
	Prefix    string           `json:"prefix,omitempty"`
	OK        bool             `json:"ok"` // a read went through (etcd: with quorum)
	LatencyMS float64          `json:"latency_ms"`
	Error     string           `json:"error,omitempty"`
	Leader    string           `json:"leader,omitempty"` // etcd's leader member, as a majority of the endpoints see it
	Endpoints []endpointHealth `json:"endpoints,omitempty"`
}

type endpointHealth struct {
	Endpoint  string  `json:"endpoint"`
	OK        bool    `json:"ok"`
	Member    string  `json:"member,omitempty"`
	Leader    string  `json:"leader,omitempty"`
	Version   string  `json:"version,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// ms is d in milliseconds with microsecond precision, as /healthz reports times.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// storeProbeTimeout bounds the store probe of one /healthz: a store that
// lost its quorum makes the answer "degraded", not a hung health check.
const storeProbeTimeout = 2 * time.Second

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
	// With --store etcd: this instance, whether it leads (follows Git
	// itself) and who does; the others serve the commits the leader publishes.
	Instance string `json:"instance,omitempty"`
	Leader   *bool  `json:"leader,omitempty"`
	LeaderID string `json:"leader_id,omitempty"`
}

// health serves /healthz: 200 while a profile set is live (even if the latest
// reload failed, which it reports), 503 before any set has loaded.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	rep := healthReport{Status: "ok"}
	st := s.cfg.Core.Status() // one snapshot for the whole answer
	if st != nil {
		t := st.Time
		rep.Profiles.LastReload = &t
		rep.Profiles.LastReloadMS = ms(st.Duration)
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
	if rep.Store = s.storeHealth(r.Context()); rep.Store != nil && !rep.Store.OK {
		rep.Status = "degraded" // boot requests that need a write fail closed meanwhile
	}
	code := http.StatusOK
	if set := s.cfg.Core.Profiles(); set != nil {
		t := set.LoadedAt
		rep.Profiles.Dir = set.Dir
		rep.Profiles.LiveLoadedAt = &t
		rep.Profiles.Machines = len(set.Machines)
		rep.Profiles.Profiles = len(set.Profiles)
		rep.AssetsMissing = s.missingAssets(set)
	} else {
		rep.Status = "unavailable"
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(rep)
}

// missingAssets is what set boots that is not under --assets, a path
// with every profile naming it; nil without an assets directory. It stats
// the files at every call, so a download fixes the answer at once.
func (s *Server) missingAssets(set *profiles.Set) []boot.MissingFile {
	if s.cfg.Assets == nil {
		return nil
	}
	return boot.MissingFiles(set, s.cfg.Assets.FS())
}

// storeHealth probes the store, or returns nil when no probe is configured.
func (s *Server) storeHealth(ctx context.Context) *storeHealth {
	info := s.cfg.Store
	if info.Probe == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeProbeTimeout)
	defer cancel()
	p := info.Probe(ctx)
	h := &storeHealth{Backend: info.Backend, Prefix: info.Prefix, OK: p.Err == nil, LatencyMS: ms(p.Latency), Leader: p.Leader}
	if p.Err != nil {
		h.Error = p.Err.Error()
	}
	for _, e := range p.Endpoints {
		eh := endpointHealth{Endpoint: e.Endpoint, OK: e.Err == nil, Member: e.Member, Leader: e.Leader, Version: e.Version, LatencyMS: ms(e.Latency)}
		if e.Err != nil {
			eh.Error = e.Err.Error()
		}
		h.Endpoints = append(h.Endpoints, eh)
	}
	return h
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
		if sync.Instance != "" {
			g.Instance, g.Leader, g.LeaderID = sync.Instance, &sync.Leader, sync.LeaderID
		}
	}
	return g
}
