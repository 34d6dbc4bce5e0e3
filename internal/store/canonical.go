package store

import (
	"fmt"

	"github.com/provisiond/provisiond/internal/ident"
)

// canonicalMAC and canonicalUUID key the buckets; errors wrap ErrInvalid so the
// API can answer 400.
func canonicalMAC(s string) (string, error) {
	mac, err := ident.MAC(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return mac, nil
}

func canonicalUUID(s string) (string, error) {
	uuid, err := ident.UUID(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return uuid, nil
}
