package ipxe

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func readAll(t *testing.T, b *Binaries, name string) []byte {
	t.Helper()
	r, size, err := b.Open(name)
	if err != nil {
		t.Fatalf("Open(%q): %v", name, err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %q: %v", name, err)
	}
	if int64(len(data)) != size {
		t.Fatalf("Open(%q) size = %d, read %d bytes", name, size, len(data))
	}
	return data
}

func TestBinariesEmbedded(t *testing.T) {
	b, err := NewBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{UndionlyKPXE, IPXEEFI, SNPEFI} {
		if data := readAll(t, b, name); len(data) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
}

func TestBinariesNotFound(t *testing.T) {
	b, err := NewBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"", "ipxe.iso", "pxelinux.0", "IPXE.EFI", "../x", "/etc/passwd",
		"sub/ipxe.efi", "/ipxe.efi", "./ipxe.efi", "ipxe.efi\x00", "ipxe.efi/",
	} {
		_, _, err := b.Open(name)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%q) error = %v, want ErrNotFound", name, err)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) error = %v, want it to wrap fs.ErrNotExist", name, err)
		}
	}
}

func TestBinariesOverrideDir(t *testing.T) {
	dir := t.TempDir()
	custom := []byte("custom ipxe.efi with embedded certs")
	if err := os.WriteFile(filepath.Join(dir, IPXEEFI), custom, 0o644); err != nil {
		t.Fatal(err)
	}
	// Files that are not one of the binaries are ignored, not served.
	if err := os.WriteFile(filepath.Join(dir, "other.efi"), custom, 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink to a build elsewhere is the operator's choice and is followed.
	undi := filepath.Join(t.TempDir(), "undionly.kpxe")
	if err := os.WriteFile(undi, []byte("custom undionly"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(undi, filepath.Join(dir, UndionlyKPXE)); err != nil {
		t.Fatal(err)
	}
	b, err := NewBinaries(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, b, UndionlyKPXE); string(got) != "custom undionly" {
		t.Errorf("undionly.kpxe = %q, want the symlinked override", got)
	}
	if got := readAll(t, b, IPXEEFI); !bytes.Equal(got, custom) {
		t.Errorf("ipxe.efi = %q, want the override", got)
	}
	embedded, err := NewBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, b, SNPEFI), readAll(t, embedded, SNPEFI); !bytes.Equal(got, want) {
		t.Error("snp.efi without an override is not the embedded build")
	}
	if _, _, err := b.Open("other.efi"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(other.efi) error = %v, want ErrNotFound", err)
	}
}

func TestBinariesOverrideDirErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string
	}{
		{"missing dir", func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "nope")
		}},
		{"not a dir", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"empty override", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, UndionlyKPXE), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"dangling symlink", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, IPXEEFI)); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"override is a directory", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, SNPEFI), 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewBinaries(tt.setup(t)); err == nil {
				t.Error("NewBinaries succeeded, want an error")
			}
		})
	}
}
