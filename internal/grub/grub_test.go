package grub

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scriptCheck runs GRUB's own parser (grub-script-check, Debian's
// grub-common) over a rendered config.
func scriptCheck(t *testing.T, cfg string) {
	t.Helper()
	bin, err := exec.LookPath("grub-script-check")
	if err != nil {
		t.Logf("grub-script-check not installed (grub-common): syntax not checked")
		return
	}
	f := filepath.Join(t.TempDir(), "grub.cfg")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, f).CombinedOutput(); err != nil {
		t.Fatalf("grub-script-check: %v\n%s\n%s", err, out, cfg)
	}
}

// words splits a command line of cfg the way GRUB's parser does for the
// quoting Config uses (single quotes, backslash outside them), which is also
// sh's: it asks sh, a second parser, rather than a copy of quote.
func words(t *testing.T, line string) []string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `for a in `+line+`; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh %q: %v", line, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

func line(t *testing.T, cfg, cmd string) string {
	t.Helper()
	for l := range strings.Lines(cfg) {
		if rest, ok := strings.CutPrefix(l, cmd+" "); ok {
			return strings.TrimSuffix(rest, "\n")
		}
	}
	t.Fatalf("no %q line in\n%s", cmd, cfg)
	return ""
}

func TestConfig(t *testing.T) {
	const token = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	configURL := "http://10.99.0.2:8080/config?mac=52-54-00-00-00-01&token=" + token
	tests := []struct {
		name       string
		b          Boot
		wantKernel string
		wantArgs   []string
		wantInitrd []string
		err        bool
	}{
		{
			name:       "assets over TFTP, token, ampersand",
			b:          Boot{Comment: "machine n1, profile p", Kernel: "/assets/vmlinuz", Initrds: []string{"/assets/a.img", "/assets/b.img"}, Args: []string{"console=ttyS0", "ignition.config.url=" + configURL}, ConfigURL: configURL},
			wantKernel: "/assets/vmlinuz",
			wantArgs:   []string{"console=ttyS0", "ignition.config.url=" + configURL},
			wantInitrd: []string{"/assets/a.img", "/assets/b.img"},
		},
		{
			name:       "${config-url} expanded as iPXE does",
			b:          Boot{Kernel: "/assets/k", Args: []string{"ds=nocloud-net;s=${config-url}&f="}, ConfigURL: configURL},
			wantKernel: "/assets/k",
			wantArgs:   []string{"ds=nocloud-net;s=" + configURL + "&f="},
		},
		{
			name:       "quotes, dollars, spaces and semicolons stay literal",
			b:          Boot{Kernel: "/assets/k", Args: []string{`it's`, `a"b`, `$root`, "x y", "a;reboot", `back\slash`, `''`}},
			wantKernel: "/assets/k",
			wantArgs:   []string{`it's`, `a"b`, `$root`, "x y", "a;reboot", `back\slash`, `''`},
		},
		{name: "newline in an argument", b: Boot{Kernel: "/assets/k", Args: []string{"a\nreboot"}}, err: true},
		{name: "carriage return in an argument", b: Boot{Kernel: "/assets/k", Args: []string{"a\rb"}}, err: true},
		{name: "https kernel", b: Boot{Kernel: "https://mirror.example/k"}, err: true},
		{
			name:       "a quote in a path",
			b:          Boot{Kernel: "/assets/it's", Initrds: []string{"/assets/a b"}},
			wantKernel: "/assets/it's",
			wantInitrd: []string{"/assets/a b"},
		},
		{name: "http kernel", b: Boot{Kernel: "http://mirror.example/k"}, err: true},
		{name: "http initrd", b: Boot{Kernel: "/assets/k", Initrds: []string{"http://10.99.0.2:8080/assets/i"}}, err: true},
		{name: "line break in a path", b: Boot{Kernel: "/assets/k\nreboot"}, err: true},
		{name: "double slash", b: Boot{Kernel: "//assets/k"}, err: true},
		{name: "no kernel", b: Boot{}, err: true},
		{name: "relative path", b: Boot{Kernel: "assets/k"}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Config(tt.b)
			if tt.err {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("Config = %v, want ErrUnsupported\n%s", err, cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			scriptCheck(t, cfg)
			got := words(t, line(t, cfg, "linux"))
			if got[0] != tt.wantKernel || strings.Join(got[1:], "\x00") != strings.Join(tt.wantArgs, "\x00") {
				t.Errorf("linux line parses to %q, want %q %q\n%s", got, tt.wantKernel, tt.wantArgs, cfg)
			}
			if tt.wantInitrd != nil {
				if got := words(t, line(t, cfg, "initrd")); strings.Join(got, " ") != strings.Join(tt.wantInitrd, " ") {
					t.Errorf("initrd line parses to %q, want %q", got, tt.wantInitrd)
				}
			} else if strings.Contains(cfg, "\ninitrd") {
				t.Errorf("an initrd line without initrds:\n%s", cfg)
			}
			if !strings.Contains(cfg, "\nboot\n") || !strings.HasSuffix(cfg, "exit\n") {
				t.Errorf("config does not boot, then leave on failure:\n%s", cfg)
			}
		})
	}
}

func TestCommentsStayComments(t *testing.T) {
	cfg, err := Config(Boot{Comment: "machine x\nreboot", Kernel: "/assets/k"})
	if err != nil {
		t.Fatal(err)
	}
	local := LocalConfig("machine x\nreboot, installed")
	for _, c := range []string{cfg, local} {
		scriptCheck(t, c)
		for l := range strings.Lines(c) {
			if strings.HasPrefix(l, "reboot") {
				t.Errorf("a comment's line break became the command %q:\n%s", l, c)
			}
		}
	}
	if !strings.HasSuffix(local, "\nexit\n") || !strings.Contains(local, "echo 'provisiond: machine x reboot, installed'") {
		t.Errorf("local config:\n%s", local)
	}
}

func TestChainConfig(t *testing.T) {
	cfg := ChainConfig()
	scriptCheck(t, cfg)
	for _, want := range []string{"set timeout=0\n", "configfile /grub/machines/${net_default_mac}.cfg\n", "could not load", "exit\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("generic config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestMachineMAC(t *testing.T) {
	tests := []struct {
		name   string
		want   string
		ok     bool
		hasErr bool
	}{
		{MachineFile("52:54:00:ab:cd:ef"), "52:54:00:ab:cd:ef", true, false},
		{"grub/machines/52:54:00:AB:CD:EF.cfg", "52:54:00:ab:cd:ef", true, false},
		{"grub/machines/52-54-00-ab-cd-ef.cfg", "52:54:00:ab:cd:ef", true, false},
		{"grub/machines/52:54:00:ab:cd.cfg", "", true, true},
		{"grub/machines/52:54:00:ab:cd:ef", "", true, true},
		{"grub/machines/../grub.cfg", "", true, true},
		{"grub/machines/x/52:54:00:ab:cd:ef.cfg", "", true, true},
		{"grub/machines/.cfg", "", true, true},
		{"grub/grub.cfg", "", false, false},
		{"grub/x86_64-efi/grub.cfg", "", false, false},
	}
	for _, tt := range tests {
		mac, ok, err := MachineMAC(tt.name)
		if mac != tt.want || ok != tt.ok || (err != nil) != tt.hasErr {
			t.Errorf("MachineMAC(%q) = %q, %v, %v; want %q, %v, error %v", tt.name, mac, ok, err, tt.want, tt.ok, tt.hasErr)
		}
	}
}
