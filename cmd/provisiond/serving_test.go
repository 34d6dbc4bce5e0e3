package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/profiles"
)

// servingProfiles is a Network and a profile booting through shim.
const servingProfiles = `kind: Network
name: prov
subnet: 10.99.0.0/24
range: [10.99.0.100, 10.99.0.199]
router: 10.99.0.1
---
kind: Profile
name: secure
boot: {loader: shim, kernel: /assets/vmlinuz, initrd: [/assets/initrd.gz]}
---
kind: Machine
name: node1
match: {mac: "52:54:00:00:00:01"}
ip: 10.99.0.50
profile: secure
`

// The set is judged against how serve runs it: each deployment that cannot
// boot its profiles is a problem that says what to change.
func TestServingCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(servingProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := profiles.Load(dir, profiles.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noNet := t.TempDir()
	if err := os.WriteFile(filepath.Join(noNet, "all.yaml"), []byte("kind: Profile\nname: p\nboot: {kernel: /assets/k}\n---\nkind: Default\nprofile: p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plain, err := profiles.Load(noNet, profiles.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ukiDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ukiDir, "all.yaml"), []byte("kind: Network\nname: prov\nsubnet: 10.99.0.0/24\nrange: [10.99.0.100, 10.99.0.199]\n---\n"+
		"kind: Profile\nname: talos\nboot: {loader: uki, uki: /assets/talos.efi}\n---\nkind: Default\nprofile: talos\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	uki, err := profiles.Load(ukiDir, profiles.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		set     *profiles.Set
		mode    dhcp.Mode
		proxy   bool
		shimDir bool
		want    []string // substrings, one per problem
		warns   int
	}{
		{"authoritative with a shim dir", set, dhcp.ModeAuthoritative, true, true, nil, 0},
		{"site DHCP names provisiond (no proxy)", set, dhcp.ModeProxy, false, true, nil, 1},
		{"shim behind the proxy", set, dhcp.ModeProxy, true, true, []string{"--dhcp-mode authoritative"}, 1},
		{"shim without a shim dir", set, dhcp.ModeAuthoritative, true, false, []string{"profile secure boots with loader: shim, but serve has no --shim-dir"}, 0},
		{"authoritative without a Network", plain, dhcp.ModeAuthoritative, true, true, []string{"kind: Network"}, 0},
		{"proxy without a Network", plain, dhcp.ModeProxy, true, false, nil, 0},
		{"uki behind the proxy", uki, dhcp.ModeProxy, true, true, []string{"profile talos boots with loader: uki, which provisiond offers with --dhcp-mode authoritative only"}, 0},
		{"uki, site DHCP names provisiond", uki, dhcp.ModeProxy, false, true, []string{"--dhcp-mode authoritative only"}, 0},
		{"uki, authoritative", uki, dhcp.ModeAuthoritative, true, true, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probs, warns := servingCheck(tc.mode, tc.proxy, tc.shimDir)(tc.set)
			if len(probs) != len(tc.want) || len(warns) != tc.warns {
				t.Fatalf("problems %v, warnings %v; want %d problems, %d warnings", probs, warns, len(tc.want), tc.warns)
			}
			for i, w := range tc.want {
				if !strings.Contains(probs[i].String(), w) {
					t.Errorf("problem %q does not say %q", probs[i], w)
				}
			}
		})
	}
}

// validate --dhcp-mode checks what serve in that mode would refuse.
func TestValidateDHCPMode(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(servingProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd("validate", dir); code != 0 {
		t.Errorf("validate without a mode: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCmd("validate", dir, "--dhcp-mode", "authoritative"); code != 0 || strings.Contains(out, "shim-dir") {
		t.Errorf("validate --dhcp-mode authoritative: exit %d\n%s", code, out)
	}
	code, out, _ := runCmd("validate", dir, "--dhcp-mode", "proxy")
	if code != 1 || !strings.Contains(out, "all.yaml:") || !strings.Contains(out, "--dhcp-mode authoritative") || !strings.Contains(out, "warning: ") {
		t.Errorf("validate --dhcp-mode proxy: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCmd("validate", dir, "--dhcp-mode", "full"); code != 2 || !strings.Contains(errOut, "want proxy or authoritative") {
		t.Errorf("validate --dhcp-mode full: exit %d\n%s", code, errOut)
	}
}

// serve refuses a --shim-dir without the signed files, naming where
// distributions keep them, before it writes anything.
func TestServeShimDir(t *testing.T) {
	shim := t.TempDir()
	if err := os.WriteFile(filepath.Join(shim, "shimx64.efi"), []byte("MZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	code, _, errOut := runCmd("serve", "--profiles", "../../examples", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--shim-dir", shim)
	if code != 1 || !strings.Contains(errOut, "no file grubx64.efi") || !strings.Contains(errOut, "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the data dir was created: %v", err)
	}
}
