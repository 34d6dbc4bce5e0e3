package boot

import (
	"context"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

const (
	// refreshSighting is how stale a machine's LastSeen may get before a repeat
	// sighting with nothing new is written again. A boot touches DHCP, TFTP and HTTP
	// many times within seconds; one write per burst is enough.
	refreshSighting = 30 * time.Second
	// inventoryWriters write concurrently so the store can coalesce their
	// transactions into one fsync.
	inventoryWriters = 32
)

// sightings queues writes to the inventory off the request path and drops
// repeats that would change nothing.
type sightings struct {
	inv   store.Store
	queue chan store.Machine
	mu    sync.Mutex
	last  map[string]written // by MAC
}

type written struct {
	key string
	at  time.Time
}

func newSightings(inv store.Store) *sightings {
	return &sightings{inv: inv, queue: make(chan store.Machine, 4096), last: map[string]written{}}
}

// record queues s unless an identical sighting was written recently. It blocks
// only when the writers are far behind, and never past ctx.
func (s *sightings) record(ctx context.Context, m store.Machine) {
	if m.MAC == "" {
		return // the store keys machines by MAC; a UUID-only request is not recorded
	}
	key := m.UUID + "|" + m.Arch + "|" + m.LastIP + "|" + m.Name + "|" + m.Profile
	now := time.Now()
	s.mu.Lock()
	if w, ok := s.last[m.MAC]; ok && w.key == key && now.Sub(w.at) < refreshSighting {
		s.mu.Unlock()
		return
	}
	s.last[m.MAC] = written{key: key, at: now}
	s.mu.Unlock()
	select {
	case s.queue <- m:
	case <-ctx.Done():
	}
}

// run writes queued sightings until ctx ends.
func (s *sightings) run(ctx context.Context, log func(msg string, args ...any)) {
	var wg sync.WaitGroup
	for range inventoryWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-s.queue:
					if _, _, err := s.inv.Seen(context.WithoutCancel(ctx), m, sighted); err != nil {
						s.forget(m.MAC)
						log("record machine sighting", append(machineID(m).Attrs(), "error", err)...)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// forget makes the next sighting of mac be written, after a failed write.
func (s *sightings) forget(mac string) {
	s.mu.Lock()
	delete(s.last, mac)
	s.mu.Unlock()
}
