// Package ident canonicalises the two hardware identities machines are known by: the
// NIC's MAC address and the SMBIOS system UUID. Every package that keys anything by
// machine uses these, so "AA-BB-.." in a query and "aa:bb:.." in Git are the same key.
package ident

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid marks an identity that cannot be parsed.
var ErrInvalid = errors.New("invalid identity")

// MAC returns the canonical form (lower-case, colon-separated) of a 48-bit MAC given
// as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff, any case.
func MAC(s string) (string, error) {
	hex := make([]byte, 0, 12)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' || c == '-' || c == '.':
			continue
		case isHex(c):
			if len(hex) == 12 {
				return "", fmt.Errorf("mac %q: %w", s, ErrInvalid)
			}
			hex = append(hex, lower(c))
		default:
			return "", fmt.Errorf("mac %q: %w", s, ErrInvalid)
		}
	}
	if len(hex) != 12 {
		return "", fmt.Errorf("mac %q: %w", s, ErrInvalid)
	}
	out := make([]byte, 0, 17)
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, hex[i], hex[i+1])
	}
	return string(out), nil
}

// UUID returns the canonical form (lower-case 8-4-4-4-12) of an SMBIOS UUID given
// with or without hyphens or braces, any case.
func UUID(s string) (string, error) {
	t := strings.Trim(s, "{}")
	hex := make([]byte, 0, 32)
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '-':
			continue
		case isHex(c) && len(hex) < 32:
			hex = append(hex, lower(c))
		default:
			return "", fmt.Errorf("uuid %q: %w", s, ErrInvalid)
		}
	}
	if len(hex) != 32 {
		return "", fmt.Errorf("uuid %q: %w", s, ErrInvalid)
	}
	h := string(hex)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// Placeholder SMBIOS UUIDs that cheap boards ship on every unit: matching or
// indexing on them would make all such machines one.
var placeholderUUIDs = map[string]bool{
	"00000000-0000-0000-0000-000000000000": true,
	"ffffffff-ffff-ffff-ffff-ffffffffffff": true,
	"03000200-0400-0500-0006-000700080009": true,
}

// PlaceholderUUID reports whether the canonical uuid is one of those
// placeholders, which callers treat as no UUID at all.
func PlaceholderUUID(uuid string) bool { return placeholderUUIDs[uuid] }
