package boot

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/seal"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/testutil"
)

func sessionBox(t *testing.T, b byte) *seal.Box {
	t.Helper()
	box, err := seal.New(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// provisioningEvents counts the sessions opened for mac, one event each.
func provisioningEvents(t *testing.T, db store.Store, mac string) int {
	t.Helper()
	es, err := db.Events(context.Background(), store.EventQuery{MAC: mac, Type: EventProvisioning})
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// A repeated /ipxe within one provisioning hands out the open session again
// (same token, no new session, no durable write), until something makes a
// new one due: the config was served, the machine shows something new, or
// it is sent back to provisioning.
func TestScriptReusesOpenSession(t *testing.T) {
	c, db := lifecycleCore(t, Config{Secrets: sessionBox(t, 1)})
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}

	s1, tok := script(t, c, n1)
	rev, _ := db.Revision(ctx)
	s2, again := script(t, c, n1)
	if tok == "" || again != tok || s2 != s1 {
		t.Fatalf("a repeated /ipxe got token %q, first %q", again, tok)
	}
	if after, _ := db.Revision(ctx); after != rev {
		t.Errorf("a reused session wrote: revision %d -> %d", rev, after)
	}
	if n := provisioningEvents(t, db, n1.MAC); n != 1 {
		t.Errorf("%d sessions opened, want 1", n)
	}
	p, err := db.Provisioning(ctx, n1.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if p.SealedToken == "" || strings.Contains(p.SealedToken, tok) {
		t.Errorf("stored sealed token %q: want sealed, never the token %s", p.SealedToken, tok)
	}

	// A new address is news for the inventory: a new session, written.
	moved := n1
	moved.IP = "10.0.0.6"
	if _, tok2 := script(t, c, moved); tok2 == tok {
		t.Error("a sighting with a new address reused the session")
	}
	_, tok3 := script(t, c, moved)
	// Once the config is served, a new /ipxe is a new boot: a new session.
	withToken := moved
	withToken.Token = tok3
	if _, _, err := c.Config(ctx, withToken, true); err != nil {
		t.Fatal(err)
	}
	if _, tok4 := script(t, c, moved); tok4 == tok3 || tok4 == "" {
		t.Errorf("after the config was served /ipxe got token %q again", tok4)
	}
}

// The session is shared through the store: instance B hands out the
// session A opened, if it holds the same key; with another key it opens a
// new one rather than fail.
func TestSessionReuseAcrossInstances(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", lifecycleProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	a, db := newCore(t, dir, Config{Secrets: sessionBox(t, 1)})
	b, _ := newCoreOn(t, dir, Config{Secrets: sessionBox(t, 1)}, db)
	other, _ := newCoreOn(t, dir, Config{Secrets: sessionBox(t, 2)}, db)
	for _, c := range []*Core{a, b, other} {
		if err := c.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}
	_, tok := script(t, a, n1)
	if _, got := script(t, b, n1); got != tok {
		t.Errorf("B handed out %q, A opened %q", got, tok)
	}
	_, fresh := script(t, other, n1)
	if fresh == tok || fresh == "" {
		t.Errorf("an instance with another key handed out %q", fresh)
	}
	// The old token is dead: only the newest session's config is served.
	r := n1
	r.Token = tok
	if _, _, err := a.Config(context.Background(), r, true); refusedFor(err) != ReasonBadToken {
		t.Errorf("the replaced session's token: %v, want %s", err, ReasonBadToken)
	}
}

// A reusable session is handed out only to the machine itself: every
// requester that fails the identity check while n1's session is open is
// refused (or served as its own machine) and never sees n1's token, and
// n1's session is still the one handed out afterwards.
func TestSessionReuseRefusesImpostors(t *testing.T) {
	const n1, other, uuid = "52:54:00:00:00:01", "52:54:00:00:00:66", "11111111-2222-3333-4444-555555555555"
	nb := testutil.Neighbors{"10.0.0.5": n1, "10.0.0.6": other, "127.0.0.1": "local", "10.0.0.2": "local"}
	c, db := lifecycleCore(t, Config{Secrets: sessionBox(t, 1), Neighbors: nb})
	ctx := context.Background()
	for _, b := range []store.Binding{{MAC: n1, UUID: uuid}, {MAC: other, IP: "192.0.2.7"}} {
		if err := db.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	owner := Request{MAC: n1, UUID: uuid, IP: "10.0.0.5"}
	_, tok := script(t, c, owner)
	if tok == "" {
		t.Fatal("n1 got no session")
	}
	for _, tc := range []struct {
		name   string
		r      Request
		reason string // "": served, as the requester's own machine
	}{
		{name: "loopback", r: Request{MAC: n1, UUID: uuid, IP: "127.0.0.1"}, reason: ReasonLocal},
		{name: "the server's own address", r: Request{MAC: n1, IP: "10.0.0.2"}, reason: ReasonLocal},
		{name: "routed, unbound", r: Request{MAC: n1, UUID: uuid, IP: "192.0.2.9"}, reason: ReasonUnbound},
		{name: "routed, bound to another machine", r: Request{MAC: n1, IP: "192.0.2.7"}, reason: ReasonBindMAC},
		{name: "another host on the VLAN", r: Request{MAC: n1, UUID: uuid, IP: "10.0.0.6"}, reason: ReasonNeighbor},
		{name: "another host on the VLAN claiming the UUID", r: Request{UUID: uuid, IP: "10.0.0.6"}},
		{name: "routed host claiming the UUID", r: Request{UUID: uuid, IP: "192.0.2.7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.Script(ctx, tc.r)
			if strings.Contains(s, tok) {
				t.Fatalf("handed n1's open session to %+v:\n%s", tc.r, s)
			}
			if tc.reason != "" {
				if refusedFor(err) != tc.reason {
					t.Fatalf("script: %v, want refusal %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("script: %v", err)
			}
			if m := tokenInScript.FindStringSubmatch(s); m == nil || m[1] == tok {
				t.Errorf("the requester's own session: %q", s)
			}
		})
	}
	if _, again := script(t, c, owner); again != tok {
		t.Errorf("after the impostors n1 got %q, want its open session %q", again, tok)
	}
	if p, err := db.Provisioning(ctx, other); err != nil || p.TokenHash == "" || tokenMatches(tok, p.TokenHash) {
		t.Errorf("the UUID claimant's session %+v (%v): want its own", p, err)
	}
}

// The reuse path's own check (a sighting that adds nothing, so the same
// address) is no identity check: once n1's address belongs to another host,
// on the VLAN or by a newer DHCP binding, a request from that address
// naming n1, by MAC or by its UUID, must not get n1's open session.
func TestSessionReuseAfterAddressMoves(t *testing.T) {
	const n1, other, uuid = "52:54:00:00:00:01", "52:54:00:00:00:66", "11111111-2222-3333-4444-555555555555"
	for _, tc := range []struct {
		name   string
		ip     string
		nb     testutil.Neighbors
		move   func(testutil.Neighbors, store.Store) error // hands ip to other
		claim  Request
		reason string // "": served, as other
	}{
		{name: "on-link, MAC claimed", ip: "10.0.0.5", nb: testutil.Neighbors{"10.0.0.5": n1},
			move:  func(nb testutil.Neighbors, _ store.Store) error { nb["10.0.0.5"] = other; return nil },
			claim: Request{MAC: n1, UUID: uuid}, reason: ReasonNeighbor},
		{name: "on-link, UUID claimed", ip: "10.0.0.5", nb: testutil.Neighbors{"10.0.0.5": n1},
			move:  func(nb testutil.Neighbors, _ store.Store) error { nb["10.0.0.5"] = other; return nil },
			claim: Request{UUID: uuid}},
		{name: "routed, MAC claimed", ip: "192.0.2.8", nb: testutil.Neighbors{},
			move: func(_ testutil.Neighbors, db store.Store) error {
				return db.Bind(context.Background(), store.Binding{MAC: other, IP: "192.0.2.8"})
			},
			claim: Request{MAC: n1}, reason: ReasonBindMAC},
		{name: "routed, UUID claimed", ip: "192.0.2.8", nb: testutil.Neighbors{},
			move: func(_ testutil.Neighbors, db store.Store) error {
				return db.Bind(context.Background(), store.Binding{MAC: other, IP: "192.0.2.8"})
			},
			claim: Request{UUID: uuid}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, db := lifecycleCore(t, Config{Secrets: sessionBox(t, 1), Neighbors: tc.nb})
			ctx := context.Background()
			if err := db.Bind(ctx, store.Binding{MAC: n1, UUID: uuid, IP: tc.ip}); err != nil {
				t.Fatal(err)
			}
			_, tok := script(t, c, Request{MAC: n1, UUID: uuid, IP: tc.ip})
			if tok == "" {
				t.Fatal("n1 got no session")
			}
			if err := tc.move(tc.nb, db); err != nil {
				t.Fatal(err)
			}
			r := tc.claim
			r.IP = tc.ip
			s, err := c.Script(ctx, r)
			if strings.Contains(s, tok) {
				t.Fatalf("handed n1's open session to %+v:\n%s", r, s)
			}
			if tc.reason != "" {
				if refusedFor(err) != tc.reason {
					t.Fatalf("script: %v, want refusal %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("script: %v", err)
			}
			if p, err := db.Provisioning(ctx, other); err != nil || p.TokenHash == "" || tokenMatches(tok, p.TokenHash) {
				t.Errorf("the claimant's session %+v (%v): want its own", p, err)
			}
		})
	}
}

// Without a sealer (no key), nothing is reused: every /ipxe a session.
func TestNoReuseWithoutSealer(t *testing.T) {
	c, db := lifecycleCore(t, Config{})
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}
	_, tok := script(t, c, n1)
	if _, again := script(t, c, n1); again == tok {
		t.Error("reused a session without a sealer")
	}
	if n := provisioningEvents(t, db, n1.MAC); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
}

// reusable's rules on their own: recent, open, unserved, nothing new.
func TestReusable(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	prof := &profiles.Profile{Name: "p"}
	res := profiles.Result{Profile: prof, Machine: &profiles.Machine{Name: "n1"}}
	m := store.Machine{MAC: "52:54:00:00:00:01", Name: "n1", Profile: "p", LastIP: "10.0.0.5", State: store.StateProvisioning,
		FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Minute)}
	open := store.Provisioning{TokenHash: "h", SealedToken: "s", Profile: "p", IssuedAt: now.Add(-time.Minute)}
	sighting := store.Machine{MAC: m.MAC, Name: "n1", Profile: "p", LastIP: "10.0.0.5"}
	for _, tc := range []struct {
		name string
		m    func(*store.Machine)
		p    func(*store.Provisioning)
		s    func(*store.Machine)
		want bool
	}{
		{name: "open and unchanged", want: true},
		{name: "no session", p: func(p *store.Provisioning) { *p = store.Provisioning{} }},
		{name: "not sealed", p: func(p *store.Provisioning) { p.SealedToken = "" }},
		{name: "config served", p: func(p *store.Provisioning) { p.ConfigServed = now }},
		{name: "too old", p: func(p *store.Provisioning) { p.IssuedAt = now.Add(-sessionReuse - time.Second) }},
		{name: "from the future", p: func(p *store.Provisioning) { p.IssuedAt = now.Add(time.Minute) }},
		{name: "another profile", p: func(p *store.Provisioning) { p.Profile = "wipe" }},
		{name: "new address", s: func(s *store.Machine) { s.LastIP = "10.0.0.6" }},
		{name: "new labels", s: func(s *store.Machine) { s.Labels = map[string]string{"rack": "r2"} }},
		{name: "installed: boots its disk", m: func(m *store.Machine) { m.State = store.StateInstalled }},
		{name: "ready: goes to provisioning", m: func(m *store.Machine) { m.State = store.StateReady }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, p, s := m, open, sighting
			call(tc.m, &m)
			call(tc.p, &p)
			call(tc.s, &s)
			if _, got := reusable(m, p, s, res, nil, now); got != tc.want {
				t.Errorf("reusable = %v, want %v", got, tc.want)
			}
		})
	}
}

func call[T any](f func(*T), v *T) {
	if f != nil {
		f(v)
	}
}

// failingReads is a store whose session reads fail, like etcd mid-election.
type failingReads struct{ store.Store }

var errStoreDown = errors.New("etcdserver: request timed out")

func (failingReads) Provisioning(context.Context, string) (store.Provisioning, error) {
	return store.Provisioning{}, errStoreDown
}

// A phone-home whose session cannot be read fails with the store's error
// (a 5xx the installer retries), not as a refused token: no 401, no
// phone-home-refused event, and the same token works once the store does.
func TestPhoneHomeStoreErrorIsNoRefusal(t *testing.T) {
	c, db := lifecycleCore(t, Config{})
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}
	_, tok := script(t, c, n1)
	dir := c.Profiles().Dir
	down, _ := newCoreOn(t, dir, Config{}, failingReads{db})
	if err := down.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := down.Installed(ctx, "n1", tok, "", "", false); !errors.Is(err, errStoreDown) || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("phone-home with the store down = %v; want the store's error", err)
	}
	if es, _ := db.Events(ctx, store.EventQuery{Type: EventPhoneHomeDeny}); len(es) != 0 {
		t.Errorf("a store failure was recorded as a refusal: %+v", es)
	}
	if m, err := c.Installed(ctx, "n1", tok, "", "", false); err != nil || m.State != store.StateInstalled {
		t.Fatalf("the same token afterwards: %v %v", m.State, err)
	}
}
