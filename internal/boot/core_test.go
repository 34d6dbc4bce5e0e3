package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

func write(t *testing.T, dir, name, content string) { writeB(t, dir, name, content) }

func writeB(tb testing.TB, dir, name, content string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// newCore returns a Core on profiles dir with a fresh in-memory store.
func newCore(t testing.TB, dir string, cfg Config) (*Core, store.Store) {
	t.Helper()
	return newCoreOn(t, dir, cfg, memstore.New(store.Options{}))
}

// boltStore is a fresh bbolt store, for what measures the real one.
func boltStore(t testing.TB) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "provisiond.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newCoreOn is newCore over db.
func newCoreOn(t testing.TB, dir string, cfg Config, db store.Store) (*Core, store.Store) {
	t.Helper()
	cfg.ProfilesDir, cfg.Store = dir, db
	if cfg.AdvertiseURL == "" {
		cfg.AdvertiseURL = "http://h:1"
	}
	return New(cfg), db
}

const good = "kind: Profile\nname: p\nboot: {kernel: /assets/v1}\n---\nkind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n"

func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", good)
	c, _ := newCore(t, dir, Config{})
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
	c, _ := newCore(t, dir, Config{})
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
			[]string{"kernel http://h:1/assets/talos/vmlinuz initrd=initramfs.xz talos.platform=metal talos.config=http://h:1/config?mac=52-54-00-00-00-09&token="}, "ignition.config.url"},
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
	if _, _, err := c.Config(context.Background(), Request{MAC: "52:54:00:00:00:08"}, false); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("Config for a profile without config = %v; want ErrNoConfig", err)
	}
}

func TestSightingsRecorded(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", good+"---\nkind: Default\nprofile: p\n")
	c, db := newCore(t, dir, Config{})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()

	// DHCP sightings are queued; the unknown one matches only the Default.
	for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:99"} {
		if a, err := c.BootPXE(ctx, Request{MAC: mac, Arch: "efi-x86_64"}); !a.Boot || err != nil {
			t.Fatalf("BootPXE %s = %+v, %v", mac, a, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ms, _ := db.Machines(ctx)
		if len(ms) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	known, err := db.Machine(context.Background(), "52:54:00:00:00:01")
	if err != nil || known.State != store.StateReady || known.Name != "n1" || known.Profile != "p" || known.Arch != "efi-x86_64" {
		t.Errorf("known machine recorded as %+v, %v; want ready n1/p", known, err)
	}
	unknown, err := db.Machine(context.Background(), "52:54:00:00:00:99")
	if err != nil || unknown.State != store.StateDiscovered || unknown.Name != "" {
		t.Errorf("unknown machine recorded as %+v, %v; want discovered", unknown, err)
	}
}

func TestBootPXE(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		mac         string
		want        PXEAnswer
	}{
		{"matched machine", "", "52:54:00:00:00:01", PXEAnswer{Boot: true, Machine: "n1"}},
		{"unknown machine, no Default", "", "52:54:00:00:00:02", PXEAnswer{}},
		{"unknown machine, Default", "---\nkind: Default\nprofile: p\n", "52:54:00:00:00:02", PXEAnswer{Boot: true}},
		// DHCP carries no labels: the iPXE request may still match by them.
		{"unknown machine, labels-only Machines exist", "---\nkind: Machine\nname: rack\nmatch: {labels: {rack: r1}}\nprofile: p\n", "52:54:00:00:00:02", PXEAnswer{Boot: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "p.yaml", good+tc.extra)
			c, _ := newCore(t, dir, Config{})
			if err := c.Reload(); err != nil {
				t.Fatal(err)
			}
			if got, err := c.BootPXE(context.Background(), Request{MAC: tc.mac}); got != tc.want || err != nil {
				t.Fatalf("BootPXE = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	c, _ := newCore(t, t.TempDir(), Config{})
	if a, err := c.BootPXE(context.Background(), Request{MAC: "52:54:00:00:00:01"}); a.Boot || err != nil {
		t.Fatalf("BootPXE before any load = %+v, %v; want no boot", a, err)
	}
}
