package boot

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/testutil"
)

// The secrecy checks as a pure function of the session, the request and the policy.
func TestAdmitConfig(t *testing.T) {
	const tok = "TOKEN1"
	open := store.Provisioning{TokenHash: hashToken(tok), Profile: "p"}
	served := open
	served.ConfigFetches = 1
	for _, tc := range []struct {
		name   string
		p      store.Provisioning
		token  string
		pol    Policy
		reason string // "" = admitted
	}{
		{name: "own token, first fetch", p: open, token: tok},
		{name: "no session", p: store.Provisioning{}, token: tok, reason: ReasonNoSession},
		{name: "no token", p: open, reason: ReasonNoToken},
		{name: "no token, allowed by policy", p: open, pol: Policy{AllowConfigWithoutToken: true}},
		{name: "wrong token", p: open, token: "OTHER", reason: ReasonBadToken},
		{name: "wrong token even when tokens are optional", p: open, token: "OTHER", pol: Policy{AllowConfigWithoutToken: true}, reason: ReasonBadToken},
		{name: "second fetch", p: served, token: tok, reason: ReasonRefetch},
		{name: "second fetch, allowed by policy", p: served, token: tok, pol: Policy{AllowConfigRefetch: true}},
		{name: "no session beats a relaxed policy", p: store.Provisioning{}, pol: Policy{AllowConfigWithoutToken: true, AllowConfigRefetch: true}, reason: ReasonNoSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a admission
			m, p := store.Machine{MAC: "52:54:00:00:00:01", State: store.StateProvisioning}, tc.p
			events, err := admitConfig(configAsk{token: tc.token}, tc.pol, time.Unix(1, 0), &a)(&m, &p)
			if err != nil {
				t.Fatal(err)
			}
			if a.refused != tc.reason {
				t.Fatalf("refused = %q, want %q", a.refused, tc.reason)
			}
			// A refusal is recorded by the core, aggregated, not in the transaction.
			wantEvents, wantFetches := 1, tc.p.ConfigFetches+1
			if tc.reason != "" {
				wantEvents, wantFetches = 0, tc.p.ConfigFetches
			}
			if len(events) != wantEvents || (wantEvents == 1 && events[0].Type != EventConfigServed) || p.ConfigFetches != wantFetches {
				t.Errorf("events %+v, fetches %d; want %d config-served and %d fetches", events, p.ConfigFetches, wantEvents, wantFetches)
			}
		})
	}
}

// What /ipxe decides, per state and profile, as a pure function.
func TestPlanBoot(t *testing.T) {
	once := &profiles.Profile{Name: "install", Once: true}
	every := &profiles.Profile{Name: "stateless"}
	machine := &profiles.Machine{Name: "n1"}
	for _, tc := range []struct {
		name      string
		state     store.State
		res       profiles.Result
		wantLocal bool
		wantState store.State
	}{
		{"boot-once, installed: disk", store.StateInstalled, profiles.Result{Profile: once, Machine: machine}, true, store.StateInstalled},
		{"boot-once, ready: install", store.StateReady, profiles.Result{Profile: once, Machine: machine}, false, store.StateProvisioning},
		{"boot-once, reprovisioned: install", store.StateProvisioning, profiles.Result{Profile: once, Machine: machine}, false, store.StateProvisioning},
		{"boot-once, discovered and now matched: install", store.StateDiscovered, profiles.Result{Profile: once, Machine: machine}, false, store.StateProvisioning},
		{"every boot, installed: netboot again", store.StateInstalled, profiles.Result{Profile: every, Machine: machine}, false, store.StateProvisioning},
		{"Default profile: stays discovered", store.StateDiscovered, profiles.Result{Profile: every}, false, store.StateDiscovered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := store.Machine{MAC: "52:54:00:00:00:01", State: tc.state}
			if tc.res.Machine != nil {
				m.Name = tc.res.Machine.Name
			}
			p := store.Provisioning{TokenHash: "old", ConfigFetches: 1}
			var plan bootPlan
			if _, err := planBoot(tc.res, nil, "new", "", time.Unix(1, 0), &plan)(&m, &p); err != nil {
				t.Fatal(err)
			}
			if plan.local != tc.wantLocal || m.State != tc.wantState {
				t.Fatalf("local %v state %s; want %v %s", plan.local, m.State, tc.wantLocal, tc.wantState)
			}
			wantHash, wantFetches := "new", 0
			if tc.wantLocal {
				wantHash, wantFetches = "old", 1
			}
			if p.TokenHash != wantHash || p.ConfigFetches != wantFetches {
				t.Errorf("session %+v; want hash %s and %d fetches", p, wantHash, wantFetches)
			}
		})
	}
}

const lifecycleProfiles = `kind: Profile
name: install
boot: {kernel: /assets/k}
config: {butane: install.bu}
once: true
---
kind: Profile
name: live
boot: {kernel: /assets/k}
config: {butane: install.bu}
---
kind: Machine
name: n1
match: {mac: "52:54:00:00:00:01"}
profile: install
---
kind: Machine
name: n2
match: {mac: "52:54:00:00:00:02"}
profile: live
---
kind: Default
profile: live
`

// The phone-home unit shows how a template reaches the session values.
const lifecycleButane = `variant: flatcar
version: 1.0.0
systemd:
  units:
    - name: phone-home.service
      enabled: true
      contents: |
        [Service]
        Type=oneshot
        ExecStart=/usr/bin/curl -fsS -X POST -H "Authorization: Bearer {{ .provisiond.token }}" {{ .provisiond.installed_url }}
        [Install]
        WantedBy=multi-user.target
`

// lifecycleCore is a loaded Core serving lifecycleProfiles.
func lifecycleCore(t *testing.T, cfg Config) (*Core, store.Store) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "p.yaml", lifecycleProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	c, db := newCore(t, dir, cfg)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	return c, db
}

var tokenInScript = regexp.MustCompile(`token=([A-Z0-9]+)`)

// script fetches r's script and returns it with the session token it carries.
func script(t *testing.T, c *Core, r Request) (string, string) {
	t.Helper()
	s, err := c.Script(context.Background(), r)
	if err != nil {
		t.Fatalf("Script(%s): %v", r.MAC, err)
	}
	m := tokenInScript.FindStringSubmatch(s)
	if m == nil {
		return s, ""
	}
	return s, m[1]
}

func state(t *testing.T, db store.Store, mac string) store.State {
	t.Helper()
	m, err := db.Machine(context.Background(), mac)
	if err != nil {
		t.Fatal(err)
	}
	return m.State
}

func refusedFor(err error) string {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// One machine through the whole boot-once lifecycle, with the secrecy checks
// on the way.
func TestBootOnceLifecycle(t *testing.T) {
	c, db := lifecycleCore(t, Config{})
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}
	withToken := func(tok string) Request { r := n1; r.Token = tok; return r }

	s, tok := script(t, c, n1)
	if tok == "" || !strings.Contains(s, "ignition.config.url=http://h:1/ignition?mac=52-54-00-00-00-01&token="+tok) {
		t.Fatalf("install script lacks the session's config URL:\n%s", s)
	}
	if st := state(t, db, n1.MAC); st != store.StateProvisioning {
		t.Fatalf("after the script: %s, want provisioning", st)
	}
	// An earlier script's token is replaced by each new session.
	_, tok2 := script(t, c, n1)
	if tok2 == tok {
		t.Fatal("a second boot reused the session token")
	}
	if _, _, err := c.Config(ctx, withToken(tok), true); refusedFor(err) != ReasonBadToken {
		t.Fatalf("replayed token: %v, want %s", err, ReasonBadToken)
	}
	if _, _, err := c.Config(ctx, n1, true); refusedFor(err) != ReasonNoToken {
		t.Fatalf("no token: %v, want %s", err, ReasonNoToken)
	}
	_, body, err := c.Config(ctx, withToken(tok2), true)
	if err != nil {
		t.Fatal(err)
	}
	// Units are not data URLs, so their text sits in the JSON as is.
	for _, want := range []string{"Bearer " + tok2, "http://h:1/api/v1/machines/52-54-00-00-00-01/installed"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("config lacks %q:\n%s", want, body)
		}
	}
	if _, _, err := c.Config(ctx, withToken(tok2), true); refusedFor(err) != ReasonRefetch {
		t.Fatalf("second fetch: %v, want %s", err, ReasonRefetch)
	}

	if _, err := c.Installed(ctx, "n1", tok, "", "", false); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("phone-home with an old token: %v, want ErrUnauthorized", err)
	}
	// More of them are judged on a read and counted in the open refusal
	// window: no write at all.
	rev, _ := db.Revision(ctx)
	for range 100 {
		if _, err := c.Installed(ctx, "n1", "WRONG", "", "", false); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("phone-home with a wrong token: %v, want ErrUnauthorized", err)
		}
	}
	if after, _ := db.Revision(ctx); after != rev {
		t.Errorf("bad phone-homes moved the store's revision %d -> %d", rev, after)
	}
	if m, err := c.Installed(ctx, "52-54-00-00-00-01", tok2, "", "", false); err != nil || m.State != store.StateInstalled {
		t.Fatalf("phone-home: %+v, %v; want installed", m, err)
	}
	if _, err := c.Installed(ctx, "n1", tok2, "", "", false); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("replayed phone-home: %v, want ErrUnauthorized (the session closed)", err)
	}
	if s, tok := script(t, c, n1); tok != "" || !strings.Contains(s, "\nexit\n") {
		t.Fatalf("installed boot-once machine got:\n%s\nwant the boot-from-disk script", s)
	}

	if m, _, err := c.Reprovision(ctx, "n1", "test", "disk replaced", false); err != nil || m.State != store.StateProvisioning {
		t.Fatalf("reprovision: %+v, %v", m, err)
	}
	s, tok3 := script(t, c, n1)
	if tok3 == "" || strings.Contains(s, "\nexit\n") {
		t.Fatalf("reprovisioned machine got:\n%s\nwant the install script", s)
	}
	if _, _, err := c.Config(ctx, withToken(tok3), true); err != nil {
		t.Fatalf("config after reprovision: %v", err)
	}

	es, err := c.Events(ctx, store.EventQuery{MAC: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range es {
		types = append(types, e.Type)
	}
	// The second refused phone-home falls in the first one's window: it is
	// counted, and recorded when the window closes (see TestRefusalWindows).
	want := []string{EventReady, EventProvisioning, EventProvisioning, EventConfigRefused, EventConfigRefused, EventConfigServed, EventConfigRefused,
		EventPhoneHomeDeny, EventInstalled, EventLocalBoot, EventReprovision, EventProvisioning, EventConfigServed}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Errorf("events\n got %v\nwant %v", types, want)
	}
}

func TestLifecycleEdges(t *testing.T) {
	c, db := lifecycleCore(t, Config{})
	ctx := context.Background()

	t.Run("a profile without once netboots again after install", func(t *testing.T) {
		n2 := Request{MAC: "52:54:00:00:00:02"}
		script(t, c, n2)
		if _, err := c.Installed(ctx, "n2", "", "", "", true); err != nil {
			t.Fatal(err)
		}
		if _, tok := script(t, c, n2); tok == "" || state(t, db, n2.MAC) != store.StateProvisioning {
			t.Fatalf("second boot: token %q state %s; want a new session", tok, state(t, db, n2.MAC))
		}
	})
	t.Run("a Default machine stays discovered and gets its config", func(t *testing.T) {
		r := Request{MAC: "52:54:00:00:00:99"}
		_, tok := script(t, c, r)
		if st := state(t, db, r.MAC); st != store.StateDiscovered {
			t.Fatalf("state %s, want discovered", st)
		}
		r.Token = tok
		if _, _, err := c.Config(ctx, r, true); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Reprovision(ctx, r.MAC, "test", "", false); !errors.Is(err, ErrState) {
			t.Fatalf("reprovision of a discovered machine: %v, want ErrState", err)
		}
	})
	t.Run("another machine's token is refused", func(t *testing.T) {
		_, tokA := script(t, c, Request{MAC: "52:54:00:00:00:01"})
		script(t, c, Request{MAC: "52:54:00:00:00:02"})
		if _, _, err := c.Config(ctx, Request{MAC: "52:54:00:00:00:02", Token: tokA}, true); refusedFor(err) != ReasonBadToken {
			t.Fatalf("foreign token: %v, want %s", err, ReasonBadToken)
		}
	})
	t.Run("a machine that never booted has no session", func(t *testing.T) {
		if _, _, err := c.Config(ctx, Request{MAC: "52:54:00:00:00:77", Token: "X"}, true); refusedFor(err) != ReasonNoSession {
			t.Fatalf("config: %v, want %s", err, ReasonNoSession)
		}
	})
	t.Run("unknown and ambiguous ids", func(t *testing.T) {
		if _, err := c.Machine(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown name: %v", err)
		}
		if _, err := c.Machine(ctx, "52:54:00:00:00:55"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown MAC: %v", err)
		}
		// n2 is provisioning (its second boot above): the first phone-home
		// installs it, a second one has no session to close.
		if _, err := c.Installed(ctx, "n2", "", "", "", true); err != nil {
			t.Fatalf("installed: %v", err)
		}
		if _, err := c.Installed(ctx, "n2", "", "", "", true); !errors.Is(err, ErrState) {
			t.Errorf("installed twice: %v; want ErrState", err)
		}
	})
}

// TestIdentityCheck runs the identity rules of verify.go through the core,
// from every kind of requester; TestVerify covers the decision alone.
func TestIdentityCheck(t *testing.T) {
	const n1, uuid = "52:54:00:00:00:01", "11111111-2222-3333-4444-555555555555"
	nb := testutil.Neighbors{"10.0.0.5": n1, "10.0.0.6": "52:54:00:00:00:66", "10.0.0.7": "fail", "127.0.0.1": "local", "10.0.0.2": "local"}
	for _, tc := range []struct {
		name     string
		ip       string
		pol      Policy
		bind     *store.Binding // a DHCP binding seen before the request
		uuidOnly bool
		reason   string
		other    bool // served, but as the requester's own machine, not n1
	}{
		{name: "on-link, MAC matches", ip: "10.0.0.5"},
		{name: "on-link, another host", ip: "10.0.0.6", reason: ReasonNeighbor},
		{name: "on-link, IPv4-mapped", ip: "::ffff:10.0.0.6", reason: ReasonNeighbor},
		{name: "on-link, another host, check skipped", ip: "10.0.0.6", pol: Policy{SkipNeighborCheck: true}},
		{name: "on-link, UUID only: the neighbour table names the machine", ip: "10.0.0.5", uuidOnly: true, bind: &store.Binding{MAC: n1, UUID: uuid}},
		{name: "on-link, another host with the UUID", ip: "10.0.0.6", uuidOnly: true, bind: &store.Binding{MAC: n1, UUID: uuid}, other: true},
		{name: "routed, no binding", ip: "192.0.2.7", reason: ReasonUnbound},
		{name: "routed, no binding, allowed by policy", ip: "192.0.2.7", pol: Policy{AllowUnbound: true}},
		{name: "routed, bound by DHCP", ip: "192.0.2.7", bind: &store.Binding{MAC: n1, IP: "192.0.2.7"}},
		{name: "routed, UUID only, bound by DHCP", ip: "192.0.2.7", uuidOnly: true, bind: &store.Binding{MAC: n1, UUID: uuid, IP: "192.0.2.7"}},
		{name: "routed, bound to another machine", ip: "192.0.2.7", bind: &store.Binding{MAC: "52:54:00:00:00:66", IP: "192.0.2.7"}, reason: ReasonBindMAC},
		{name: "loopback", ip: "127.0.0.1", reason: ReasonLocal},
		{name: "the server's own address", ip: "10.0.0.2", reason: ReasonLocal},
		{name: "loopback, trusted by policy", ip: "127.0.0.1", pol: Policy{TrustLoopback: true}},
		{name: "table unreadable: refused, not skipped", ip: "10.0.0.7", reason: ReasonNeighbor},
		{name: "peer address unreadable: refused", ip: "not-an-address", reason: ReasonNeighbor},
		{name: "no peer address: refused", ip: "", reason: ReasonNeighbor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, db := lifecycleCore(t, Config{Neighbors: nb, Policy: tc.pol})
			ctx := context.Background()
			if tc.bind != nil {
				if err := db.Bind(ctx, *tc.bind); err != nil {
					t.Fatal(err)
				}
			}
			r := Request{MAC: n1, IP: tc.ip}
			if tc.uuidOnly {
				r = Request{UUID: uuid, IP: tc.ip}
			}
			s, err := c.Script(ctx, r)
			if refusedFor(err) != tc.reason {
				t.Fatalf("script: %v, want refusal %q", err, tc.reason)
			}
			if tc.reason != "" || tc.other {
				if _, err := db.Machine(ctx, n1); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("the refused request recorded the machine: %v", err)
				}
				return
			}
			r.Token = tokenInScript.FindStringSubmatch(s)[1]
			if _, _, err := c.Config(ctx, r, true); err != nil {
				t.Fatalf("config: %v", err)
			}
		})
	}
}

// A refused script request writes nothing about the machine it claims to be,
// even one without a profile, which is otherwise recorded as discovered.
func TestNeighborRefusalRecordsNothing(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", good) // no Default
	c, db := newCore(t, dir, Config{Neighbors: testutil.Neighbors{"10.0.0.6": "52:54:00:00:00:66"}})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Script(context.Background(), Request{MAC: "52:54:00:00:00:02", IP: "10.0.0.6"})
	if refusedFor(err) != ReasonNeighbor {
		t.Fatalf("script: %v, want %s", err, ReasonNeighbor)
	}
	if m, err := db.Machine(context.Background(), "52:54:00:00:00:02"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused request recorded %+v (%v)", m, err)
	}
}

// Explain shows the script with a placeholder, never a live token.
func TestExplainOpensNoSession(t *testing.T) {
	c, db := lifecycleCore(t, Config{})
	_, s, err := c.Explain(Request{MAC: "52:54:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	u := s[strings.Index(s, "http://h:1/ignition"):]
	u = u[:strings.IndexAny(u, " \n")]
	if q, _ := url.Parse(u); q.Query().Get("token") != "TOKEN" {
		t.Errorf("explain config URL %s; want token=TOKEN", u)
	}
	if _, err := db.Machine(context.Background(), "52:54:00:00:00:01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("explain recorded the machine: %v", err)
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"flatcar-install done", 200, "flatcar-install done"},
		{"  two\nlines\x1b[31m and\ttabs ", 200, "two lines [31m and tabs"},
		{"ééééé", 4, "éééé…"},
	} {
		if got := oneLine(tc.in, tc.max); got != tc.want {
			t.Errorf("oneLine(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
