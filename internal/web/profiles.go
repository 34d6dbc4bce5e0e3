package web

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// maxListed is how many of a profile's Machines its row names; a link to
// the machines table lists them all.
const maxListed = 20

// profilesView is the profiles page: where the live set comes from, the last
// reload's outcome, and each profile with the machines that use it.
type profilesView struct {
	Dir      string // the directory the live set was loaded from
	Git      bool   // the profiles come from Git
	Sync     *boot.SyncStatus
	Live     *boot.Revision // the live commit
	Reload   *reloadView    // nil before the first load
	Rejected *rejectedView  // the last commit that failed, even if a later one went live
	Warnings []string       // the live set's, file:line: message
	Profiles []profileRow
	Loaded   bool
}

type reloadView struct {
	Time     time.Time
	Took     string
	Problems []string // file:line: message; none when it succeeded
}

type rejectedView struct {
	Revision boot.Revision
	Time     time.Time
	Problems []string
}

// profileRow is one profile and who uses it: the Machines in Git that name
// it, and the inventory's machines whose last boot matched it.
type profileRow struct {
	P        *profiles.Profile
	Config   string // its config kind; "" for none
	Default  bool   // machines no Machine claims boot it
	Wipe     bool   // the --wipe-profile
	Machines []machineRef
	More     int    // Machines in Git beyond those listed
	Booted   int    // inventory machines whose last boot matched it
	Href     string // the machines table filtered to them
}

// machineRef is a Machine in Git, linked when the inventory has it.
type machineRef struct {
	Name  string
	State store.State // "" when it never booted
}

func (d *Dashboard) profilesView(r *http.Request) (profilesView, error) {
	v := profilesView{Sync: d.b.Sync()}
	st := d.b.Status()
	v.Git = boot.UsesGit(st, v.Sync)
	if st != nil {
		v.Live = st.Live
		v.Reload = &reloadView{Time: st.Time, Took: st.Duration.Round(time.Millisecond).String()}
		if st.Err != nil {
			v.Reload.Problems = profiles.Lines(st.Err)
		}
		if rj := st.Rejected; rj != nil {
			v.Rejected = &rejectedView{Revision: rj.Revision, Time: rj.Time, Problems: profiles.Lines(rj.Err)}
		}
	}
	set := d.b.Profiles()
	if set == nil {
		return v, nil
	}
	v.Loaded, v.Dir = true, set.Dir
	if len(set.Warnings) > 0 {
		v.Warnings = profiles.Lines(set.Warnings)
	}
	ms, err := d.b.Machines(r.Context())
	if err != nil {
		return v, err
	}
	booted := map[string]int{}        // by profile
	state := map[string]store.State{} // by Machine name
	for _, m := range ms {
		if m.State == store.StateDeclared {
			continue // not booted yet: the row says so
		}
		booted[m.Profile]++
		if m.Name != "" {
			state[m.Name] = m.State
		}
	}
	rows := map[string]*profileRow{}
	for name, p := range set.Profiles {
		kind, _ := p.Config.Source()
		rows[name] = &profileRow{P: p, Config: string(kind), Booted: booted[name], Href: href("/", queryOf("profile", name)),
			Default: set.Default != nil && set.Default.Profile == name, Wipe: name == d.b.WipeProfile()}
	}
	for _, m := range set.Machines {
		row := rows[m.Profile]
		if row == nil {
			continue // validation refuses this; a row for it would be a guess
		}
		if len(row.Machines) == maxListed {
			row.More++
			continue
		}
		row.Machines = append(row.Machines, machineRef{Name: m.Name, State: state[m.Name]})
	}
	for _, row := range rows {
		v.Profiles = append(v.Profiles, *row)
	}
	slices.SortFunc(v.Profiles, func(a, b profileRow) int { return cmp.Compare(a.P.Name, b.P.Name) })
	return v, nil
}

// profilesPage serves /ui/profiles.
func (d *Dashboard) profilesPage(w http.ResponseWriter, r *http.Request) {
	v, err := d.profilesView(r)
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	d.renderPage(w, r, http.StatusOK, "profiles.html", "Profiles", v)
}
