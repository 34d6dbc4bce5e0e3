package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/keylock"
	"github.com/provisiond/provisiond/internal/store"
)

// Fleet is power control over the machines: which BMC a machine has and its
// credentials (credentials.go), the operations that drive it, one machine or
// many (bulk.go), each under the machine's BMC lock (lock.go), and the
// reprovision and wipe that send a machine back and network-boot it. Every
// operation writes an event saying who asked, what was done and what the
// BMC answered; credentials never reach an event, a log line or an answer.
// Its zero value is not usable; call NewFleet.
type Fleet struct {
	live    *Live // the Machines in Git, their BMCs, the wipe profile
	store   store.Store
	ids     resolver
	log     *slog.Logger
	obs     Observer
	bmc     bmc.Controller
	secrets Sealer
	locks   Locker
}

// NewFleet returns the Fleet of the machines in the store and in live's
// profiles. It uses cfg's Store, BMC, Secrets, Locks, Observer and Logger.
func NewFleet(cfg Config, live *Live) *Fleet {
	f := &Fleet{
		live:    live,
		store:   cfg.Store,
		ids:     resolver{live: live, store: cfg.Store},
		log:     cfg.logger(),
		obs:     cfg.observer(),
		bmc:     cfg.BMC,
		secrets: cfg.Secrets,
		locks:   cfg.Locks,
	}
	if f.locks == nil {
		f.locks = keylock.New() // all a single instance needs
	}
	if f.bmc == nil {
		f.bmc = noBMC{}
	}
	return f
}

// noBMC is the Controller of a Fleet configured without one.
type noBMC struct{}

var errNoController = fmt.Errorf("%w: power control is not configured", ErrBMCConfig)

func (noBMC) Status(context.Context, bmc.Endpoint) (string, error) { return "", errNoController }
func (noBMC) Do(context.Context, bmc.Endpoint, bmc.Request) (bmc.Outcome, error) {
	return bmc.Outcome{}, errNoController
}

// PowerResult is the outcome of one machine's power operation.
type PowerResult struct {
	ID      string        // what the caller named the machine by
	MAC     string        // "" when the machine has never been seen and Git gives none
	Machine string        // its Git Machine, if any
	Action  string        // asked: on, off, soft, cycle, reset, status, reprovision, wipe
	Outcome bmc.Outcome   // what the BMC did
	State   string        // power state read (status) or implied by the action
	Err     error         // nil on success
	BMC     string        // the BMC's address, when one was found
	Took    time.Duration // wall time, waiting for a BMC slot included
	// DoneBy, when set, names who asked for an identical reprovision or wipe
	// of this machine (here or on another instance) whose cycle ended after
	// this one was asked: this one did not drive the BMC, since a second
	// cycle would only reboot the machine twice. Outcome is that one's.
	DoneBy string
}

// PowerStatus reads machine id's power state from its BMC.
func (f *Fleet) PowerStatus(ctx context.Context, id string) PowerResult {
	return f.withBMC(ctx, id, "status", "", func(t target, ep bmc.Endpoint, r *PowerResult) {
		start := time.Now()
		r.State, r.Err = f.bmc.Status(ctx, ep)
		f.obs.BMCOperation(r.Action, time.Since(start), r.Err)
		if r.Err == nil {
			f.powerSeen(ctx, t, r.State)
		}
	})
}

// Power runs a power action on machine id.
func (f *Fleet) Power(ctx context.Context, id, action, actor string) PowerResult {
	a, err := bmc.ParseAction(action)
	if err != nil {
		return PowerResult{ID: id, Action: action, Err: invalid(err)}
	}
	return f.withBMC(ctx, id, action, actor, func(t target, ep bmc.Endpoint, r *PowerResult) {
		f.drive(ctx, t, ep, bmc.Request{Action: a}, actor, r)
	})
}

// Reprovision sends machine id back to provisioning and, when power is set
// and the machine has a BMC, makes its next boot a network boot and
// power-cycles it. The power result is nil when the machine has no BMC; see
// PowerResult.DoneBy for two such requests at once.
func (f *Fleet) Reprovision(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *PowerResult, error) {
	return f.sendBack(ctx, id, "reprovision", reprovision(actor, reason), actor, power)
}

// Wipe sends machine id to the wipe profile (--wipe-profile) and, like
// Reprovision, network-boots it through its BMC. Its phone-home makes it wiped.
func (f *Fleet) Wipe(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *PowerResult, error) {
	if f.live.wipeProfile() == nil {
		return store.Machine{}, nil, ErrNoWipeProfile
	}
	return f.sendBack(ctx, id, "wipe", wipe(actor, reason), actor, power)
}

// sendBack applies a lifecycle change and then, if asked and possible,
// network-boots the machine: PXE next, with EFI if it last booted EFI, and
// cycle. Two identical requests at once (a double click, a retried call,
// two instances) cycle it once: the one that gets the BMC lock second finds
// the first one's cycle done after it was asked, and leaves it at that.
func (f *Fleet) sendBack(ctx context.Context, id, what string, change store.Change, actor string, power bool) (store.Machine, *PowerResult, error) {
	key, err := f.ids.key(ctx, id)
	if err != nil {
		return store.Machine{}, nil, err
	}
	var asked uint64 // the event log's end when this request was made
	if power {
		if asked, err = f.lastEvent(ctx); err != nil {
			return store.Machine{}, nil, err
		}
	}
	m, _, err := f.store.Update(ctx, key, change)
	if err != nil {
		return m, nil, f.ids.missing(id, err)
	}
	f.log.Info(what+" requested", append(machineID(m).Attrs(), "actor", actor, "state", m.State)...)
	if !power {
		return m, nil, nil
	}
	r := f.withBMC(ctx, m.MAC, what, actor, func(t target, ep bmc.Endpoint, r *PowerResult) {
		// Under the lock, so that the other request's cycle is done or not begun.
		done, err := f.doneSince(ctx, t, what, asked)
		switch {
		case err != nil:
			r.Err = err
		case done != nil:
			r.DoneBy = done.Actor
			r.Outcome = bmc.Outcome{Before: done.Fields["before"], Done: bmc.Action(done.Fields["done"]), BootReadback: done.Fields["boot"]}
			r.State = impliedState(r.Outcome)
			f.log.Info(what+": the machine was already network-booted by an identical request made since; not cycled again",
				append(t.identity().Attrs(), "actor", actor, "done_by", done.Actor, "event", done.Seq)...)
		default:
			f.drive(ctx, t, ep, bmc.Request{PXENext: true, EFI: strings.HasPrefix(t.arch, "efi"), Action: bmc.Cycle}, actor, r)
		}
	})
	if errors.Is(r.Err, ErrNoBMC) {
		return m, nil, nil // the machine's next boot, however it comes, does the rest
	}
	r.ID = id
	return m, &r, nil
}

// lastEvent is the Seq of the newest event in the store, 0 if none: events
// written later, by any instance, have greater ones.
func (f *Fleet) lastEvent(ctx context.Context) (uint64, error) {
	es, err := f.store.Events(ctx, store.EventQuery{Newest: true, Limit: 1})
	if err != nil || len(es) == 0 {
		return 0, err
	}
	return es[0].Seq, nil
}

// doneSince returns the event of a successful BMC operation what (a
// reprovision or wipe, which set network boot and cycled) on t written
// after event asked; nil if there is none.
func (f *Fleet) doneSince(ctx context.Context, t target, what string, asked uint64) (*store.Event, error) {
	es, err := f.store.Events(ctx, store.EventQuery{MAC: t.mac, AfterSeq: asked, Type: EventPower})
	if err != nil {
		return nil, fmt.Errorf("events of %s since request: %w", t.mac, err)
	}
	for i := range es {
		if es[i].Fields["action"] == what && es[i].Fields["result"] == "ok" {
			return &es[i], nil
		}
	}
	return nil, nil
}

// withBMC resolves id and its BMC and runs op under the machine's BMC lock
// (see Locker), timing it, the wait included. Resolution
// failures land in the result, like the BMC's own; actor asked for it.
func (f *Fleet) withBMC(ctx context.Context, id, action, actor string, op func(target, bmc.Endpoint, *PowerResult)) PowerResult {
	start := time.Now()
	r := PowerResult{ID: id, Action: action}
	t, err := f.ids.target(ctx, id)
	if err == nil {
		r.MAC, r.Machine = t.mac, t.name()
		var ep bmc.Endpoint
		var info BMCInfo
		ep, info, err = f.endpoint(ctx, t)
		r.BMC = info.Address
		if err == nil {
			// The whole conversation with this machine's BMC under its lock:
			// no other operation, here or in another instance, interleaves.
			var unlock func()
			if unlock, err = f.lockBMC(ctx, t); err == nil {
				op(t, ep, &r)
				unlock()
			} else {
				f.log.Warn("BMC operation not run", append(t.identity().Attrs(), "action", action, "actor", actor, "error", err)...)
				f.event(ctx, t, powerEvent(actor, action, r.BMC, bmc.Outcome{}, err))
			}
		} else if !errors.Is(err, ErrNoBMC) {
			// A BMC is configured but unusable (its credentials do not
			// resolve): worth an event, unlike having none.
			f.event(ctx, t, powerEvent(actor, action, r.BMC, bmc.Outcome{}, err))
		}
	}
	if r.Err == nil {
		r.Err = err
	}
	r.Took = time.Since(start)
	return r
}

// drive runs req on t's BMC and records what happened.
func (f *Fleet) drive(ctx context.Context, t target, ep bmc.Endpoint, req bmc.Request, actor string, r *PowerResult) {
	start := time.Now()
	r.Outcome, r.Err = f.bmc.Do(ctx, ep, req)
	f.obs.BMCOperation(r.Action, time.Since(start), r.Err)
	log := f.log.With(append(t.identity().Attrs(), "bmc", ep, "action", r.Action, "actor", actor, "took", r.Outcome.Took)...)
	if r.Err != nil {
		log.Warn("BMC operation failed", "error", r.Err)
	} else {
		r.State = impliedState(r.Outcome)
		log.Info("BMC operation done", "done", r.Outcome.Done, "before", r.Outcome.Before, "boot", r.Outcome.BootReadback)
		if r.State != "" {
			f.powerSeen(ctx, t, r.State)
		}
	}
	f.event(ctx, t, powerEvent(actor, r.Action, ep.Address(), r.Outcome, r.Err))
}

// impliedState is the power state after a successful action: "" when it
// cannot be told (a soft shutdown the OS may ignore).
func impliedState(o bmc.Outcome) string {
	switch o.Done {
	case "":
		return o.Before
	case bmc.Off:
		return bmc.StateOff
	case bmc.On, bmc.Cycle, bmc.Reset:
		return bmc.StateOn
	}
	return ""
}

// powerEvent says who asked for what and what the BMC answered.
func powerEvent(actor, action, address string, o bmc.Outcome, err error) store.Event {
	fields := map[string]string{"action": action, "bmc": address, "took_ms": fmt.Sprint(o.Took.Milliseconds())}
	var msg string
	if err != nil {
		// The error is in its field only: the message would repeat it.
		fields["result"], fields["error"] = "error", err.Error()
		msg = action + " failed"
	} else {
		fields["result"] = "ok"
		msg = action + ": " + describeOutcome(o)
	}
	for k, v := range map[string]string{"before": o.Before, "done": string(o.Done), "boot": o.BootReadback} {
		if v != "" {
			fields[k] = v
		}
	}
	return store.Event{Type: EventPower, Message: msg, Actor: actorOr(actor), Fields: fields}
}

func describeOutcome(o bmc.Outcome) string {
	var parts []string
	if o.BootReadback != "" {
		parts = append(parts, "next boot "+o.BootReadback)
	}
	switch {
	case o.Done != "":
		parts = append(parts, fmt.Sprintf("power %s (was %s)", o.Done, o.Before))
	case o.Before != "":
		parts = append(parts, "already "+o.Before+", nothing to do")
	}
	if len(parts) == 0 {
		return "done"
	}
	return strings.Join(parts, ", ")
}

func actorOr(actor string) string {
	if actor == "" {
		return "system"
	}
	return actor
}

// event appends e for t; a machine without a MAC gets its name in the fields.
func (f *Fleet) event(ctx context.Context, t target, e store.Event) {
	e.MAC = t.mac
	if t.mac == "" {
		if e.Fields == nil {
			e.Fields = map[string]string{}
		}
		e.Fields["machine"] = t.name()
	}
	if _, err := f.store.AppendEvent(ctx, e); err != nil {
		f.log.Warn("record event", append(t.identity().Attrs(), "type", e.Type, "error", err)...)
	}
}

// powerSeen keeps the last power state in the inventory, for machines in it.
func (f *Fleet) powerSeen(ctx context.Context, t target, state string) {
	if !t.known {
		return
	}
	if _, _, err := f.store.Update(ctx, t.mac, powerSeen(state, time.Now().UTC())); err != nil {
		f.log.Warn("record power state", append(t.identity().Attrs(), "error", err)...)
	}
}
