package boot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// Each part of the core works on its own, given the live set it reads: the
// decisions need no fleet, the fleet no decisions.
func TestPartsStandAlone(t *testing.T) {
	t.Setenv("PROVISIOND_TEST_N1_BMC", "admin:s3cret-n1")
	dir := t.TempDir()
	write(t, dir, "p.yaml", powerProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	write(t, dir, "wipe.sh", "#!/bin/sh\n")
	f := &fakeBMC{power: map[string]string{}, fail: map[string]error{}}
	cfg := Config{ProfilesDir: dir, AdvertiseURL: "http://h:1", Store: memstore.New(store.Options{}), BMC: f, WipeProfile: "wipe"}
	ctx := context.Background()

	live := NewLive(cfg)
	if _, _, err := live.Match(Request{MAC: n1MAC}); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("Match before a load: %v, want ErrNotLoaded", err)
	}
	if err := live.Reload(); err != nil {
		t.Fatal(err)
	}
	if res, _, err := live.Match(Request{MAC: n1MAC}); err != nil || res.Machine.Name != "n1" || live.WipeProfile() != "wipe" {
		t.Fatalf("Match = %+v, %v; wipe profile %q", res, err, live.WipeProfile())
	}

	script, err := NewDecider(cfg, live).Script(ctx, Request{MAC: n1MAC})
	if err != nil || !strings.Contains(script, "kernel http://h:1/assets/k") {
		t.Fatalf("Script = %q, %v", script, err)
	}

	r := NewFleet(cfg, live).Power(ctx, "n1", "on", "test")
	if r.Err != nil || r.Outcome.Done != bmc.On || r.MAC != n1MAC {
		t.Fatalf("Power = %+v", r)
	}
}
