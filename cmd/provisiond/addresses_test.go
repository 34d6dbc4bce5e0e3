package main

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/leases"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// loadNetwork loads a profiles directory holding one Network.
func loadNetwork(t *testing.T, yaml string) *profiles.Set {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "net.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := profiles.Load(dir, profiles.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// The allocator follows the live set: a reload that moves the address plan
// is what the next packet is answered from, for offers, ACKs and INFORMs.
func TestLiveAddressesFollowReloads(t *testing.T) {
	first := loadNetwork(t, "kind: Network\nname: a\nsubnet: 10.1.0.0/24\nrange: [10.1.0.10, 10.1.0.20]\n")
	second := loadNetwork(t, "kind: Network\nname: b\nsubnet: 10.2.0.0/24\nrange: [10.2.0.10, 10.2.0.20]\n---\n"+
		"kind: Profile\nname: p\nboot: {kernel: /assets/k}\n---\n"+
		"kind: Machine\nname: m\nmatch: {mac: \"52:54:00:00:00:01\"}\nip: 10.2.0.5\nprofile: p\n")
	live := first
	a := &liveAddresses{Allocator: leases.New(memstore.New(store.Options{}), leases.Options{}), profiles: func() *profiles.Set { return live }}
	ctx := context.Background()
	linkA, linkB := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")

	got, err := a.Offer(ctx, linkA, "52:54:00:00:00:01", netip.Addr{})
	if err != nil || got.Network != "a" || !netip.MustParsePrefix("10.1.0.0/24").Contains(got.IP) {
		t.Fatalf("offer on the first plan = %+v, %v", got, err)
	}
	if _, err := a.Offer(ctx, linkB, "52:54:00:00:00:01", netip.Addr{}); !errors.Is(err, dhcp.ErrNoNetwork) {
		t.Fatalf("offer on a network not yet in Git = %v, want ErrNoNetwork", err)
	}

	live = second
	if _, err := a.Network(ctx, linkA); !errors.Is(err, dhcp.ErrNoNetwork) {
		t.Errorf("INFORM on a network removed from Git = %v, want ErrNoNetwork", err)
	}
	got, err = a.Ack(ctx, linkB, "52:54:00:00:00:01", netip.MustParseAddr("10.2.0.5"))
	if err != nil || got.Network != "b" {
		t.Errorf("ack of the new reservation = %+v, %v", got, err)
	}
}
