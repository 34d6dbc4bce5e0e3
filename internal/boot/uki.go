package boot

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Booting a signed unified kernel image (boot.loader uki, e.g. Talos).
//
// A signed UKI's command line is fixed when it is built: under Secure Boot
// systemd-stub ignores any other. So it cannot carry the per-boot session
// token the iPXE path puts in the config URL; it names its config by the
// machine alone (Talos: talos.config=<url>?mac=${mac}, which Talos fills in).
// Such a machine's session is tokenless (store.Provisioning.Tokenless): it
// is opened under the hash of a token no one is given, so that everything
// reading TokenHash as "open" holds, and its first config request without a
// token is served only to the machine itself, proven by its address (the
// neighbour table on-link, the DHCP binding when routed: verify.go), once.
// That fetch mints the session's token, which the config carries as
// .provisiond.token for the phone-home. See admit.
//
// The session opens when the machine commits to booting the UKI: UEFI HTTP
// Boot firmware gets the UKI's URL from DHCP (BootPXE) and boots it at once,
// so its DHCP REQUEST opens the session (bootUKI). iPXE (UEFI PXE, BIOS)
// never boots it: its /ipxe opens no session and answers a script that says
// why and exits (ukiScript).
//
// An installed machine of a boot-once profile must boot its disk. HTTP Boot
// firmware runs whatever file its DHCP answer names, so that answer names
// none (PXEAnswer.Boot false): the firmware's HTTP Boot fails and it goes on
// to its next boot option, the disk, as iPXE's `exit` makes it do on the
// iPXE path.

// bootUKI answers UEFI HTTP Boot firmware whose machine matched res, a
// profile with boot.loader uki, from the decision /ipxe would make (planBoot
// on the stored machine): its UKI, or no boot file for an installed machine
// of a boot-once profile. On the firmware's REQUEST it also opens the
// machine's tokenless session, or finds the one a repeated DHCP opened.
func (d *Decider) bootUKI(ctx context.Context, r Request, res profiles.Result) (PXEAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, storeDeadline)
	defer cancel()
	m, p, err := d.storedSession(ctx, r.MAC)
	if err != nil {
		return PXEAnswer{}, err
	}
	now := time.Now().UTC()
	wipe := d.live.wipeProfile()
	plan, state := peek(m, p, res, wipe)
	if r.HTTPBoot != HTTPBootRequest || plan.local || plan.profile.Boot.Loader != profiles.LoaderUKI {
		// Nothing to open: the firmware may still take another offer, the
		// machine boots its disk, or (being wiped) a profile booted through
		// iPXE, whose /ipxe opens the session.
		return d.ukiAnswer(res, plan), nil
	}
	sighted := d.sightingOf(r, res)
	if s, err := sighted.Sighting(); err == nil && m.MAC != "" && tokenlessReusable(m, p, s, plan, state, now) {
		d.seen.record(ctx, sighted) // LastSeen, behind the request
		d.log.Debug("http boot: open uki session handed out again", append(machineAttrs(r, res), "boots", plan.profile.Name)...)
		return d.ukiAnswer(res, plan), nil
	}
	// The token behind the hash is dropped here: no one is ever given it.
	m, _, err = d.record(ctx, r, res, planBoot(res, wipe, hashToken(newToken()), "", now, &plan))
	if err != nil {
		return PXEAnswer{}, err
	}
	d.log.Info("http boot: uki session opened", append(machineAttrs(r, res), "state", m.State, "boots", plan.profile.Name, "local", plan.local)...)
	return d.ukiAnswer(res, plan), nil
}

// storedSession reads machine mac and its session; an unknown machine is
// the zero Machine with no session.
func (d *Decider) storedSession(ctx context.Context, mac string) (store.Machine, store.Provisioning, error) {
	m, err := d.store.Machine(ctx, mac)
	if errors.Is(err, store.ErrNotFound) {
		return store.Machine{}, store.Provisioning{}, nil
	}
	if err != nil {
		return store.Machine{}, store.Provisioning{}, err
	}
	p, err := d.store.Provisioning(ctx, m.MAC)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Machine{}, store.Provisioning{}, err
	}
	return m, p, nil
}

// ukiAnswer is the DHCP answer of plan for a machine that matched res: its
// profile's UKI, what another loader boots first (a wipe profile's), or,
// for a boot from disk, no boot file.
func (d *Decider) ukiAnswer(res profiles.Result, plan bootPlan) PXEAnswer {
	a := PXEAnswer{Boot: !plan.local}
	if res.Machine != nil {
		a.Machine = res.Machine.Name
	}
	if a.Boot {
		a.Loader = plan.profile.Boot.Loader
		if a.Loader == profiles.LoaderUKI {
			a.UKI = d.assetURL(plan.profile.Boot.UKI)
		}
	}
	return a
}

// tokenlessReusable is reusable for a tokenless session, which holds no
// token to hand out: a repeated DHCP REQUEST finds the open session of the
// same plan and writes nothing.
func tokenlessReusable(m store.Machine, p store.Provisioning, s store.Machine, plan bootPlan, state store.State, now time.Time) bool {
	return p.Tokenless && p.ConfigFetches == 0 && sessionFresh(m, p, s, now) &&
		plan.profile.Name == p.Profile && state == m.State
}

// ukiScript is what iPXE is told of a loader uki profile. The UKI is offered
// to UEFI HTTP Boot firmware only, which verifies it itself (Secure Boot):
// chained from iPXE, systemd-stub may take iPXE's load options (the image's
// name) for its whole command line, and a BIOS cannot run it at all.
func ukiScript(comment string) string {
	comment = strings.ReplaceAll(comment, "\n", " ")
	return "#!ipxe\n# provisiond: " + comment + "\n" +
		"echo provisiond: this machine's profile boots a signed UKI, which provisiond offers over x86-64 UEFI HTTP Boot only: enable HTTP Boot in its firmware, or give its profile loader ipxe\n" +
		"sleep 10\n" +
		"exit\n"
}
