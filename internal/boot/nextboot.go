package boot

import (
	"context"

	"github.com/provisiond/provisiond/internal/profiles"
)

// NextBoot is what /ipxe would serve a machine if it asked now.
type NextBoot struct {
	// Match is what the machine matches in the live set: its Machine (nil:
	// the Default applies), that Machine's profile, and why it matched.
	Match profiles.Result
	// Profile is the profile the script boots: the wipe profile while the
	// machine is being wiped, else Match.Profile; nil when Local.
	Profile *profiles.Profile
	Local   bool   // the script tells the machine to boot from its disk
	Why     string // the decision, for people
	Script  string // the iPXE script, with TOKEN where the session token goes
}

// NextBoot tells what /ipxe would serve machine id now, from the decision the
// boot path itself makes (planBoot) run on copies of its stored record and
// session: it writes nothing and issues no token. The machine presents what
// it was last seen with: its MAC, UUID and labels.
func (d *Decider) NextBoot(ctx context.Context, id string) (NextBoot, error) {
	key, err := d.ids.key(ctx, id)
	if err != nil {
		return NextBoot{}, err
	}
	m, err := d.store.Machine(ctx, key)
	if err != nil {
		return NextBoot{}, notFound(id, err)
	}
	r := Request{MAC: m.MAC, UUID: m.UUID, Arch: m.Arch, Labels: m.Labels, Hardware: m.Hardware}
	res, _, err := d.live.Match(r)
	if err != nil {
		return NextBoot{Match: res}, err
	}
	p, err := d.store.Provisioning(ctx, m.MAC)
	if err != nil {
		return NextBoot{Match: res}, notFound(id, err)
	}
	plan, _ := peek(m, p, res, d.live.wipeProfile())
	script, err := d.render(d.ipxeLoader(), res, plan, r, "TOKEN")
	if err != nil {
		return NextBoot{Match: res}, err
	}
	nb := NextBoot{Match: res, Local: plan.local, Why: plan.why, Script: script}
	if !plan.local {
		nb.Profile = plan.profile
	}
	return nb, nil
}
