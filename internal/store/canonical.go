package store

import (
	"fmt"

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
