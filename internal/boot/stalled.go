package boot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// A machine is stalled when it is provisioning and its boot took no new
// step for the stall time (--stall-after): its firmware or iPXE may be
// retrying, but repeats are no progress. The timeline knows each boot's
// last step; the store says whether the machine is still provisioning.

// DefaultStallAfter is the stall time when Config.StallAfter is zero: an
// install that downloads an OS image takes minutes, not ten without a step.
const DefaultStallAfter = 10 * time.Minute

// stallCheckEvery is how often Run looks for stalled machines; a shorter
// stall time is checked twice within it.
const stallCheckEvery = 30 * time.Second

// Stall is what the API shows of a stalled machine.
type Stall struct {
	Since    time.Time `json:"since"`     // when it took its last step
	LastStep string    `json:"last_step"` // that step (dhcp ... phone-home), an asset by its kind: kernel, initrd, uki
}

// Stalled reports whether machine mac (canonical) is stalled, and since
// when at which step. It reads memory only: cheap enough for every machine
// of a list.
func (d *Decider) Stalled(mac string) (Stall, bool) {
	t := d.steps
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.boots[mac]; ok {
		if s := e.Value.(*bootTrack).stall; s != nil {
			return *s, true
		}
	}
	return Stall{}, false
}

// overdue is a boot whose last step is older than the stall time, to check.
type overdue struct {
	mac     string
	last    Step
	lastAt  time.Time
	repeats int
}

// overdue lists the boots at now without a step for the stall time, but
// those already found not provisioning since their last step.
func (t *timeline) overdue(now time.Time) []overdue {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []overdue
	for e := t.lru.Front(); e != nil; e = e.Next() {
		b := e.Value.(*bootTrack)
		if !b.settled && !b.lastAt.IsZero() && now.Sub(b.lastAt) >= t.stallAfter {
			out = append(out, overdue{mac: b.mac, last: b.last, lastAt: b.lastAt, repeats: b.repeats})
		}
	}
	return out
}

// verdict records whether o's machine is provisioning, unless its boot has
// moved on meanwhile, and reports whether the boot's stalled event is due:
// once per boot.
func (t *timeline) verdict(o overdue, provisioning bool) (report bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.boots[o.mac]
	if !ok {
		return false
	}
	b := e.Value.(*bootTrack)
	switch {
	case !b.lastAt.Equal(o.lastAt):
		return false // a step arrived since the list was made
	case !provisioning:
		if b.stall != nil {
			b.stall = nil
			t.stalled--
		}
		b.settled = true
		return false
	case b.stall == nil:
		b.stall = &Stall{Since: b.lastAt, LastStep: b.last.label()}
		t.stalled++
	}
	report = !b.reported
	b.reported = true
	return report
}

func (t *timeline) stalledCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stalled
}

// runStalls looks for stalled machines until ctx ends.
func (d *Decider) runStalls(ctx context.Context) {
	tick := time.NewTicker(min(stallCheckEvery, max(d.steps.stallAfter/2, time.Second)))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			d.checkStalls(ctx, now)
		}
	}
}

// checkStalls marks the machines stalled at now, writes the stalled event
// of each newly stalled boot, and reports how many are stalled.
func (d *Decider) checkStalls(ctx context.Context, now time.Time) {
	for _, o := range d.steps.overdue(now) {
		rctx, cancel := context.WithTimeout(ctx, storeDeadline)
		m, err := d.store.Machine(rctx, o.mac)
		cancel()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			d.log.Warn("stall check: read machine", "mac", o.mac, "error", err)
			continue
		}
		if !d.steps.verdict(o, err == nil && m.State == store.StateProvisioning) {
			continue
		}
		s := Stall{Since: o.lastAt, LastStep: o.last.label()}
		idle := now.Sub(o.lastAt).Round(time.Second)
		d.log.Warn("machine stalled: no boot progress", append(machineID(m).Attrs(), "last_step", s.LastStep, "detail", o.last.Detail,
			"outcome", o.last.Outcome, "for", idle, "repeats", o.repeats)...)
		d.appendEvent(ctx, stalledEvent(o, s, idle))
	}
	d.obs.Stalled(d.steps.stalledCount())
	if n := d.steps.dropped.Swap(0); n > 0 {
		d.log.Warn("boot timeline queue full: steps not recorded", "dropped", n)
	}
}

// stalledEvent is the EventStalled of the boot o, stalled at s for idle.
func stalledEvent(o overdue, s Stall, idle time.Duration) store.Event {
	msg := fmt.Sprintf("no boot progress for %v: last step %s", idle, s.LastStep)
	if o.last.Detail != "" {
		msg += " " + o.last.Detail
	}
	msg += ": " + o.last.Outcome
	if o.repeats > 0 {
		msg += fmt.Sprintf(" (%d repeated steps since the boot began)", o.repeats)
	}
	return store.Event{MAC: o.mac, Type: EventStalled, Actor: "system", Message: msg, Fields: map[string]string{
		"last_step": s.LastStep, "step": o.last.Name, "detail": o.last.Detail, "outcome": o.last.Outcome,
		"since": s.Since.UTC().Format(time.RFC3339), "repeats": strconv.Itoa(o.repeats),
	}}
}
