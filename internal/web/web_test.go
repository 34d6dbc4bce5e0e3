package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

// operator is a browser stand-in: a cookie jar and no redirect following, so
// each answer can be checked.
type operator struct {
	t    testing.TB
	base string
	c    *http.Client
	csrf string
}

func newOperator(t testing.TB, base string) *operator {
	jar, _ := cookiejar.New(nil)
	return &operator{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (o *operator) do(method, path string, form url.Values, header ...string) (*http.Response, string) {
	o.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, o.base+path, body)
	if err != nil {
		o.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", o.base)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := o.c.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in and keeps the page's CSRF token.
func (o *operator) signIn() {
	o.t.Helper()
	res, _ := o.do("POST", "/ui/login", url.Values{"token": {testToken}, "name": {"bob"}, "next": {"/"}})
	if res.StatusCode != http.StatusSeeOther {
		o.t.Fatalf("sign in: %s", res.Status)
	}
	_, page := o.do("GET", "/", nil)
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		o.t.Fatalf("no CSRF token on the signed-in page:\n%s", page)
	}
	o.csrf = m[1]
}

func TestSignIn(t *testing.T) {
	f := startFleet(t, "")
	o := newOperator(t, f.url)

	res, _ := o.do("GET", "/ui/machines/"+node1MAC+"?x=1", nil)
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != "/ui/login?next=%2Fui%2Fmachines%2F52%3A54%3A00%3A00%3A00%3A01%3Fx%3D1" {
		t.Fatalf("signed out: %s to %q; want 303 to the sign-in page with next", res.Status, loc)
	}
	for _, path := range []string{"/ui/machines/rows", "/ui/machines/" + node1MAC + "/live", "/ui/events/rows"} {
		if res, _ := o.do("GET", path, nil); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("signed out GET %s: %s; want 401 (a fragment cannot follow a redirect)", path, res.Status)
		}
	}
	res, page := o.do("POST", "/ui/login", url.Values{"token": {"wrong"}})
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "not the API token") || res.Header.Get("Set-Cookie") != "" {
		t.Fatalf("wrong token: %s, cookie %q", res.Status, res.Header.Get("Set-Cookie"))
	}
	res, _ = o.do("POST", "/ui/login", url.Values{"token": {testToken}, "name": {"eve@evil/x"}})
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("name with @ and /: %s; want 400", res.Status)
	}

	for _, next := range []string{"//evil.example/", "/\t/evil.example/", "/\\evil.example/", "https://evil.example/"} {
		res, _ = o.do("POST", "/ui/login", url.Values{"token": {testToken}, "next": {next}})
		if loc := res.Header.Get("Location"); loc != "/" {
			t.Errorf("next=%q redirected to %q; want /", next, loc)
		}
	}
	c := res.Cookies()
	if len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Secure || c[0].Path != "/" {
		t.Fatalf("session cookie over plain HTTP = %+v; want HttpOnly, SameSite=Strict, not Secure", c)
	}
	res, _ = o.do("POST", "/ui/login", url.Values{"token": {testToken}}, "X-Forwarded-Proto", "https")
	if c := res.Cookies(); len(c) != 1 || !c[0].Secure {
		t.Errorf("session cookie behind a TLS proxy = %+v; want Secure", c)
	}

	// Signing out ends the session on the server, not only in the browser.
	o.signIn()
	if res, _ := o.do("GET", "/ui/login?next=%2Fui%2Fevents", nil); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/events" {
		t.Errorf("the sign-in page while signed in: %s to %q; want 303 to next", res.Status, res.Header.Get("Location"))
	}
	cookie := o.c.Jar.Cookies(mustURL(t, f.url))
	res, _ = o.do("POST", "/ui/logout", url.Values{"csrf": {o.csrf}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %s", res.Status)
	}
	replay := newOperator(t, f.url)
	replay.c.Jar.SetCookies(mustURL(t, f.url), cookie)
	if res, _ := replay.do("GET", "/", nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("the signed-out session still works: %s", res.Status)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestActionsNeedCSRFAndSameOrigin(t *testing.T) {
	f := startFleet(t, "")
	f.install(t, node1MAC)
	o := newOperator(t, f.url)
	o.signIn()
	path := "/ui/machines/" + node1MAC + "/action"
	cases := []struct {
		name   string
		form   url.Values
		header []string
	}{
		{"no token", url.Values{"action": {"reprovision"}}, nil},
		{"wrong token", url.Values{"action": {"reprovision"}, "csrf": {"x" + o.csrf}}, nil},
		{"other origin", url.Values{"action": {"reprovision"}, "csrf": {o.csrf}}, []string{"Origin", "http://evil.example"}},
		{"null origin", url.Values{"action": {"reprovision"}, "csrf": {o.csrf}}, []string{"Origin", "null"}},
	}
	for _, c := range cases {
		if res, _ := o.do("POST", path, c.form, c.header...); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s; want 403", c.name, res.Status)
		}
	}
	if m, _ := f.core.Machine(t.Context(), node1MAC); m.State != "installed" {
		t.Fatalf("a refused post changed the machine: %s", m.State)
	}

	res, _ := o.do("POST", path, url.Values{"action": {"reprovision"}, "csrf": {o.csrf}, "reason": {"disk swap"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("reprovision: %s", res.Status)
	}
	_, page := o.do("GET", "/ui/machines/"+node1MAC, nil)
	for _, want := range []string{"Reprovision requested", "installed -&gt; provisioning: disk swap", "bob/web@127.0.0.1"} {
		if !strings.Contains(page, want) {
			t.Errorf("machine page after reprovision lacks %q", want)
		}
	}
	// The flash shows once.
	if _, page := o.do("GET", "/ui/machines/"+node1MAC, nil); strings.Contains(page, "Reprovision requested") {
		t.Error("the flash message shows twice")
	}
	if res, _ := o.do("POST", path, url.Values{"action": {"explode"}, "csrf": {o.csrf}}); res.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown action: %s; want 400", res.Status)
	}
}

// Whatever a machine reports is text on the page, never markup; the API token
// and session tokens never appear in a page.
func TestPagesEscapeAndKeepSecrets(t *testing.T) {
	f := startFleet(t, "")
	// The boot path refuses such an arch; the page must not trust the store either.
	if _, _, err := f.db.Seen(context.Background(), store.Machine{MAC: strayMAC, Arch: "<script>alert(1)</script>"}, nil); err != nil {
		t.Fatal(err)
	}
	f.install(t, node1MAC)
	o := newOperator(t, f.url)
	o.signIn()
	for _, path := range []string{"/", "/ui/machines/rows", "/ui/machines/" + strayMAC, "/ui/machines/" + node1MAC, "/ui/machines/" + node1MAC + "/live",
		"/ui/machines/" + node1MAC + "/confirm?action=wipe", "/ui/events", "/ui/events/rows", "/ui/events?machine=" + strayMAC, "/ui/profiles"} {
		res, page := o.do("GET", path, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, res.Status)
		}
		if strings.Contains(page, "<script>alert") {
			t.Errorf("GET %s: a machine's markup reached the page", path)
		}
		if strings.Contains(page, testToken) || strings.Contains(page, "bmc-secret") {
			t.Errorf("GET %s: the page holds a secret", path)
		}
		if regexp.MustCompile(`token=[A-Z0-9]{20,}`).MatchString(page) {
			t.Errorf("GET %s: the page holds a machine's session token", path)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	_, page := o.do("GET", "/ui/machines/"+strayMAC, nil)
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the hostile arch is not shown escaped")
	}
}

func TestMachineTable(t *testing.T) {
	f := startFleet(t, "")
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	f.install(t, node1MAC)
	o := newOperator(t, f.url)
	o.signIn()
	cases := []struct {
		query       string
		want, wantN []string
	}{
		{"", []string{node1MAC, strayMAC, "2 machines"}, nil},
		{"?state=installed", []string{node1MAC, "1 of 2 machines match"}, []string{strayMAC}},
		{"?label=rack%3Dr1", []string{node1MAC}, []string{strayMAC}},
		{"?label=rack%3D", nil, []string{node1MAC, strayMAC}}, // an empty value still needs the label
		{"?q=node1", []string{node1MAC}, []string{strayMAC}},
		{"?q=00:99", []string{strayMAC}, []string{node1MAC}},
		{"?state=wiped", []string{"No machine matches this filter"}, []string{node1MAC, strayMAC}},
		{"?label=rack", []string{"write key=value"}, []string{node1MAC}},
		{"?state=bogus", []string{node1MAC, strayMAC}, nil},
	}
	for _, c := range cases {
		_, page := o.do("GET", "/ui/machines/rows"+c.query, nil)
		for _, w := range c.want {
			if c.query == "?label=rack" {
				_, page = o.do("GET", "/"+c.query, nil)
			}
			if !strings.Contains(page, w) {
				t.Errorf("%q: lacks %q", c.query, w)
			}
		}
		for _, w := range c.wantN {
			if strings.Contains(page, `data-mac="`+w+`"`) {
				t.Errorf("%q: lists %s", c.query, w)
			}
		}
	}

	// The full page shows the filter back: the state chosen, the others "any".
	if _, page := o.do("GET", "/?state=installed", nil); !strings.Contains(page, `<option value="installed" selected>`) ||
		!strings.Contains(page, `<select id="f-profile" name="profile" data-autosubmit>`) || strings.Count(page, " selected>") != 1 {
		t.Errorf("/?state=installed: the state filter is not shown chosen, alone:\n%s", page)
	}

	// An unchanged table is a 304; a change is a new body.
	res, _ := o.do("GET", "/ui/machines/rows", nil)
	etag := res.Header.Get("ETag")
	if res, _ := o.do("GET", "/ui/machines/rows", nil, "If-None-Match", etag); etag == "" || res.StatusCode != http.StatusNotModified {
		t.Fatalf("same rows with If-None-Match %q: %s; want 304", etag, res.Status)
	}
	f.get(t, "/ipxe?mac=52:54:00:00:00:42&arch=x86_64")
	if res, body := o.do("GET", "/ui/machines/rows", nil, "If-None-Match", etag); res.StatusCode != http.StatusOK || !strings.Contains(body, "52:54:00:00:00:42") {
		t.Fatalf("rows after a new machine: %s", res.Status)
	}
}

func TestMachinePageErrors(t *testing.T) {
	f := startFleet(t, "")
	o := newOperator(t, f.url)
	o.signIn()
	if res, page := o.do("GET", "/ui/machines/52:54:00:00:00:77", nil); res.StatusCode != http.StatusNotFound || !strings.Contains(page, "no such machine") {
		t.Errorf("unknown machine: %s", res.Status)
	}
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	_, page := o.do("GET", "/ui/machines/"+strayMAC, nil)
	for _, want := range []string{"No Machine in the profiles claims it", "It has no BMC", "Default profile applies"} {
		if !strings.Contains(page, want) {
			t.Errorf("a discovered machine's page lacks %q", want)
		}
	}
	if res, _ := o.do("GET", "/ui/machines/"+strayMAC+"/confirm?action=nope", nil); res.StatusCode != http.StatusBadRequest {
		t.Errorf("confirm of an unknown action: %s; want 400", res.Status)
	}
}

func TestReloadBanner(t *testing.T) {
	f := startFleet(t, "")
	o := newOperator(t, f.url)
	o.signIn()
	if _, page := o.do("GET", "/", nil); !strings.Contains(page, "Profiles loaded") || !strings.Contains(page, `<a href="/ui/profiles">3 profiles</a>, 1 machine.`) {
		t.Fatalf("the banner does not show the loaded set:\n%s", page)
	}
	writeFile(t, filepath.Join(f.dir, "broken.yaml"), "kind: Machine\nname: broken\nprofile: nosuch\nmatch: {mac: \"52:54:00:00:00:02\"}\n")
	if err := f.core.Reload(); err == nil {
		t.Fatal("a Machine naming no Profile loaded")
	}
	_, page := o.do("GET", "/", nil)
	if !strings.Contains(page, "Profile reload failed") || !strings.Contains(page, "broken.yaml:1") || !strings.Contains(page, "keeps serving") {
		t.Fatalf("the banner does not show the failed reload with file:line:\n%s", page)
	}
	// A directory is fixed by saving it, not by a commit.
	if !strings.Contains(page, "Fix these and save") || strings.Contains(page, "commit again") {
		t.Errorf("the banner of a failed directory reload asks for a commit")
	}
}

// With the profiles synced from Git, the banner names the live commit, and a
// rejected commit with its problems until a newer one goes live.
func TestGitBanner(t *testing.T) {
	f := startFleet(t, "")
	o := newOperator(t, f.url)
	o.signIn()
	good := &boot.Revision{Commit: strings.Repeat("a", 40), Short: "aaaaaaa", Subject: "add rack r1", Author: "Ada"}
	if err := f.core.LoadRevision(f.dir, good); err != nil {
		t.Fatal(err)
	}
	if _, page := o.do("GET", "/", nil); !strings.Contains(page, "<code title=\""+good.Commit+"\">aaaaaaa</code> “add rack r1” (Ada)") {
		t.Fatalf("the banner does not name the live commit:\n%s", page)
	}
	bad := t.TempDir()
	writeFile(t, filepath.Join(bad, "broken.yaml"), "kind: Machine\nname: broken\nprofile: nosuch\nmatch: {mac: \"52:54:00:00:00:02\"}\n")
	if err := f.core.LoadRevision(bad, &boot.Revision{Short: "bbbbbbb", Subject: "typo", Author: "Bob"}); err == nil {
		t.Fatal("a broken commit loaded")
	}
	_, page := o.do("GET", "/", nil)
	for _, want := range []string{"Commit <code>bbbbbbb</code> rejected", "“typo” by Bob", "commit <code>aaaaaaa</code>", "broken.yaml:1"} {
		if !strings.Contains(page, want) {
			t.Errorf("after a rejected commit the banner lacks %q", want)
		}
	}
	if err := f.core.LoadRevision(f.dir, &boot.Revision{Short: "ccccccc", Subject: "revert typo", Author: "Bob"}); err != nil {
		t.Fatal(err)
	}
	if _, page := o.do("GET", "/", nil); strings.Contains(page, "rejected") || !strings.Contains(page, "ccccccc") {
		t.Errorf("after a newer commit went live the banner still shows the rejection or not the new commit")
	}
}
