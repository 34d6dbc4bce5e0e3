package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/testutil"
)

// The Secure Boot firmware and boot chain of Debian's packages: OVMF's
// Secure Boot build and a variable store with Microsoft's keys enrolled
// (ovmf), the Microsoft-signed shim (shim-signed) and the Debian-signed
// network GRUB (grub-efi-amd64-signed), which trusts Debian's signed kernels.
const (
	ovmfSecureCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfMSVars     = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	signedShim     = "/usr/lib/shim/shimx64.efi.signed"
	signedGRUB     = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
)

// requireSecureBoot skips the test unless the Secure Boot firmware and the
// signed boot chain are installed (or fails it under PROVISIOND_REQUIRE_LAB=1).
func requireSecureBoot(t *testing.T) {
	t.Helper()
	var missing []string
	for _, f := range []struct{ path, pkg string }{
		{ovmfSecureCode, "ovmf"}, {ovmfMSVars, "ovmf"},
		{signedShim, "shim-signed"}, {signedGRUB, "grub-efi-amd64-signed"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			missing = append(missing, f.path+" ("+f.pkg+")")
		}
	}
	testutil.RequireLab(t, missing...)
}

// secureBootFirmware are the QEMU flags of OVMF's Secure Boot build with the
// writable variable store vars: q35 with SMM, without which that build does
// not start, and flash that only SMM code may write, so the guest cannot
// change the enrolled keys.
func secureBootFirmware(vars string) []string {
	return []string{
		"-machine", "q35,smm=on",
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfSecureCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
	}
}

// secureBootVars returns a fresh copy of the variable store with Microsoft's
// keys for VM name: the firmware writes its boot entries there.
func (l *lab) secureBootVars(name string) string {
	l.t.Helper()
	vars := filepath.Join(l.t.TempDir(), name+"-OVMF_VARS.fd")
	if err := copyFile(ovmfMSVars, vars); err != nil {
		l.t.Fatalf("copy UEFI variable store: %v", err)
	}
	return vars
}

// writeShimDir returns a --shim-dir: the signed shim and GRUB under the names
// shim loads them by (grubnetx64.efi.signed as grubx64.efi, beside shim).
func writeShimDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for src, name := range map[string]string{signedShim: "shimx64.efi", signedGRUB: "grubx64.efi"} {
		if err := copyFile(src, filepath.Join(dir, name)); err != nil {
			t.Fatalf("shim dir: %v", err)
		}
	}
	return dir
}
