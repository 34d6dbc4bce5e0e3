package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/assets/assetstest"
)

// assetsServer serves one release of each OS in its real layout, signed by the
// server's throwaway key; keyring is that key's file for --keyring.
func assetsServer(t *testing.T) (srv *assetstest.Server, keyring string) {
	srv = assetstest.NewServer(t)
	srv.Flatcar(t, "amd64", "4230.2.1")
	srv.FCOS(t, "stable", "x86_64", "43.20261101.3.0")
	srv.Talos(t, "1.11.5", "amd64")
	keyring = filepath.Join(t.TempDir(), "release-key.asc")
	if err := os.WriteFile(keyring, srv.PublicKey(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, keyring
}

func TestAssetsFetch(t *testing.T) {
	srv, keyring := assetsServer(t)
	tests := []struct {
		name     string
		args     []string
		files    []string
		snippet  string
		wantNote bool // the Talos not-signature-verified note
	}{
		{
			name:  "flatcar",
			args:  []string{"flatcar", "--version", "4230.2.1", "--flatcar-base-url", srv.URL, "--keyring", keyring},
			files: []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"},
			snippet: "boot:\n  kernel: /assets/flatcar/flatcar_production_pxe.vmlinuz\n" +
				"  initrd: [/assets/flatcar/flatcar_production_pxe_image.cpio.gz]\n",
		},
		{
			name:  "fcos",
			args:  []string{"fcos", "--version", "43.20261101.3.0", "--fcos-base-url", srv.URL, "--keyring", keyring},
			files: []string{"fedora-coreos-live-kernel.x86_64", "fedora-coreos-live-initramfs.x86_64.img", "fedora-coreos-live-rootfs.x86_64.img"},
			snippet: "boot:\n  kernel: /assets/fcos/fedora-coreos-live-kernel.x86_64\n  initrd:\n" +
				"    - /assets/fcos/fedora-coreos-live-initramfs.x86_64.img\n    - /assets/fcos/fedora-coreos-live-rootfs.x86_64.img\n",
		},
		{
			name:     "talos",
			args:     []string{"talos", "--version", "v1.11.5", "--talos-base-url", srv.URL},
			files:    []string{"vmlinuz-amd64", "initramfs-amd64.xz"},
			snippet:  "boot:\n  kernel: /assets/talos/vmlinuz-amd64\n  initrd: [/assets/talos/initramfs-amd64.xz]\n",
			wantNote: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			args := append([]string{"assets", "fetch"}, tt.args...)
			args = append(args, "--dest", dest)
			code, out, errOut := runCmd(args...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			if !strings.Contains(out, tt.snippet) {
				t.Errorf("stdout lacks the profile lines\n%s\nin:\n%s", tt.snippet, out)
			}
			for _, name := range tt.files {
				p := filepath.Join(dest, tt.name, name)
				if _, err := os.Stat(p); err != nil {
					t.Error(err)
				}
				if !strings.Contains(out, p) {
					t.Errorf("stdout does not say where %s went:\n%s", name, out)
				}
				// Not a terminal: one line per file, no bar.
				if !strings.Contains(errOut, name+"  ") || strings.Contains(errOut, "\r") {
					t.Errorf("stderr lacks a line for %s (or has bar redraws):\n%q", name, errOut)
				}
			}
			if got := strings.Count(errOut, "  verified: "); got != len(tt.files) {
				t.Errorf("stderr has %d verified lines; want %d:\n%s", got, len(tt.files), errOut)
			}
			note := strings.Contains(errOut, "not signature-verified") && strings.Contains(out, "not signature-verified")
			if note != tt.wantNote {
				t.Errorf("Talos note shown = %v; want %v\nstdout:\n%s\nstderr:\n%s", note, tt.wantNote, out, errOut)
			}

			// Again: everything is in place and verified, nothing is downloaded.
			code, _, errOut = runCmd(args...)
			if code != 0 || strings.Count(errOut, "already present, verified") != len(tt.files) {
				t.Errorf("second run: exit %d\n%s", code, errOut)
			}
		})
	}
}

func TestAssetsFetchRefusals(t *testing.T) {
	srv := assetstest.NewServer(t)
	keyring := filepath.Join(t.TempDir(), "k.asc")
	if err := os.WriteFile(keyring, srv.PublicKey(t), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.FCOS(t, "stable", "x86_64", "43.20261101.3.0")
	srv.Talos(t, "1.11.5", "amd64")
	dir, _ := srv.Flatcar(t, "amd64", "4230.2.1")
	srv.Put(dir+"flatcar_production_pxe.vmlinuz", []byte("tampered"))
	srv.Remove("/v1.11.5/initramfs-amd64.xz")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string
		noDir    string // the OS directory must hold nothing under this name
	}{
		{"tampered", []string{"flatcar", "--version", "4230.2.1", "--flatcar-base-url", srv.URL, "--keyring", keyring},
			1, []string{"flatcar_production_pxe.vmlinuz: sha512 is", "refused"}, "flatcar/flatcar_production_pxe.vmlinuz"},
		{"unknown signer, built-in keys", []string{"flatcar", "--version", "4230.2.1", "--flatcar-base-url", srv.URL},
			1, []string{"not in the keyring", "Flatcar_Image_Signing_Key.asc", "--keyring"}, "flatcar/flatcar_production_pxe.vmlinuz"},
		{"fcos version not in stream", []string{"fcos", "--version", "42.1", "--fcos-base-url", srv.URL, "--keyring", keyring},
			1, []string{"not the stable stream's release for x86_64, which is 43.20261101.3.0"}, "fcos"},
		{"404 names the URL", []string{"talos", "--version", "1.11.5", "--talos-base-url", srv.URL},
			1, []string{"GET " + srv.URL + "/v1.11.5/initramfs-amd64.xz: 404 Not Found"}, "talos/initramfs-amd64.xz"},
		{"no OS", []string{"--version", "1"}, 2, []string{"want one OS"}, ""},
		{"unknown OS", []string{"windows", "--version", "1"}, 2, []string{`unknown OS "windows"`}, ""},
		{"no version", []string{"talos"}, 2, []string{"--version is required"}, ""},
		{"keyring for talos", []string{"talos", "--version", "1.11.5", "--keyring", keyring, "--talos-base-url", srv.URL},
			2, []string{"no OpenPGP signatures"}, ""},
		{"missing keyring file", []string{"flatcar", "--version", "1", "--keyring", "/nonexistent.asc"}, 1, []string{"read keyring"}, ""},
		{"bad max size", []string{"talos", "--version", "1", "--max-size", "lots"}, 2, []string{"size \"lots\""}, ""},
		{"too large", []string{"talos", "--version", "1.11.5", "--talos-base-url", srv.URL, "--max-size", "1KiB"},
			1, []string{"too large", "at most 1024 accepted"}, "talos/vmlinuz-amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			args := append(append([]string{"assets", "fetch"}, tt.args...), "--dest", dest)
			code, out, errOut := runCmd(args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d; want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tt.noDir != "" {
				if _, err := os.Stat(filepath.Join(dest, tt.noDir)); err == nil {
					t.Errorf("%s exists after a refusal", tt.noDir)
				}
			}
		})
	}
	for _, args := range [][]string{{"assets"}, {"assets", "list"}} {
		if code, _, _ := runCmd(args...); code != 2 {
			t.Errorf("%v: exit %d; want 2", args, code)
		}
	}
	if code, out, _ := runCmd("assets", "fetch", "--help"); code != 0 || !strings.Contains(out, "NOT") || !strings.Contains(out, "--talos-base-url URL") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1000", 1000, true},
		{"1KiB", 1024, true},
		{"4GiB", 4 << 30, true},
		{"2 MB", 2 << 20, true},
		{"1.5G", 3 << 29, true},
		{"512b", 512, true},
		{"0", 0, false},
		{"", 0, false},
		{"GiB", 0, false},
		{"lots", 0, false},
		{"1e30", 0, false}, // past int64: no wrap to a negative limit
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var b byteSize
			err := b.Set(tt.in)
			if (err == nil) != tt.ok || (tt.ok && int64(b) != tt.want) {
				t.Fatalf("Set(%q) = %d, %v; want %d, ok %v", tt.in, b, err, tt.want, tt.ok)
			}
		})
	}
}
