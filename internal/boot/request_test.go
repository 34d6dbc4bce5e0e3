package boot

import (
	"net/netip"
	"testing"
)

// Every protocol's request is normalised in one place: a placeholder UUID
// is none, and the architecture is named in one vocabulary.
func TestNewRequest(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		mac, uuid, platform, cpu string
		wantUUID, wantArch       string
	}{
		{"iPXE EFI", n1MAC, "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b", "efi", "x86_64", "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b", "efi-x86_64"},
		{"BIOS reports i386", n1MAC, "", "pcbios", "i386", "", "bios"},
		{"no platform passes cpu", n1MAC, "", "", "arm64", "", "arm64"},
		{"zero placeholder", n1MAC, "00000000-0000-0000-0000-000000000000", "efi", "arm64", "", "efi-arm64"},
		{"ones placeholder", "", "ffffffff-ffff-ffff-ffff-ffffffffffff", "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRequest(tc.mac, tc.uuid, tc.platform, tc.cpu)
			if r.MAC != tc.mac || r.UUID != tc.wantUUID || r.Arch != tc.wantArch {
				t.Errorf("NewRequest = %+v, want uuid %q arch %q", r, tc.wantUUID, tc.wantArch)
			}
		})
	}
}

// A DHCP binding of a placeholder UUID binds the MAC and no UUID.
func TestBindDropsPlaceholderUUID(t *testing.T) {
	c, _ := newCore(t, t.TempDir(), Config{})
	c.Bind(n1MAC, "03000200-0400-0500-0006-000700080009", netip.MustParseAddr("10.0.0.9"))
	if q := <-c.seen.queue; q.binding == nil || q.binding.MAC != n1MAC || q.binding.UUID != "" || q.binding.IP != "10.0.0.9" {
		t.Fatalf("queued %+v", q.binding)
	}
}
