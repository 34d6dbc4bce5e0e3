package e2e

import (
	"debug/pe"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/testutil"
)

// What building and signing a unified kernel image takes: systemd-boot's
// stub (systemd-boot-efi), objcopy (binutils), sbsign (sbsigntool), and
// OVMF's snakeoil test key with the variable store that enrolls it (ovmf),
// so that the firmware trusts what the test signs. The key is encrypted
// with the pass phrase snakeoilPass (the package's README.Debian).
const (
	ukiStub       = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	snakeoilPass  = "snakeoil"
	snakeoilKey   = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	snakeoilCert  = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	ovmfSnakeVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

// requireUKI skips the test unless a UKI can be built, signed and booted
// under Secure Boot here (or fails it under PROVISIOND_REQUIRE_LAB=1).
func requireUKI(t *testing.T) {
	t.Helper()
	missing := testutil.Missing(
		testutil.Tool{Command: "objcopy", Package: "binutils"},
		testutil.Tool{Command: "sbsign", Package: "sbsigntool"},
		testutil.Tool{Command: "openssl", Package: "openssl"},
	)
	for _, f := range []struct{ path, pkg string }{
		{ukiStub, "systemd-boot-efi"}, {ovmfSecureCode, "ovmf"}, {ovmfSnakeVars, "ovmf"},
		{snakeoilKey, "ovmf"}, {snakeoilCert, "ovmf"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			missing = append(missing, f.path+" ("+f.pkg+")")
		}
	}
	testutil.RequireLab(t, missing...)
}

// ukiSection is one section objcopy adds to the stub.
type ukiSection struct{ name, file string }

// buildUKI writes to out a unified kernel image of tos booting with cmdline,
// the classic way (systemd-stub(7), before ukify): systemd-stub with the
// sections .osrel, .cmdline, .initrd and .linux added by objcopy, each at a
// virtual address past the stub's own sections and the previous one,
// aligned to the stub's section alignment. .linux comes last: the kernel
// decompresses in place and would overwrite a section placed after it.
func buildUKI(t *testing.T, tos *testOS, cmdline, out string) {
	t.Helper()
	dir := t.TempDir()
	osrel, cmd := filepath.Join(dir, "os-release"), filepath.Join(dir, "cmdline")
	for path, data := range map[string]string{
		osrel: "NAME=\"provisiond e2e test OS\"\nID=provisiond-e2e\n",
		cmd:   cmdline,
	} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatalf("uki: %v", err)
		}
	}
	next, align, err := stubEnd(ukiStub)
	if err != nil {
		t.Fatalf("uki: %v", err)
	}
	args := []string{}
	for _, s := range []ukiSection{
		{".osrel", osrel}, {".cmdline", cmd},
		{".initrd", filepath.Join(tos.Dir, tos.Initrd)}, {".linux", filepath.Join(tos.Dir, tos.Kernel)},
	} {
		fi, err := os.Stat(s.file)
		if err != nil {
			t.Fatalf("uki: %v", err)
		}
		args = append(args, "--add-section", s.name+"="+s.file, "--change-section-vma", fmt.Sprintf("%s=%#x", s.name, next))
		next = alignUp(next+uint64(fi.Size()), align)
	}
	ukiTool(t, "objcopy", append(args, ukiStub, out)...)
}

// stubEnd returns the first aligned virtual address past the sections of
// the PE image at path, and its section alignment.
func stubEnd(path string) (next, align uint64, err error) {
	f, err := pe.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read stub %s: %w", path, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return 0, 0, fmt.Errorf("stub %s is not a PE32+ image", path)
	}
	align = uint64(max(oh.SectionAlignment, 0x1000)) // a page, at least
	var end uint64
	for _, s := range f.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(s.VirtualSize))
	}
	return alignUp(end, align), align, nil
}

func alignUp(n, align uint64) uint64 { return (n + align - 1) / align * align }

// signUKI writes to out the image in signed with OVMF's snakeoil key, and
// checks the signature verifies against its certificate. sbsign cannot
// ask for a pass phrase, so it gets a decrypted copy of the key.
func signUKI(t *testing.T, in, out string) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "snakeoil.key")
	ukiTool(t, "openssl", "pkey", "-in", snakeoilKey, "-passin", "pass:"+snakeoilPass, "-out", key)
	ukiTool(t, "sbsign", "--key", key, "--cert", snakeoilCert, "--output", out, in)
	ukiTool(t, "sbverify", "--cert", snakeoilCert, out)
}

// ukiTool runs a build tool, failing t with its output if it fails.
func ukiTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// snakeoilVars returns a fresh copy of the variable store that enrolls the
// snakeoil key, for VM name: its firmware runs only images that key signed.
func (l *lab) snakeoilVars(name string) string {
	l.t.Helper()
	vars := filepath.Join(l.t.TempDir(), name+"-OVMF_VARS.snakeoil.fd")
	if err := copyFile(ovmfSnakeVars, vars); err != nil {
		l.t.Fatalf("copy UEFI variable store: %v", err)
	}
	return vars
}
