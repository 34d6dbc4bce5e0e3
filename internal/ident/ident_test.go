package ident

import (
	"errors"
	"testing"
)

func TestMAC(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"colons", "52:54:00:00:00:01", "52:54:00:00:00:01"},
		{"hyphens upper", "52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"},
		{"ipxe hexhyp", "52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef"},
		{"bare", "525400ABCDEF", "52:54:00:ab:cd:ef"},
		{"cisco dots", "5254.00ab.cdef", "52:54:00:ab:cd:ef"},
		{"empty", "", ""},
		{"short", "52:54:00:00:00", ""},
		{"long", "52:54:00:00:00:01:02", ""},
		{"non-hex", "52:54:00:00:00:zz", ""},
		{"ipxe unexpanded", "${mac:hexhyp}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MAC(tc.in)
			if tc.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("MAC(%q) = %q, %v; want ErrInvalid", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("MAC(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestUUID(t *testing.T) {
	const want = "4c4c4544-0042-3510-8057-b7c04f4e3732"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"canonical", want, want},
		{"upper", "4C4C4544-0042-3510-8057-B7C04F4E3732", want},
		{"no hyphens", "4C4C454400423510 8057B7C04F4E3732", ""},
		{"bare", "4c4c454400423510" + "8057b7c04f4e3732", want},
		{"braces", "{4c4c4544-0042-3510-8057-b7c04f4e3732}", want},
		{"too long", want + "00", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UUID(tc.in)
			if tc.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("UUID(%q) = %q, %v; want ErrInvalid", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("UUID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func FuzzMAC(f *testing.F) {
	f.Add("52:54:00:00:00:01")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := MAC(s)
		if err != nil {
			return
		}
		again, err := MAC(got)
		if err != nil || again != got {
			t.Fatalf("canonical form %q not stable: %q, %v", got, again, err)
		}
	})
}
