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
	FirstSeen    time.Time         `json:"first_seen,omitzero"` // absent while declared: never seen
	LastSeen     time.Time         `json:"last_seen,omitzero"`
	Power        string            `json:"power,omitempty"`   // last state a BMC reported: on, off, unknown
	PowerAt      time.Time         `json:"power_at,omitzero"` // when it reported it
	Provisioning *Provisioning     `json:"provisioning,omitempty"`
	// Hardware is what the machine's inspection agent last reported; null
	// until it has.
	Hardware *store.Hardware `json:"hardware"`
	// Stalled is set while the machine is provisioning and its boot has
	// taken no new step for serve --stall-after.
	Stalled *boot.Stall `json:"stalled,omitempty"`
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

// toJSON is m as the API shows it, with its stall if the core sees one.
func (a *api) toJSON(m store.Machine) Machine {
	out := Machine{
		MAC: m.MAC, UUID: m.UUID, Arch: m.Arch, IP: m.LastIP, Machine: m.Name, Profile: m.Profile,
		State: m.State, Labels: m.Labels, FirstSeen: m.FirstSeen, LastSeen: m.LastSeen,
		Power: m.Power, PowerAt: m.PowerAt, Hardware: m.Hardware,
	}
	if s, ok := a.b.Stalled(m.MAC); ok {
		out.Stalled = &s
	}
	return out
}

// MachineList is the answer to GET /machines.
type MachineList struct {
	Machines []Machine `json:"machines"`
}

// listMachines serves GET /machines, optionally filtered by ?state=,
// ?label=key=value (repeatable; all must match) and the hardware
// (hardwareQuery).
func (a *api) listMachines(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := store.State(q.Get("state"))
	if state != "" && !state.Listed() {
		a.fail(w, r, fmt.Errorf("%w: state %q: want one of %v", httperr.ErrBadRequest, state, store.ListedStates()))
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
	hq, err := hardwareQuery(q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ms, err := a.b.Machines(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := MachineList{Machines: []Machine{}}
	for _, m := range ms {
		if (state == "" || m.State == state) && profiles.HasLabels(m.Labels, labels) && hq.Match(m.Hardware) {
			out.Machines = append(out.Machines, a.toJSON(m))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getMachine serves GET /machines/{id}, with the current provisioning
// session; a declared machine, never seen, has none.
func (a *api) getMachine(w http.ResponseWriter, r *http.Request) {
	m, err := a.b.Machine(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if m.State == store.StateDeclared {
		writeJSON(w, http.StatusOK, a.toJSON(m))
		return
	}
	p, err := a.b.Provisioning(r.Context(), m.MAC)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := a.toJSON(m)
	out.Provisioning = &Provisioning{
		Profile: p.Profile, SessionOpen: p.TokenHash != "", IssuedAt: p.IssuedAt,
		ConfigServed: p.ConfigServed, ConfigFetches: p.ConfigFetches, Installed: p.Installed,
	}
	writeJSON(w, http.StatusOK, out)
}

// installed serves POST /machines/{id}/installed: the phone-home. The operator's
// token works too, for machines whose install cannot phone home.
func (a *api) installed(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Message string `json:"message"`
	}
	a.fromMachine(w, r, &req, maxBody, func(c machineCaller) (store.Machine, error) {
		return a.b.Installed(r.Context(), chi.URLParam(r, "id"), c.token, req.Message, c.from, c.viaAPI)
	})
}

// machineCaller is who sent a request a machine makes with its session
// token (the operator's token works too).
type machineCaller struct {
	token  string
	from   string // the requester's address, which must be the machine's unless viaAPI
	viaAPI bool
}

// fromMachine serves a request a machine makes with its session token:
// it decodes the body (at most limit bytes) into body, calls do and
// answers with the machine. A machine's failure looks the same whether
// the id exists or not.
func (a *api) fromMachine(w http.ResponseWriter, r *http.Request, body any, limit int64, do func(machineCaller) (store.Machine, error)) {
	c := machineCaller{token: bearer(r), viaAPI: a.operator(r)}
	if c.token == "" {
		writeError(w, http.StatusUnauthorized, errUnauthorized)
		return
	}
	if err := decodeBodyLimit(r, body, limit); err != nil {
		a.fail(w, r, err)
		return
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.from = ap.Addr().Unmap().String()
	}
	m, err := do(c)
	if !c.viaAPI && (errors.Is(err, boot.ErrNotFound) || errors.Is(err, boot.ErrAmbiguous)) {
		err = boot.ErrUnauthorized
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.toJSON(m))
}
