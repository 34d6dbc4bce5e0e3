package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Machine is a machine as the API shows it, in the wire format the CLI
// decodes too. It is its own type so that the store's encoding can change
// without breaking clients.
type Machine struct {
	MAC          string            `json:"mac"`
	UUID         string            `json:"uuid,omitempty"`
	Arch         string            `json:"arch,omitempty"`
	IP           string            `json:"ip,omitempty"`
	Machine      string            `json:"machine,omitempty"`
	Profile      string            `json:"profile,omitempty"`
	State        store.State       `json:"state"`
	Labels       map[string]string `json:"labels,omitempty"`
	FirstSeen    time.Time         `json:"first_seen"`
	LastSeen     time.Time         `json:"last_seen"`
	Power        string            `json:"power,omitempty"`   // last state a BMC reported: on, off, unknown
	PowerAt      time.Time         `json:"power_at,omitzero"` // when it reported it
	Provisioning *Provisioning     `json:"provisioning,omitempty"`
}

// Provisioning is a machine's current session, without its token.
type Provisioning struct {
	Profile       string    `json:"profile,omitempty"`
	SessionOpen   bool      `json:"session_open"`
	IssuedAt      time.Time `json:"issued_at,omitzero"`
	ConfigServed  time.Time `json:"config_served,omitzero"`
	ConfigFetches int       `json:"config_fetches"`
	Installed     time.Time `json:"installed,omitzero"`
}

func toJSON(m store.Machine) Machine {
	return Machine{
		MAC: m.MAC, UUID: m.UUID, Arch: m.Arch, IP: m.LastIP, Machine: m.Name, Profile: m.Profile,
		State: m.State, Labels: m.Labels, FirstSeen: m.FirstSeen, LastSeen: m.LastSeen,
		Power: m.Power, PowerAt: m.PowerAt,
	}
}

// MachineList is the answer to GET /machines.
type MachineList struct {
	Machines []Machine `json:"machines"`
}

// listMachines serves GET /machines, optionally filtered by ?state= and
// ?label=key=value (repeatable; all must match).
func (a *api) listMachines(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := store.State(q.Get("state"))
	if state != "" && !state.Valid() {
		a.fail(w, r, fmt.Errorf("%w: state %q is not a lifecycle state", httperr.ErrBadRequest, state))
		return
	}
	labels := map[string]string{}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			a.fail(w, r, fmt.Errorf("%w: label %q: want key=value", httperr.ErrBadRequest, l))
			return
		}
		labels[k] = v
	}
	ms, err := a.b.Machines(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := MachineList{Machines: []Machine{}}
	for _, m := range ms {
		if (state == "" || m.State == state) && profiles.HasLabels(m.Labels, labels) {
			out.Machines = append(out.Machines, toJSON(m))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getMachine serves GET /machines/{id}, with the current provisioning session.
func (a *api) getMachine(w http.ResponseWriter, r *http.Request) {
	m, err := a.b.Machine(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.b.Provisioning(r.Context(), m.MAC)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := toJSON(m)
	out.Provisioning = &Provisioning{
		Profile: p.Profile, SessionOpen: p.TokenHash != "", IssuedAt: p.IssuedAt,
		ConfigServed: p.ConfigServed, ConfigFetches: p.ConfigFetches, Installed: p.Installed,
	}
	writeJSON(w, http.StatusOK, out)
}

// installed serves POST /machines/{id}/installed: the phone-home. The operator's
// token works too, for machines whose install cannot phone home. A machine's
// failure looks the same whether the id exists or not.
func (a *api) installed(w http.ResponseWriter, r *http.Request) {
	viaAPI := a.operator(r)
	token := bearer(r)
	if token == "" {
		writeError(w, http.StatusUnauthorized, errUnauthorized)
		return
	}
	var req struct {
		Message string `json:"message"`
	}
	if err := decodeBody(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	from := ""
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		from = ap.Addr().Unmap().String()
	}
	m, err := a.b.Installed(r.Context(), chi.URLParam(r, "id"), token, req.Message, from, viaAPI)
	if !viaAPI && (errors.Is(err, boot.ErrNotFound) || errors.Is(err, boot.ErrAmbiguous)) {
		err = boot.ErrUnauthorized
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(m))
}
