package boot

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// refusalWindow is how long refusals of one kind for one machine share an
// event: the first is recorded at once, the rest as one event with a count
// when the window closes. Unauthenticated requests are cheap to send, and
// one event each let 17 s of them push a day of operator actions out of the
// capped event log.
const refusalWindow = time.Minute

// maxRefusalKeys bounds the open windows. Refusals are recorded only for
// machines the inventory knows, so the bound is the inventory's; past it a
// refusal is counted and logged at debug, but not recorded.
const maxRefusalKeys = 4096

type refusalKey struct{ mac, what, reason string }

type refusalCount struct {
	opened time.Time
	more   int    // refusals after the first, not recorded yet
	ip     string // the last requester's address
}

// refusals aggregates refusal events per machine, kind and reason.
type refusals struct {
	mu   sync.Mutex
	open map[refusalKey]*refusalCount
}

func newRefusals() *refusals { return &refusals{open: map[refusalKey]*refusalCount{}} }

// note counts one refusal and reports whether it opens a window: the
// caller records and logs that one; the window's rest is flushed later.
func (a *refusals) note(k refusalKey, ip string, now time.Time) (first, full bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, ok := a.open[k]; ok && now.Sub(w.opened) < refusalWindow {
		w.more++
		w.ip = ip
		return false, false
	}
	if len(a.open) >= maxRefusalKeys {
		return false, true
	}
	a.open[k] = &refusalCount{opened: now}
	return true, false
}

// closed removes the windows that ended by now and returns those that
// counted refusals beyond their first.
func (a *refusals) closed(now time.Time) map[refusalKey]refusalCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[refusalKey]refusalCount{}
	for k, w := range a.open {
		if now.Sub(w.opened) < refusalWindow {
			continue
		}
		delete(a.open, k)
		if w.more > 0 {
			out[k] = *w
		}
	}
	return out
}

// refuse records a refusal on the machine the request names, if the
// inventory knows it (one event per window and reason, see refusalWindow),
// logs it, counts it, and returns e.
func (d *Decider) refuse(ctx context.Context, r Request, e *RefusedError) *RefusedError {
	m, err := d.store.Machine(ctx, cmp.Or(r.MAC, r.UUID))
	if err != nil {
		m = store.Machine{}
	}
	return d.refuseOn(ctx, r, m, e)
}

// refuseOn is refuse for a caller that read the machine already: m is its
// stored record, the zero Machine if the inventory does not know it. A
// storm of refused configs or phone-homes costs one read each, not two.
func (d *Decider) refuseOn(ctx context.Context, r Request, m store.Machine, e *RefusedError) *RefusedError {
	d.obs.Refused(e)
	log := d.log.With(Identity{MAC: cmp.Or(m.MAC, r.MAC), UUID: cmp.Or(m.UUID, r.UUID), Machine: m.Name}.Attrs()...)
	first, full := false, false
	if m.MAC != "" {
		first, full = d.refusals.note(refusalKey{mac: m.MAC, what: e.What, reason: e.Reason}, r.IP, time.Now())
	}
	if !first {
		log.Debug(e.What+" refused", "reason", e.Reason, "ip", r.IP, "unrecorded", full)
		return e
	}
	log.Warn(e.What+" refused", "reason", e.Reason, "ip", r.IP)
	ev := refusal(e.What, e.Reason)
	ev.MAC = m.MAC
	ev.Fields["ip"] = r.IP
	if _, err := d.store.AppendEvent(ctx, ev); err != nil {
		log.Warn("record refusal", "error", err)
	}
	return e
}

// flushRefusals records, for every refusal window that closed, one event
// counting the refusals after its first.
func (d *Decider) flushRefusals(ctx context.Context, now time.Time) {
	for k, w := range d.refusals.closed(now) {
		ev := refusal(k.what, k.reason)
		ev.MAC = k.mac
		ev.Message = fmt.Sprintf("%s (%d more in %v)", ev.Message, w.more, refusalWindow)
		ev.Fields["ip"] = w.ip
		ev.Fields["count"] = fmt.Sprint(w.more)
		if _, err := d.store.AppendEvent(ctx, ev); err != nil {
			d.log.Warn("record refusals", slog.String("mac", k.mac), slog.Any("error", err))
		}
	}
}

// runRefusals flushes closed refusal windows until ctx ends, then once more
// for the windows still open, so that a stop loses no count.
func (d *Decider) runRefusals(ctx context.Context) {
	t := time.NewTicker(refusalWindow / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.flushRefusals(context.WithoutCancel(ctx), time.Now().Add(refusalWindow))
			return
		case now := <-t.C:
			d.flushRefusals(ctx, now)
		}
	}
}
