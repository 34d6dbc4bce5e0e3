package boot

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/testutil"
)

const (
	macA  = "52:54:00:00:00:0a"
	macB  = "52:54:00:00:00:0b"
	uuidA = "aaaaaaaa-0000-0000-0000-00000000000a"
	uuidB = "bbbbbbbb-0000-0000-0000-00000000000b"
)

func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r      Request
		o      observed
		pol    Policy
		want   Request // when admitted
		reason string
	}{
		{name: "on-link, own MAC, own UUID", r: Request{MAC: macA, UUID: uuidA}, o: observed{onLink: true, neighMAC: macA, uuid: uuidA}, want: Request{MAC: macA, UUID: uuidA}},
		{name: "on-link, UUID not seen from it: dropped", r: Request{MAC: macA, UUID: uuidB}, o: observed{onLink: true, neighMAC: macA, uuid: uuidA}, want: Request{MAC: macA, UUID: uuidA}},
		{name: "on-link, UUID claimed, none seen", r: Request{MAC: macA, UUID: uuidB}, o: observed{onLink: true, neighMAC: macA}, want: Request{MAC: macA}},
		{name: "on-link, UUID only: acts as its own MAC", r: Request{UUID: uuidB}, o: observed{onLink: true, neighMAC: macA}, want: Request{MAC: macA}},
		{name: "on-link, another MAC", r: Request{MAC: macB}, o: observed{onLink: true, neighMAC: macA}, reason: ReasonNeighbor},
		{name: "on-link, another MAC, check skipped", r: Request{MAC: macB, UUID: uuidB}, o: observed{onLink: true, neighMAC: macA}, pol: Policy{SkipNeighborCheck: true}, want: Request{MAC: macB, UUID: uuidB}},
		{name: "on-link, no entry, no binding", r: Request{MAC: macA}, o: observed{onLink: true}, reason: ReasonNeighbor},
		{name: "on-link, no entry (a proxy), bound", r: Request{MAC: macA}, o: observed{onLink: true, bound: macA}, want: Request{MAC: macA}},
		{name: "routed, bound", r: Request{MAC: macA, UUID: uuidA}, o: observed{bound: macA, uuid: uuidA}, want: Request{MAC: macA, UUID: uuidA}},
		{name: "routed, bound to another MAC", r: Request{MAC: macB}, o: observed{bound: macA}, reason: ReasonBindMAC},
		{name: "routed, bound to another MAC, unbound allowed", r: Request{MAC: macB}, o: observed{bound: macA}, pol: Policy{AllowUnbound: true}, reason: ReasonBindMAC},
		{name: "routed, unbound", r: Request{MAC: macA}, o: observed{}, reason: ReasonUnbound},
		{name: "routed, unbound, allowed", r: Request{MAC: macB, UUID: uuidB}, o: observed{}, pol: Policy{AllowUnbound: true}, want: Request{MAC: macB, UUID: uuidB}},
		{name: "local", r: Request{MAC: macA}, o: observed{local: true}, reason: ReasonLocal},
		{name: "local, every other relaxation", r: Request{MAC: macA}, o: observed{local: true}, pol: Policy{SkipNeighborCheck: true, AllowUnbound: true}, reason: ReasonLocal},
		{name: "local, trusted", r: Request{MAC: macB, UUID: uuidB}, o: observed{local: true}, pol: Policy{TrustLoopback: true}, want: Request{MAC: macB, UUID: uuidB}},
		{name: "lookup failed", r: Request{MAC: macA}, o: observed{failed: true}, pol: Policy{AllowUnbound: true}, reason: ReasonNeighbor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := verify(tc.r, tc.o, tc.pol)
			if reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
			if reason == "" && (got.MAC != tc.want.MAC || got.UUID != tc.want.UUID) {
				t.Errorf("acts as %s/%s, want %s/%s", got.MAC, got.UUID, tc.want.MAC, tc.want.UUID)
			}
		})
	}
}

// FuzzVerify checks the decision's invariants on any input: a requester on
// this host is admitted only when loopback is trusted; an admitted request
// acts as a MAC that was observed at its source (neighbour table or DHCP
// binding) unless a relaxation took it at its word, and with no UUID but the
// one DHCP showed from that MAC.
func FuzzVerify(f *testing.F) {
	f.Add(macA, uuidA, macA, "", uuidA, true, false, false, uint8(0))
	f.Add(macB, "", "", macA, "", false, false, false, uint8(2))
	f.Add("", uuidB, macA, "", uuidA, true, true, false, uint8(7))
	f.Fuzz(func(t *testing.T, mac, uuid, neighMAC, bound, boundUUID string, onLink, local, failed bool, pol uint8) {
		if !onLink {
			neighMAC = "" // observe learns a neighbour only on-link
		}
		r := Request{MAC: mac, UUID: uuid}
		o := observed{local: local, onLink: onLink, neighMAC: neighMAC, failed: failed, bound: bound, uuid: boundUUID}
		p := Policy{SkipNeighborCheck: pol&1 != 0, TrustLoopback: pol&2 != 0, AllowUnbound: pol&4 != 0}
		got, reason := verify(r, o, p)
		if reason != "" {
			return
		}
		if local {
			if !p.TrustLoopback || got.MAC != mac || got.UUID != uuid {
				t.Fatalf("local requester admitted as %+v with %+v", got, p)
			}
			return
		}
		if failed {
			t.Fatal("a failed lookup admitted")
		}
		if got.MAC == mac && got.UUID == uuid && (p.SkipNeighborCheck && onLink || p.AllowUnbound && neighMAC == "" && bound == "" && !onLink) {
			return // taken at its word, by a relaxation
		}
		if got.MAC == "" || (got.MAC != neighMAC && got.MAC != bound) {
			t.Fatalf("admitted as %q, observed neighbour %q, binding %q", got.MAC, neighMAC, bound)
		}
		if got.MAC == neighMAC && neighMAC != "" && onLink && mac != "" && mac != neighMAC {
			t.Fatalf("claimed %q admitted as on-link %q", mac, neighMAC)
		}
		if got.UUID != boundUUID {
			t.Fatalf("acts with UUID %q; DHCP showed %q", got.UUID, boundUUID)
		}
	})
}

// Bindings expire: an address DHCP showed long ago identifies no one.
func TestBindingTTL(t *testing.T) {
	now := time.Now()
	db := memstore.New(store.Options{Clock: func() time.Time { return now }})
	c := New(Config{Store: db, Neighbors: testutil.Neighbors{}, BindingTTL: time.Hour})
	ctx := context.Background()
	if err := db.Bind(ctx, store.Binding{MAC: macA, UUID: uuidA, IP: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.authenticate(ctx, Request{MAC: macA, IP: "192.0.2.7"}, "config"); err != nil || got.UUID != uuidA {
		t.Fatalf("fresh binding: %+v, %v", got, err)
	}
	now = now.Add(-2 * time.Hour)
	if err := db.Bind(ctx, store.Binding{MAC: macA, IP: "192.0.2.8"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.authenticate(ctx, Request{MAC: macA, IP: "192.0.2.8"}, "config"); refusedFor(err) != ReasonUnbound {
		t.Fatalf("expired binding: %v, want %s", err, ReasonUnbound)
	}
}

// BenchmarkIdentityCheck is the cost the identity check adds to each boot
// request, with a real bbolt store: routed (two binding reads) and on-link
// (the neighbour table, here a map, and one read).
func BenchmarkIdentityCheck(b *testing.B) {
	db, err := boltstore.Open(filepath.Join(b.TempDir(), "db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	ctx := context.Background()
	nb := testutil.Neighbors{}
	for i := range 10000 {
		mac := fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff)
		ip := fmt.Sprintf("10.1.%d.%d", i>>8, i&0xff)
		if err := db.Bind(ctx, store.Binding{MAC: mac, UUID: fmt.Sprintf("00000000-0000-0000-0000-0000000%05d", i), IP: ip}); err != nil {
			b.Fatal(err)
		}
		nb[fmt.Sprintf("10.2.%d.%d", i>>8, i&0xff)] = mac
	}
	c := New(Config{Store: db, Neighbors: nb})
	for _, tc := range []struct{ name, prefix string }{{"routed", "10.1"}, {"on-link", "10.2"}} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				n := i % 10000
				i++
				r := Request{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", n>>8, n&0xff), IP: fmt.Sprintf("%s.%d.%d", tc.prefix, n>>8, n&0xff)}
				if _, err := c.authenticate(ctx, r, "config"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// What DHCP shows reaches the store off the request path, and then
// identifies the routed machine.
func TestBindThroughCore(t *testing.T) {
	c, db := lifecycleCore(t, Config{Neighbors: testutil.Neighbors{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	c.Bind("52:54:00:00:00:01", "", netip.MustParseAddr("192.0.2.7"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := db.IPBinding(ctx, "192.0.2.7"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the binding never reached the store")
		}
		time.Sleep(10 * time.Millisecond)
	}
	script(t, c, Request{MAC: "52:54:00:00:00:01", IP: "192.0.2.7"})
}

// Finding 2 of the security issue: an on-link host sent its own MAC plus a
// labels-only Machine's labels and got that Machine's config. Labels may
// still pick a script, but the config matches without them: the host gets
// the config its own MAC matches (here none), never the Machine's secret.
func TestLabelsNeverSelectAConfig(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", "kind: Profile\nname: secret\nboot: {kernel: /assets/k}\nconfig: {template: secret.sh}\n"+
		"---\nkind: Machine\nname: rack1\nmatch: {labels: {rack: r1}}\nprofile: secret\n")
	write(t, dir, "secret.sh", "#!/bin/sh\n# cluster CA key of {{ .machine.name }}\n")
	c, _ := newCore(t, dir, Config{Neighbors: testutil.Neighbors{"10.0.0.6": macB}})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	attacker := Request{MAC: macB, IP: "10.0.0.6", Labels: map[string]string{"rack": "r1"}}
	s, err := c.Script(ctx, attacker)
	if err != nil {
		t.Fatalf("script by labels: %v", err)
	}
	attacker.Token = tokenInScript.FindStringSubmatch(s)[1]
	if out, body, err := c.Config(ctx, attacker, false); err == nil || strings.Contains(string(body), "cluster CA key") {
		t.Fatalf("config by labels = %v %q, %v; want no config", out, body, err)
	}
}

// The config and phone-home of a machine whose session is open, with its
// own token, asked for by every requester that is not the machine: each is
// refused, and the machine's session is untouched, so that the machine
// itself still fetches its config and phones home. TestIdentityCheck covers
// the script the same way.
func TestConfigAndPhoneHomeIdentity(t *testing.T) {
	const n1, other, uuid = "52:54:00:00:00:01", "52:54:00:00:00:66", "11111111-2222-3333-4444-555555555555"
	nb := testutil.Neighbors{"10.0.0.5": n1, "10.0.0.6": other, "127.0.0.1": "local", "10.0.0.2": "local"}
	for _, tc := range []struct {
		name   string
		ip     string
		claim  Request // whom the config request names; phone-home names n1 by uuid
		reason string  // config's refusal
		home   string  // phone-home's, by n1's UUID from ip; "": reason
	}{
		{name: "loopback", ip: "127.0.0.1", claim: Request{MAC: n1}, reason: ReasonLocal},
		{name: "the server's own address", ip: "10.0.0.2", claim: Request{MAC: n1}, reason: ReasonLocal},
		{name: "routed, unbound", ip: "192.0.2.9", claim: Request{MAC: n1}, reason: ReasonUnbound},
		{name: "routed, bound to another machine", ip: "192.0.2.7", claim: Request{MAC: n1}, reason: ReasonBindMAC},
		{name: "another host on the VLAN", ip: "10.0.0.6", claim: Request{MAC: n1, UUID: uuid}, reason: ReasonNeighbor},
		// Acts as its own MAC, which has no session.
		{name: "another host on the VLAN claiming the UUID", ip: "10.0.0.6", claim: Request{UUID: uuid}, reason: ReasonNoSession, home: ReasonNeighbor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, db := lifecycleCore(t, Config{Neighbors: nb})
			ctx := context.Background()
			for _, b := range []store.Binding{{MAC: n1, UUID: uuid}, {MAC: other, IP: "192.0.2.7"}} {
				if err := db.Bind(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			own := Request{MAC: n1, UUID: uuid, IP: "10.0.0.5"}
			_, tok := script(t, c, own)
			session, _ := db.Provisioning(ctx, n1)

			r := tc.claim
			r.IP, r.Token = tc.ip, tok
			if out, body, err := c.Config(ctx, r, true); refusedFor(err) != tc.reason {
				t.Errorf("config = %v %q, %v; want refusal %q", out, body, err, tc.reason)
			}
			if _, err := c.Installed(ctx, uuid, tok, "", tc.ip, false); refusedFor(err) != cmp.Or(tc.home, tc.reason) {
				t.Errorf("phone-home with n1's own token: %v, want refusal %q", err, cmp.Or(tc.home, tc.reason))
			}
			if p, _ := db.Provisioning(ctx, n1); p.TokenHash != session.TokenHash || p.ConfigFetches != 0 || state(t, db, n1) != store.StateProvisioning {
				t.Fatalf("n1's session changed: %+v -> %+v", session, p)
			}
			own.Token = tok
			if _, _, err := c.Config(ctx, own, true); err != nil {
				t.Fatalf("n1's own config: %v", err)
			}
			if m, err := c.Installed(ctx, uuid, tok, "", own.IP, false); err != nil || m.State != store.StateInstalled {
				t.Fatalf("n1's own phone-home: %v, %v", m.State, err)
			}
		})
	}
}
