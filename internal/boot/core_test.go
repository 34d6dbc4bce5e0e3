package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const good = "kind: Profile\nname: p\nboot: {kernel: /assets/v1}\n---\nkind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n"

func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", good)
	c := New(Config{ProfilesDir: dir, AdvertiseURL: "http://h:1"})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	req := Request{MAC: "52:54:00:00:00:01"}

	// A broken commit: the machine now names a profile that does not exist.
	write(t, dir, "p.yaml", strings.Replace(good, "profile: p\n", "profile: missing\n", 1)+"---\nkind: Bogus\n")
	err := c.Reload()
	var probs profiles.Problems
	if !errors.As(err, &probs) || len(probs) != 2 {
		t.Fatalf("Reload of a broken tree = %v; want 2 problems", err)
	}
	if st := c.Status(); st.Err == nil || c.Profiles() == nil {
		t.Fatalf("Status after failed reload = %+v; want the error, and the last good set still live", st)
	}
	script, err := c.Script(context.Background(), req)
	if err != nil || !strings.Contains(script, "http://h:1/assets/v1") {
		t.Fatalf("after a failed reload Script = %q, %v; want the last good script", script, err)
	}

	write(t, dir, "p.yaml", strings.Replace(good, "/assets/v1", "/assets/v2", 1))
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if script, _ := c.Script(context.Background(), req); !strings.Contains(script, "/assets/v2") {
		t.Fatalf("after a good reload Script = %q; want v2", script)
	}
	if c.Status().Err != nil {
		t.Fatal("status still reports the old error")
	}
}

func TestScriptArgsPerConfigKind(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", `kind: Profile
name: talos
boot: {kernel: /assets/talos/vmlinuz, initrd: [/assets/talos/initramfs.xz], args: [talos.platform=metal]}
config: {talos: worker.yaml}
---
kind: Profile
name: plain
boot: {kernel: "https://mirror.example/vmlinuz"}
---
kind: Machine
name: t1
match: {uuid: "11111111-2222-3333-4444-555555555555"}
profile: talos
---
kind: Default
profile: plain
`)
	write(t, dir, "worker.yaml", "version: v1alpha1\nmachine: {type: worker}\n")
	c := New(Config{ProfilesDir: dir, AdvertiseURL: "http://h:1"})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		req      Request
		want     []string
		wantNone string
	}{
		{"talos by uuid", Request{MAC: "52:54:00:00:00:09", UUID: "11111111-2222-3333-4444-555555555555"},
			[]string{"kernel http://h:1/assets/talos/vmlinuz initrd=initramfs.xz talos.platform=metal talos.config=http://h:1/config?mac=52-54-00-00-00-09&uuid=11111111-2222-3333-4444-555555555555"}, "ignition.config.url"},
		{"remote kernel, no config", Request{MAC: "52:54:00:00:00:08"}, []string{"kernel https://mirror.example/vmlinuz\n"}, "config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, err := c.Script(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(script, w) {
					t.Errorf("script lacks %q:\n%s", w, script)
				}
			}
			if strings.Contains(script, tc.wantNone) {
				t.Errorf("script has %q:\n%s", tc.wantNone, script)
			}
		})
	}
	if _, err := c.Config(context.Background(), Request{MAC: "52:54:00:00:00:08"}, false); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("Config for a profile without config = %v; want ErrNoConfig", err)
	}
}

// fakeInventory is a map-backed Inventory.
type fakeInventory struct {
	mu     sync.Mutex
	writes int
	byMAC  map[string]store.Machine
}

func (f *fakeInventory) Seen(_ context.Context, m store.Machine) (store.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	f.byMAC[m.MAC] = m
	return m, nil
}

func TestSightingsRecorded(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", good+"---\nkind: Default\nprofile: p\n")
	inv := &fakeInventory{byMAC: map[string]store.Machine{}}
	c := New(Config{ProfilesDir: dir, AdvertiseURL: "http://h:1", Inventory: inv})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()

	for range 5 { // a boot asks many times; one write is enough
		if _, err := c.Script(ctx, Request{MAC: "52:54:00:00:00:01", Arch: "x86_64", IP: "10.0.0.5"}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := c.BootPXE(ctx, Request{MAC: "52:54:00:00:00:99", Arch: "efi-x86_64"}); !ok || err != nil {
		t.Fatalf("BootPXE of an unknown machine with a Default = %v, %v", ok, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		inv.mu.Lock()
		n := len(inv.byMAC)
		inv.mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	known, unknown := inv.byMAC["52:54:00:00:00:01"], inv.byMAC["52:54:00:00:00:99"]
	if known.State != store.StateReady || known.Name != "n1" || known.Profile != "p" || known.LastIP != "10.0.0.5" {
		t.Errorf("known machine recorded as %+v; want ready n1/p from 10.0.0.5", known)
	}
	if unknown.State != store.StateDiscovered || unknown.Name != "" || unknown.Arch != "efi-x86_64" {
		t.Errorf("unknown machine recorded as %+v; want discovered", unknown)
	}
	if inv.writes != 2 {
		t.Errorf("%d inventory writes for 2 machines; want repeats dropped", inv.writes)
	}
}

func TestBootPXE(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		mac         string
		want        bool
	}{
		{"matched machine", "", "52:54:00:00:00:01", true},
		{"unknown machine, no Default", "", "52:54:00:00:00:02", false},
		{"unknown machine, Default", "---\nkind: Default\nprofile: p\n", "52:54:00:00:00:02", true},
		// DHCP carries no labels: the iPXE request may still match by them.
		{"unknown machine, labels-only Machines exist", "---\nkind: Machine\nname: rack\nmatch: {labels: {rack: r1}}\nprofile: p\n", "52:54:00:00:00:02", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "p.yaml", good+tc.extra)
			c := New(Config{ProfilesDir: dir, AdvertiseURL: "http://h:1"})
			if err := c.Reload(); err != nil {
				t.Fatal(err)
			}
			if got, err := c.BootPXE(context.Background(), Request{MAC: tc.mac}); got != tc.want || err != nil {
				t.Fatalf("BootPXE = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if ok, err := New(Config{ProfilesDir: t.TempDir()}).BootPXE(context.Background(), Request{MAC: "52:54:00:00:00:01"}); ok || err != nil {
		t.Fatalf("BootPXE before any load = %v, %v; want false", ok, err)
	}
}
