package boot

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// NextBoot is what /ipxe then serves, in every state of the lifecycle, and
// asking it writes nothing.
func TestNextBootIsWhatIPXEServes(t *testing.T) {
	c, db, _ := powerCore(t)
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", Arch: "efi-x86_64"}
	if _, err := c.NextBoot(ctx, "n1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("NextBoot of a machine never seen: %v; want ErrNotFound", err)
	}
	script(t, c, n1) // the first boot: provisioning
	tok := ""
	for _, step := range []struct {
		name    string
		do      func()
		profile string // "" = local boot
		why     string
	}{
		{"provisioning", func() {}, "install", "a new provisioning session installs profile install"},
		{"installed, boot-once", func() {
			if _, err := c.Installed(ctx, "n1", "", "", "", true); err != nil {
				t.Fatal(err)
			}
		}, "", "boot-once and the machine is installed"},
		{"wiping", func() {
			if _, _, err := c.Wipe(ctx, "n1", "test", "", false); err != nil {
				t.Fatal(err)
			}
		}, "wipe", "being wiped: it boots the wipe profile wipe, not its profile install"},
		{"wiped", func() {
			if _, err := c.Installed(ctx, "n1", tok, "", "", false); err != nil {
				t.Fatal(err)
			}
		}, "install", "goes from wiped to provisioning"},
		{"wiping, wipe profile gone", func() {
			if _, _, err := c.Wipe(ctx, "n1", "test", "", false); err != nil {
				t.Fatal(err)
			}
			c.wipe = ""
		}, "install", "goes from wiping to provisioning"},
	} {
		step.do()
		rev, _ := db.Revision(ctx)
		p, _ := db.Provisioning(ctx, n1.MAC)
		nb, err := c.NextBoot(ctx, n1.MAC)
		if err != nil {
			t.Fatalf("%s: NextBoot: %v", step.name, err)
		}
		if r, _ := db.Revision(ctx); r != rev {
			t.Errorf("%s: NextBoot wrote to the store", step.name)
		}
		if q, _ := db.Provisioning(ctx, n1.MAC); q != p {
			t.Errorf("%s: NextBoot changed the session: %+v -> %+v", step.name, p, q)
		}
		got := "" // the profile NextBoot says the script boots
		if nb.Profile != nil {
			got = nb.Profile.Name
		}
		if got != step.profile || nb.Local != (step.profile == "") || !strings.Contains(nb.Why, step.why) {
			t.Errorf("%s: NextBoot boots %q (local %v), why %q; want %q, why %q", step.name, got, nb.Local, nb.Why, step.profile, step.why)
		}
		if nb.Match.Machine == nil || nb.Match.Machine.Name != "n1" || nb.Match.Profile.Name != "install" {
			t.Errorf("%s: NextBoot match %+v; want Machine n1, profile install", step.name, nb.Match)
		}
		// Now the machine boots: it gets the same script, its token aside.
		served, token := script(t, c, n1)
		if want := strings.ReplaceAll(served, "token="+token, "token=TOKEN"); token != "" && nb.Script != want || token == "" && nb.Script != served {
			t.Errorf("%s: NextBoot script:\n%s\n/ipxe served:\n%s", step.name, nb.Script, served)
		}
		tok = token
	}
}

// Config serves the profile the session's script booted, by the same
// decision: the wipe profile's while wiping, the machine's own after.
func TestConfigFollowsTheBootDecision(t *testing.T) {
	c, _, _ := powerCore(t)
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", Arch: "bios"}
	script(t, c, n1)
	if _, _, err := c.Wipe(ctx, "n1", "test", "", false); err != nil {
		t.Fatal(err)
	}
	_, tok := script(t, c, n1)
	r := n1
	r.Token = tok
	if _, body, err := c.Config(ctx, r, false); err != nil || !strings.Contains(string(body), "wipefs") {
		t.Fatalf("/config while wiping = %q, %v; want the wipe profile's", body, err)
	}
	c.wipe = "" // the wipe profile is gone: /ipxe now serves the install, and so does Config
	_, tok = script(t, c, n1)
	r.Token = tok
	if _, body, err := c.Config(ctx, r, true); err != nil || strings.Contains(string(body), "wipefs") {
		t.Fatalf("/ignition after the wipe profile went = %q, %v; want the install profile's", body, err)
	}
}
