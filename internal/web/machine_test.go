package web_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

const (
	node2MAC = "52:54:00:00:00:02"
	// node2's BMC credentials name an environment variable nobody sets.
	node2 = `---
kind: Machine
name: node2
match: {mac: "` + node2MAC + `"}
profile: linux
metadata: {hostname: node2.lab}
bmc: {address: "redfish://127.0.0.1:1", credentials: "env:PROVISIOND_WEB_TEST_UNSET"}
`
)

var scriptRE = regexp.MustCompile(`(?s)<pre class="script"[^>]*><code>(.*?)</code></pre>`)

// pageScript is the iPXE script a machine page explains, as text.
func pageScript(t *testing.T, page string) string {
	t.Helper()
	m := scriptRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no script on the machine page:\n%s", page)
	}
	return html.UnescapeString(strings.NewReplacer("<span>", "", "</span>", "").Replace(m[1]))
}

// The machine page's next boot is what /ipxe then serves, token aside:
// the disk for an installed boot-once machine, the wipe profile for one
// being wiped, with a warning.
func TestNextBootIsWhatIPXEServes(t *testing.T) {
	f := startFleet(t, "")
	f.install(t, node1MAC)
	o := newOperator(t, f.url)
	o.signIn()
	ipxe := "/ipxe?mac=" + node1MAC + "&arch=x86_64"
	token := regexp.MustCompile(`token=[A-Z0-9]+`)

	_, page := o.do("GET", "/ui/machines/"+node1MAC, nil)
	if !strings.Contains(page, `id="next-boots">its disk`) || !strings.Contains(page, "boot-once and the machine is installed") {
		t.Errorf("an installed boot-once machine's next boot is not its disk:\n%s", page)
	}
	if got, want := pageScript(t, page), f.get(t, ipxe); got != want {
		t.Errorf("the page explains:\n%s\n/ipxe serves:\n%s", got, want)
	}

	if _, _, err := f.core.Wipe(t.Context(), node1MAC, "test", "", false); err != nil {
		t.Fatal(err)
	}
	_, page = o.do("GET", "/ui/machines/"+node1MAC, nil)
	for _, want := range []string{`id="next-boots">the wipe profile wipe (fleet.yaml:7)`, `<p class="warn" role="note"><strong>Its next network boot wipes it:</strong> it boots the wipe profile wipe`,
		"being wiped: it boots the wipe profile wipe, not its profile linux", "Its profile</dt><dd>linux (fleet.yaml:1)"} {
		if !strings.Contains(page, want) {
			t.Errorf("a wiping machine's page lacks %q", want)
		}
	}
	explained := pageScript(t, page)
	served := token.ReplaceAllString(f.get(t, ipxe), "token=TOKEN")
	if explained != served || !strings.Contains(served, "vmlinuz wipe") {
		t.Errorf("the page explains:\n%s\n/ipxe serves the wipe profile:\n%s", explained, served)
	}
}

// Power buttons need a BMC whose credentials resolve: otherwise they are
// disabled with the reason, said once, and their confirmation page refuses.
func TestPowerActionsNeedAUsableBMC(t *testing.T) {
	f := startFleet(t, node2)
	f.get(t, "/ipxe?mac="+node2MAC+"&arch=x86_64")
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	f.install(t, node1MAC)
	o := newOperator(t, f.url)
	o.signIn()

	_, page := o.do("GET", "/ui/machines/"+node2MAC, nil)
	for _, label := range []string{"Refresh power", "Power on", "Power off", "Power cycle"} {
		if !strings.Contains(page, `<button type="button" disabled aria-describedby="why-0">`+label+`</button>`) {
			t.Errorf("node2's %s is not disabled", label)
		}
	}
	reason := "Its BMC cannot be used: BMC configuration unusable: BMC credentials env:PROVISIOND_WEB_TEST_UNSET: environment variable PROVISIOND_WEB_TEST_UNSET is not set."
	if !strings.Contains(page, `<li id="why-0"><span class="hint">Refresh power, Power on, Power off, Power cycle:</span> `+reason+`</li>`) {
		t.Errorf("node2's page does not say once why its power actions are disabled:\n%s", page)
	}
	if strings.Contains(page, "confirm?action=on") || !strings.Contains(page, "confirm?action=reprovision") {
		t.Error("node2's page links the wrong confirmations")
	}

	for _, c := range []struct {
		mac, action string
		code        int
		want        string
	}{
		{node2MAC, "on", http.StatusConflict, reason},
		{node2MAC, "off", http.StatusConflict, reason},
		{strayMAC, "on", http.StatusConflict, "It has no BMC"},
		{strayMAC, "reprovision", http.StatusConflict, "No Machine in the profiles claims it"},
		{node2MAC, "reprovision", http.StatusOK, "Its BMC cannot be used (BMC configuration unusable"},
		{strayMAC, "wipe", http.StatusOK, "It has no BMC: boot it from the network yourself."},
		{node1MAC, "wipe", http.StatusOK, "runs the wipe profile wipe instead of its own"},
		{node1MAC, "on", http.StatusOK, "The BMC powers the machine on."},
	} {
		res, page := o.do("GET", "/ui/machines/"+c.mac+"/confirm?action="+c.action, nil)
		if res.StatusCode != c.code || !strings.Contains(page, c.want) {
			t.Errorf("confirm %s of %s: %s; want %d saying %q", c.action, c.mac, res.Status, c.code, c.want)
		}
		if offers := strings.Contains(page, `name="action"`); offers != (c.code == http.StatusOK) {
			t.Errorf("confirm %s of %s: form offered %v", c.action, c.mac, offers)
		}
	}

	// A post that gets past the page anyway: the core refuses, and its event,
	// by who asked, says the error once.
	res, _ := o.do("POST", "/ui/machines/"+node2MAC+"/action", url.Values{"action": {"on"}, "csrf": {o.csrf}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("power on: %s", res.Status)
	}
	_, page = o.do("GET", "/ui/machines/"+node2MAC, nil)
	if !strings.Contains(page, "Power on failed: BMC configuration unusable") {
		t.Error("the refused power on is not flashed")
	}
	ev := regexp.MustCompile(`(?s)<li class="event event-power">.*?</li>`).FindString(page)
	if n := strings.Count(ev, "PROVISIOND_WEB_TEST_UNSET is not set"); n != 1 || !strings.Contains(ev, "by bob/web@127.0.0.1") {
		t.Errorf("the power event names its error %d times (want 1), or not its actor:\n%s", n, ev)
	}
}

// Refresh power asks the BMC at once, without a confirmation, but with the
// session's CSRF token like every post.
func TestPowerRefresh(t *testing.T) {
	f := startFleet(t, "")
	f.install(t, node1MAC)
	o := newOperator(t, f.url)
	o.signIn()
	path := "/ui/machines/" + node1MAC
	if _, page := o.do("GET", path, nil); !strings.Contains(page, `<input type="hidden" name="action" value="status">`) {
		t.Fatalf("no Refresh power form on the machine page:\n%s", page)
	}
	if err := f.chassis.SetPower(false); err != nil {
		t.Fatal(err)
	}
	if res, _ := o.do("POST", path+"/action", url.Values{"action": {"status"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("refresh without the CSRF token: %s; want 403", res.Status)
	}
	before, _ := f.core.Revision(t.Context())
	res, _ := o.do("POST", path+"/action", url.Values{"action": {"status"}, "csrf": {o.csrf}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != path {
		t.Fatalf("refresh: %s to %q; want 303 back to the machine", res.Status, res.Header.Get("Location"))
	}
	if after, _ := f.core.Revision(t.Context()); after == before {
		t.Error("the power state read was not recorded")
	}
	_, page := o.do("GET", path, nil)
	if !strings.Contains(page, "The BMC says the machine is off.") || !strings.Contains(page, `<span class="power power-off">off</span>`) {
		t.Errorf("after a refresh the page does not show the machine off:\n%s", page)
	}
	if m, _ := f.core.Machine(t.Context(), node1MAC); m.Power != "off" {
		t.Errorf("inventory power %q; want off", m.Power)
	}
}
