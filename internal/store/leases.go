package store

import (
	"context"
	"fmt"
)

// FindLease is Leases.Lease for every backend: it checks ctx and ip, asks
// get for the lease of ip (canonical), and wraps get's error (ErrNotFound
// when there is none) with backend, the prefix of the backend's errors.
func FindLease(ctx context.Context, backend, ip string, get func(ip string) (Lease, error)) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	key, err := LeaseIP(ip)
	if err != nil {
		return Lease{}, fmt.Errorf("%s: lease: %w", backend, err)
	}
	l, err := get(key)
	if err != nil {
		return Lease{}, fmt.Errorf("%s: lease %s: %w", backend, key, err)
	}
	return l, nil
}

// FindMACLease is Leases.MACLease for every backend, as FindLease is
// Lease: get is given mac in canonical form.
func FindMACLease(ctx context.Context, backend, mac string, get func(mac string) (Lease, error)) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	m, err := CanonicalMAC(mac)
	if err != nil {
		return Lease{}, fmt.Errorf("%s: lease of %q: %w", backend, mac, err)
	}
	l, err := get(m)
	if err != nil {
		return Lease{}, fmt.Errorf("%s: lease of %s: %w", backend, m, err)
	}
	return l, nil
}
