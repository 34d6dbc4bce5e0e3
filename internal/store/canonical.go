package store

import (
	"fmt"
	"net/netip"

	"github.com/provisiond/provisiond/internal/ident"
)

// CanonicalMAC and CanonicalUUID are the keys of machines; errors wrap
// ErrInvalid so the API can answer 400.
func CanonicalMAC(s string) (string, error) {
	mac, err := ident.MAC(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return mac, nil
}

func CanonicalUUID(s string) (string, error) {
	uuid, err := ident.UUID(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return uuid, nil
}

// CanonicalIP is the key of an address's binding: an IPv4-mapped IPv6
// address is written as IPv4, as DHCP (IPv4) shows it.
func CanonicalIP(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("ip %.64q: %w", s, ErrInvalid)
	}
	return a.Unmap().String(), nil
}
