package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
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
	BMC     bmcState
	Next    nextBoot
	Actions []actionView
	Blocked []blocked // why the disabled actions are, each reason once
}

// nextBoot is what /ipxe would serve the machine now, for people.
type nextBoot struct {
	Machine string // "node1 (machines.yaml:12)", "" when the Default applies
	Profile string // the profile it matches, with where it is defined
	Reason  string // why it matches
	Boots   string // what the script boots: a profile, or the disk
	Wipe    bool   // the wipe profile: the page warns
	Why     string // why that, for this machine's state
	Script  string
	Err     string
	Pending string // a declared machine's: why there is no decision yet
}

type actionView struct {
	Name, Label string
	Danger      bool
	Direct      bool   // posted from the page itself: it changes nothing, so no confirmation
	WhyID       string // the id of the reason it is disabled; "" if it is enabled
}

// blocked is one reason some actions are disabled, shown once below them.
type blocked struct {
	ID      string
	Actions []string // their labels
	Why     string
}

// actionSpec describes one button: its label and what its confirmation says.
type actionSpec struct {
	label   string
	confirm string // what happens, for the confirmation page
	danger  bool
	power   bool // needs a usable BMC
	direct  bool // changes nothing: posted without a confirmation page
}

var actions = map[string]actionSpec{
	"reprovision": {label: "Reprovision", confirm: "The machine goes back to provisioning: its next network boot installs its profile again."},
	"status":      {label: "Refresh power", confirm: "The BMC is asked for the machine's power state; nothing changes.", power: true, direct: true},
	"on":          {label: "Power on", confirm: "The BMC powers the machine on.", power: true},
	"off":         {label: "Power off", confirm: "The BMC cuts the machine's power at once, without a clean shutdown.", danger: true, power: true},
	"cycle":       {label: "Power cycle", confirm: "The BMC turns the machine off and on again, without a clean shutdown.", danger: true, power: true},
	"wipe":        {label: "Wipe", confirm: "Its next network boot runs the wipe profile %s instead of its own, which is meant to erase its disks: its data is gone.", danger: true},
}

var actionOrder = []string{"reprovision", "status", "on", "off", "cycle", "wipe"}

// bmcState is what the page may say about a machine's BMC: never its
// credentials, only where they come from and why they do not work.
type bmcState struct {
	Address string // "" if none was found
	None    bool   // no BMC is configured
	Err     string // why power actions cannot work now, "" if they can
}

func (d *Dashboard) bmcOf(ctx context.Context, mac string) bmcState {
	info, err := d.b.CheckBMC(ctx, mac)
	b := bmcState{Address: info.Address}
	switch {
	case errors.Is(err, boot.ErrNoBMC):
		b.None = true
	case err != nil:
		b.Err = err.Error()
	}
	return b
}

// unavailable says why action name cannot be used on m now, "" if it can.
// The machine page disables the button with it and the confirmation page
// refuses with it, so that a URL cannot offer what the page does not.
func unavailable(name string, m store.Machine, bmc bmcState, wipeProfile string) string {
	a := actions[name]
	switch {
	case a.power && bmc.None:
		return "It has no BMC: give its Machine a bmc in Git, or set one with provisiond machines bmc."
	case a.power && bmc.Err != "":
		return "Its BMC cannot be used: " + bmc.Err + "."
	case (name == "reprovision" || name == "wipe") && m.State == store.StateDeclared:
		return "It was never seen, so it has no record to change yet: power it on first."
	case name == "reprovision" && m.State == store.StateDiscovered:
		return "No Machine in the profiles claims it: add one first."
	case name == "wipe" && wipeProfile == "":
		return "No wipe profile: start provisiond with --wipe-profile naming a Profile."
	}
	return ""
}

// afterward tells what a reprovision or wipe does next with this machine's BMC.
func afterward(bmc bmcState) string {
	switch {
	case bmc.None:
		return " It has no BMC: boot it from the network yourself."
	case bmc.Err != "":
		return " Its BMC cannot be used (" + bmc.Err + "): boot it from the network yourself."
	}
	return " Its BMC then sets the next boot to the network and power-cycles it now."
}

func (d *Dashboard) machineView(r *http.Request) (machineView, error) {
	ctx := r.Context()
	m, err := d.b.Machine(ctx, chi.URLParam(r, "id"))
	if err != nil {
		return machineView{}, err
	}
	v := machineView{M: m}
	// By id, not MAC: a declared Machine matched without one has none, and
	// an empty MAC would select every machine's events.
	es, err := d.b.Events(ctx, store.EventQuery{MAC: machineID(m), Newest: true, Limit: maxEvents + 1})
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
		d.failPage(w, r, err)
		return
	}
	ctx, wipe := r.Context(), d.b.WipeProfile()
	v.BMC = d.bmcOf(ctx, machineID(v.M))
	v.Next = d.nextBoot(ctx, v.M, wipe)
	for _, name := range actionOrder {
		a := actions[name]
		av := actionView{Name: name, Label: a.label, Danger: a.danger, Direct: a.direct}
		if why := unavailable(name, v.M, v.BMC, wipe); why != "" {
			// Four power buttons share one reason: say it once.
			i := slices.IndexFunc(v.Blocked, func(b blocked) bool { return b.Why == why })
			if i < 0 {
				i = len(v.Blocked)
				v.Blocked = append(v.Blocked, blocked{ID: fmt.Sprintf("why-%d", i), Why: why})
			}
			v.Blocked[i].Actions = append(v.Blocked[i].Actions, a.label)
			av.WhyID = v.Blocked[i].ID
		}
		v.Actions = append(v.Actions, av)
	}
	d.renderPage(w, r, http.StatusOK, "machine.html", machineTitle(v.M), v)
}

// machineLive serves the changing part of a machine's page, for its refresh.
func (d *Dashboard) machineLive(w http.ResponseWriter, r *http.Request) {
	d.fragment(w, r, "live", func() (any, error) { return d.machineView(r) })
}

// nextBoot asks the core what the machine's next network boot would get,
// by the decision /ipxe makes, with what the machine presented last time;
// the session token stays a placeholder. wipe names the wipe profile.
func (d *Dashboard) nextBoot(ctx context.Context, m store.Machine, wipe string) nextBoot {
	if m.State == store.StateDeclared {
		return nextBoot{Pending: fmt.Sprintf("It was never seen. Its first network boot that matches Machine %s boots profile %s; power it on to start.", m.Name, m.Profile)}
	}
	nb, err := d.b.NextBoot(ctx, m.MAC)
	if err != nil {
		return nextBoot{Err: err.Error()}
	}
	res := nb.Match
	v := nextBoot{Profile: fmt.Sprintf("%s (%s)", res.Profile.Name, res.Profile.Pos), Reason: res.Reason, Why: nb.Why, Script: nb.Script}
	if res.Machine != nil {
		v.Machine = fmt.Sprintf("%s (%s)", res.Machine.Name, res.Machine.Pos)
	}
	switch {
	case nb.Local:
		v.Boots = "its disk: the script exits to the next boot device"
	case nb.Profile.Name == wipe:
		v.Boots, v.Wipe = fmt.Sprintf("the wipe profile %s (%s)", nb.Profile.Name, nb.Profile.Pos), true
	default:
		v.Boots = fmt.Sprintf("profile %s (%s)", nb.Profile.Name, nb.Profile.Pos)
	}
	return v
}

func machineTitle(m store.Machine) string {
	if m.Name != "" && m.MAC != "" {
		return m.Name + " (" + m.MAC + ")"
	}
	return machineID(m)
}

// machineID is what the dashboard's URLs name m by: its MAC, or the name
// of a declared Machine matched without one.
func machineID(m store.Machine) string { return cmp.Or(m.MAC, m.Name) }

// confirmPage serves /ui/machines/{id}/confirm?action=: the question before
// anything happens, or why the action cannot be used on this machine.
func (d *Dashboard) confirmPage(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("action")
	a, ok := actions[name]
	if !ok {
		d.failPage(w, r, fmt.Errorf("%w: no action %q", httperr.ErrBadRequest, name))
		return
	}
	ctx := r.Context()
	m, err := d.b.Machine(ctx, chi.URLParam(r, "id"))
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	bmc, wipe := d.bmcOf(ctx, machineID(m)), d.b.WipeProfile()
	v := confirmView{M: m, Action: name, Label: a.label, What: a.confirm, Danger: a.danger}
	switch name {
	case "wipe":
		v.What = fmt.Sprintf(a.confirm, wipe) + afterward(bmc)
	case "reprovision":
		v.What += afterward(bmc)
	}
	code := http.StatusOK
	if v.Refused = unavailable(name, m, bmc, wipe); v.Refused != "" {
		code = http.StatusConflict
	}
	d.renderPage(w, r, code, "confirm.html", a.label+" "+machineTitle(m)+"?", v)
}

type confirmView struct {
	M       store.Machine
	Action  string
	Label   string
	What    string
	Danger  bool
	Refused string // why the action cannot be used on this machine: no form then
}

// action serves POST /ui/machines/{id}/action: it does what was confirmed and
// goes back to the machine's page with the outcome.
func (d *Dashboard) action(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	name := r.PostFormValue("action")
	spec, ok := actions[name]
	if !ok {
		d.failPage(w, r, fmt.Errorf("%w: no action %q", httperr.ErrBadRequest, name))
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
	case "status":
		f = powerRead(d.b.PowerStatus(ctx, id))
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
	case res.DoneBy != "":
		text += " The BMC did not cycle it again: " + res.DoneBy + "'s identical request, made at the same time, already set network boot and power-cycled it."
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

func powerRead(res boot.PowerResult) flash {
	if res.Err != nil {
		return flash{Text: "Reading the power state failed: " + res.Err.Error()}
	}
	return flash{OK: true, Text: fmt.Sprintf("The BMC says the machine is %s.", res.State)}
}
