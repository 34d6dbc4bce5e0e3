package boot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Power control: which BMC a machine has, and the operations that drive it.
// Every operation writes an event saying who asked, what was done and what
// the BMC answered; credentials never reach an event, a log line or an answer.

var (
	// ErrNoBMC: the machine has no BMC in Git and none set through the API.
	ErrNoBMC = errors.New("the machine has no BMC: give its Machine a bmc: in Git, or set one with PUT /api/v1/machines/{id}/bmc")
	// ErrNoWipeProfile: a wipe was asked for, but --wipe-profile names none.
	ErrNoWipeProfile = errors.New("no wipe profile: start provisiond with --wipe-profile naming a Profile")
	// ErrInvalid: a malformed request (an address, an action, a selector).
	ErrInvalid = errors.New("invalid request")
	// ErrBMCConfig: the machine's BMC is configured but unusable here: its
	// address does not parse, or its credentials do not resolve or unseal.
	ErrBMCConfig = errors.New("BMC configuration unusable")
)

// invalidError is a bmc.ErrInvalid error as the core's ErrInvalid. Its text
// is bmc's without the leading "invalid: ": wrapped in ErrInvalid's words
// too, an API answer read "invalid request: invalid: BMC address".
type invalidError struct{ err error }

func invalid(err error) error { return invalidError{err} }

func (e invalidError) Error() string {
	return strings.TrimPrefix(e.err.Error(), bmc.ErrInvalid.Error()+": ")
}
func (e invalidError) Unwrap() []error { return []error{ErrInvalid, e.err} }

// noBMC is the Controller of a Core configured without one.
type noBMC struct{}

var errNoController = fmt.Errorf("%w: power control is not configured", ErrBMCConfig)

func (noBMC) Status(context.Context, bmc.Endpoint) (string, error) { return "", errNoController }
func (noBMC) Do(context.Context, bmc.Endpoint, bmc.Request) (bmc.Outcome, error) {
	return bmc.Outcome{}, errNoController
}

// Sealer encrypts secrets at rest; *seal.Box implements it.
type Sealer interface {
	Seal(plaintext []byte, context string) []byte
	Open(blob []byte, context string) ([]byte, error)
}

// BMC sources, as BMCInfo.Source says them.
const (
	SourceGit = "git" // the Machine's bmc: in the profiles
	SourceAPI = "api" // set with PUT /machines/{id}/bmc; wins over Git
)

// BMCInfo is what may be shown about a machine's BMC: never its credentials.
type BMCInfo struct {
	Address     string `json:"address"`
	Source      string `json:"source"`                // "git" or "api"
	Credentials string `json:"credentials,omitempty"` // Git's reference (env:VAR, file:PATH), not the secret
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
}

// target is a machine an operator named, found in the inventory, in Git, or both.
type target struct {
	mac, uuid string            // canonical; either may be "" for a machine never seen
	arch      string            // from the inventory: "bios", "efi-x86_64", ...
	known     bool              // the inventory has it
	git       *profiles.Machine // nil when no Machine in Git claims it
}

func (t target) name() string {
	if t.git != nil {
		return t.git.Name
	}
	return ""
}

// target resolves id (a MAC, a UUID or a Machine name) to a machine. A Machine
// in Git that never booted is a target too: powering it on is how it first boots.
func (c *Core) target(ctx context.Context, id string) (target, error) {
	var t target
	set := c.set.Load()
	key, err := c.key(ctx, id)
	if errors.Is(err, ErrNotFound) && set != nil {
		// key answers a Machine with a MAC or UUID from Git: this one is
		// matched by labels only and was never seen, so there is nothing to look up.
		if named := set.Machine(id); named != nil {
			return target{git: named}, nil
		}
	}
	if err != nil {
		return t, err
	}
	m, err := c.store.Machine(ctx, key)
	switch {
	case err == nil:
		t = target{mac: m.MAC, uuid: m.UUID, arch: m.Arch, known: true}
	case errors.Is(err, store.ErrNotFound):
		t.mac, _ = ident.MAC(key)
		t.uuid, _ = ident.UUID(key)
	default:
		return t, err
	}
	if set != nil {
		// What the machine would match now, so a Machine edited in Git since
		// its last boot takes effect.
		res, err := set.Match(profiles.Query{MAC: t.mac, UUID: t.uuid, Labels: m.Labels})
		if err == nil && res.Machine != nil {
			t.git = res.Machine
			// A machine named by UUID before it ever booted: Git may know its MAC.
			t.mac, t.uuid = cmp.Or(t.mac, t.git.Match.MAC), cmp.Or(t.uuid, t.git.Match.UUID)
		}
	}
	if !t.known && t.git == nil {
		return t, fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	return t, nil
}

// sealedBMC is the plaintext of an API-set BMC before sealing.
type sealedBMC struct {
	Address  string `json:"address"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// secretContext binds a sealed BMC blob to its machine.
func secretContext(mac string) string { return "bmc/" + mac }

// endpoint finds t's BMC: one set through the API wins over Git's.
func (c *Core) endpoint(ctx context.Context, t target) (bmc.Endpoint, BMCInfo, error) {
	ep, info, err := c.findEndpoint(ctx, t)
	if err != nil && !errors.Is(err, ErrNoBMC) {
		err = fmt.Errorf("%w: %w", ErrBMCConfig, err)
	}
	return ep, info, err
}

func (c *Core) findEndpoint(ctx context.Context, t target) (bmc.Endpoint, BMCInfo, error) {
	if t.mac != "" && c.secrets != nil {
		blob, err := c.store.Secret(ctx, t.mac, "bmc")
		switch {
		case err == nil:
			plain, err := c.secrets.Open(blob, secretContext(t.mac))
			if err != nil {
				return bmc.Endpoint{}, BMCInfo{}, fmt.Errorf("BMC credentials of %s: %w (was --secret-key-file changed?)", t.mac, err)
			}
			var s sealedBMC
			if err := json.Unmarshal(plain, &s); err != nil {
				return bmc.Endpoint{}, BMCInfo{}, fmt.Errorf("BMC credentials of %s: %w", t.mac, err)
			}
			ep, err := bmc.ParseAddress(s.Address)
			ep.User, ep.Password = s.User, s.Password
			return ep, BMCInfo{Address: s.Address, Source: SourceAPI}, err
		case !errors.Is(err, store.ErrNotFound):
			return bmc.Endpoint{}, BMCInfo{}, err
		}
	}
	if t.git == nil || t.git.BMC == nil {
		return bmc.Endpoint{}, BMCInfo{}, ErrNoBMC
	}
	info := BMCInfo{Address: t.git.BMC.Address, Source: SourceGit, Credentials: t.git.BMC.Credentials}
	ep, err := bmc.ParseAddress(t.git.BMC.Address)
	if err != nil {
		return ep, info, err
	}
	ep.User, ep.Password, err = bmc.Credentials(t.git.BMC.Credentials)
	return ep, info, err
}

// MachineBMC describes machine id's BMC.
func (c *Core) MachineBMC(ctx context.Context, id string) (BMCInfo, error) {
	info, err := c.CheckBMC(ctx, id)
	if info.Address != "" {
		return info, nil // found, even if its credentials do not resolve right now
	}
	return info, err
}

// CheckBMC resolves machine id's BMC as a power operation would, without
// contacting it: its description, and why it cannot be driven now (ErrNoBMC,
// or ErrBMCConfig when, say, its credentials do not resolve), so that the
// dashboard offers no power action that can only fail.
func (c *Core) CheckBMC(ctx context.Context, id string) (BMCInfo, error) {
	t, err := c.target(ctx, id)
	if err != nil {
		return BMCInfo{}, err
	}
	_, info, err := c.endpoint(ctx, t)
	return info, err
}

// SetBMC stores a BMC address and credentials for machine id, sealed, in the
// store. It needs the machine's MAC: from the inventory or its Machine in Git.
func (c *Core) SetBMC(ctx context.Context, id, address, user, password, actor string) (BMCInfo, error) {
	if c.secrets == nil {
		return BMCInfo{}, fmt.Errorf("%w: no secret key configured to seal credentials with", ErrBMCConfig)
	}
	if _, err := bmc.ParseAddress(address); err != nil {
		return BMCInfo{}, invalid(err)
	}
	if user == "" || password == "" {
		return BMCInfo{}, fmt.Errorf("%w: username and password are required", ErrInvalid)
	}
	t, err := c.target(ctx, id)
	if err != nil {
		return BMCInfo{}, err
	}
	if t.mac == "" {
		return BMCInfo{}, fmt.Errorf("%w: machine %q has no known MAC yet; name it by MAC or let it boot once", ErrState, id)
	}
	plain, err := json.Marshal(sealedBMC{Address: address, User: user, Password: password})
	if err != nil {
		return BMCInfo{}, err
	}
	if err := c.store.PutSecret(ctx, t.mac, "bmc", c.secrets.Seal(plain, secretContext(t.mac))); err != nil {
		return BMCInfo{}, err
	}
	c.event(ctx, t, store.Event{Type: EventBMC, Message: "BMC set to " + address, Actor: actor})
	c.log.Info("BMC credentials set", append(t.identity().Attrs(), "bmc", address, "actor", actor)...)
	return BMCInfo{Address: address, Source: SourceAPI}, nil
}

// DeleteBMC removes the API-set BMC of machine id; Git's, if any, applies again.
func (c *Core) DeleteBMC(ctx context.Context, id, actor string) error {
	t, err := c.target(ctx, id)
	if err != nil {
		return err
	}
	if t.mac == "" {
		return fmt.Errorf("machine %q: no BMC set through the API: %w", id, ErrNotFound)
	}
	if err := c.store.DeleteSecret(ctx, t.mac, "bmc"); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("machine %q: no BMC set through the API: %w", id, ErrNotFound)
		}
		return err
	}
	c.event(ctx, t, store.Event{Type: EventBMC, Message: "BMC set through the API removed", Actor: actor})
	return nil
}

// PowerStatus reads machine id's power state from its BMC.
func (c *Core) PowerStatus(ctx context.Context, id string) PowerResult {
	return c.withBMC(ctx, id, "status", "", func(t target, ep bmc.Endpoint, r *PowerResult) {
		start := time.Now()
		r.State, r.Err = c.bmc.Status(ctx, ep)
		c.obs.BMCOperation(r.Action, time.Since(start), r.Err)
		if r.Err == nil {
			c.powerSeen(ctx, t, r.State)
		}
	})
}

// Power runs a power action on machine id.
func (c *Core) Power(ctx context.Context, id, action, actor string) PowerResult {
	a, err := bmc.ParseAction(action)
	if err != nil {
		return PowerResult{ID: id, Action: action, Err: invalid(err)}
	}
	return c.withBMC(ctx, id, action, actor, func(t target, ep bmc.Endpoint, r *PowerResult) {
		c.drive(ctx, t, ep, bmc.Request{Action: a}, actor, r)
	})
}

// Reprovision sends machine id back to provisioning and, when power is set
// and the machine has a BMC, makes its next boot a network boot and
// power-cycles it. The power result is nil when no BMC was driven.
func (c *Core) Reprovision(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *PowerResult, error) {
	return c.sendBack(ctx, id, "reprovision", reprovision(actor, reason), actor, power)
}

// Wipe sends machine id to the wipe profile (--wipe-profile) and, like
// Reprovision, network-boots it through its BMC. Its phone-home makes it wiped.
func (c *Core) Wipe(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *PowerResult, error) {
	if c.wipeProfile() == nil {
		return store.Machine{}, nil, ErrNoWipeProfile
	}
	return c.sendBack(ctx, id, "wipe", wipe(actor, reason), actor, power)
}

// wipeProfile is the live set's wipe profile, or nil.
func (c *Core) wipeProfile() *profiles.Profile {
	set := c.set.Load()
	if c.wipe == "" || set == nil {
		return nil
	}
	return set.Profiles[c.wipe]
}

// WipeProfile names the live wipe profile; "" when wiping is off.
func (c *Core) WipeProfile() string {
	if p := c.wipeProfile(); p != nil {
		return p.Name
	}
	return ""
}

// sendBack applies a lifecycle change and then, if asked and possible,
// network-boots the machine: PXE next, with EFI if it last booted EFI, and cycle.
func (c *Core) sendBack(ctx context.Context, id, what string, change store.Change, actor string, power bool) (store.Machine, *PowerResult, error) {
	key, err := c.key(ctx, id)
	if err != nil {
		return store.Machine{}, nil, err
	}
	m, _, err := c.store.Update(ctx, key, change)
	if err != nil {
		return m, nil, notFound(id, err)
	}
	c.log.Info(what+" requested", append(machineID(m).Attrs(), "actor", actor, "state", m.State)...)
	if !power {
		return m, nil, nil
	}
	r := c.withBMC(ctx, m.MAC, what, actor, func(t target, ep bmc.Endpoint, r *PowerResult) {
		c.drive(ctx, t, ep, bmc.Request{PXENext: true, EFI: strings.HasPrefix(t.arch, "efi"), Action: bmc.Cycle}, actor, r)
	})
	if errors.Is(r.Err, ErrNoBMC) {
		return m, nil, nil // the machine's next boot, however it comes, does the rest
	}
	r.ID = id
	return m, &r, nil
}

// withBMC resolves id and its BMC and runs op under the machine's BMC lock
// (see Locker), timing it, the wait included. Resolution
// failures land in the result, like the BMC's own; actor asked for it.
func (c *Core) withBMC(ctx context.Context, id, action, actor string, op func(target, bmc.Endpoint, *PowerResult)) PowerResult {
	start := time.Now()
	r := PowerResult{ID: id, Action: action}
	t, err := c.target(ctx, id)
	if err == nil {
		r.MAC, r.Machine = t.mac, t.name()
		var ep bmc.Endpoint
		var info BMCInfo
		ep, info, err = c.endpoint(ctx, t)
		r.BMC = info.Address
		if err == nil {
			// The whole conversation with this machine's BMC under its lock:
			// no other operation, here or in another instance, interleaves.
			var unlock func()
			if unlock, err = c.lockBMC(ctx, t); err == nil {
				op(t, ep, &r)
				unlock()
			} else {
				c.log.Warn("BMC operation not run", append(t.identity().Attrs(), "action", action, "actor", actor, "error", err)...)
				c.event(ctx, t, powerEvent(actor, action, r.BMC, bmc.Outcome{}, err))
			}
		} else if !errors.Is(err, ErrNoBMC) {
			// A BMC is configured but unusable (its credentials do not
			// resolve): worth an event, unlike having none.
			c.event(ctx, t, powerEvent(actor, action, r.BMC, bmc.Outcome{}, err))
		}
	}
	if r.Err == nil {
		r.Err = err
	}
	r.Took = time.Since(start)
	return r
}

// drive runs req on t's BMC and records what happened.
func (c *Core) drive(ctx context.Context, t target, ep bmc.Endpoint, req bmc.Request, actor string, r *PowerResult) {
	start := time.Now()
	r.Outcome, r.Err = c.bmc.Do(ctx, ep, req)
	c.obs.BMCOperation(r.Action, time.Since(start), r.Err)
	log := c.log.With(append(t.identity().Attrs(), "bmc", ep, "action", r.Action, "actor", actor, "took", r.Outcome.Took)...)
	if r.Err != nil {
		log.Warn("BMC operation failed", "error", r.Err)
	} else {
		r.State = impliedState(r.Outcome)
		log.Info("BMC operation done", "done", r.Outcome.Done, "before", r.Outcome.Before, "boot", r.Outcome.BootReadback)
		if r.State != "" {
			c.powerSeen(ctx, t, r.State)
		}
	}
	c.event(ctx, t, powerEvent(actor, r.Action, ep.Address(), r.Outcome, r.Err))
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
func (c *Core) event(ctx context.Context, t target, e store.Event) {
	e.MAC = t.mac
	if t.mac == "" {
		if e.Fields == nil {
			e.Fields = map[string]string{}
		}
		e.Fields["machine"] = t.name()
	}
	if _, err := c.store.AppendEvent(ctx, e); err != nil {
		c.log.Warn("record event", append(t.identity().Attrs(), "type", e.Type, "error", err)...)
	}
}

// powerSeen keeps the last power state in the inventory, for machines in it.
func (c *Core) powerSeen(ctx context.Context, t target, state string) {
	if !t.known {
		return
	}
	if _, _, err := c.store.Update(ctx, t.mac, powerSeen(state, time.Now().UTC())); err != nil {
		c.log.Warn("record power state", append(t.identity().Attrs(), "error", err)...)
	}
}

// BulkRequest is one power operation over many machines.
type BulkRequest struct {
	Action   string            // on, off, soft, cycle, reset, status, reprovision, wipe
	Selector map[string]string // Machines whose match labels include these
	IDs      []string          // and these machines, by MAC, UUID or name
	Reason   string            // for reprovision and wipe
	Actor    string
}

// bulkWorkers bounds how many machines a bulk request works on at once; the
// BMC client's own limit bounds how many BMCs are talked to.
const bulkWorkers = 64

// BulkPower runs req on every machine it selects, at most bulkWorkers at a
// time, and returns one result per machine, in selection order. A machine
// whose BMC hangs costs its own timeout and holds up no other.
func (c *Core) BulkPower(ctx context.Context, req BulkRequest) ([]PowerResult, error) {
	op, err := c.bulkOp(req)
	if err != nil {
		return nil, err
	}
	ids, err := c.selectIDs(ctx, req)
	if err != nil {
		return nil, err
	}
	results := make([]PowerResult, len(ids))
	sem := make(chan struct{}, bulkWorkers)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = op(ctx, id)
		}()
	}
	wg.Wait()
	return results, nil
}

// bulkOp maps a bulk action to the single-machine operation it repeats.
func (c *Core) bulkOp(req BulkRequest) (func(context.Context, string) PowerResult, error) {
	switch req.Action {
	case "status":
		return c.PowerStatus, nil
	case "reprovision", "wipe":
		if req.Action == "wipe" && c.wipeProfile() == nil {
			return nil, ErrNoWipeProfile
		}
		send := c.Reprovision
		if req.Action == "wipe" {
			send = c.Wipe
		}
		return func(ctx context.Context, id string) PowerResult {
			start := time.Now()
			m, r, err := send(ctx, id, req.Actor, req.Reason, true)
			if r == nil {
				r = &PowerResult{ID: id, MAC: m.MAC, Machine: m.Name, Action: req.Action, Err: err}
			}
			r.Took = time.Since(start)
			return *r
		}, nil
	}
	if _, err := bmc.ParseAction(req.Action); err != nil {
		return nil, invalid(fmt.Errorf("%w (or status, reprovision, wipe)", err))
	}
	return func(ctx context.Context, id string) PowerResult { return c.Power(ctx, id, req.Action, req.Actor) }, nil
}

// selectIDs lists the machines a bulk request names: its IDs, then the
// Machines its selector picks (by name), without repeats.
func (c *Core) selectIDs(ctx context.Context, req BulkRequest) ([]string, error) {
	if len(req.Selector) == 0 && len(req.IDs) == 0 {
		return nil, fmt.Errorf("%w: name machines or give a label selector; an empty selector would select the whole fleet", ErrInvalid)
	}
	ids := append([]string(nil), req.IDs...)
	if len(req.Selector) > 0 {
		set := c.set.Load()
		if set == nil {
			return nil, ErrNotLoaded
		}
		for _, m := range set.Select(req.Selector) {
			ids = append(ids, m.Name)
		}
		// Machines in the inventory that no Machine claims carry no labels,
		// so Git's Machines are the whole of what a selector can pick.
	}
	// Without repeats, also where a MAC and a name are the same machine:
	// a machine cycled twice in one bulk call would be a surprise.
	seen := map[string]bool{}
	out := ids[:0]
	for _, id := range ids {
		key := id
		if t, err := c.target(ctx, id); err == nil {
			key = cmp.Or(t.mac, t.uuid, "machine:"+t.name())
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("machines matching %v: %w", req.Selector, ErrNotFound)
	}
	return out, nil
}
