package boot

import (
	"context"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// inspectProfiles: unknown machines boot discovery, which inspects; the
// machine with serial SN-0001 installs to the disk its inspection found.
const inspectProfiles = `kind: Profile
name: discovery
inspect: true
boot: {kernel: /assets/k, args: [console=ttyS0]}
config: {template: hello.txt}
---
kind: Profile
name: install
boot: {kernel: /assets/k}
config: {template: install.txt}
---
kind: Profile
name: secure
inspect: true
boot: {loader: shim, kernel: /assets/k}
---
kind: Default
profile: discovery
---
kind: Machine
name: n1
match: {serial: SN-0001}
profile: install
---
kind: Machine
name: s1
match: {mac: "52:54:00:00:00:05"}
profile: secure
`

func inspectCore(t *testing.T, db store.Store) *Core {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "p.yaml", inspectProfiles)
	write(t, dir, "hello.txt", "hello {{ .machine.mac }}\n")
	write(t, dir, "install.txt", `install to {{ installDisk "/dev/sda" .hardware }}`+"\n")
	c, _ := newCoreOn(t, dir, Config{}, db)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	return c
}

var inspectArgsRe = regexp.MustCompile(`provisiond\.url=(\S+) provisiond\.mac=(\S+) provisiond\.token=(\w+)`)

// A profile with inspect: true boots with the agent's arguments, holding
// this boot's session token, through iPXE and GRUB alike.
func TestInspectArgs(t *testing.T) {
	c := inspectCore(t, memstore.New(store.Options{}))
	s, token := script(t, c, Request{MAC: "52:54:00:00:00:09"})
	m := inspectArgsRe.FindStringSubmatch(s)
	if m == nil || m[1] != "http://h:1" || m[2] != "52-54-00-00-00-09" || m[3] != token || token == "" {
		t.Fatalf("script = %s\nwant provisiond.url=http://h:1 provisiond.mac=52-54-00-00-00-09 provisiond.token=<the session token %q>", s, token)
	}
	if !strings.Contains(s, " console=ttyS0 provisiond.url=") {
		t.Errorf("the agent's arguments do not follow the profile's:\n%s", s)
	}

	cfg, err := c.GrubConfig(context.Background(), Request{MAC: "52:54:00:00:00:05"})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`'provisiond\.url=http://h:1' 'provisiond\.mac=52-54-00-00-00-05' 'provisiond\.token=\w{26}'`).MatchString(cfg) {
		t.Errorf("GRUB config lacks the agent's arguments:\n%s", cfg)
	}

	// The reused or renewed session of a second boot inspects too.
	if s, _ := script(t, c, Request{MAC: "52:54:00:00:00:09"}); !strings.Contains(s, "provisiond.token=") {
		t.Errorf("a second boot of discovery lacks the agent's arguments:\n%s", s)
	}
}

// A machine matched by serial is found once its inspection stored the
// serial: DHCP, /ipxe and the config all see its Machine, and the config
// names the disk the report holds.
func TestMatchSerialAfterInspection(t *testing.T) {
	ctx := context.Background()
	db := memstore.New(store.Options{})
	c := inspectCore(t, db)
	const mac = "52:54:00:00:00:09"
	r := Request{MAC: mac}

	if a, err := c.BootPXE(ctx, r); err != nil || !a.Boot || a.Machine != "" {
		t.Fatalf("BootPXE before inspection = %+v, %v; want the Default", a, err)
	}
	if s, _ := script(t, c, r); !strings.Contains(s, "Default profile discovery") {
		t.Fatalf("script before inspection:\n%s", s)
	}

	hw := store.Hardware{
		System: store.System{Vendor: "QEMU", Serial: "SN-0001"},
		Disks: []store.Disk{
			{Name: "vda", Serial: "DATA1", Size: 64 << 30, ByID: []string{"/dev/disk/by-id/virtio-DATA1"}},
			{Name: "vdb", Serial: "ROOT1", Size: 20 << 30, ByID: []string{"/dev/disk/by-id/virtio-ROOT1"}},
		},
	}
	if _, _, err := db.Update(ctx, mac, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
		m.Hardware = &hw
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}

	if a, err := c.BootPXE(ctx, r); err != nil || a.Machine != "n1" {
		t.Fatalf("BootPXE after inspection = %+v, %v; want Machine n1 by its serial", a, err)
	}
	s, token := script(t, c, r)
	if !strings.Contains(s, "machine n1, profile install") || strings.Contains(s, "provisiond.token=") {
		t.Fatalf("script after inspection:\n%s\nwant machine n1's install, which does not inspect", s)
	}
	if got := state(t, db, mac); got != store.StateProvisioning {
		t.Errorf("state = %s; want provisioning", got)
	}
	_, body, err := c.Config(ctx, Request{MAC: mac, Token: token}, false)
	if err != nil || string(body) != "install to /dev/disk/by-id/virtio-ROOT1\n" {
		t.Errorf("config = %q, %v; want the smaller disk by its stable name", body, err)
	}
}

// countingStore counts machine reads.
type countingStore struct {
	store.Store
	reads atomic.Int64
}

func (s *countingStore) Machine(ctx context.Context, key string) (store.Machine, error) {
	s.reads.Add(1)
	return s.Store.Machine(ctx, key)
}

// Only a set with Machines that match on hardware reads the inventory to
// match: a DHCP answer costs no store read otherwise.
func TestMatchReadsHardwareOnlyWhenMatched(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		profiles string
		reads    int64
	}{
		{"mac Machines only", good, 0},
		{"a serial Machine", good + "---\nkind: Machine\nname: n2\nmatch: {serial: SN-2}\nprofile: p\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "p.yaml", tc.profiles)
			db := &countingStore{Store: memstore.New(store.Options{})}
			c, _ := newCoreOn(t, dir, Config{}, db)
			if err := c.Reload(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.BootPXE(ctx, Request{MAC: "52:54:00:00:00:01"}); err != nil {
				t.Fatal(err)
			}
			if got := db.reads.Load(); got != tc.reads {
				t.Errorf("BootPXE read the store %d times; want %d", got, tc.reads)
			}
		})
	}
}

// BenchmarkBootPXEMatch is a DHCP answer for an inspected machine on bbolt,
// with a set that matches on MACs only and with one that matches serials
// too, which reads the machine's hardware from the store.
func BenchmarkBootPXEMatch(b *testing.B) {
	for _, bc := range []struct{ name, extra string }{
		{"mac-only", ""},
		{"serial", "---\nkind: Machine\nname: n2\nmatch: {serial: SN-2}\nprofile: p\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			writeB(b, dir, "p.yaml", good+bc.extra)
			db := boltStore(b)
			c, _ := newCoreOn(b, dir, Config{}, db)
			if err := c.Reload(); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			r := Request{MAC: "52:54:00:00:00:01"}
			hw := store.Hardware{System: store.System{Serial: "SN-1"}, Disks: make([]store.Disk, 2)}
			if _, _, err := db.Seen(ctx, store.Machine{MAC: r.MAC}, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
				m.Hardware = &hw
				return nil, nil
			}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.BootPXE(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
