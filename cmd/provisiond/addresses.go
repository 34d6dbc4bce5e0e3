package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/leases"
	"github.com/provisiond/provisiond/internal/profiles"
)

// liveAddresses is the authoritative DHCP server's dhcp.Addresses: the
// allocator, kept on the address plan of the live profile set. A reload
// swaps the set; the next packet builds the new plan, once.
type liveAddresses struct {
	*leases.Allocator
	profiles func() *profiles.Set // the live set (boot.Live.Profiles)

	mu   sync.Mutex
	from *profiles.Set // the set the allocator's plan was built from
}

func (a *liveAddresses) Offer(ctx context.Context, link netip.Addr, mac string, requested netip.Addr) (dhcp.Assignment, error) {
	if err := a.sync(); err != nil {
		return dhcp.Assignment{}, err
	}
	return a.Allocator.Offer(ctx, link, mac, requested)
}

func (a *liveAddresses) Ack(ctx context.Context, link netip.Addr, mac string, ip netip.Addr) (dhcp.Assignment, error) {
	if err := a.sync(); err != nil {
		return dhcp.Assignment{}, err
	}
	return a.Allocator.Ack(ctx, link, mac, ip)
}

func (a *liveAddresses) Network(ctx context.Context, link netip.Addr) (dhcp.Assignment, error) {
	if err := a.sync(); err != nil {
		return dhcp.Assignment{}, err
	}
	return a.Allocator.Network(ctx, link)
}

// sync hands the allocator the plan of the live set if it changed.
func (a *liveAddresses) sync() error {
	set := a.profiles()
	a.mu.Lock()
	defer a.mu.Unlock()
	if set == a.from {
		return nil
	}
	plan, err := addressPlan(set)
	if err != nil {
		// Validation refuses what NewPlan would: a set that went live with
		// it is a bug, and the old plan keeps serving.
		return fmt.Errorf("address plan of the profiles loaded at %v: %w", set.LoadedAt, err)
	}
	a.Allocator.SetPlan(plan)
	a.from = set
	return nil
}

// addressPlan is the allocator's plan of set's Networks and reservations.
func addressPlan(set *profiles.Set) (*leases.Plan, error) {
	if set == nil {
		return leases.NewPlan(nil, nil)
	}
	var nets []leases.Network
	for _, n := range set.Networks() {
		nets = append(nets, leases.Network{
			Name:      n.Name,
			Subnet:    n.Prefix,
			First:     n.First,
			Last:      n.Last,
			Router:    n.RouterAddr,
			DNS:       n.DNSAddrs,
			LeaseTime: n.Lease,
		})
	}
	return leases.NewPlan(nets, set.Reservations())
}
