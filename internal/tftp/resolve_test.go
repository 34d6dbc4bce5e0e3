package tftp

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name      string
		requested string
		want      string // "" means ErrInvalidName
	}{
		{"plain", "ipxe.efi", "ipxe.efi"},
		{"one leading slash", "/pxelinux.0", "pxelinux.0"},
		{"subdirectory", "pxelinux.cfg/default", "pxelinux.cfg/default"},
		{"slash subdirectory", "/efi64/grubx64.efi", "efi64/grubx64.efi"},
		{"dot elements cleaned", "./a/./b", "a/b"},
		{"doubled separator cleaned", "a//b", "a/b"},
		{"trailing slash cleaned", "dir/", "dir"},
		{"dots in a name", "a..b", "a..b"},
		{"dotfile", ".hidden", ".hidden"},
		{"spaces and unicode", "my file ü.efi", "my file ü.efi"},

		{"empty", "", ""},
		{"only slash", "/", ""},
		{"only dot", ".", ""},
		{"slash dot", "/.", ""},
		{"dot dot", "..", ""},
		{"parent escape", "../etc/passwd", ""},
		{"slash parent escape", "/../etc/passwd", ""},
		{"deep parent escape", "a/b/../../../x", ""},
		{"parent that stays inside", "a/../b", ""},
		{"trailing parent", "a/..", ""},
		{"absolute after strip", "//etc/passwd", ""},
		{"triple slash", "///etc/passwd", ""},
		{"NUL", "ipxe.efi\x00.png", ""},
		{"leading NUL", "\x00", ""},
		{"backslash separator", `boot\x86\wdsnbp.com`, ""},
		{"backslash parent", `..\..\etc\passwd`, ""},
		{"backslash after slash", `/\etc\passwd`, ""},
		{"mixed parent", `a/..\..\x`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.requested)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("Resolve(%q) = %q, %v; want ErrInvalidName", tt.requested, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tt.requested, got, err, tt.want)
			}
		})
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"ipxe.efi", "/pxelinux.0", "../x", "/../x", "//x", "a/../b", "a\x00b",
		`a\b`, ".", "/", "", "a//b/./c/", "...", "/a/b/../../..",
	} {
		f.Add(s)
	}
	const root = "/srv/tftp"
	f.Fuzz(func(t *testing.T, requested string) {
		name, err := Resolve(requested)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("Resolve(%q) error %v does not wrap ErrInvalidName", requested, err)
			}
			return
		}
		if !filepath.IsLocal(name) || strings.ContainsAny(name, "\x00\\") || path.Clean(name) != name {
			t.Fatalf("Resolve(%q) = %q: not a clean local name", requested, name)
		}
		for _, elem := range strings.Split(name, "/") {
			if elem == ".." || elem == "." || elem == "" {
				t.Fatalf("Resolve(%q) = %q: element %q", requested, name, elem)
			}
		}
		if full := filepath.Join(root, name); !strings.HasPrefix(full, root+"/") {
			t.Fatalf("Resolve(%q) = %q: joins to %q, outside %s", requested, name, full, root)
		}
		if again, err := Resolve(name); err != nil || again != name {
			t.Fatalf("Resolve(%q) = %q, but Resolve(%q) = %q, %v", requested, name, name, again, err)
		}
	})
}
