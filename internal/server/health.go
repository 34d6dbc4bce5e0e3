package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
)

// healthReport is the /healthz body.
type healthReport struct {
	Status   string        `json:"status"` // ok, degraded (last reload failed, older set serving), unavailable
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
}

// health serves /healthz: 200 while a profile set is live (even if the latest
// reload failed, which it reports), 503 before any set has loaded.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	rep := healthReport{Status: "ok"}
	if st := s.cfg.Core.Status(); st != nil {
		t := st.Time
		rep.Profiles.LastReload = &t
		rep.Profiles.LastReloadMS = float64(st.Duration.Microseconds()) / 1000
		rep.Profiles.LastReloadOK = st.Err == nil
		if st.Err != nil {
			rep.Status = "degraded"
			var probs profiles.Problems
			if errors.As(st.Err, &probs) {
				for _, p := range probs {
					rep.Profiles.LastReloadErrs = append(rep.Profiles.LastReloadErrs, p.String())
				}
			} else {
				rep.Profiles.LastReloadErrs = []string{st.Err.Error()}
			}
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
