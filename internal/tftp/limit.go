package tftp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// ErrBusy is why a read request over Config.MaxTransfers or
// Config.MaxPerClient is refused.
var ErrBusy = errors.New("server busy")

// limiter counts the transfers in flight, overall and per client IP.
type limiter struct {
	maxTotal, maxPerClient int

	mu      sync.Mutex
	total   int
	clients map[netip.Addr]int // only clients with transfers in flight
}

func newLimiter(maxTotal, maxPerClient int) *limiter {
	return &limiter{maxTotal: maxTotal, maxPerClient: maxPerClient, clients: map[netip.Addr]int{}}
}

// acquire takes a slot for a transfer to client, or returns an error
// wrapping ErrBusy. Each slot taken is given back with release.
func (l *limiter) acquire(client netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The client's own cap first: a host hitting it is the one to look at,
	// whether or not the server is also full.
	if n := l.clients[client]; n >= l.maxPerClient {
		return fmt.Errorf("%w: %d transfers in flight to %s", ErrBusy, n, client)
	}
	if l.total >= l.maxTotal {
		return fmt.Errorf("%w: %d transfers in flight", ErrBusy, l.total)
	}
	l.total++
	l.clients[client]++
	return nil
}

func (l *limiter) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	// Deleted at zero, so that the map holds at most maxTotal entries whatever
	// addresses a flood comes from.
	if l.clients[client]--; l.clients[client] == 0 {
		delete(l.clients, client)
	}
}
