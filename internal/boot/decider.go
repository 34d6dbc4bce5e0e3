package boot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/ipxe"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Decider makes the boot decisions: whether a DHCP client is offered a
// network boot, which iPXE script and which config a machine gets, its
// phone-home, and what its next boot would be. It proves who a request is
// from (verify.go), refuses and records what fails (refusals.go), and keeps
// the inventory those requests tell it about, writing sightings behind the
// request path (inventory.go). Its zero value is not usable; call NewDecider.
type Decider struct {
	live      *Live // what machines match
	store     store.Store
	ids       resolver
	base      string
	log       *slog.Logger
	obs       Observer
	neighbors Neighbors
	policy    Policy
	seen      *sightings
	refusals  *refusals
	steps     *timeline // each boot's steps, recorded behind the request path (timeline.go)
	secrets   Sealer    // seals session tokens for reuse (session.go); nil: no reuse
	// bindingTTL and maxDiscovered: Config's, defaults filled in.
	bindingTTL    time.Duration
	maxDiscovered int
}

// NewDecider returns the Decider answering from live's profiles. It uses
// cfg's AdvertiseURL, Store, Neighbors, Policy, BindingTTL, MaxDiscovered,
// StallAfter, Secrets, Observer and Logger.
func NewDecider(cfg Config, live *Live) *Decider {
	return &Decider{
		live:          live,
		store:         cfg.Store,
		ids:           resolver{live: live, store: cfg.Store},
		base:          strings.TrimRight(cfg.AdvertiseURL, "/"),
		log:           cfg.logger(),
		obs:           cfg.observer(),
		neighbors:     cfg.Neighbors,
		policy:        cfg.Policy,
		seen:          newSightings(cfg.Store),
		refusals:      newRefusals(),
		steps:         newTimeline(cmp.Or(cfg.StallAfter, DefaultStallAfter)),
		secrets:       cfg.Secrets,
		bindingTTL:    cmp.Or(cfg.BindingTTL, DefaultBindingTTL),
		maxDiscovered: cmp.Or(cfg.MaxDiscovered, DefaultMaxDiscovered),
	}
}

// Run records queued sightings, bindings and boot steps in the store,
// flushes refusal counts, looks for stalled machines and prunes what
// unauthenticated clients can grow, until ctx ends.
func (d *Decider) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { d.seen.run(ctx, d.log.Warn) })
	wg.Go(func() { d.runRefusals(ctx) })
	wg.Go(func() { d.runPrune(ctx) })
	wg.Go(func() { d.runTimeline(ctx) })
	wg.Go(func() { d.runStalls(ctx) })
	wg.Wait()
	return nil
}

// storeDeadline bounds the store work of one boot request (/ipxe, a config,
// a phone-home). A store that lost its quorum then fails the request closed,
// with no token issued that is not durable, and answered 503 (see
// internal/httperr) within it, instead of holding it while the client
// retries: the machine's iPXE retries by itself.
const storeDeadline = 5 * time.Second

// PXEAnswer is the core's answer to a proxyDHCP request.
type PXEAnswer struct {
	Boot    bool   // offer a network boot; false: stay silent
	Machine string // the Machine matched, "" if none: the offer's log line names it
	// Loader and UKI are the matched profile's boot.loader and the URL of
	// its boot.uki: what a UEFI machine is given first ("" iPXE,
	// profiles.LoaderShim, profiles.LoaderUKI) and the image loader uki boots.
	Loader string
	UKI    string
}

// BootPXE tells the proxyDHCP whether to offer a network boot: only machines that
// have a profile, so provisiond stays silent towards machines another server owns.
// A DHCP packet carries no labels, so while labels-only Machines exist an
// unmatched machine is booted too: its iPXE request may present their labels.
// UEFI HTTP Boot firmware of a profile with boot.loader uki is answered by
// bootUKI, which opens its session.
func (d *Decider) BootPXE(ctx context.Context, r Request) (PXEAnswer, error) {
	res, set, err := d.Sighted(ctx, r)
	if err == nil {
		d.step(r.MAC, Step{Name: StepDHCP, Outcome: "offered"}, false)
	}
	switch {
	case err == nil && r.HTTPBoot != NotHTTPBoot && r.Arch == "efi-x86_64" && r.MAC != "" && res.Profile.Boot.Loader == profiles.LoaderUKI:
		// The DHCP server offers UKIs to x86-64 HTTP Boot firmware only.
		return d.bootUKI(ctx, r, res)
	case err == nil:
		a := PXEAnswer{Boot: true, Loader: res.Profile.Boot.Loader}
		if res.Profile.Boot.UKI != "" {
			a.UKI = d.assetURL(res.Profile.Boot.UKI)
		}
		if res.Machine != nil {
			a.Machine = res.Machine.Name
		}
		return a, nil
	case errors.Is(err, ErrUnknownMachine):
		return PXEAnswer{Boot: set.HasLabelled()}, nil
	case errors.Is(err, ErrNotLoaded):
		return PXEAnswer{}, nil
	default:
		return PXEAnswer{}, err
	}
}

// Script returns the iPXE script machine r boots now, and records the visit
// before answering: a machine with a profile gets a new provisioning session
// whose token the script's config URL carries, or, if it is an installed
// machine on a boot-once profile, the script that boots its disk.
func (d *Decider) Script(ctx context.Context, r Request) (string, error) {
	return d.serveBoot(ctx, r, d.ipxeLoader())
}

// GrubConfig is Script for a machine booted through shim and GRUB (Secure
// Boot): the same decision, session and token, written as GRUB's config.
// A machine whose profile does not name boot.loader shim is refused with
// ErrLoader, before anything is recorded.
func (d *Decider) GrubConfig(ctx context.Context, r Request) (string, error) {
	return d.serveBoot(ctx, r, d.grubLoader())
}

// serveBoot is the boot request of Script and GrubConfig, answered in l's
// language.
func (d *Decider) serveBoot(ctx context.Context, r Request, l loader) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, storeDeadline)
	defer cancel()
	// Checked before anything is recorded: another host must not even
	// rewrite what the inventory says about a machine.
	r, err := d.authenticate(ctx, r, "script")
	if err != nil {
		return "", err
	}
	res, _, err := d.match(ctx, r)
	if errors.Is(err, ErrNoIdentity) || errors.Is(err, ErrNotLoaded) {
		return "", err
	}
	if err != nil {
		m, _, serr := d.record(ctx, r, res, sighted)
		if serr != nil {
			return "", serr
		}
		d.log.Info(l.what+" refused: no profile for this machine", append(machineAttrs(known(r, m), res), "error", err)...)
		return "", err
	}
	// What the machine boots now, as the write below will decide: its
	// profile, its disk, or the wipe profile while it is being wiped.
	stored, session, err := d.storedSession(ctx, cmp.Or(r.MAC, r.UUID))
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	peeked, _ := peek(stored, session, res, d.live.wipeProfile())
	if err := l.accept(res, peeked, r); err != nil {
		d.log.Warn(l.what+" refused", append(machineAttrs(r, res), "ip", r.IP, "error", err)...)
		return "", err
	}
	if !peeked.local && peeked.profile.Boot.Loader == profiles.LoaderUKI {
		// Only HTTP Boot firmware gets the UKI (uki.go): no session here,
		// and an answer that says why.
		d.seen.record(ctx, d.sightingOf(r, res))
		d.log.Warn(l.what+": a UKI boots over UEFI HTTP Boot only", append(machineAttrs(r, res), "arch", r.Arch)...)
		return ukiScript(describe(res)), nil
	}
	if token, plan, m, ok := d.reuse(r, res, stored, session, now); ok {
		d.seen.record(ctx, d.sightingOf(known(r, m), res)) // LastSeen, behind the request
		d.step(m.MAC, scriptStep(plan), false)
		d.log.Debug(l.what+": open session handed out again", append(machineAttrs(known(r, m), res), "boots", plan.profile.Name)...)
		return d.render(l, res, plan, r, token)
	}
	token := newToken()
	var plan bootPlan
	m, _, err := d.record(ctx, r, res, planBoot(res, d.live.wipeProfile(), hashToken(token), d.sealToken(r.MAC, token), now, &plan))
	if err != nil {
		return "", err
	}
	log := d.log.With(machineAttrs(known(r, m), res)...)
	if plan.local {
		log.Info(l.what+": boot from disk", "state", m.State)
	} else {
		log.Info(l.what+": boot profile", "state", m.State, "boots", plan.profile.Name)
	}
	d.step(m.MAC, scriptStep(plan), !plan.local)
	return d.render(l, res, plan, r, token)
}

// record writes a sighting of r and applies fn in the same transaction.
func (d *Decider) record(ctx context.Context, r Request, res profiles.Result, fn store.Change) (store.Machine, store.Provisioning, error) {
	if r.MAC == "" {
		// The store keys machines by MAC: a UUID-only request can only update a
		// machine already seen with its MAC.
		m, p, err := d.store.Update(ctx, r.UUID, fn)
		if errors.Is(err, store.ErrNotFound) {
			return m, p, fmt.Errorf("%w: the uuid is not in the inventory yet, so the request needs a mac", ErrNoIdentity)
		}
		return m, p, err
	}
	return d.store.Seen(ctx, d.sightingOf(r, res), fn)
}

// sightingOf is what a request tells the inventory about its machine.
func (d *Decider) sightingOf(r Request, res profiles.Result) store.Machine {
	m := store.Machine{MAC: r.MAC, UUID: r.UUID, Arch: r.Arch, LastIP: r.IP}
	if res.Profile != nil {
		m.Profile = res.Profile.Name
	}
	if res.Machine != nil {
		m.Name = res.Machine.Name
		m.Labels = res.Machine.AllLabels()
	}
	return m
}

// machineAttrs are the log fields that let an operator grep one machine's
// boot: mac, uuid and machine on every line, "" where unknown.
func machineAttrs(r Request, res profiles.Result) []any {
	name := ""
	if res.Machine != nil {
		name = res.Machine.Name
	}
	attrs := Identity{MAC: r.MAC, UUID: r.UUID, Machine: name}.Attrs()
	if res.Profile != nil {
		attrs = append(attrs, "profile", res.Profile.Name)
	}
	return attrs
}

// known fills in, for log lines, the identities a request left out from its
// stored machine: a request naming only a UUID still logs the MAC.
func known(r Request, m store.Machine) Request {
	r.MAC, r.UUID = cmp.Or(r.MAC, m.MAC), cmp.Or(r.UUID, m.UUID)
	return r
}

// Explain renders the decision for r for humans: why it matched and its script.
func (d *Decider) Explain(r Request) (profiles.Result, string, error) {
	res, _, err := d.live.Match(r)
	if err != nil {
		return res, "", err
	}
	script, err := d.render(d.ipxeLoader(), res, bootPlan{profile: res.Profile}, r, "TOKEN")
	return res, script, err
}

// bootFor assembles kernel, initrds and args, adding the config URL the
// profile's config kind calls for, with the session token. asset names a
// profile's kernel or initrd as the boot loader fetches it.
func (d *Decider) bootFor(res profiles.Result, r Request, token string, asset func(ref string) string) ipxe.Boot {
	p := res.Profile
	b := ipxe.Boot{
		Comment: describe(res),
		Kernel:  asset(p.Boot.Kernel),
		Args:    append([]string(nil), p.Boot.Args...),
	}
	for _, i := range p.Boot.Initrd {
		b.Initrds = append(b.Initrds, asset(i))
	}
	switch kind, _ := p.Config.Source(); kind {
	case profiles.ConfigButane, profiles.ConfigIgnition:
		b.ConfigURL = d.configURL("/ignition", r, token)
		b.Args = append(b.Args, "ignition.config.url="+b.ConfigURL)
	case profiles.ConfigTalos:
		b.ConfigURL = d.configURL("/config", r, token)
		b.Args = append(b.Args, "talos.config="+b.ConfigURL)
	case profiles.ConfigTemplate:
		b.ConfigURL = d.configURL("/config", r, token) // the profile's args name it as ${config-url}
	}
	if p.Inspect {
		b.Args = append(b.Args, d.inspectArgs(r, token)...)
	}
	return b
}

// Chained records a /boot.ipxe request that names its machine, once the
// requester is proven to be that machine (see verify.go); a refusal is the
// answer. The script itself is the same for everyone.
func (d *Decider) Chained(ctx context.Context, r Request) error {
	r, err := d.authenticate(ctx, r, "script")
	if err != nil {
		return err
	}
	_, _, _ = d.Sighted(ctx, r) // who asks matters, not what matches
	d.step(r.MAC, Step{Name: StepChain, Outcome: "ok"}, false)
	return nil
}

// Sighted matches r and queues a record of it that nothing waits for: DHCP and
// /boot.ipxe must answer at once, and the machine's /ipxe request records it
// synchronously anyway. r must be what was observed (DHCP) or verified.
func (d *Decider) Sighted(ctx context.Context, r Request) (profiles.Result, *profiles.Set, error) {
	res, set, err := d.match(ctx, r)
	if !errors.Is(err, ErrNoIdentity) && !errors.Is(err, ErrNotLoaded) {
		d.seen.record(ctx, d.sightingOf(r, res))
	}
	return res, set, err
}

func describe(res profiles.Result) string {
	if res.Machine != nil {
		return "machine " + res.Machine.Name + ", profile " + res.Profile.Name
	}
	return "no machine matches, Default profile " + res.Profile.Name
}

// assetURL turns a profile's boot reference into a URL the machine can fetch.
func (d *Decider) assetURL(ref string) string {
	if strings.HasPrefix(ref, profiles.AssetPrefix) {
		return d.base + ref
	}
	return ref
}

// configURL names the machine by its own identities, so the config server can
// match it exactly as the script server did.
func (d *Decider) configURL(path string, r Request, token string) string {
	q := url.Values{}
	if r.MAC != "" {
		q.Set("mac", strings.ReplaceAll(r.MAC, ":", "-"))
	}
	if r.UUID != "" {
		q.Set("uuid", r.UUID)
	}
	q.Set("token", token)
	return d.base + path + "?" + q.Encode()
}

// Config returns the config body of the machine r. ignition selects /ignition
// (Butane and Ignition profiles) versus /config (Talos and generic templates).
// Configs may hold secrets, so r must come from the machine itself, during
// the session its /ipxe script opened, with that session's token, and by
// default only once; see Policy. A signed UKI's session is tokenless: its
// first fetch comes without a token and mints one (uki.go). Which profile's
// config it gets is decided in the transaction that counts the fetch
// (serveConfig).
func (d *Decider) Config(ctx context.Context, r Request, ignition bool) (*profiles.Rendered, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storeDeadline)
	defer cancel()
	r, err := d.authenticate(ctx, r, "config")
	if err != nil {
		return nil, nil, err
	}
	r.Labels = nil // anyone can send labels: they never select a config
	res, set, err := d.match(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	key := cmp.Or(r.MAC, r.UUID)
	// One read of the machine and its session; an unknown machine has none.
	var stored store.Machine
	var session store.Provisioning
	stored, err = d.store.Machine(ctx, key)
	switch {
	case err == nil:
		if session, err = d.store.Provisioning(ctx, key); err != nil {
			return nil, nil, err
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, nil, err
	}
	ask := configAsk{token: r.Token, proven: r.proven, ip: r.IP}
	if r.Token == "" {
		ask.mint = newToken() // used only if the session is tokenless (uki.go)
	}
	var adm admission
	var served profiles.Result
	change := serveConfig(res, d.live.wipeProfile(), ignition, admitConfig(ask, d.policy, time.Now().UTC(), &adm), &served)
	// The change runs first on (copies of) what the read found, so that a
	// storm of bad tokens costs no writes and a config that does not render
	// costs no fetch; then in the transaction, which a concurrent fetch or
	// operator may have beaten, and whose decision is the one served.
	if _, err := change(&stored, &session); err != nil {
		return nil, nil, err
	}
	var out *profiles.Rendered
	m := stored // a refusal's record: the zero Machine when unknown
	if adm.refused == "" {
		if out, err = renderConfig(set, served, r, stored.Hardware); err != nil {
			return nil, nil, err
		}
		rendered := served.Profile
		m, _, err = d.store.Update(ctx, key, change)
		switch {
		case errors.Is(err, store.ErrNotFound):
			adm.refused = ReasonNoSession // m is zero: the machine is gone
		case err != nil:
			return nil, nil, err
		case adm.refused == "" && served.Profile != rendered:
			// The machine's state changed since the read (a wipe began):
			// the transaction decided on another profile, and counted it.
			if out, err = renderConfig(set, served, r, stored.Hardware); err != nil {
				return nil, nil, err
			}
		}
	}
	if adm.refused != "" {
		return nil, nil, d.refuseOn(ctx, r, m, &RefusedError{What: "config", Reason: adm.refused})
	}
	d.log.Info("config served", append(machineAttrs(known(r, m), served), "kind", string(out.Kind), "ip", r.IP, "minted", adm.token != r.Token)...)
	d.step(m.MAC, Step{Name: StepConfig, Detail: string(out.Kind), Outcome: "served"}, false)
	return out, out.For(strings.ReplaceAll(m.MAC, ":", "-"), adm.token), nil
}

// renderConfig is the config of res.Profile for the machine r, whose
// stored hardware is hw.
func renderConfig(set *profiles.Set, res profiles.Result, r Request, hw *store.Hardware) (*profiles.Rendered, error) {
	r.Hardware = hw
	out, err := set.Config(res, r.query())
	if err != nil {
		return nil, fmt.Errorf("render config for profile %s: %w", res.Profile.Name, err)
	}
	if out == nil {
		return nil, fmt.Errorf("profile %s: %w", res.Profile.Name, ErrNoConfig)
	}
	return out, nil
}
