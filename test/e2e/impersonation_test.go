package e2e

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// attacker is a host of the lab that asks provisiond for a VM's boot files,
// config and phone-home in that VM's name while it installs. provisiond must
// refuse it and change nothing of the VM's.
type attacker struct {
	name   string // where it sits, for messages
	addr   string
	reason string // provisiond's reason for refusing it
	// identified: provisiond can put a MAC to its address (a neighbour
	// entry, a DHCP binding), so a request of its that names no MAC acts
	// as that MAC.
	identified bool
	http       *http.Client
}

// attackers are the lab's impostors (it needs addRoutedSubnet, and the
// tenant's leased address). The site's DHCP host is on the VLAN: the kernel's
// neighbour table resolves its address to its own MAC, not the victim's. The
// routed hosts' MACs never reach provisiond: only a binding learned from the
// DHCP it saw can vouch for their addresses. The attacker never asked for a
// lease, so nothing vouches for it; the tenant did, through the relay, so its
// address is bound to its own MAC, not the victim's.
func (l *lab) attackers(tenantAddr string) []attacker {
	return []attacker{
		{name: "site host on the VLAN", addr: siteAddr, reason: "neighbor-mismatch", identified: true, http: l.httpClient(l.Site)},
		{name: "routed host without a lease", addr: attackerAddr, reason: "unbound", http: l.httpClient(l.Attacker)},
		{name: "routed host with a lease", addr: tenantAddr, reason: "binding-mismatch", identified: true, http: l.httpClient(l.Tenant)},
	}
}

// What the attackers claim. The token has the form of a session token but
// is no session's: only the machine's own /ipxe script carries the real one.
// The UUID and architecture are what a recorded /boot.ipxe sighting would
// leave in the victim's inventory record.
const (
	forgedToken    = "AAAAAAAAAAAAAAAAAAAAAAAAAA"
	forgedUUID     = "deadbeef-0000-4000-8000-000000000066"
	forgedArch     = "arm64"
	forgedPlatform = "efi"
)

// sightingSettle is how long the attackers wait after their last request
// before reading the victim back: provisiond writes a /boot.ipxe sighting
// to the inventory in the background, after it has answered.
const sightingSettle = time.Second

// probe is one request an attacker makes in a victim's name, and what
// provisiond may answer it.
type probe struct {
	what   string // chain, script, config, phone-home
	method string
	url    string
	token  string // sent as the bearer token; "" for none
	status []int  // the answers it may get; a 403 must give the attacker's reason
	event  string // the event a 403 must leave on the victim's record; "" for none
}

// probes are the requests a makes in v's name. They name v the way its
// Machine matches it: the UEFI VM by its UUID alone (/ipxe?uuid=).
func probes(v vm, a attacker) []probe {
	id, q := strings.ReplaceAll(v.MAC, ":", "-"), url.Values{"mac": {v.MAC}}
	if v.UUID != "" {
		id, q = v.UUID, url.Values{"uuid": {v.UUID}}
	}
	config := maps.Clone(q)
	config.Set("token", forgedToken)
	sighting := url.Values{
		"mac": {v.MAC}, "uuid": {cmp.Or(v.UUID, forgedUUID)},
		"arch": {forgedArch}, "platform": {forgedPlatform},
	}
	claim := []int{http.StatusForbidden}
	if v.UUID != "" && a.identified {
		// A UUID counts only as far as DHCP showed it from the requester's
		// own MAC: the request is the requester's, and no Machine (nor a
		// Default profile, in this lab) matches that.
		claim = append(claim, http.StatusNotFound)
	}
	return []probe{
		// The chain script is the same for every machine, but one that
		// names another machine would put that machine's sighting in the
		// inventory: refused.
		{what: "chain", method: http.MethodGet, url: advertiseURL + "/boot.ipxe?" + sighting.Encode(),
			status: []int{http.StatusForbidden}, event: "script-refused"},
		{what: "script", method: http.MethodGet, url: advertiseURL + "/ipxe?" + q.Encode(), status: claim, event: "script-refused"},
		{what: "config", method: http.MethodGet, url: advertiseURL + "/ignition?" + config.Encode(), status: claim, event: "config-refused"},
		// The source is checked before the token: 403, not 401.
		{what: "phone-home", method: http.MethodPost, url: advertiseURL + "/api/v1/machines/" + id + "/installed", token: forgedToken,
			status: []int{http.StatusForbidden}},
	}
}

// impersonation is what the attackers got when they asked in a VM's name.
type impersonation struct {
	Attackers []attacker
	Answers   []probeAnswer
	// Before and After are the victim as the API showed it around the
	// attacks; the session must be the same one.
	Before, After apiMachine
	Err           error
}

type probeAnswer struct {
	probe
	From   attacker
	Status int
	Body   string
	Err    error
}

// impersonate has every attacker make every probe in v's name. Run during
// v's session, it also shows the refusals cost the machine nothing: its own
// config fetch and phone-home must still work.
func impersonate(attackers []attacker, api *apiClient, v vm) *impersonation {
	im := &impersonation{Attackers: attackers}
	im.Before, im.Err = api.machine(v.MAC)
	for _, a := range attackers {
		for _, p := range probes(v, a) {
			im.Answers = append(im.Answers, a.ask(p))
		}
	}
	time.Sleep(sightingSettle)
	if im.Err == nil {
		im.After, im.Err = api.machine(v.MAC)
	}
	return im
}

// ask makes p's request from a's host.
func (a attacker) ask(p probe) probeAnswer {
	ans := probeAnswer{probe: p, From: a}
	req, err := http.NewRequest(p.method, p.url, nil)
	if err == nil {
		if p.token != "" {
			req.Header.Set("Authorization", "Bearer "+p.token)
		}
		var resp *http.Response
		if resp, err = a.http.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			ans.Status, ans.Body = resp.StatusCode, strings.TrimSpace(string(body))
		}
	}
	ans.Err = err
	return ans
}

// byAttacker reports whether refusal e is of an attacker's request rather
// than of the machine's own. A refusal without an address (a phone-home's,
// as some versions record it) counts as the attackers' when they phoned
// home: the machine's own phone-home is checked on its console and by its
// installed event.
func (r *vmRun) byAttacker(e apiEvent) bool {
	im := r.Impersonation
	if im == nil {
		return false
	}
	ip, ok := e.Fields["ip"]
	if !ok {
		return e.Type == "phone-home-refused"
	}
	return slices.ContainsFunc(im.Attackers, func(a attacker) bool { return a.addr == ip })
}

// checkImpersonation checks every attacker's request was answered as it may
// be, each refusal recorded with the attacker's address and reason, and the
// victim untouched: the same session, and no attacker's claim in its record.
func checkImpersonation(t *testing.T, v vm, r *vmRun) {
	im := r.Impersonation
	if im == nil {
		t.Fatal("the attackers did not run")
	}
	if im.Err != nil {
		t.Error(im.Err)
	}
	type record struct{ addr, event string }
	recorded := map[record]attacker{} // the refusals that must be on record
	for _, a := range im.Answers {
		req := fmt.Sprintf("%s %s from the %s (%s)", a.method, a.url, a.From.name, a.From.addr)
		// On one line: a script's first, an error's (JSON or text) whole.
		body := strings.Join(strings.Fields(a.Body), " ")
		if a.Status == http.StatusOK {
			body, _, _ = strings.Cut(a.Body, "\n")
		}
		switch {
		case a.Err != nil:
			t.Errorf("%s: %v", req, a.Err)
		case !slices.Contains(a.status, a.Status):
			t.Errorf("%s: %d %q, want one of %v (403: %s)", req, a.Status, body, a.status, a.From.reason)
		case a.Status == http.StatusForbidden && !strings.Contains(a.Body, a.From.reason):
			t.Errorf("%s: %d %q, want 403 with %s", req, a.Status, body, a.From.reason)
		default:
			t.Logf("%s: %d %q", req, a.Status, body)
			if a.Status == http.StatusForbidden && a.event != "" {
				recorded[record{a.From.addr, a.event}] = a.From
			}
		}
	}

	b, a := im.Before, im.After
	t.Logf("%s around the attacks: state %s -> %s, session open %v -> %v, uuid %q -> %q, arch %q -> %q, ip %s -> %s",
		v.Name, b.State, a.State, b.sessionOpen(), a.sessionOpen(), b.UUID, a.UUID, b.Arch, a.Arch, b.IP, a.IP)
	if b.State != "provisioning" || !b.sessionOpen() {
		t.Logf("%s: the attackers missed the open session (state %q): they only show the refusals", v.Name, b.State)
	}
	if b.Provisioning != nil && a.Provisioning != nil && !b.Provisioning.IssuedAt.Equal(a.Provisioning.IssuedAt) {
		t.Errorf("%s's session was reissued by the refused requests: issued_at %v -> %v", v.Name, b.Provisioning.IssuedAt, a.Provisioning.IssuedAt)
	}
	if b.State == "provisioning" && a.State != "provisioning" && a.State != "installed" {
		t.Errorf("%s went from provisioning to %s during the attacks", v.Name, a.State)
	}
	// What an attacker's /boot.ipxe claimed must not be what the inventory
	// says of the victim now.
	if a.UUID != b.UUID || a.Arch != b.Arch {
		t.Errorf("%s's record took an attacker's sighting: uuid %q -> %q, arch %q -> %q", v.Name, b.UUID, a.UUID, b.Arch, a.Arch)
	}
	for _, at := range im.Attackers {
		if a.IP == at.addr {
			t.Errorf("%s's record shows the %s's address %s", v.Name, at.name, at.addr)
		}
	}

	if b.State == "" {
		return // provisiond did not know the machine yet: no record to put refusals on
	}
	// Each refusal is on record with the attacker's address and reason.
	// Refusals may be aggregated (a count per machine and reason), so at
	// least one event of each kind. Any event with an attacker's address (a
	// phone-home's refusal too) must give its reason.
	seen := map[record]bool{}
	for _, e := range r.Events {
		i := slices.IndexFunc(im.Attackers, func(a attacker) bool { return a.addr == e.Fields["ip"] })
		if i < 0 {
			continue
		}
		if at := im.Attackers[i]; e.Fields["reason"] != at.reason {
			t.Errorf("%s: an event of the %s's requests without reason %s: %v", v.Name, at.name, at.reason, e)
		}
		seen[record{e.Fields["ip"], e.Type}] = true
	}
	for rec, at := range recorded {
		if !seen[rec] {
			t.Errorf("%s: no %s event from the %s (%s) for its refused requests", v.Name, rec.event, at.name, at.addr)
		}
	}
}
