package boot

import (
	"context"
	"time"

	"github.com/provisiond/provisiond/internal/ipxe"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
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
func (c *Core) NextBoot(ctx context.Context, id string) (NextBoot, error) {
	key, err := c.key(ctx, id)
	if err != nil {
		return NextBoot{}, err
	}
	m, err := c.store.Machine(ctx, key)
	if err != nil {
		return NextBoot{}, notFound(id, err)
	}
	r := Request{MAC: m.MAC, UUID: m.UUID, Labels: m.Labels}
	res, _, err := c.Match(r)
	if err != nil {
		return NextBoot{Match: res}, err
	}
	p, err := c.store.Provisioning(ctx, m.MAC)
	if err != nil {
		return NextBoot{Match: res}, notFound(id, err)
	}
	plan := c.peek(m, p, res)
	nb := NextBoot{Match: res, Local: plan.local, Why: plan.why, Script: c.scriptFor(res, plan, r, "TOKEN")}
	if !plan.local {
		nb.Profile = plan.profile
	}
	return nb, nil
}

// peek runs planBoot on m and p, a stored machine and its session, which
// are copies: what /ipxe would decide for it now, writing nothing. The
// sighting /ipxe would merge first changes nothing planBoot decides by: the
// state and the match.
func (c *Core) peek(m store.Machine, p store.Provisioning, res profiles.Result) bootPlan {
	var plan bootPlan
	_, _ = planBoot(res, c.wipeProfile(), "", time.Now().UTC(), &plan)(&m, &p) // it never fails
	return plan
}

// scriptFor is the iPXE script of plan: the disk boot, or the boot of the
// profile plan chose with the session token in its config URL.
func (c *Core) scriptFor(res profiles.Result, plan bootPlan, r Request, token string) string {
	if plan.local {
		return ipxe.LocalBootScript(describe(res) + ", installed: booting from disk")
	}
	res.Profile = plan.profile
	return ipxe.BootScript(c.bootFor(res, r, token))
}
