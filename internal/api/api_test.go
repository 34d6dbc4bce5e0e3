package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

const (
	apiToken = "operator-token-0123456789"
	base     = "http://h:1"
)

const testProfiles = `kind: Profile
name: install
boot: {kernel: /assets/k}
config: {template: cfg.txt}
once: true
---
kind: Machine
name: node1
match: {mac: "52:54:00:00:00:01"}
profile: install
---
kind: Machine
name: rack
match: {labels: {rack: r1}}
profile: install
---
kind: Default
profile: install
`

type fixture struct {
	core   *boot.Core
	srv    *httptest.Server
	router routers.Router
	dir    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, boot.Config{}, map[string]string{"p.yaml": testProfiles})
}

// newFixtureWith is newFixture with a core configured by cfg (its profiles
// directory, URL and store are filled in) and files written to the profiles
// directory; cfg.txt is always there.
func newFixtureWith(t *testing.T, cfg boot.Config, files map[string]string) *fixture {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "cfg.txt", "token={{ .provisiond.token }}\n")
	for name, content := range files {
		writeFile(t, dir, name, content)
	}
	db := memstore.New(store.Options{})
	cfg.ProfilesDir, cfg.AdvertiseURL, cfg.Store = dir, base, db
	core := boot.New(cfg)
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	f := serveAPI(t, Config{Backend: core, Token: apiToken})
	f.core, f.dir = core, dir
	return f
}

// serveAPI serves the API of cfg under /api/v1, with the OpenAPI document's
// router to check the answers against.
func serveAPI(t *testing.T, cfg Config) *fixture {
	t.Helper()
	r := chi.NewRouter()
	r.Mount("/api/v1", New(cfg))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: srv.URL + "/api/v1"}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, router: router}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

var tokenRE = regexp.MustCompile(`token=([A-Z0-9]+)`)

// boot runs a machine's /ipxe request through the core and returns its session token.
func (f *fixture) boot(t *testing.T, r boot.Request) string {
	t.Helper()
	s, err := f.core.Script(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	m := tokenRE.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no token in script:\n%s", s)
	}
	return m[1]
}

// call makes a request, checks the response against the OpenAPI document, and
// returns status and body.
func (f *fixture) call(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	return f.callWith(t, method, path, token, body, nil)
}

// callWith is call with extra request headers.
func (f *fixture) callWith(t *testing.T, method, path, token, body string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	f.conforms(t, req, resp, raw)
	return resp.StatusCode, string(raw)
}

// conforms validates one exchange against openapi.yaml: the route and status
// must be documented and the body must match the documented schema.
func (f *fixture) conforms(t *testing.T, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	route, params, err := f.router.FindRoute(req)
	if err != nil {
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusMethodNotAllowed {
			return // an undocumented route must be refused, which it was
		}
		t.Errorf("%s %s answered %d but is not in openapi.yaml: %v", req.Method, req.URL.Path, resp.StatusCode, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: response %d does not match openapi.yaml: %v\n%s", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
}

// Every chi route is documented and every documented operation is routed.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadDoc(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	var routed []string
	err := chi.Walk(New(Config{Token: apiToken}).(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routed = append(routed, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(documented)
	slices.Sort(routed)
	if !slices.Equal(documented, routed) {
		t.Errorf("routes and openapi.yaml differ:\n routed     %v\n documented %v", routed, documented)
	}
}

func TestAPI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	n1 := boot.Request{MAC: "52:54:00:00:00:01", UUID: "11111111-2222-3333-4444-555555555555", IP: "10.0.0.5"}
	tok := f.boot(t, n1)
	f.boot(t, boot.Request{MAC: "52:54:00:00:00:99"})                                          // Default: discovered
	f.boot(t, boot.Request{MAC: "52:54:00:00:00:a1", Labels: map[string]string{"rack": "r1"}}) // two machines named rack
	f.boot(t, boot.Request{MAC: "52:54:00:00:00:a2", Labels: map[string]string{"rack": "r1"}})
	if _, _, err := f.core.Config(ctx, boot.Request{MAC: n1.MAC, Token: tok}, false); err != nil {
		t.Fatal(err)
	}

	unauthorized := `"error": "unauthorized: send Authorization: Bearer <token>"`
	for _, tc := range []struct {
		name, method, path, token, body string
		code                            int
		contains                        []string
	}{
		{name: "no token", method: "GET", path: "/machines", code: 401, contains: []string{unauthorized}},
		{name: "wrong token", method: "GET", path: "/machines", token: "nope", code: 401, contains: []string{unauthorized}},
		{name: "wrong token, unknown id: same answer", method: "GET", path: "/machines/52:54:00:00:00:77", token: "nope", code: 401, contains: []string{unauthorized}},
		{name: "wrong token, unknown route: same answer", method: "GET", path: "/secrets", token: "nope", code: 401, contains: []string{unauthorized}},
		{name: "list", method: "GET", path: "/machines", token: apiToken, code: 200, contains: []string{`"machine": "node1"`, `"state": "provisioning"`, `"state": "discovered"`}},
		{name: "list by state", method: "GET", path: "/machines?state=discovered", token: apiToken, code: 200, contains: []string{"52:54:00:00:00:99"}},
		{name: "list by label", method: "GET", path: "/machines?label=rack=r1", token: apiToken, code: 200, contains: []string{"52:54:00:00:00:a1", "52:54:00:00:00:a2"}},
		{name: "list, bad state", method: "GET", path: "/machines?state=exploded", token: apiToken, code: 400, contains: []string{`state \"exploded\": want one of [declared discovered`}},
		{name: "show by name", method: "GET", path: "/machines/node1", token: apiToken, code: 200, contains: []string{`"mac": "52:54:00:00:00:01"`, `"session_open": true`, `"config_fetches": 1`}},
		{name: "show by MAC spelling", method: "GET", path: "/machines/52-54-00-00-00-01", token: apiToken, code: 200, contains: []string{`"machine": "node1"`}},
		{name: "show by UUID", method: "GET", path: "/machines/11111111222233334444555555555555", token: apiToken, code: 200, contains: []string{`"machine": "node1"`}},
		{name: "show unknown", method: "GET", path: "/machines/52:54:00:00:00:77", token: apiToken, code: 404, contains: []string{"no such machine"}},
		{name: "show unknown name", method: "GET", path: "/machines/ghost", token: apiToken, code: 404},
		{name: "show ambiguous name", method: "GET", path: "/machines/rack", token: apiToken, code: 409, contains: []string{"use a MAC"}},
		{name: "reprovision, bad JSON", method: "POST", path: "/machines/node1/reprovision", token: apiToken, body: `{"reason":`, code: 400, contains: []string{"request body"}},
		{name: "reprovision, unknown field", method: "POST", path: "/machines/node1/reprovision", token: apiToken, body: `{"reasn":"x"}`, code: 400, contains: []string{"unknown field"}},
		{name: "reprovision a discovered machine", method: "POST", path: "/machines/52:54:00:00:00:99/reprovision", token: apiToken, code: 409, contains: []string{"no Machine in the profiles claims it"}},
		{name: "phone-home without token", method: "POST", path: "/machines/node1/installed", code: 401, contains: []string{unauthorized}},
		{name: "phone-home with another token", method: "POST", path: "/machines/node1/installed", token: "WRONGTOKEN", code: 401, contains: []string{unauthorized}},
		{name: "phone-home for an unknown machine", method: "POST", path: "/machines/52:54:00:00:00:77/installed", token: tok, code: 401, contains: []string{unauthorized}},
		{name: "phone-home", method: "POST", path: "/machines/52-54-00-00-00-01/installed", token: tok, body: `{"message":"flatcar-install done"}`, code: 200, contains: []string{`"state": "installed"`}},
		{name: "phone-home replayed", method: "POST", path: "/machines/node1/installed", token: tok, code: 401},
		{name: "installed twice by the operator", method: "POST", path: "/machines/node1/installed", token: apiToken, code: 409, contains: []string{"not provisioning or wiping"}},
		{name: "reprovision", method: "POST", path: "/machines/node1/reprovision", token: apiToken, body: `{"reason":"new disk"}`, code: 200, contains: []string{`"state": "provisioning"`}},
		{name: "reprovision without a body", method: "POST", path: "/machines/node1/reprovision", token: apiToken, code: 200},
		{name: "trailing garbage after the body", method: "POST", path: "/machines/node1/reprovision", token: apiToken, body: `{"reason":"x"}}`, code: 400, contains: []string{"more than one JSON value"}},
		{name: "events of one machine", method: "GET", path: "/events?machine=node1", token: apiToken, code: 200, contains: []string{`"type": "config-served"`, `"type": "phone-home-refused"`, `"type": "installed"`, "provisioning -> installed by phone-home: flatcar-install done", "installed -> provisioning: new disk"}},
		{name: "events since a duration", method: "GET", path: "/events?since=1h&limit=2", token: apiToken, code: 200, contains: []string{`"seq": 1`, `"seq": 2`}},
		{name: "events after a seq", method: "GET", path: "/events?after=1&limit=1", token: apiToken, code: 200, contains: []string{`"seq": 2`}},
		{name: "events, bad since", method: "GET", path: "/events?since=yesterday", token: apiToken, code: 400, contains: []string{"RFC 3339"}},
		{name: "events, bad limit", method: "GET", path: "/events?limit=0", token: apiToken, code: 400},
		{name: "events newest first", method: "GET", path: "/events?order=newest&limit=1&type=reprovision", token: apiToken, code: 200, contains: []string{`"type": "reprovision"`}},
		{name: "events before a seq", method: "GET", path: "/events?before=3", token: apiToken, code: 200, contains: []string{`"seq": 1`, `"seq": 2`}},
		{name: "events, bad order", method: "GET", path: "/events?order=latest", token: apiToken, code: 400, contains: []string{`order \"latest\": want oldest or newest`}},
		{name: "events, bad before", method: "GET", path: "/events?before=x", token: apiToken, code: 400, contains: []string{`before \"x\": want an event seq`}},
		{name: "events, before 0", method: "GET", path: "/events?before=0", token: apiToken, code: 400, contains: []string{"1 or more"}},
		{name: "events of an unknown machine", method: "GET", path: "/events?machine=ghost", token: apiToken, code: 404},
		{name: "profiles", method: "GET", path: "/profiles", token: apiToken, code: 200, contains: []string{`"ok": true`, `"name": "install"`, `"once": true`, `"default": "install"`, `"node1"`}},
		{name: "openapi", method: "GET", path: "/openapi.yaml", token: apiToken, code: 200, contains: []string{"openapi: 3.0.3"}},
		{name: "unknown route", method: "GET", path: "/nope", token: apiToken, code: 404},
		{name: "wrong method", method: "DELETE", path: "/machines/node1", token: apiToken, code: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.call(t, tc.method, tc.path, tc.token, tc.body)
			if code != tc.code {
				t.Fatalf("%s %s = %d, want %d\n%s", tc.method, tc.path, code, tc.code, body)
			}
			var v any
			if err := json.Unmarshal([]byte(body), &v); err != nil && !strings.HasSuffix(tc.path, ".yaml") {
				t.Errorf("body is not JSON: %v\n%s", err, body)
			}
			for _, c := range tc.contains {
				if !strings.Contains(body, c) {
					t.Errorf("body lacks %q:\n%s", c, body)
				}
			}
			if strings.Contains(body, "token_hash") || strings.Contains(body, tok) || strings.Contains(body, apiToken) {
				t.Errorf("a token leaked into the response:\n%s", body)
			}
		})
	}
}

// A failed reload shows in /profiles with file:line problems, while the last
// good set keeps serving.
func TestProfilesReportsFailedReload(t *testing.T) {
	f := newFixture(t)
	writeFile(t, f.dir, "p.yaml", testProfiles+"---\nkind: Machine\nname: x\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: install\n")
	if err := f.core.Reload(); err == nil {
		t.Fatal("reload of a duplicate MAC succeeded")
	}
	code, body := f.call(t, "GET", "/profiles", apiToken, "")
	var got profilesJSON
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("GET /profiles = %d %v\n%s", code, err, body)
	}
	if got.Reload == nil || got.Reload.OK || len(got.Reload.Problems) == 0 || got.Reload.Problems[0].File != "p.yaml" || got.Reload.Problems[0].Line == 0 {
		t.Errorf("reload result %+v; want a failure with p.yaml:line problems", got.Reload)
	}
	if !slices.Contains(got.Machines, "node1") {
		t.Errorf("machines %v; want the last good set", got.Machines)
	}
}

// Bodies are bounded: a client cannot make the server buffer megabytes.
func TestBodyLimit(t *testing.T) {
	f := newFixture(t)
	f.boot(t, boot.Request{MAC: "52:54:00:00:00:01"})
	big := `{"reason":"` + strings.Repeat("x", 2*maxBody) + `"}`
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/machines/node1/reprovision", bytes.NewReader([]byte(big)))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("oversized body = %d, want 400", resp.StatusCode)
	}
}

// Without the operator's token, every path and method under /api/v1 gets the
// same answer, byte for byte and header for header: whether a route exists,
// exists for another method, or not at all is the operator's business. With
// the token, 404 and 405 tell them apart.
func TestUnauthenticatedRevealsNothing(t *testing.T) {
	f := newFixture(t)
	session := f.boot(t, boot.Request{MAC: "52:54:00:00:00:01"}) // a machine's token is no operator's
	type answer struct {
		code   int
		header http.Header
		body   string
	}
	send := func(t *testing.T, method, path, token string) answer {
		t.Helper()
		req, err := http.NewRequest(method, f.srv.URL+"/api/v1"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		resp.Header.Del("Date")
		return answer{resp.StatusCode, resp.Header, string(body)}
	}
	want := send(t, "GET", "/machines", "")
	if want.code != http.StatusUnauthorized {
		t.Fatalf("GET /machines without a token = %d %s; want 401", want.code, want.body)
	}
	for _, tc := range []struct {
		name, method, path string
		operator           int // the status with the operator's token
	}{
		{"unregistered method on a collection", "PATCH", "/machines", 405},
		{"unregistered method on a machine", "DELETE", "/machines/node1", 405},
		{"unregistered method on an unknown machine", "DELETE", "/machines/52:54:00:00:00:77", 405},
		{"HEAD of a GET route", "HEAD", "/machines", 405},
		{"OPTIONS", "OPTIONS", "/machines", 405},
		{"GET of the public phone-home route", "GET", "/machines/node1/installed", 405},
		{"unknown route", "GET", "/secrets", 404},
		{"unknown route, unregistered method", "PATCH", "/secrets", 404},
		{"trailing slash", "GET", "/machines/", 404},
		{"the mount point itself", "GET", "", 404},
		{"the mount point with a slash", "GET", "/", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, token := range []string{"", "nope", session} {
				got := send(t, tc.method, tc.path, token)
				if tc.method == "HEAD" {
					got.body = want.body // no body to compare
				}
				if got.code != want.code || got.body != want.body || !reflect.DeepEqual(got.header, want.header) {
					t.Errorf("%s %s with token %q = %d %v %s; want the same as GET /machines without one: %d %v %s",
						tc.method, tc.path, token, got.code, got.header, got.body, want.code, want.header, want.body)
				}
			}
			if got := send(t, tc.method, tc.path, apiToken); got.code != tc.operator {
				t.Errorf("%s %s with the operator's token = %d %s; want %d", tc.method, tc.path, got.code, got.body, tc.operator)
			}
		})
	}
}
