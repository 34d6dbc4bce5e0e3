package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
)

type reloadJSON struct {
	OK         bool          `json:"ok"`
	Time       time.Time     `json:"time"`
	DurationMS int64         `json:"duration_ms"`
	Error      string        `json:"error,omitempty"`
	Problems   []problemJSON `json:"problems,omitempty"`
}

type problemJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

type profileJSON struct {
	Name   string `json:"name"`
	Config string `json:"config,omitempty"` // butane, ignition, talos or template
	Once   bool   `json:"once"`
	Kernel string `json:"kernel"`
}

type profilesJSON struct {
	Reload   *reloadJSON   `json:"reload,omitempty"` // nil before the first load
	Profiles []profileJSON `json:"profiles"`
	Machines []string      `json:"machines"`
	Default  string        `json:"default,omitempty"`
}

// profiles serves GET /profiles: the live set and the last reload's result,
// which may be a failure while an older set keeps serving.
func (a *api) profiles(w http.ResponseWriter, _ *http.Request) {
	out := profilesJSON{Profiles: []profileJSON{}, Machines: []string{}}
	if st := a.b.Status(); st != nil {
		rj := &reloadJSON{OK: st.Err == nil, Time: st.Time, DurationMS: st.Duration.Milliseconds()}
		if st.Err != nil {
			rj.Error = st.Err.Error()
			var probs profiles.Problems
			if errors.As(st.Err, &probs) {
				for _, p := range probs {
					rj.Problems = append(rj.Problems, problemJSON{File: p.File, Line: p.Line, Message: p.Msg})
				}
			}
		}
		out.Reload = rj
	}
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
