// Package leases decides which address an authoritative DHCP client gets
// and keeps the leases in the store.
//
// An Allocator answers internal/dhcp's Addresses from the Networks and
// reservations of the live profiles (a Plan) and an in-memory index of the
// store's leases. An offer is picked from the index alone and held in memory
// for a moment; an ACK is granted only by the store (Leases.ClaimLease),
// which is what keeps two instances sharing one store from handing one
// address to two machines.
package leases

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/store"
)

// The defaults of Options.
const (
	DefaultOfferHold   = 30 * time.Second
	DefaultDeclineHold = 10 * time.Minute
	DefaultRefresh     = 10 * time.Second
)

const (
	// pruneAfter is how long an expired lease is kept: while it is, a
	// returning client gets its old address back if no one took it.
	pruneAfter = 24 * time.Hour
	// pruneEvery is how often Run prunes.
	pruneEvery = time.Hour
	// fullRetry is how long a range found full stays full without a new
	// scan, unless an address is freed meanwhile: a lease that expires
	// frees one silently, so the answer must not be kept for long.
	fullRetry = time.Second
)

// Options configures an Allocator; zero values mean the defaults.
type Options struct {
	Clock       func() time.Time // time.Now
	OfferHold   time.Duration    // how long an offered address waits for its REQUEST
	DeclineHold time.Duration    // how long a declined address is not handed out
	// Refresh is how often Run reloads the leases from the store, so
	// instances sharing one store see each other's leases.
	Refresh time.Duration
	Logger  *slog.Logger // nil: discard
}

// Allocator implements dhcp.Addresses over a store.
type Allocator struct {
	st          store.Leases
	clock       func() time.Time
	offerHold   time.Duration
	declineHold time.Duration
	refresh     time.Duration
	log         *slog.Logger

	plan   atomic.Pointer[Plan]
	loaded atomic.Bool
	loadMu sync.Mutex // one reload at a time

	mu      sync.Mutex // guards what follows
	idx     *index
	cursors map[string]uint32 // network name -> where the next scan of its range starts
	full    map[string]full   // network name -> when a scan last found its range full
}

// full remembers a scan that found a range full.
type full struct {
	version uint64 // index.version then
	until   time.Time
}

var _ dhcp.Addresses = (*Allocator)(nil)

// New returns an Allocator keeping its leases in st, with no networks until
// SetPlan. It reads the store on first use, or when Run starts.
func New(st store.Leases, opts Options) *Allocator {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Allocator{
		st:          st,
		clock:       opts.Clock,
		offerHold:   cmp.Or(opts.OfferHold, DefaultOfferHold),
		declineHold: cmp.Or(opts.DeclineHold, DefaultDeclineHold),
		refresh:     cmp.Or(opts.Refresh, DefaultRefresh),
		log:         cmp.Or(opts.Logger, slog.New(slog.NewTextHandler(io.Discard, nil))),
		idx:         newIndex(),
		cursors:     map[string]uint32{},
		full:        map[string]full{},
	}
}

// SetPlan makes p the live address plan (nil: no networks), as a profiles
// reload does. Leases outside it stay in the store until they expire.
func (a *Allocator) SetPlan(p *Plan) {
	a.plan.Store(p)
	a.mu.Lock()
	clear(a.full)
	a.mu.Unlock()
}

// now is the time without a monotonic reading, as the store keeps it.
func (a *Allocator) now() time.Time { return a.clock().UTC() }

// Offer implements dhcp.Addresses.
func (a *Allocator) Offer(ctx context.Context, link netip.Addr, mac string, requested netip.Addr) (dhcp.Assignment, error) {
	mac, n, p, err := a.lookup(ctx, link, mac)
	if err != nil {
		return dhcp.Assignment{}, fmt.Errorf("offer: %w", err)
	}
	now := a.now()
	a.mu.Lock()
	ip, ok := a.pickLocked(p, n, mac, requested.Unmap(), now)
	if ok {
		a.idx.hold(ip, mac, now.Add(a.offerHold))
	}
	a.mu.Unlock()
	if !ok {
		return dhcp.Assignment{}, fmt.Errorf("offer to %s on network %q: %w", mac, n.Name, dhcp.ErrExhausted)
	}
	a.log.Debug("offer", "mac", mac, "ip", ip, "network", n.Name)
	return assignment(n, ip), nil
}

// pickLocked picks the address for mac; it scans n's range unless a scan
// found it full a moment ago and nothing was freed since. a.mu is held.
func (a *Allocator) pickLocked(p *Plan, n *network, mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if ip, ok := a.idx.preferred(p, n, mac, requested, now); ok {
		return ip, true
	}
	if f, ok := a.full[n.Name]; ok && f.version == a.idx.version && now.Before(f.until) {
		return netip.Addr{}, false
	}
	ip, next, ok := a.idx.scan(p, n, mac, now, a.cursors[n.Name])
	if !ok {
		a.full[n.Name] = full{version: a.idx.version, until: now.Add(fullRetry)}
		a.log.Warn("no free address in the range", "mac", mac, "network", n.Name)
		return netip.Addr{}, false
	}
	a.cursors[n.Name] = next
	return ip, true
}

// Ack implements dhcp.Addresses. The store grants the lease: the index
// only refuses what the plan forbids, and learns the store's answer.
func (a *Allocator) Ack(ctx context.Context, link netip.Addr, mac string, ip netip.Addr) (dhcp.Assignment, error) {
	mac, n, p, err := a.lookup(ctx, link, mac)
	if err != nil {
		return dhcp.Assignment{}, fmt.Errorf("ack: %w", err)
	}
	ip = ip.Unmap()
	now := a.now()
	if why := a.refusal(p, n, mac, ip, now); why != "" {
		a.log.Info("lease refused", "mac", mac, "ip", ip, "network", n.Name, "reason", why)
		return dhcp.Assignment{}, fmt.Errorf("ack %s for %s on network %q: %s: %w", ip, mac, n.Name, why, dhcp.ErrRefused)
	}
	l, err := a.st.ClaimLease(ctx, store.Lease{IP: ip.String(), MAC: mac, Network: n.Name, Expires: now.Add(n.LeaseTime)}, now)
	if errors.Is(err, store.ErrTaken) {
		if l.IP != "" { // the holder the store named
			a.mu.Lock()
			a.idx.set(ip, l)
			a.mu.Unlock()
		}
		a.log.Info("lease refused", "mac", mac, "ip", ip, "network", n.Name, "reason", "held by another", "holder", l.MAC)
		return dhcp.Assignment{}, fmt.Errorf("ack %s for %s on network %q: %w: %w", ip, mac, n.Name, dhcp.ErrRefused, err)
	}
	if err != nil {
		return dhcp.Assignment{}, fmt.Errorf("ack %s for %s on network %q: %w", ip, mac, n.Name, err)
	}
	a.mu.Lock()
	a.idx.set(ip, l)
	a.idx.unhold(mac)
	a.mu.Unlock()
	a.log.Debug("lease", "mac", mac, "ip", ip, "network", n.Name, "expires", l.Expires)
	return assignment(n, ip), nil
}

// refusal says why the plan forbids ip to mac on n, "" if it does not: ip
// must be mac's reservation or in the range and reserved for no one else,
// and a MAC with a free reservation on n gets that and nothing else.
func (a *Allocator) refusal(p *Plan, n *network, mac string, ip netip.Addr, now time.Time) string {
	own, reserved := p.reservation[mac]
	switch {
	case !n.Subnet.Contains(ip):
		return "outside the network"
	case p.reservedForOther(ip, mac):
		return "reserved for another machine"
	case own == ip:
		return ""
	case !n.inRange(ip):
		return "outside the range"
	}
	if reserved && n.Subnet.Contains(own) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.idx.freeFor(p, own, mac, now) {
			return "the machine has a reservation, " + own.String()
		}
	}
	return ""
}

// Release implements dhcp.Addresses.
func (a *Allocator) Release(ctx context.Context, mac string, ip netip.Addr) error {
	mac, err := store.CanonicalMAC(mac)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	ip = ip.Unmap()
	err = a.st.ReleaseLease(ctx, ip.String(), mac)
	if err == nil || errors.Is(err, store.ErrNotFound) {
		a.forget(ip, mac)
	}
	if err != nil {
		return fmt.Errorf("release %s by %s: %w", ip, mac, notHeld(err))
	}
	a.log.Info("lease released", "mac", mac, "ip", ip)
	return nil
}

// Decline implements dhcp.Addresses: ip is quarantined for DeclineHold.
func (a *Allocator) Decline(ctx context.Context, mac string, ip netip.Addr) error {
	mac, err := store.CanonicalMAC(mac)
	if err != nil {
		return fmt.Errorf("decline: %w", err)
	}
	ip = ip.Unmap()
	until := a.now().Add(a.declineHold)
	err = a.st.DeclineLease(ctx, ip.String(), mac, until)
	if errors.Is(err, store.ErrNotFound) {
		a.forget(ip, mac)
	}
	if err != nil {
		return fmt.Errorf("decline %s by %s: %w", ip, mac, notHeld(err))
	}
	a.mu.Lock()
	network := a.idx.leases[ip].Network
	a.idx.set(ip, store.Lease{IP: ip.String(), Network: network, Expires: until, Declined: true})
	a.idx.unhold(mac)
	a.mu.Unlock()
	a.log.Warn("address declined: in use by another host", "mac", mac, "ip", ip, "network", network, "until", until)
	return nil
}

// notHeld is err, from a store's ReleaseLease or DeclineLease, as
// dhcp.Addresses says it: ErrNotFound (mac holds no lease of the address)
// is also dhcp.ErrRefused.
func notHeld(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", dhcp.ErrRefused, err)
	}
	return err
}

// forget drops mac's lease of ip and its offer hold from the index, after
// the store released it or said mac held none there.
func (a *Allocator) forget(ip netip.Addr, mac string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.idx.leases[ip].MAC == mac {
		a.idx.drop(ip)
	}
	a.idx.unhold(mac)
}

// Network implements dhcp.Addresses: the options of link's network in the
// live plan. It needs no lease, so it reads neither the index nor the store.
func (a *Allocator) Network(_ context.Context, link netip.Addr) (dhcp.Assignment, error) {
	n := a.plan.Load().network(link.Unmap())
	if n == nil {
		return dhcp.Assignment{}, fmt.Errorf("link %s: %w", link, dhcp.ErrNoNetwork)
	}
	return assignment(n, netip.Addr{}), nil
}

// lookup canonicalises mac, finds link's network in the live plan and
// makes sure the index is loaded.
func (a *Allocator) lookup(ctx context.Context, link netip.Addr, mac string) (string, *network, *Plan, error) {
	mac, err := store.CanonicalMAC(mac)
	if err != nil {
		return "", nil, nil, err
	}
	p := a.plan.Load()
	n := p.network(link.Unmap())
	if n == nil {
		return "", nil, nil, fmt.Errorf("%s on link %s: %w", mac, link, dhcp.ErrNoNetwork)
	}
	if err := a.ensureLoaded(ctx); err != nil {
		return "", nil, nil, err
	}
	return mac, n, p, nil
}

func assignment(n *network, ip netip.Addr) dhcp.Assignment {
	return dhcp.Assignment{
		IP:        ip,
		Network:   n.Name,
		Subnet:    n.Subnet,
		Router:    n.Router,
		DNS:       slices.Clone(n.DNS),
		LeaseTime: n.LeaseTime,
	}
}

// Run keeps the index fresh until ctx ends: it reloads the leases from the
// store every Refresh (instances sharing a store see each other's leases
// within it), ends expired offer holds, and prunes leases expired for over
// a day every hour. Store failures are logged and retried at the next tick.
func (a *Allocator) Run(ctx context.Context) error {
	refresh := time.NewTicker(a.refresh)
	defer refresh.Stop()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	a.upkeep(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh.C:
			a.upkeep(ctx, false)
		case <-prune.C:
			a.upkeep(ctx, true)
		}
	}
}

// upkeep prunes (if asked), reloads and sweeps once.
func (a *Allocator) upkeep(ctx context.Context, prune bool) {
	if prune {
		cutoff := a.now().Add(-pruneAfter)
		if n, err := a.st.PruneLeases(ctx, cutoff); err != nil {
			a.log.Warn("prune leases", "err", err)
		} else if n > 0 {
			a.log.Info("pruned expired leases", "count", n, "before", cutoff)
		}
	}
	if err := a.reload(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("reload leases", "err", err)
	}
	a.mu.Lock()
	a.idx.sweep(a.now())
	a.mu.Unlock()
}

// ensureLoaded loads the index from the store unless it is loaded.
func (a *Allocator) ensureLoaded(ctx context.Context) error {
	if a.loaded.Load() {
		return nil
	}
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	if a.loaded.Load() { // another request loaded it meanwhile
		return nil
	}
	return a.reloadLocked(ctx)
}

// reload replaces the index's leases with the store's.
func (a *Allocator) reload(ctx context.Context) error {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	return a.reloadLocked(ctx)
}

// reloadLocked reloads with a.loadMu held. Changes this instance made while
// the store was read are kept: the snapshot may predate them.
func (a *Allocator) reloadLocked(ctx context.Context) error {
	a.mu.Lock()
	a.idx.dirty = map[netip.Addr]struct{}{}
	a.mu.Unlock()
	all, err := a.st.AllLeases(ctx)
	if err != nil {
		a.mu.Lock()
		a.idx.dirty = nil
		a.mu.Unlock()
		return fmt.Errorf("load leases: %w", err)
	}
	fresh := indexOf(all)
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip := range a.idx.dirty {
		fresh.adopt(ip, a.idx)
	}
	a.idx.leases, a.idx.macs, a.idx.dirty = fresh.leases, fresh.macs, nil
	a.idx.version++
	a.loaded.Store(true)
	return nil
}
