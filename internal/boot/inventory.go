package boot

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

const (
	// refreshSighting is how stale a machine's LastSeen, or a binding, may
	// get before a repeat with nothing new is written again. A boot touches
	// DHCP, TFTP and HTTP many times within seconds; one write per burst is
	// enough.
	refreshSighting = 30 * time.Second
	// inventoryWriters write concurrently so the store can coalesce their
	// transactions into one fsync.
	inventoryWriters = 32
	// maxRemembered bounds the repeats remembered: past it, those older than
	// refreshSighting are forgotten, so made-up MACs cannot grow it.
	maxRemembered = 16384
)

// DefaultMaxDiscovered is the number of only-discovered machines kept when
// Config.MaxDiscovered is zero: far more than the machines a network boots
// by its Default profile at once, far fewer than the MACs anyone on the VLAN
// can make up.
const DefaultMaxDiscovered = 2000

// maxBindings bounds each kind of DHCP binding the store keeps, for the same
// reason; live bindings of real machines are far fewer.
const maxBindings = 20000

// pruneEvery is how often Run prunes; a burst of new MACs prunes sooner.
const pruneEvery = 30 * time.Second

// sightings queues writes to the inventory and the DHCP bindings off the
// request path and drops repeats that would change nothing.
type sightings struct {
	inv   store.Store
	queue chan queued
	mu    sync.Mutex
	last  map[string]written // by "m"+MAC or "b"+MAC/IP
	// fresh counts machine records written since the last prune, so that a
	// burst of new MACs is pruned before the next tick.
	fresh chan struct{}
}

// queued is one queued write: a sighting or a binding.
type queued struct {
	machine *store.Machine
	binding *store.Binding
}

type written struct {
	key string
	at  time.Time
}

func newSightings(inv store.Store) *sightings {
	return &sightings{inv: inv, queue: make(chan queued, 4096), last: map[string]written{}, fresh: make(chan struct{}, 1)}
}

// record queues a sighting of m unless an identical one was written recently.
// It blocks only when the writers are far behind, and never past ctx.
func (s *sightings) record(ctx context.Context, m store.Machine) {
	if m.MAC == "" {
		return // the store keys machines by MAC; a UUID-only request is not recorded
	}
	if s.repeat("m"+m.MAC, m.UUID+"|"+m.Arch+"|"+m.LastIP+"|"+m.Name+"|"+m.Profile) {
		return
	}
	select {
	case s.queue <- queued{machine: &m}:
	case <-ctx.Done():
	}
}

// bind queues a DHCP binding unless an identical one was written recently.
// It never blocks the DHCP server: when the writers are far behind (a
// flood), the binding is dropped, and the client's next packet tries again.
func (s *sightings) bind(b store.Binding) {
	key := "b" + b.MAC + "/" + b.IP
	if s.repeat(key, b.UUID) {
		return
	}
	select {
	case s.queue <- queued{binding: &b}:
	default:
		s.forget(key)
	}
}

// repeat reports whether what was written under key recently, and if not
// remembers that it is about to be.
func (s *sightings) repeat(key, what string) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.last[key]; ok && w.key == what && now.Sub(w.at) < refreshSighting {
		return true
	}
	if len(s.last) >= maxRemembered {
		for k, w := range s.last {
			if now.Sub(w.at) >= refreshSighting {
				delete(s.last, k)
			}
		}
		if len(s.last) >= maxRemembered {
			clear(s.last) // a flood of fresh keys: repeats cost a write, nothing more
		}
	}
	s.last[key] = written{key: what, at: now}
	return false
}

// run writes queued sightings and bindings until ctx ends.
func (s *sightings) run(ctx context.Context, log func(msg string, args ...any)) {
	var wg sync.WaitGroup
	for range inventoryWriters {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case w := <-s.queue:
					s.write(context.WithoutCancel(ctx), w, log)
				}
			}
		})
	}
	wg.Wait()
}

func (s *sightings) write(ctx context.Context, w queued, log func(msg string, args ...any)) {
	if b := w.binding; b != nil {
		if err := s.inv.Bind(ctx, *b); err != nil {
			s.forget("b" + b.MAC + "/" + b.IP)
			log("record dhcp binding", "mac", b.MAC, "uuid", b.UUID, "ip", b.IP, "error", err)
		}
		return
	}
	m := *w.machine
	got, _, err := s.inv.Seen(ctx, m, sighted)
	if err != nil {
		s.forget("m" + m.MAC)
		log("record machine sighting", append(machineID(m).Attrs(), "error", err)...)
		return
	}
	if got.FirstSeen.Equal(got.LastSeen) && got.State == store.StateDiscovered {
		select {
		case s.fresh <- struct{}{}:
		default:
		}
	}
}

// forget makes the next write under key happen, after a failed one.
func (s *sightings) forget(key string) {
	s.mu.Lock()
	delete(s.last, key)
	s.mu.Unlock()
}

// Bind records what a DHCP packet showed of its sender (see verify.go),
// off the request path: ip may be invalid, uuid "" or a placeholder, which
// binds nothing (see machineUUID).
func (d *Decider) Bind(mac, uuid string, ip netip.Addr) {
	b := store.Binding{MAC: mac, UUID: machineUUID(uuid)}
	if ip.IsValid() {
		b.IP = ip.String()
	}
	d.seen.bind(b)
}

// runPrune keeps what unauthenticated clients can grow bounded: expired and
// surplus DHCP bindings, and only-discovered machines beyond the cap, oldest
// first. It runs every pruneEvery, and sooner after new machines appeared.
func (d *Decider) runPrune(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		d.prune(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.seen.fresh:
			// Let a burst land first: one prune per burst, not per MAC.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (d *Decider) prune(ctx context.Context) {
	if n, err := d.store.PruneBindings(ctx, time.Now().Add(-d.bindingTTL), maxBindings); err != nil {
		d.log.Warn("prune dhcp bindings", "error", err)
	} else if n > 0 {
		d.log.Debug("pruned dhcp bindings", "count", n)
	}
	ms, err := d.store.PruneDiscovered(ctx, d.maxDiscovered)
	if err != nil {
		d.log.Warn("prune discovered machines", "error", err)
		return
	}
	if len(ms) > 0 {
		d.obs.Pruned(len(ms))
		d.log.Warn("pruned discovered machines over the cap, oldest first", "count", len(ms), "max", d.maxDiscovered, "oldest_mac", ms[0].MAC)
	}
}
