package boot

import (
	"container/list"
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// The boot timeline: every step a machine's boot takes through provisiond,
// as events a person can read to see where a boot stopped. A looping boot
// retries the same steps every few seconds, so a step is recorded once per
// boot, its repeats only counted; and it is recorded off the request path:
// callers queue it (a few tens of nanoseconds, see BenchmarkTimelineHook),
// one goroutine identifies, deduplicates and writes. Its state is in memory,
// bounded, and this instance's own: a restart forgets the boots under way.

// Event types of the timeline.
const (
	EventBootStep     = "boot-step"     // a step of a boot, first of its kind in this boot
	EventAssetMissing = "asset-missing" // a known machine got a 404 for an asset
	EventStalled      = "stalled"       // a provisioning machine made no progress for --stall-after
)

// Timeline steps, in the order a boot takes them (Fields["step"] of
// EventBootStep).
const (
	StepDHCP      = "dhcp"       // the DHCP server offered it a network boot
	StepTFTP      = "tftp"       // a TFTP transfer ended (detail: file)
	StepChain     = "chain"      // it fetched /boot.ipxe naming itself
	StepScript    = "script"     // /ipxe or GRUB served its boot script (detail: profile)
	StepAsset     = "asset"      // a kernel, initrd or UKI fetch from /assets (detail: path)
	StepConfig    = "config"     // its config was served (detail: config kind)
	StepAgent     = "agent"      // its inspection agent reported the hardware
	StepPhoneHome = "phone-home" // it reported installed
)

// Outcomes of StepAsset.
const (
	AssetStarted   = "started"
	AssetCompleted = "completed"
	AssetNotFound  = "404"
	AssetAborted   = "aborted" // the client went away before the whole file was sent
)

// Step is one step of a machine's boot.
type Step struct {
	Name    string // one of the Step constants
	Detail  string // what it concerned: a file, an asset path, a profile; "" for none
	Outcome string // how it went: ok, served, started, completed, 404, aborted, ...
	kind    string // an asset's kind (profiles.AssetKernel...), "" if unknown
}

// label names the step for people: an asset by its kind ("kernel") when a
// profile says what it is.
func (s Step) label() string {
	if s.Name == StepAsset && s.kind != "" {
		return s.kind
	}
	return s.Name
}

// phase orders the steps: a DHCP after the machine got as far as /boot.ipxe
// is a new boot, one before (iPXE's own DHCP after the firmware's) is not.
func phase(step string) int {
	switch step {
	case StepDHCP:
		return 0
	case StepTFTP:
		return 1
	case StepChain:
		return 2
	case StepScript:
		return 3
	case StepAsset:
		return 4
	case StepConfig:
		return 5
	}
	return 6 // agent, phone-home: the booted system speaks
}

const (
	// stepQueue bounds the steps waiting to be recorded: a burst of
	// thousands of machines fits; past it steps are dropped, never waited for.
	stepQueue = 8192
	// maxBoots bounds the machines whose boot is remembered, the least
	// recently active forgotten first.
	maxBoots = 16384
	// identifyTTL is how long the machine behind an address is remembered:
	// a boot fetches several assets within seconds, one lookup does.
	identifyTTL   = 30 * time.Second
	maxIdentified = 4096
	// maxSteps bounds the distinct steps recorded in one boot, and
	// maxDetail a step's detail: a requester asking for ever new asset
	// paths gets a bounded number of events, each of bounded size.
	maxSteps  = 64
	maxDetail = 256
)

// queuedStep is one step waiting to be recorded.
type queuedStep struct {
	mac     string     // canonical; "" to identify the machine by ip
	ip      netip.Addr // the requester's address, for steps that name no machine
	step    Step
	session bool // it opened a new provisioning session: a new boot
	at      time.Time
}

// bootTrack is what the timeline remembers of one machine's current boot.
type bootTrack struct {
	mac     string
	start   time.Time
	reached int                 // the furthest phase reached
	last    Step                // the latest new step; repeats do not count as progress
	lastAt  time.Time           // when it was taken
	seen    map[string]struct{} // steps recorded in this boot, by stepKey
	repeats int                 // steps not recorded again in this boot

	// The stall check's verdicts on this boot (stalled.go).
	stall    *Stall // non-nil while stalled
	reported bool   // the stalled event of this boot was written
	settled  bool   // checked: not provisioning; not checked again until the next step
}

func stepKey(s Step) string { return s.Name + "\x00" + s.Detail + "\x00" + s.Outcome }

// startsBoot reports whether s, a new session when session is set, begins
// a new boot after b: a DHCP offer once the boot under way got past the
// boot loader, a new session once it got past the script. A firmware's
// DHCP and then iPXE's, or a retried chain reusing its session, stay in
// one boot.
func (b *bootTrack) startsBoot(s Step, session bool) bool {
	switch {
	case b.start.IsZero():
		return true
	case s.Name == StepDHCP:
		return b.reached >= phase(StepChain)
	case session:
		return b.reached >= phase(StepScript)
	}
	return false
}

// take applies step s, taken at at, to b, and returns whether it is new in
// this boot: to be recorded. A repeat is only counted.
func (b *bootTrack) take(s Step, session bool, at time.Time) bool {
	if b.startsBoot(s, session) {
		*b = bootTrack{mac: b.mac, start: at, seen: map[string]struct{}{}}
	}
	key := stepKey(s)
	if _, ok := b.seen[key]; ok || len(b.seen) >= maxSteps {
		b.repeats++
		return false
	}
	b.seen[key] = struct{}{}
	b.reached = max(b.reached, phase(s.Name))
	b.last, b.lastAt = s, at
	b.stall, b.settled = nil, false
	return true
}

// timeline is the queue of steps and the boots they build.
type timeline struct {
	queue      chan queuedStep
	dropped    atomic.Uint64 // steps dropped on a full queue, since the last report
	stallAfter time.Duration

	mu      sync.Mutex
	boots   map[string]*list.Element // by MAC; values are *bootTrack
	lru     *list.List               // most recently active first
	stalled int                      // boots with stall set

	// Used by the recording goroutine only.
	ids   map[netip.Addr]identified
	kinds assetKinds
}

type identified struct {
	id Identity
	at time.Time
}

// assetKinds maps the live set's asset paths to their kind, made again
// when another set goes live.
type assetKinds struct {
	set   *profiles.Set
	kinds map[string]string
}

func newTimeline(stallAfter time.Duration) *timeline {
	return &timeline{
		queue:      make(chan queuedStep, stepQueue),
		stallAfter: stallAfter,
		boots:      map[string]*list.Element{},
		lru:        list.New(),
		ids:        map[netip.Addr]identified{},
	}
}

// add queues q; on a full queue it drops it, counted, so that no request
// ever waits on the timeline.
func (t *timeline) add(q queuedStep) {
	select {
	case t.queue <- q:
	default:
		t.dropped.Add(1)
	}
}

// take applies q to its machine's boot, and reports whether it is to be
// recorded, with the boot's repeats so far.
func (t *timeline) take(q queuedStep) (record bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b *bootTrack
	if e, ok := t.boots[q.mac]; ok {
		t.lru.MoveToFront(e)
		b = e.Value.(*bootTrack)
	} else {
		if t.lru.Len() >= maxBoots {
			t.forget(t.lru.Back())
		}
		b = &bootTrack{mac: q.mac}
		t.boots[q.mac] = t.lru.PushFront(b)
	}
	wasStalled := b.stall != nil
	record = b.take(q.step, q.session, q.at)
	if wasStalled && b.stall == nil {
		t.stalled--
	}
	return record
}

// forget drops the boot in e. t.mu is held.
func (t *timeline) forget(e *list.Element) {
	b := t.lru.Remove(e).(*bootTrack)
	delete(t.boots, b.mac)
	if b.stall != nil {
		t.stalled--
	}
}

// known reports whether mac has a boot under way here.
func (t *timeline) known(mac string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.boots[mac]
	return ok
}

// Step queues a step of machine mac's boot (canonical MAC) for its
// timeline, for the parts of provisiond outside the core that see one (the
// TFTP server's transfers, the inspection agent's report). It never blocks.
func (d *Decider) Step(mac string, s Step) {
	if mac != "" {
		d.steps.add(queuedStep{mac: mac, step: s, at: time.Now()})
	}
}

// AssetFetch queues a fetch from /assets by the requester at ip: path under
// the assets directory, outcome one of the Asset constants. The machine is
// found off the request path, as Identify finds it; a requester that is no
// known machine is not recorded. It never blocks.
func (d *Decider) AssetFetch(ip netip.Addr, path, outcome string) {
	d.steps.add(queuedStep{ip: ip, step: Step{Name: StepAsset, Detail: path, Outcome: outcome}, at: time.Now()})
}

// step queues a step the core itself saw.
func (d *Decider) step(mac string, s Step, session bool) {
	if mac != "" {
		d.steps.add(queuedStep{mac: mac, step: s, session: session, at: time.Now()})
	}
}

// runTimeline records queued steps until ctx ends.
func (d *Decider) runTimeline(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case q := <-d.steps.queue:
			d.recordStep(context.WithoutCancel(ctx), q)
		}
	}
}

// recordStep identifies q's machine if it names none, applies q to its boot
// and writes the events of what is new in this boot.
func (d *Decider) recordStep(ctx context.Context, q queuedStep) {
	id := Identity{MAC: q.mac}
	if q.mac == "" {
		if id = d.identifyCached(ctx, q.ip, q.at); id.MAC == "" {
			return
		}
		// An address with a MAC but no machine (an operator's laptop on
		// the segment) has no boot to record.
		if id.UUID == "" && id.Machine == "" && !d.steps.known(id.MAC) {
			return
		}
		q.mac = id.MAC
	}
	if len(q.step.Detail) > maxDetail {
		q.step.Detail = strings.ToValidUTF8(q.step.Detail[:maxDetail], "")
	}
	if q.step.Name == StepAsset {
		q.step.kind = d.assetKind(q.step.Detail)
	}
	if !d.steps.take(q) {
		if q.step.Outcome == AssetNotFound {
			d.log.Debug("asset not found again", append(id.Attrs(), "path", q.step.Detail, "ip", q.ip)...)
		}
		return
	}
	d.appendEvent(ctx, stepEvent(q.mac, q.step))
	if q.step.Name == StepAsset && q.step.Outcome == AssetNotFound {
		d.log.Warn("asset not found for a known machine: it cannot boot", append(id.Attrs(), "path", q.step.Detail, "kind", q.step.kind, "ip", q.ip)...)
		d.appendEvent(ctx, store.Event{MAC: q.mac, Type: EventAssetMissing, Actor: "system",
			Message: "asset " + profiles.AssetPrefix + q.step.Detail + " not found: add it to the assets directory",
			Fields:  map[string]string{"path": q.step.Detail, "kind": q.step.kind}})
	}
}

// stepEvent is the EventBootStep of s.
func stepEvent(mac string, s Step) store.Event {
	msg := s.Name
	f := map[string]string{"step": s.Name, "outcome": s.Outcome}
	if s.Detail != "" {
		f["detail"] = s.Detail
		msg += " " + s.Detail
	}
	if s.kind != "" {
		f["kind"] = s.kind
	}
	return store.Event{MAC: mac, Type: EventBootStep, Actor: "machine", Message: msg + ": " + s.Outcome, Fields: f}
}

func (d *Decider) appendEvent(ctx context.Context, e store.Event) {
	ctx, cancel := context.WithTimeout(ctx, storeDeadline)
	defer cancel()
	if _, err := d.store.AppendEvent(ctx, e); err != nil {
		d.log.Warn("record boot timeline event", "mac", e.MAC, "type", e.Type, "error", err)
	}
}

// identifyCached is Identify, remembered for identifyTTL per address.
func (d *Decider) identifyCached(ctx context.Context, ip netip.Addr, now time.Time) Identity {
	if !ip.IsValid() {
		return Identity{}
	}
	ids := d.steps.ids
	if c, ok := ids[ip]; ok && now.Sub(c.at) < identifyTTL {
		return c.id
	}
	if len(ids) >= maxIdentified {
		clear(ids) // a flood of addresses: each costs a lookup, nothing more
	}
	id := d.Identify(ctx, ip)
	ids[ip] = identified{id: id, at: now}
	return id
}

// assetKind is what the live profiles say path is (kernel, initrd, uki),
// "" if none names it.
func (d *Decider) assetKind(path string) string {
	set := d.live.Profiles()
	if set == nil {
		return ""
	}
	k := &d.steps.kinds
	if k.set != set {
		k.set, k.kinds = set, map[string]string{}
		for _, a := range set.AssetPaths() {
			if _, ok := k.kinds[a.Path]; !ok {
				k.kinds[a.Path] = a.Kind
			}
		}
	}
	return k.kinds[path]
}

// scriptStep is the StepScript of a boot script that boots plan.
func scriptStep(plan bootPlan) Step {
	if plan.local {
		return Step{Name: StepScript, Detail: plan.profile.Name, Outcome: "boot-local"}
	}
	return Step{Name: StepScript, Detail: plan.profile.Name, Outcome: "served"}
}
