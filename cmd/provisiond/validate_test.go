package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validate --assets reports each profile file missing from the assets
// directory as a problem at the profile, and fails; with every file there
// it passes.
func TestValidateAssets(t *testing.T) {
	profilesDir, assets := t.TempDir(), t.TempDir()
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(profilesDir, "profiles.yaml"), "kind: Profile\nname: a\nboot: {kernel: /assets/os/vmlinuz, initrd: [/assets/os/initrd.img]}\n"+
		"---\nkind: Profile\nname: b\nboot: {kernel: /assets/os/vmlinuz, initrd: [https://mirror.example/initrd.img]}\n")
	write(filepath.Join(assets, "os", "initrd.img"), "initrd")
	if err := os.Mkdir(filepath.Join(assets, "os", "vmlinuz"), 0o755); err != nil { // a directory is no kernel
		t.Fatal(err)
	}

	code, out, errOut := runCmd("validate", profilesDir, "--assets", assets)
	want := []string{
		filepath.Join(profilesDir, "profiles.yaml") + ":1: profile a: boot.kernel /assets/os/vmlinuz: no such file in the assets directory " + assets,
		filepath.Join(profilesDir, "profiles.yaml") + ":5: profile b: boot.kernel /assets/os/vmlinuz: no such file in the assets directory " + assets,
	}
	if code != 1 || strings.TrimSpace(out) != strings.Join(want, "\n") || !strings.Contains(errOut, "2 problem(s)") {
		t.Errorf("validate --assets = %d\n%s%s\nwant 1 and\n%s", code, out, errOut, strings.Join(want, "\n"))
	}

	// Without --assets the same profiles are fine: nothing says where the files are.
	if code, out, _ := runCmd("validate", profilesDir); code != 0 {
		t.Errorf("validate without --assets = %d\n%s", code, out)
	}

	if err := os.Remove(filepath.Join(assets, "os", "vmlinuz")); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(assets, "os", "vmlinuz"), "kernel")
	if code, out, errOut := runCmd("validate", profilesDir, "--assets", assets); code != 0 || !strings.HasPrefix(out, "ok: 2 profile(s)") {
		t.Errorf("validate --assets with every file = %d\n%s%s", code, out, errOut)
	}

	if code, _, errOut := runCmd("validate", profilesDir, "--assets", filepath.Join(assets, "nope")); code == 0 || !strings.Contains(errOut, "--assets "+filepath.Join(assets, "nope")+": no such directory") {
		t.Errorf("validate --assets of a missing directory = %d\n%s", code, errOut)
	}
}
