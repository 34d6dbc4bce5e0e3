package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

// maxEvents is how many of a machine's events its page shows, newest first.
const maxEvents = 200

// machineView is a machine's page: what the inventory says, its recent events,
// and what its next boot would be.
type machineView struct {
	M       store.Machine
	Events  []store.Event // newest first
	More    bool          // older events exist beyond Events
	BMC     string        // the BMC's address, "" if none
	BMCErr  string        // why the BMC cannot be used, if it cannot
	Explain explanation
	Actions []actionView
}

type explanation struct {
	Machine string // "node1 (machines.yaml:12)", "" when the Default applies
	Profile string
	Reason  string
	Script  string
	Err     string
}

type actionView struct {
	Name, Label string
	Danger      bool
	Disabled    string // why the action cannot be used now, "" if it can
}

// actionSpec describes one button: its label and what its confirmation says.
type actionSpec struct {
	label   string
	confirm string // what happens, for the confirmation page
	danger  bool
	power   bool // needs a BMC
}

var actions = map[string]actionSpec{
	"reprovision": {label: "Reprovision", confirm: "The machine goes back to provisioning: its next network boot installs its profile again. With a BMC it is set to boot from the network and power-cycled now."},
	"on":          {label: "Power on", confirm: "The BMC powers the machine on.", power: true},
	"off":         {label: "Power off", confirm: "The BMC cuts the machine's power at once, without a clean shutdown.", danger: true, power: true},
	"cycle":       {label: "Power cycle", confirm: "The BMC turns the machine off and on again, without a clean shutdown.", danger: true, power: true},
	"wipe":        {label: "Wipe", confirm: "The machine boots the wipe profile, which erases the partition tables and signatures of every disk, then powers off. Its data is gone.", danger: true},
}

var actionOrder = []string{"reprovision", "on", "off", "cycle", "wipe"}

func (d *Dashboard) machineView(r *http.Request) (machineView, error) {
	ctx := r.Context()
	m, err := d.b.Machine(ctx, chi.URLParam(r, "id"))
	if err != nil {
		return machineView{}, err
	}
	v := machineView{M: m}
	es, err := d.b.Events(ctx, store.EventQuery{MAC: m.MAC, Newest: true, Limit: maxEvents + 1})
	if err != nil {
		return v, err
	}
	v.Events, v.More = es[:min(len(es), maxEvents)], len(es) > maxEvents
	return v, nil
}

// machinePage serves /ui/machines/{id}.
func (d *Dashboard) machinePage(w http.ResponseWriter, r *http.Request) {
	v, err := d.machineView(r)
	if err != nil {
		d.failPage(w, r, statusOf(err), err)
		return
	}
	if info, err := d.b.MachineBMC(r.Context(), v.M.MAC); err == nil || info.Address != "" {
		v.BMC = info.Address
		if err != nil {
			v.BMCErr = err.Error()
		}
	}
	v.Explain = d.explain(v.M)
	for _, name := range actionOrder {
		a := actions[name]
		av := actionView{Name: name, Label: a.label, Danger: a.danger}
		switch {
		case a.power && v.BMC == "":
			av.Disabled = "no BMC"
		case name == "reprovision" && v.M.State == store.StateDiscovered:
			av.Disabled = "no Machine in the profiles claims it"
		}
		v.Actions = append(v.Actions, av)
	}
	d.renderPage(w, r, http.StatusOK, "machine.html", machineTitle(v.M), v)
}

// machineLive serves the changing part of a machine's page, for its refresh.
func (d *Dashboard) machineLive(w http.ResponseWriter, r *http.Request) {
	d.fragment(w, r, "live", func() (any, error) { return d.machineView(r) })
}

// explain asks the core what the machine's next network boot would get, with
// what it presented last time; the session token stays a placeholder.
func (d *Dashboard) explain(m store.Machine) explanation {
	res, script, err := d.b.Explain(boot.Request{MAC: m.MAC, UUID: m.UUID, Labels: m.Labels})
	if err != nil {
		return explanation{Err: err.Error()}
	}
	e := explanation{Profile: fmt.Sprintf("%s (%s)", res.Profile.Name, res.Profile.Pos), Reason: res.Reason, Script: script}
	if res.Machine != nil {
		e.Machine = fmt.Sprintf("%s (%s)", res.Machine.Name, res.Machine.Pos)
	}
	return e
}

func machineTitle(m store.Machine) string {
	if m.Name != "" {
		return m.Name + " (" + m.MAC + ")"
	}
	return m.MAC
}

// confirmPage serves /ui/machines/{id}/confirm?action=: the question before
// anything happens.
func (d *Dashboard) confirmPage(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("action")
	a, ok := actions[name]
	if !ok {
		d.failPage(w, r, http.StatusBadRequest, fmt.Errorf("no action %q", name))
		return
	}
	m, err := d.b.Machine(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		d.failPage(w, r, statusOf(err), err)
		return
	}
	d.renderPage(w, r, http.StatusOK, "confirm.html", a.label+" "+machineTitle(m)+"?", confirmView{
		M: m, Action: name, Label: a.label, What: a.confirm, Danger: a.danger,
	})
}

type confirmView struct {
	M      store.Machine
	Action string
	Label  string
	What   string
	Danger bool
}

// action serves POST /ui/machines/{id}/action: it does what was confirmed and
// goes back to the machine's page with the outcome.
func (d *Dashboard) action(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	name := r.PostFormValue("action")
	spec, ok := actions[name]
	if !ok {
		d.failPage(w, r, http.StatusBadRequest, fmt.Errorf("no action %q", name))
		return
	}
	ctx, id, who := r.Context(), chi.URLParam(r, "id"), actorOf(s, r)
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	var f flash
	switch name {
	case "reprovision", "wipe":
		send := d.b.Reprovision
		if name == "wipe" {
			send = d.b.Wipe
		}
		m, res, err := send(ctx, id, who, reason, true)
		f = sentBack(spec.label, m, res, err)
	default:
		f = powered(spec.label, d.b.Power(ctx, id, name, who))
	}
	d.sessions.setFlash(s, f)
	http.Redirect(w, r, "/ui/machines/"+url.PathEscape(id), http.StatusSeeOther)
}

func sentBack(label string, m store.Machine, res *boot.PowerResult, err error) flash {
	if err != nil {
		return flash{Text: label + " failed: " + err.Error()}
	}
	text := fmt.Sprintf("%s requested: the machine is %s.", label, m.State)
	switch {
	case res == nil:
		text += " It has no BMC: boot it from the network yourself."
	case res.Err != nil:
		return flash{Text: text + " The BMC failed: " + res.Err.Error()}
	default:
		text += fmt.Sprintf(" The BMC set network boot and power-cycled it (%s).", res.Outcome.Done)
	}
	return flash{OK: true, Text: text}
}

func powered(label string, res boot.PowerResult) flash {
	if res.Err != nil {
		return flash{Text: label + " failed: " + res.Err.Error()}
	}
	done := res.Outcome.Done
	if done == "" {
		done = "nothing to do"
	}
	return flash{OK: true, Text: fmt.Sprintf("%s: %s; the machine is %s.", label, done, res.State)}
}

// statusOf maps the core's sentinels to a status, as the API does.
func statusOf(err error) int {
	switch {
	case errors.Is(err, boot.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, boot.ErrAmbiguous):
		return http.StatusConflict
	case errors.Is(err, boot.ErrNotLoaded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
