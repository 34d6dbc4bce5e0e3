package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/testutil"
)

const (
	node2MAC   = "52:54:00:00:00:02"
	node2Dash  = "52-54-00-00-00-02"
	node2IP    = "10.0.0.2"                             // on-link
	node2Route = "192.0.2.2"                            // routed, bound by DHCP
	otherHost  = "10.0.0.6"                             // another host on the VLAN
	strangerIP = "192.0.2.7"                            // routed, bound to another machine
	loopbackIP = "127.0.0.1"                            // the test's own connections
	node2UUID  = "12345678-0000-4000-8000-000000000002" // its DHCP sent it
)

// identityServer serves the examples with the real identity check: the
// neighbour table knows node2 and another host on the VLAN, loopback is
// this host, DHCP bound node2 to a routed address and a stranger to
// another, and proxies in trusted may say whom they forward.
func identityServer(t *testing.T, pol boot.Policy, trusted ...netip.Prefix) (*httptest.Server, *boot.Core, store.Store) {
	t.Helper()
	db := memstore.New(store.Options{})
	ctx := context.Background()
	for _, b := range []store.Binding{{MAC: node2MAC, UUID: node2UUID, IP: node2Route}, {MAC: "52:54:00:00:00:77", IP: strangerIP}} {
		if err := db.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	nb := testutil.Neighbors{node2IP: node2MAC, otherHost: "52:54:00:00:00:66", loopbackIP: "local"}
	core := boot.New(boot.Config{ProfilesDir: "../../examples", AdvertiseURL: base, Store: db, Neighbors: nb, Policy: pol})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{
		Core: core, AdvertiseURL: base, TrustedProxies: trusted,
		API: api.New(api.Config{Backend: core, Token: "operator-token"}),
	}).Handler())
	t.Cleanup(ts.Close)
	return ts, core, db
}

// Findings 1-4 of the security issue, as regression tests: a process on the
// server, a routed host and another host on the VLAN each name node2 (by MAC,
// by its UUID, with /boot.ipxe's inventory write, and with a forged
// phone-home) while node2 has a session open. Each is refused for the right
// reason, and node2's session and record stay as they were.
func TestImpersonationRefused(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	// A proxy elsewhere: the middleware runs, but loopback is not it.
	elsewhere := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	for _, tc := range []struct {
		name    string
		xff     string // X-Forwarded-For
		trusted []netip.Prefix
		reason  string
	}{
		{name: "loopback", reason: boot.ReasonLocal},
		// Anyone can send the header; only a trusted proxy's counts.
		{name: "loopback, forged X-Forwarded-For", xff: node2IP, reason: boot.ReasonLocal},
		{name: "loopback, forged X-Forwarded-For, another proxy trusted", xff: node2IP, trusted: elsewhere, reason: boot.ReasonLocal},
		{name: "loopback, forged X-Forwarded-For naming the proxy", xff: node2IP + ", 198.51.100.1", trusted: elsewhere, reason: boot.ReasonLocal},
		{name: "routed, unbound, through a trusted proxy", xff: "198.51.100.9", trusted: proxy, reason: boot.ReasonUnbound},
		// The left entry is what the client claimed; the proxy saw the right one.
		{name: "routed, bound to another machine, claiming node2's address", xff: node2Route + ", " + strangerIP, trusted: proxy, reason: boot.ReasonBindMAC},
		{name: "another host on the VLAN", xff: otherHost, trusted: proxy, reason: boot.ReasonNeighbor},
		{name: "unparseable forwarded address", xff: "node2", trusted: proxy, reason: boot.ReasonNeighbor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, core, db := identityServer(t, boot.Policy{}, tc.trusted...)
			ctx := context.Background()
			own := boot.Request{MAC: node2MAC, IP: node2IP}
			script, err := core.Script(ctx, own)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := db.Machine(ctx, node2MAC)
			session, _ := db.Provisioning(ctx, node2MAC)
			hdr := map[string]string{}
			if tc.xff != "" {
				hdr["X-Forwarded-For"] = tc.xff
			}
			// A UUID claim counts only as far as DHCP showed it: the UUID-only
			// request acts as the requester's own MAC, when it has one.
			if code, body := send(t, ts, "GET", "/ipxe?uuid="+node2UUID, hdr); code == http.StatusOK && (strings.Contains(body, node2Dash) || strings.Contains(body, "# provisiond: machine ")) {
				t.Errorf("GET /ipxe?uuid= = %d, a script of a Machine:\n%s", code, body)
			} else if code != http.StatusOK && !strings.Contains(body, tc.reason) {
				t.Errorf("GET /ipxe?uuid= = %d %q, want 403 %s or the requester's own script", code, body, tc.reason)
			}
			for _, path := range []string{
				"/ipxe?mac=" + node2Dash,
				"/boot.ipxe?mac=" + node2Dash + "&uuid=" + node2UUID + "&arch=arm64",
				"/ignition?mac=" + node2Dash + "&token=" + sessionToken(t, script),
			} {
				if code, body := send(t, ts, "GET", path, hdr); code != http.StatusForbidden || !strings.Contains(body, tc.reason) {
					t.Errorf("GET %s = %d %q, want 403 %s", path, code, body, tc.reason)
				}
			}
			hdr["Authorization"] = "Bearer " + sessionToken(t, script)
			if code, body := send(t, ts, "POST", "/api/v1/machines/"+node2Dash+"/installed", hdr); code != http.StatusForbidden || !strings.Contains(body, tc.reason) {
				t.Errorf("phone-home with node2's own token = %d %q, want 403 %s", code, body, tc.reason)
			}
			after, _ := db.Machine(ctx, node2MAC)
			if after.UUID != before.UUID || after.Arch != before.Arch || after.LastIP != before.LastIP || after.State != before.State {
				t.Errorf("node2 changed: %+v -> %+v", before, after)
			}
			if p, _ := db.Provisioning(ctx, node2MAC); p.TokenHash != session.TokenHash || p.ConfigFetches != 0 {
				t.Errorf("node2's session changed: %+v -> %+v", session, p)
			}
			// node2 itself still gets its config, once.
			own.Token = sessionToken(t, script)
			if _, _, err := core.Config(ctx, own, true); err != nil {
				t.Errorf("node2's own config after the attack: %v", err)
			}
		})
	}
}

// The requesters that are node2 get through: the routed machine DHCP bound,
// behind a trusted proxy, through a whole boot; and, with --trust-loopback,
// a process on this host naming it.
func TestBoundRequestersServed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pol     boot.Policy
		xff     string
		trusted []netip.Prefix
	}{
		{name: "routed, bound by DHCP, through a trusted proxy", xff: node2Route, trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		{name: "loopback, trusted", pol: boot.Policy{TrustLoopback: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, _, db := identityServer(t, tc.pol, tc.trusted...)
			hdr := map[string]string{}
			if tc.xff != "" {
				hdr["X-Forwarded-For"] = tc.xff
			}
			code, script := send(t, ts, "GET", "/ipxe?mac="+node2Dash, hdr)
			if code != http.StatusOK {
				t.Fatalf("/ipxe = %d %q", code, script)
			}
			tok := sessionToken(t, script)
			if code, body := send(t, ts, "GET", "/ignition?mac="+node2Dash+"&token="+tok, hdr); code != http.StatusOK {
				t.Fatalf("/ignition = %d %q", code, body)
			}
			hdr["Authorization"] = "Bearer " + tok
			if code, body := send(t, ts, "POST", "/api/v1/machines/"+node2Dash+"/installed", hdr); code != http.StatusOK {
				t.Fatalf("phone-home = %d %q", code, body)
			}
			if m, _ := db.Machine(context.Background(), node2MAC); m.State != store.StateInstalled {
				t.Errorf("node2 is %s, want installed", m.State)
			}
		})
	}
}
