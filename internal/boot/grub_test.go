package boot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/testutil"
)

// grubProfiles: s1 boots once through shim and GRUB (Secure Boot), n2 chains
// iPXE; no Default.
const grubProfiles = `kind: Profile
name: secure
boot:
  loader: shim
  kernel: /assets/debian/vmlinuz
  initrd: [/assets/debian/initrd.gz, /assets/extra.img]
  args: [console=ttyS0, "it's"]
config: {butane: install.bu}
once: true
---
kind: Profile
name: plain
boot: {kernel: /assets/k}
config: {butane: install.bu}
---
kind: Machine
name: s1
match: {mac: "52:54:00:00:00:01"}
profile: secure
---
kind: Machine
name: n2
match: {mac: "52:54:00:00:00:02"}
profile: plain
`

const s1 = "52:54:00:00:00:01"

func grubCore(t *testing.T, cfg Config) (*Core, store.Store) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "p.yaml", grubProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	c, db := newCore(t, dir, cfg)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	return c, db
}

// grubConfig fetches r's GRUB config and returns it with the session token
// its config URL carries.
func grubConfig(t *testing.T, c *Core, r Request) (string, string) {
	t.Helper()
	cfg, err := c.GrubConfig(context.Background(), r)
	if err != nil {
		t.Fatalf("GrubConfig(%s): %v", r.MAC, err)
	}
	if m := tokenInScript.FindStringSubmatch(cfg); m != nil {
		return cfg, m[1]
	}
	return cfg, ""
}

// The GRUB path is the iPXE path's decision in GRUB's words: a session
// whose token the config URL carries, the config served with it, and once
// installed, the boot from disk.
func TestGrubConfigLifecycle(t *testing.T) {
	c, db := grubCore(t, Config{})
	ctx := context.Background()
	r := Request{MAC: s1, IP: "10.0.0.5"}

	cfg, tok := grubConfig(t, c, r)
	want := "linux '/assets/debian/vmlinuz' 'console=ttyS0' 'it'\\''s' 'ignition.config.url=http://h:1/ignition?mac=52-54-00-00-00-01&token=" + tok + "'\n" +
		"initrd '/assets/debian/initrd.gz' '/assets/extra.img'\nboot\n"
	if tok == "" || !strings.Contains(cfg, want) {
		t.Fatalf("config lacks\n%s\ngot:\n%s", want, cfg)
	}
	if st := state(t, db, s1); st != store.StateProvisioning {
		t.Fatalf("after the GRUB config: %s, want provisioning", st)
	}
	if n := provisioningEvents(t, db, s1); n != 1 {
		t.Errorf("%d sessions opened, want 1", n)
	}
	withToken := r
	withToken.Token = tok
	if _, _, err := c.Config(ctx, withToken, true); err != nil {
		t.Fatalf("config with the GRUB config's token: %v", err)
	}
	if _, err := c.Installed(ctx, "s1", tok, "", "", false); err != nil {
		t.Fatal(err)
	}
	cfg, tok = grubConfig(t, c, r)
	if tok != "" || strings.Contains(cfg, "linux") || !strings.HasSuffix(cfg, "\nexit\n") || !strings.Contains(cfg, "installed: booting from disk") {
		t.Fatalf("installed boot-once machine got:\n%s\nwant the boot from disk", cfg)
	}
	es, err := db.Events(ctx, store.EventQuery{MAC: s1, Type: EventLocalBoot})
	if err != nil || len(es) != 1 {
		t.Errorf("boot-local events: %d, %v; want 1", len(es), err)
	}
}

// A repeated GRUB config request within one provisioning hands out the open
// session again, as /ipxe does; so does /ipxe after GRUB: one session.
func TestGrubConfigReusesOpenSession(t *testing.T) {
	c, db := grubCore(t, Config{Secrets: sessionBox(t, 1)})
	ctx := context.Background()
	r := Request{MAC: s1, IP: "10.0.0.5"}
	first, tok := grubConfig(t, c, r)
	rev, _ := db.Revision(ctx)
	again, tok2 := grubConfig(t, c, r)
	if tok == "" || tok2 != tok || again != first {
		t.Fatalf("a repeated request got token %q, first %q", tok2, tok)
	}
	if _, viaIPXE := script(t, c, r); viaIPXE != tok {
		t.Errorf("/ipxe after GRUB got token %q, want the open session's %q", viaIPXE, tok)
	}
	if after, _ := db.Revision(ctx); after != rev {
		t.Errorf("reused sessions wrote: revision %d -> %d", rev, after)
	}
	if n := provisioningEvents(t, db, s1); n != 1 {
		t.Errorf("%d sessions opened, want 1", n)
	}
}

// The attacker's side: a request for s1's GRUB config from any address but
// s1's is refused, opens no session and records nothing about s1.
func TestGrubConfigRefusesOtherAddresses(t *testing.T) {
	nb := testutil.Neighbors{"10.0.0.5": s1, "10.0.0.6": "52:54:00:00:00:66", "127.0.0.1": "local"}
	c, db := grubCore(t, Config{Neighbors: nb, Secrets: sessionBox(t, 1)})
	ctx := context.Background()
	for _, tc := range []struct{ ip, reason string }{
		{"10.0.0.6", ReasonNeighbor},
		{"127.0.0.1", ReasonLocal},
		{"192.0.2.7", ReasonUnbound},
	} {
		cfg, err := c.GrubConfig(ctx, Request{MAC: s1, IP: tc.ip})
		if refusedFor(err) != tc.reason || cfg != "" {
			t.Errorf("from %s: %q, %v; want refusal %s", tc.ip, cfg, err, tc.reason)
		}
	}
	if m, err := db.Machine(ctx, s1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused requests recorded s1: %+v, %v", m, err)
	}
	// s1 itself, afterwards, opens the one session.
	if _, tok := grubConfig(t, c, Request{MAC: s1, IP: "10.0.0.5"}); tok == "" {
		t.Fatal("s1 got no session")
	}
	if n := provisioningEvents(t, db, s1); n != 1 {
		t.Errorf("%d sessions opened, want 1", n)
	}
	// The session is s1's: the impostor is still refused, not handed it.
	if cfg, err := c.GrubConfig(ctx, Request{MAC: s1, IP: "10.0.0.6"}); refusedFor(err) != ReasonNeighbor {
		t.Errorf("impostor during s1's session: %q, %v", cfg, err)
	}
}

// GRUB asking for a machine whose profile chains iPXE, or for an unknown
// machine, is refused before anything is recorded.
func TestGrubConfigRefusesOtherLoaders(t *testing.T) {
	c, db := grubCore(t, Config{})
	ctx := context.Background()
	if cfg, err := c.GrubConfig(ctx, Request{MAC: "52:54:00:00:00:02", IP: "10.0.0.7"}); !errors.Is(err, ErrLoader) || cfg != "" {
		t.Fatalf("iPXE profile: %q, %v; want ErrLoader", cfg, err)
	}
	if _, err := db.Machine(ctx, "52:54:00:00:00:02"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused request recorded the machine: %v", err)
	}
	if _, err := c.GrubConfig(ctx, Request{MAC: "52:54:00:00:00:99", IP: "10.0.0.8"}); !errors.Is(err, ErrUnknownMachine) {
		t.Errorf("unknown machine: %v, want ErrUnknownMachine", err)
	}
	// iPXE boots every profile: a shim profile's BIOS machines chain it.
	if s, tok := script(t, c, Request{MAC: s1}); tok == "" || !strings.Contains(s, "kernel http://h:1/assets/debian/vmlinuz") {
		t.Errorf("iPXE script of a shim profile:\n%s", s)
	}
}

func TestBootPXELoader(t *testing.T) {
	c, _ := grubCore(t, Config{})
	for mac, want := range map[string]PXEAnswer{
		s1:                  {Boot: true, Machine: "s1", Loader: "shim"},
		"52:54:00:00:00:02": {Boot: true, Machine: "n2"},
	} {
		if got, err := c.BootPXE(context.Background(), Request{MAC: mac}); got != want || err != nil {
			t.Errorf("BootPXE(%s) = %+v, %v; want %+v", mac, got, err, want)
		}
	}
}

// A shim machine being wiped boots the wipe profile: one GRUB cannot boot
// (a kernel URL) is refused before a session is opened, as the machine's own
// profile would be.
func TestGrubConfigWipeProfileRefusedFirst(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", grubProfiles+"---\nkind: Profile\nname: wipeurl\nboot: {kernel: \"https://x/k\"}\nconfig: {butane: install.bu}\n")
	write(t, dir, "install.bu", lifecycleButane)
	c, db := newCore(t, dir, Config{WipeProfile: "wipeurl"})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := db.Seen(ctx, store.Machine{MAC: s1, State: store.StateWiping}, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := db.Provisioning(ctx, s1)
	if cfg, err := c.GrubConfig(ctx, Request{MAC: s1, IP: "10.0.0.5"}); err == nil || !strings.Contains(err.Error(), "profile wipeurl") {
		t.Fatalf("grub config of a machine wiped by a URL kernel = %v\n%s", err, cfg)
	}
	if after, _ := db.Provisioning(ctx, s1); after != before {
		t.Fatalf("the refused config opened a session: %+v -> %+v", before, after)
	}
}
