package boot

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/testutil"
)

// ukiProfiles: u1 boots once a signed UKI (loader uki), n2 kernel and
// initrd through iPXE.
const ukiProfiles = `kind: Profile
name: talos
boot: {loader: uki, uki: /assets/talos/uki.efi}
config: {butane: install.bu}
once: true
---
kind: Profile
name: plain
boot: {kernel: /assets/k}
config: {butane: install.bu}
---
kind: Machine
name: u1
match: {mac: "52:54:00:00:00:01"}
profile: talos
---
kind: Machine
name: n2
match: {mac: "52:54:00:00:00:02"}
profile: plain
`

const (
	u1       = "52:54:00:00:00:01"
	u1IP     = "10.0.0.5"
	u1UUID   = "11111111-2222-3333-4444-555555555555"
	other    = "52:54:00:00:00:66"
	ukiURL   = "http://h:1/assets/talos/uki.efi"
	tokenArg = "Bearer "
)

// ukiNeighbors: u1 and another host on the VLAN, the server itself.
var ukiNeighbors = testutil.Neighbors{u1IP: u1, "10.0.0.6": other, "127.0.0.1": "local", "10.0.0.2": "local"}

func ukiCore(t *testing.T, cfg Config) (*Core, store.Store) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "p.yaml", ukiProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	c, db := newCore(t, dir, cfg)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	return c, db
}

// httpBoot is u1's UEFI HTTP Boot firmware's DHCP at stage.
func httpBoot(t *testing.T, c *Core, stage HTTPBootStage) PXEAnswer {
	t.Helper()
	r := NewRequest(u1, u1UUID, "efi", "x86_64")
	r.HTTPBoot = stage
	a, err := c.BootPXE(context.Background(), r)
	if err != nil {
		t.Fatalf("BootPXE(%v): %v", stage, err)
	}
	return a
}

func revision(t *testing.T, db store.Store) uint64 {
	t.Helper()
	rev, err := db.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func events(t *testing.T, db store.Store, mac, typ string) []store.Event {
	t.Helper()
	es, err := db.Events(context.Background(), store.EventQuery{MAC: mac, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// phoneHomeToken is the session token a served config carries.
func phoneHomeToken(body []byte) string {
	_, after, ok := strings.Cut(string(body), tokenArg)
	if !ok {
		return ""
	}
	tok, _, _ := strings.Cut(after, `\"`)
	return tok
}

// A machine booting a signed UKI over UEFI HTTP Boot: the firmware's
// DISCOVER is offered the UKI and opens nothing; its REQUEST opens a
// tokenless session, which repeated DHCP finds again without a write; the
// machine's own config fetch, with no token, is served once and carries the
// token it minted, which then phones home; installed, the machine is
// offered no boot file, so the firmware goes on to its disk.
func TestUKIHTTPBootLifecycle(t *testing.T) {
	c, db := ukiCore(t, Config{Neighbors: ukiNeighbors})
	ctx := context.Background()
	want := PXEAnswer{Boot: true, Machine: "u1", Loader: "uki", UKI: ukiURL}

	if a := httpBoot(t, c, HTTPBootDiscover); a != want {
		t.Fatalf("DISCOVER answer %+v, want %+v", a, want)
	}
	if _, err := db.Machine(ctx, u1); err == nil {
		t.Fatal("the DISCOVER wrote the machine: only its REQUEST commits it to the UKI")
	}
	if a := httpBoot(t, c, HTTPBootRequest); a != want {
		t.Fatalf("REQUEST answer %+v, want %+v", a, want)
	}
	session, err := db.Provisioning(ctx, u1)
	if err != nil || !session.Tokenless || session.TokenHash == "" || session.SealedToken != "" || session.Profile != "talos" {
		t.Fatalf("session after the REQUEST: %+v, %v; want an open tokenless session of talos", session, err)
	}
	if st := state(t, db, u1); st != store.StateProvisioning {
		t.Fatalf("state after the REQUEST: %s, want provisioning", st)
	}
	rev := revision(t, db)
	for range 3 {
		httpBoot(t, c, HTTPBootRequest)
	}
	if again, _ := db.Provisioning(ctx, u1); again != session || revision(t, db) != rev {
		t.Fatalf("repeated REQUESTs wrote (revision %d -> %d): %+v -> %+v", rev, revision(t, db), session, again)
	}
	if n := len(events(t, db, u1, EventProvisioning)); n != 1 {
		t.Fatalf("%d provisioning events, want 1", n)
	}

	own := Request{MAC: u1, UUID: u1UUID, IP: u1IP}
	out, body, err := c.Config(ctx, own, true)
	if err != nil {
		t.Fatalf("the machine's own config without a token: %v", err)
	}
	tok := phoneHomeToken(body)
	if !sessionToken(tok) {
		t.Fatalf("the config carries token %q, want a minted session token:\n%s", tok, body)
	}
	p, _ := db.Provisioning(ctx, u1)
	if !tokenMatches(tok, p.TokenHash) || p.ConfigFetches != 1 || !p.Tokenless {
		t.Fatalf("session after the fetch: %+v; want the minted token's hash and 1 fetch", p)
	}
	if m, _ := db.Machine(ctx, u1); m.LastIP != u1IP {
		t.Errorf("last address after the fetch: %q, want %s: a UKI machine shows none before", m.LastIP, u1IP)
	}
	if out.Kind == "" {
		t.Errorf("served config has no kind: %+v", out)
	}
	// Once: without the token (nothing to mint again) and with it.
	if _, _, err := c.Config(ctx, own, true); refusedFor(err) != ReasonRefetch {
		t.Errorf("second tokenless fetch: %v, want %s", err, ReasonRefetch)
	}
	withTok := own
	withTok.Token = tok
	if _, _, err := c.Config(ctx, withTok, true); refusedFor(err) != ReasonRefetch {
		t.Errorf("refetch with the minted token: %v, want %s", err, ReasonRefetch)
	}
	if _, err := c.Installed(ctx, u1, "", "", u1IP, false); err == nil {
		t.Error("phone-home without the token accepted")
	}
	if m, err := c.Installed(ctx, u1, tok, "", u1IP, false); err != nil || m.State != store.StateInstalled {
		t.Fatalf("phone-home with the minted token: %v, %v", m.State, err)
	}

	// Installed, boot-once: no boot file, no session, nothing written.
	rev = revision(t, db)
	for _, stage := range []HTTPBootStage{HTTPBootDiscover, HTTPBootRequest} {
		if a := httpBoot(t, c, stage); a != (PXEAnswer{Machine: "u1"}) {
			t.Errorf("installed machine's answer at %v: %+v, want no boot", stage, a)
		}
	}
	if p, _ := db.Provisioning(ctx, u1); p.TokenHash != "" || revision(t, db) != rev {
		t.Errorf("installed machine's DHCP opened %+v (revision %d -> %d)", p, rev, revision(t, db))
	}
	// Sent back to provisioning, it gets the UKI and a new session again.
	if _, _, err := c.Reprovision(ctx, u1, "test", "", false); err != nil {
		t.Fatal(err)
	}
	if a := httpBoot(t, c, HTTPBootRequest); a != want {
		t.Fatalf("answer after reprovision %+v, want %+v", a, want)
	}
	if p, _ := db.Provisioning(ctx, u1); !p.Tokenless || p.ConfigFetches != 0 || tokenMatches(tok, p.TokenHash) {
		t.Fatalf("session after reprovision: %+v, want a new tokenless one", p)
	}
}

func sessionToken(s string) bool {
	return len(s) == 26 && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == ""
}

// The attacker's side: while u1's tokenless session is open, a config
// request without a token from anyone but u1 itself, proven by its
// address, is refused and leaves the session as it was, so that u1 still
// gets its config once.
func TestUKITokenlessConfigIdentity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pol    Policy
		r      Request
		reason string
		err    error // instead of a refusal
	}{
		{name: "loopback", r: Request{MAC: u1, IP: "127.0.0.1"}, reason: ReasonLocal},
		{name: "the server's own address", r: Request{MAC: u1, IP: "10.0.0.2"}, reason: ReasonLocal},
		// TrustLoopback takes it at its word: no proof, so no token.
		{name: "loopback, trusted", pol: Policy{TrustLoopback: true}, r: Request{MAC: u1, IP: "127.0.0.1"}, reason: ReasonNoToken},
		{name: "another host on the VLAN", r: Request{MAC: u1, IP: "10.0.0.6"}, reason: ReasonNeighbor},
		// Acts as its own MAC, which no Machine matches.
		{name: "another host claiming the UUID", r: Request{UUID: u1UUID, IP: "10.0.0.6"}, err: ErrUnknownMachine},
		{name: "on-link, check skipped", pol: Policy{SkipNeighborCheck: true}, r: Request{MAC: u1, IP: "10.0.0.6"}, reason: ReasonNoToken},
		{name: "routed, unbound", r: Request{MAC: u1, IP: "192.0.2.9"}, reason: ReasonUnbound},
		{name: "routed, unbound, allowed", pol: Policy{AllowUnbound: true}, r: Request{MAC: u1, IP: "192.0.2.9"}, reason: ReasonNoToken},
		{name: "tokens optional by policy", pol: Policy{AllowConfigWithoutToken: true, SkipNeighborCheck: true}, r: Request{MAC: u1, IP: "10.0.0.6"}, reason: ReasonNoToken},
		{name: "a made-up token", r: Request{MAC: u1, IP: u1IP, Token: "AAAAAAAAAAAAAAAAAAAAAAAAAA"}, reason: ReasonBadToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, db := ukiCore(t, Config{Neighbors: ukiNeighbors, Policy: tc.pol})
			ctx := context.Background()
			httpBoot(t, c, HTTPBootRequest)
			session, _ := db.Provisioning(ctx, u1)
			out, body, err := c.Config(ctx, tc.r, true)
			if tc.err != nil && !errors.Is(err, tc.err) || tc.err == nil && refusedFor(err) != tc.reason {
				t.Fatalf("config = %v %q, %v; want refusal %q or %v", out, body, err, tc.reason, tc.err)
			}
			if p, _ := db.Provisioning(ctx, u1); p != session {
				t.Fatalf("u1's session changed: %+v -> %+v", session, p)
			}
			_, body, err = c.Config(ctx, Request{MAC: u1, IP: u1IP}, true)
			if err != nil || !sessionToken(phoneHomeToken(body)) {
				t.Fatalf("u1's own config after the attempt: %v\n%s", err, body)
			}
		})
	}
}

// Only a loader uki session is tokenless: a plain profile's machine still
// needs its token, and its session is not marked.
func TestTokenRequiredWithoutUKI(t *testing.T) {
	c, db := ukiCore(t, Config{Neighbors: testutil.Neighbors{"10.0.0.7": "52:54:00:00:00:02"}})
	ctx := context.Background()
	n2 := Request{MAC: "52:54:00:00:00:02", IP: "10.0.0.7", Arch: "efi-x86_64", HTTPBoot: HTTPBootRequest}
	if a, err := c.BootPXE(ctx, n2); err != nil || a.Loader != "" || a.UKI != "" {
		t.Fatalf("plain profile's HTTP Boot answer %+v, %v", a, err)
	}
	if _, err := db.Machine(ctx, n2.MAC); err == nil {
		t.Fatal("DHCP of a plain profile's machine wrote it synchronously: only /ipxe opens its session")
	}
	s, tok := script(t, c, n2)
	if tok == "" {
		t.Fatalf("plain profile's script has no token:\n%s", s)
	}
	if p, _ := db.Provisioning(ctx, n2.MAC); p.Tokenless {
		t.Fatalf("plain profile's session is tokenless: %+v", p)
	}
	n2.Token = ""
	if _, _, err := c.Config(ctx, n2, true); refusedFor(err) != ReasonNoToken {
		t.Fatalf("plain profile's config without a token: %v, want %s", err, ReasonNoToken)
	}
}

// The admission rules of a tokenless session, as a pure function.
func TestAdmitTokenless(t *testing.T) {
	const tok = "TOKEN1"
	open := store.Provisioning{TokenHash: hashToken("never handed out"), Profile: "talos", Tokenless: true}
	minted := open
	minted.TokenHash, minted.ConfigFetches = hashToken(tok), 1
	for _, tc := range []struct {
		name   string
		p      store.Provisioning
		ask    configAsk
		pol    Policy
		reason string
	}{
		{name: "proven, no token: minted", p: open, ask: configAsk{proven: true, mint: tok}},
		{name: "unproven", p: open, ask: configAsk{mint: tok}, reason: ReasonNoToken},
		{name: "unproven, every relaxation", p: open, ask: configAsk{mint: tok}, pol: Policy{AllowConfigWithoutToken: true, AllowConfigRefetch: true, TrustLoopback: true}, reason: ReasonNoToken},
		{name: "proven, nothing to mint", p: open, ask: configAsk{proven: true}, reason: ReasonNoToken},
		{name: "a token before any was minted", p: open, ask: configAsk{token: tok, proven: true}, reason: ReasonBadToken},
		{name: "second tokenless fetch", p: minted, ask: configAsk{proven: true, mint: "TOKEN2"}, reason: ReasonRefetch},
		{name: "second tokenless fetch, refetch allowed", p: minted, ask: configAsk{proven: true, mint: "TOKEN2"}, pol: Policy{AllowConfigRefetch: true}, reason: ReasonRefetch},
		{name: "refetch with the minted token", p: minted, ask: configAsk{token: tok, proven: true}, reason: ReasonRefetch},
		{name: "refetch with the minted token, allowed", p: minted, ask: configAsk{token: tok}, pol: Policy{AllowConfigRefetch: true}},
		{name: "closed session", p: store.Provisioning{Tokenless: true}, ask: configAsk{proven: true, mint: tok}, reason: ReasonNoSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a admission
			m, p := store.Machine{MAC: u1, State: store.StateProvisioning}, tc.p
			if _, err := admitConfig(tc.ask, tc.pol, time.Unix(1, 0), &a)(&m, &p); err != nil {
				t.Fatal(err)
			}
			if a.refused != tc.reason {
				t.Fatalf("refused = %q, want %q", a.refused, tc.reason)
			}
			switch {
			case tc.reason != "" && p != tc.p:
				t.Errorf("a refusal changed the session: %+v -> %+v", tc.p, p)
			case tc.reason == "" && (a.token != tok || !tokenMatches(tok, p.TokenHash)):
				t.Errorf("served with token %q, session hash matches it: %v", a.token, tokenMatches(tok, p.TokenHash))
			}
		})
	}
}

// iPXE never boots a UKI: every machine of a loader uki profile that asks
// /ipxe (UEFI PXE or BIOS) is told to use HTTP Boot, opens no session and
// exits to its next boot option; NextBoot and Explain say the same. A machine
// of such a profile being wiped boots the wipe profile through iPXE as any.
func TestUKIScript(t *testing.T) {
	c, db := ukiCore(t, Config{})
	ctx := context.Background()
	for _, arch := range []string{"bios", "efi-x86_64"} {
		s, err := c.Script(ctx, Request{MAC: u1, IP: u1IP, Arch: arch})
		if err != nil || !strings.Contains(s, "UEFI HTTP Boot only") || !strings.HasSuffix(s, "exit\n") || strings.Contains(s, "chain") || strings.Contains(s, "kernel") {
			t.Fatalf("%s script: %v\n%s", arch, err, s)
		}
		if p, err := db.Provisioning(ctx, u1); err == nil && p.TokenHash != "" {
			t.Fatalf("the %s script opened a session: %+v", arch, p)
		}
	}
	if _, script, err := c.Explain(Request{MAC: u1}); err != nil || !strings.Contains(script, "UEFI HTTP Boot only") {
		t.Errorf("Explain: %v\n%s", err, script)
	}

	wiping, db := ukiCore(t, Config{WipeProfile: "plain"})
	if _, _, err := db.Seen(ctx, store.Machine{MAC: u1, State: store.StateWiping}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := wiping.Script(ctx, Request{MAC: u1, IP: u1IP, Arch: "efi-x86_64"})
	if err != nil || !strings.Contains(s, "kernel http://h:1/assets/k") {
		t.Fatalf("script of a UKI machine being wiped: %v\n%s", err, s)
	}
	if nb, err := wiping.NextBoot(ctx, u1); err != nil || nb.Profile == nil || nb.Profile.Name != "plain" {
		t.Errorf("NextBoot of a UKI machine being wiped: %v %+v", err, nb)
	}
}
