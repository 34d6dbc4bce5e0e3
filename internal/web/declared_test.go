package web_test

import (
	"net/http"
	"strings"
	"testing"
)

// rack9 is declared in Git by labels alone: it has no MAC until it boots.
const rack9 = `---
kind: Machine
name: rack9
match: {labels: {rack: r9}}
profile: linux
metadata: {hostname: rack9.lab}
`

// Machines declared in Git and never seen are rows of the table, styled
// and filtered as such, with a page of their own; the page of one matched
// without a MAC shows none of the other machines' events, and refuses a
// reprovision until the machine is seen.
func TestDeclaredMachines(t *testing.T) {
	f := startFleet(t, rack9)
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64") // events that are not rack9's
	o := newOperator(t, f.url)
	o.signIn()

	_, page := o.do("GET", "/?state=declared", nil)
	for _, want := range []string{`<tr data-mac="` + node1MAC + `" class="declared">`, `<a href="/ui/machines/rack9">rack9</a>`,
		`never seen`, `<option value="declared" selected>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the declared filter's table lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, strayMAC) {
		t.Errorf("?state=declared lists the discovered stray:\n%s", page)
	}

	res, page := o.do("GET", "/ui/machines/rack9", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `id="machine-state">declared`) ||
		!strings.Contains(page, "never seen") || !strings.Contains(page, "power it on first") {
		t.Fatalf("rack9's page = %d:\n%s", res.StatusCode, page)
	}
	if strings.Contains(page, strayMAC) || !strings.Contains(page, `<ol class="events" reversed data-count="0">`) {
		t.Errorf("rack9's page shows other machines' events:\n%s", page)
	}
	if res, page := o.do("GET", "/ui/machines/rack9/confirm?action=reprovision", nil); res.StatusCode != http.StatusConflict || !strings.Contains(page, "never seen") {
		t.Errorf("confirm reprovision of a declared machine = %d:\n%s", res.StatusCode, page)
	}

	// node1 boots: its record replaces its declared row.
	f.install(t, node1MAC)
	_, page = o.do("GET", "/", nil)
	if strings.Contains(page, `<tr data-mac="`+node1MAC+`" class="declared">`) || strings.Count(page, `<tr data-mac="`+node1MAC+`"`) != 1 {
		t.Errorf("node1 is listed declared, or twice, after it booted:\n%s", page)
	}
}
