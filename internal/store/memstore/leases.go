package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// Leases live in s.leases by address and s.leaseMACs, the index of the
// address each MAC holds; putLease and deleteLease keep the index exact, as
// in the other backends.

var _ store.Leases = (*Store)(nil)

// ClaimLease implements store.Leases.
func (s *Store) ClaimLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return store.Lease{}, err
	}
	l, err := l.Claim(now)
	if err != nil {
		return store.Lease{}, fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.leases[l.IP]; !cur.FreeFor(l.MAC, now) {
		return cur, fmt.Errorf("memstore: %w", cur.Taken(l.MAC))
	}
	l.Updated = s.now()
	s.putLease(l)
	return l, nil
}

// ReleaseLease implements store.Leases.
func (s *Store) ReleaseLease(ctx context.Context, ip, mac string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.heldBy(ip, mac)
	if err != nil {
		return fmt.Errorf("memstore: release lease: %w", err)
	}
	s.deleteLease(cur)
	return nil
}

// DeclineLease implements store.Leases.
func (s *Store) DeclineLease(ctx context.Context, ip, mac string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.heldBy(ip, mac)
	if err != nil {
		return fmt.Errorf("memstore: decline lease: %w", err)
	}
	s.putLease(store.Lease{IP: cur.IP, Network: cur.Network, Expires: until, Declined: true, Updated: s.now()})
	return nil
}

// heldBy returns the lease of ip if mac holds it: ErrInvalid for a bad ip
// or mac, ErrNotFound if mac holds no lease on ip. The caller holds s.mu.
func (s *Store) heldBy(ip, mac string) (store.Lease, error) {
	k, err := store.Lease{IP: ip, MAC: mac}.Canonical()
	if err != nil {
		return store.Lease{}, err
	}
	cur, ok := s.leases[k.IP]
	if !ok || cur.MAC != k.MAC {
		return store.Lease{}, fmt.Errorf("lease %s of %s: %w", k.IP, k.MAC, store.ErrNotFound)
	}
	return cur, nil
}

// Lease implements store.Leases.
func (s *Store) Lease(ctx context.Context, ip string) (store.Lease, error) {
	return store.FindLease(ctx, "memstore", ip, func(ip string) (store.Lease, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		l, ok := s.leases[ip]
		if !ok {
			return store.Lease{}, store.ErrNotFound
		}
		return l, nil
	})
}

// MACLease implements store.Leases.
func (s *Store) MACLease(ctx context.Context, mac string) (store.Lease, error) {
	return store.FindMACLease(ctx, "memstore", mac, func(mac string) (store.Lease, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		ip, ok := s.leaseMACs[mac]
		if !ok {
			return store.Lease{}, store.ErrNotFound
		}
		return s.leases[ip], nil
	})
}

// AllLeases implements store.Leases.
func (s *Store) AllLeases(ctx context.Context) ([]store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	ls := slices.Collect(maps.Values(s.leases))
	s.mu.Unlock()
	store.SortLeases(ls)
	return ls, nil
}

// PruneLeases implements store.Leases.
func (s *Store) PruneLeases(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	deleted := 0
	for _, l := range s.leases {
		if l.Expires.Before(cutoff) {
			s.deleteLease(l)
			deleted++
		}
	}
	return deleted, nil
}

// putLease stores l (canonical) in place of whatever lease its address had:
// the address's previous holder leaves the index, and l.MAC's lease of
// another address goes. The caller holds s.mu.
func (s *Store) putLease(l store.Lease) {
	if old := s.leases[l.IP]; old.MAC != l.MAC {
		s.unindexLease(old.MAC, l.IP)
	}
	if l.MAC != "" {
		if prev, ok := s.leaseMACs[l.MAC]; ok && prev != l.IP && s.leases[prev].MAC == l.MAC {
			delete(s.leases, prev)
		}
		s.leaseMACs[l.MAC] = l.IP
	}
	s.leases[l.IP] = l
}

// deleteLease deletes l, a stored lease, and its index entry. The caller holds s.mu.
func (s *Store) deleteLease(l store.Lease) {
	delete(s.leases, l.IP)
	s.unindexLease(l.MAC, l.IP)
}

// unindexLease drops mac from the index if it points at ip. The caller holds s.mu.
func (s *Store) unindexLease(mac, ip string) {
	if mac != "" && s.leaseMACs[mac] == ip {
		delete(s.leaseMACs, mac)
	}
}
