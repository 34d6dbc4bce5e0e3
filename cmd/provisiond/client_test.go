package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/seal"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/testutil"
)

const (
	testToken = "0123456789abcdef0123"
	node1MAC  = "52:54:00:00:00:01"
	node1UUID = "11111111-2222-3333-4444-555555555555"
	strayMAC  = "52:54:00:00:00:99"
)

const testProfiles = `kind: Profile
name: p
boot: {kernel: /assets/v1}
---
kind: Profile
name: live
boot: {kernel: /assets/live}
---
kind: Machine
name: node1
match: {mac: "52:54:00:00:00:01", labels: {rack: r1}}
profile: p
---
kind: Default
profile: live
`

// testDaemon is the real API over the real boot core and store, on loopback.
type testDaemon struct {
	url       string
	core      *boot.Core
	tokenFile string

	mu       sync.Mutex
	requests []*http.Request // what the client sent, in order
}

func (d *testDaemon) sent() []*http.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*http.Request(nil), d.requests...)
}

func (d *testDaemon) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests = nil
}

// args is the client flags that reach d, then extra.
func (d *testDaemon) args(cmd []string, extra ...string) []string {
	out := append(append([]string{}, cmd...), "--server", d.url, "--token-file", d.tokenFile)
	return append(out, extra...)
}

// newTestDaemon serves /api/v1 with node1 booted (provisioning, with a UUID)
// and a stray machine the Default profile booted (discovered). opts adjust
// the core's Config.
func newTestDaemon(t *testing.T, opts ...func(*boot.Config)) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	profiles := filepath.Join(dir, "profiles")
	if err := os.Mkdir(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(profiles, "all.yaml"), []byte(testProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := boltstore.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := boot.Config{ProfilesDir: profiles, AdvertiseURL: "http://127.0.0.1:1", Store: db}
	for _, o := range opts {
		o(&cfg)
	}
	core := boot.New(cfg)
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := core.Script(ctx, boot.Request{MAC: node1MAC, UUID: node1UUID, Arch: "x86_64", IP: "10.0.0.5", Labels: map[string]string{"rack": "r1"}}); err != nil {
		t.Fatalf("script for node1: %v", err)
	}
	if _, err := core.Script(ctx, boot.Request{MAC: strayMAC, IP: "10.0.0.9"}); err != nil {
		t.Fatalf("script for the stray: %v", err)
	}

	return serveAPI(t, core)
}

// serveAPI serves core's /api/v1 on loopback, recording the requests.
func serveAPI(t *testing.T, core *boot.Core) *testDaemon { return serveBackend(t, core, core) }

// serveBackend serves b's /api/v1, b being core or core with some answers
// changed.
func serveBackend(t *testing.T, core *boot.Core, b api.Backend) *testDaemon {
	t.Helper()
	d := &testDaemon{core: core, tokenFile: filepath.Join(t.TempDir(), "api-token")}
	if err := os.WriteFile(d.tokenFile, []byte("  "+testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Mount("/api/v1", api.New(api.Config{Backend: b, Token: testToken}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		d.mu.Lock()
		d.requests = append(d.requests, req.Clone(context.Background()))
		d.mu.Unlock()
		r.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	d.url = srv.URL
	return d
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type cliCase struct {
	name     string
	args     []string
	code     int
	out      []string // substrings of stdout
	notOut   []string // must not be in stdout
	errOut   []string // substrings of stderr
	check    func(t *testing.T, out string)
	requests func(t *testing.T, sent []*http.Request)
}

func runCases(t *testing.T, d *testDaemon, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if d != nil {
				d.reset()
			}
			code, out, errOut := runCmd(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d; want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(out, w) {
					t.Errorf("stdout has %q:\n%s", w, out)
				}
			}
			for _, w := range tc.errOut {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if strings.Contains(out+errOut, testToken) {
				t.Errorf("the token is in the output:\n%s\n%s", out, errOut)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
			if tc.requests != nil && d != nil {
				tc.requests(t, d.sent())
			}
		})
	}
}

func decodeJSON[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return v
}

// rowOf returns the table row of stdout that contains s, split in columns.
func rowOf(t *testing.T, out, s string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return strings.Fields(l)
		}
	}
	t.Fatalf("no row with %q in:\n%s", s, out)
	return nil
}

func TestClientMachinesReadOnly(t *testing.T) {
	d := newTestDaemon(t)
	list := []string{"machines", "list"}
	show := func(id string) []string { return []string{"machines", "show", id} }
	wrongToken := writeFile(t, "token", "not-the-token-0123456789\n")
	emptyToken := writeFile(t, "token", " \n")

	runCases(t, d, []cliCase{
		{
			name: "list table",
			args: d.args(list),
			out:  []string{"NAME", "MAC", "UUID", "ARCH", "IP", "PROFILE", "STATE", "LAST-SEEN"},
			check: func(t *testing.T, out string) {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 3 {
					t.Fatalf("want a header and 2 rows:\n%s", out)
				}
				if h := strings.Fields(lines[0]); strings.Join(h, " ") != "NAME MAC UUID ARCH IP PROFILE STATE LAST-SEEN" {
					t.Errorf("header = %q", h)
				}
				row := rowOf(t, out, node1MAC)
				want := []string{"node1", node1MAC, node1UUID, "x86_64", "10.0.0.5", "p", "provisioning"}
				if len(row) != 9 || strings.Join(row[:7], " ") != strings.Join(want, " ") || !strings.HasSuffix(row[7], "s") || row[8] != "ago" {
					t.Errorf("node1 row = %q; want %q then an age", row, want)
				}
				row = rowOf(t, out, strayMAC)
				want = []string{"-", strayMAC, "-", "-", "10.0.0.9", "live", "discovered"}
				if len(row) != 9 || strings.Join(row[:7], " ") != strings.Join(want, " ") {
					t.Errorf("stray row = %q; want %q then an age", row, want)
				}
			},
		},
		{
			name: "list json",
			args: d.args(list, "-o", "json"),
			check: func(t *testing.T, out string) {
				v := decodeJSON[struct {
					Machines []map[string]any `json:"machines"`
				}](t, out)
				if len(v.Machines) != 2 || v.Machines[0]["mac"] != node1MAC || v.Machines[0]["state"] != "provisioning" ||
					v.Machines[0]["machine"] != "node1" || v.Machines[1]["mac"] != strayMAC || v.Machines[1]["state"] != "discovered" {
					t.Errorf("machines = %v", v.Machines)
				}
				if !strings.Contains(out, "\n  \"machines\": [") {
					t.Errorf("json is not indented:\n%s", out)
				}
			},
		},
		{
			name:   "list by state",
			args:   d.args(list, "--state", "discovered"),
			out:    []string{strayMAC},
			notOut: []string{node1MAC},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 1 || sent[0].URL.RawQuery != "state=discovered" {
					t.Errorf("requests = %v", sent)
				}
			},
		},
		{
			name:   "list by labels",
			args:   d.args(list, "-l", "rack=r1", "--label", "rack=r1"),
			out:    []string{node1MAC},
			notOut: []string{strayMAC},
		},
		{
			name:   "list by a label nobody has",
			args:   d.args(list, "-l", "rack=r2"),
			notOut: []string{node1MAC, strayMAC},
			errOut: []string{"no machines"},
		},
		{
			name: "list json with no match is an empty list",
			args: d.args(list, "-l", "rack=r2", "-o", "json"),
			check: func(t *testing.T, out string) {
				v := decodeJSON[map[string][]any](t, out)
				if m, ok := v["machines"]; !ok || len(m) != 0 {
					t.Errorf("json = %v; want machines: []", v)
				}
			},
		},
		{
			name: "show by name",
			args: d.args(show("node1")),
			out: []string{"machine:", "node1", "mac:", node1MAC, "uuid:", node1UUID, "ip:", "10.0.0.5", "state:", "provisioning",
				"labels:", "rack=r1", "provisioning:", "session open:", "yes", "config fetches:", "ago)"},
			check: func(t *testing.T, out string) {
				if r := rowOf(t, out, "state:"); strings.Join(r, " ") != "state: provisioning" {
					t.Errorf("state line = %q", r)
				}
				if r := rowOf(t, out, "session open:"); strings.Join(r, " ") != "session open: yes" {
					t.Errorf("session line = %q", r)
				}
				for l := range strings.Lines(out) {
					if strings.TrimRight(l, "\n") != strings.TrimRight(l, " \n") {
						t.Errorf("trailing space in %q", l)
					}
				}
			},
		},
		{
			name: "show by another MAC spelling",
			args: d.args(show("52-54-00-00-00-01")),
			out:  []string{node1MAC, "node1"},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 1 || sent[0].URL.Path != "/api/v1/machines/52-54-00-00-00-01" {
					t.Errorf("requests = %v", sent)
				}
				if got := sent[0].Header.Get("Authorization"); got != "Bearer "+testToken {
					t.Errorf("Authorization = %q", got)
				}
			},
		},
		{
			name: "show by UUID",
			args: d.args(show(strings.ToUpper(node1UUID))),
			out:  []string{node1MAC, "node1"},
		},
		{
			name: "show a discovered machine",
			args: d.args(show(strayMAC)),
			check: func(t *testing.T, out string) {
				if r := rowOf(t, out, "machine:"); strings.Join(r, " ") != "machine: -" {
					t.Errorf("machine line = %q", r)
				}
				if r := rowOf(t, out, "state:"); strings.Join(r, " ") != "state: discovered" {
					t.Errorf("state line = %q", r)
				}
			},
		},
		{
			name: "show json",
			args: d.args(show(node1MAC), "-o", "json"),
			check: func(t *testing.T, out string) {
				v := decodeJSON[api.Machine](t, out)
				if v.MAC != node1MAC || v.Machine != "node1" || v.Provisioning == nil || !v.Provisioning.SessionOpen || v.Provisioning.Profile != "p" {
					t.Errorf("machine = %+v", v)
				}
			},
		},
		{
			name:   "show an unknown id",
			args:   d.args(show("nope")),
			code:   1,
			errOut: []string{`provisiond machines: show nope: 404 Not Found: machine "nope": no such machine`},
		},
		{
			name:   "show escapes the id",
			args:   d.args(show("a/b?c")),
			code:   1,
			errOut: []string{"show a/b?c: 404 Not Found"},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 1 || sent[0].URL.EscapedPath() != "/api/v1/machines/a%2Fb%3Fc" || sent[0].URL.RawQuery != "" {
					t.Errorf("request = %v; want the id escaped", sent[0].URL)
				}
			},
		},
		{
			name:   "flags after the id",
			args:   append([]string{"machines", "show", "node1", "-o", "json"}, d.args(nil)...),
			out:    []string{`"machine": "node1"`},
			notOut: []string{"session open:"},
		},
		{
			name:   "wrong token",
			args:   []string{"machines", "list", "--server", d.url, "--token-file", wrongToken},
			code:   1,
			errOut: []string{"provisiond machines: list: 401 Unauthorized: unauthorized", "check that --token-file " + wrongToken + " holds the API token"},
		},
		{
			name:   "missing token file",
			args:   []string{"machines", "list", "--server", d.url, "--token-file", filepath.Join(t.TempDir(), "nope")},
			code:   1,
			errOut: []string{"--token-file: read token file ", "no such file or directory\n"},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 0 {
					t.Errorf("sent %d requests without a token", len(sent))
				}
			},
		},
		{
			name:   "empty token file",
			args:   []string{"events", "--server", d.url, "--token-file", emptyToken},
			code:   1,
			errOut: []string{"--token-file: read token file " + emptyToken + ": the file is empty\n"},
		},
		{
			name:   "daemon not running",
			args:   []string{"machines", "show", "node1", "--server", "http://" + testutil.FreeAddr(t) + "/", "--token-file", d.tokenFile},
			code:   1,
			errOut: []string{"provisiond machines: show node1: cannot reach provisiond at http://127.0.0.1:", "connection refused"},
		},
		{
			name:   "server that is not provisiond",
			args:   []string{"machines", "list", "--server", d.url + "/elsewhere", "--token-file", d.tokenFile},
			code:   1,
			errOut: []string{"list: 404 Not Found (not an answer of the provisiond API; check --server " + d.url + "/elsewhere)"},
		},
	})
}

func TestClientUsageErrors(t *testing.T) {
	d := newTestDaemon(t)
	runCases(t, d, []cliCase{
		{name: "machines without a verb", args: []string{"machines"}, code: 2,
			errOut: []string{"Usage:\n  provisiond machines <verb> [flags]", "list ", "show ", "reprovision "}},
		{name: "unknown verb", args: []string{"machines", "delete", "node1"}, code: 2,
			errOut: []string{"provisiond machines: unknown verb \"delete\"; want list, show, yaml, reprovision, wipe, bmc\nRun 'provisiond machines --help' for usage.\n"}},
		{name: "misspelt verb", args: []string{"machines", "lsit"}, code: 2,
			errOut: []string{`provisiond machines: unknown verb "lsit"; did you mean list?`}},
		{name: "unknown command", args: []string{"machine", "list"}, code: 2,
			errOut: []string{`provisiond: unknown command "machine"; did you mean machines?`, "Run 'provisiond --help' for usage."}},
		{name: "flags before the verb", args: []string{"machines", "-o", "json", "list"}, code: 2,
			errOut: []string{"the verb (list, show, yaml, reprovision, wipe, bmc) comes before flags"}},
		{name: "machines help", args: []string{"machines", "help"}, code: 0, out: []string{"reprovision"}},
		{name: "machines help verb", args: []string{"machines", "help", "bmc"}, code: 0, out: []string{"--password-file FILE"}},
		{name: "help machines", args: []string{"help", "machines"}, code: 0, out: []string{"reprovision"}},
		{name: "verb help", args: []string{"machines", "list", "-h"}, code: 0, out: []string{"Usage:\n  provisiond machines list [flags]", "--token-file FILE"}},
		{name: "bad output", args: d.args([]string{"machines", "list"}, "-o", "yaml"), code: 2,
			errOut: []string{"provisiond machines list: -o \"yaml\": want table or json\nRun 'provisiond machines list --help' for usage.\n"}},
		{name: "bad output on events", args: d.args([]string{"events"}, "--output", "wide"), code: 2},
		{name: "bad output beats a missing token file", args: []string{"machines", "list", "-o", "yaml", "--token-file", "/nonexistent"}, code: 2},
		{name: "bad server", args: []string{"machines", "list", "--server", "localhost:8080", "--token-file", d.tokenFile}, code: 2,
			errOut: []string{`--server "localhost:8080": want an http:// or https:// URL`}},
		{name: "show without an id", args: d.args([]string{"machines", "show"}), code: 2, errOut: []string{"want exactly one machine ID"}},
		{name: "show with two ids", args: d.args([]string{"machines", "show", "a", "b"}), code: 2},
		{name: "reprovision without an id", args: d.args([]string{"machines", "reprovision"}), code: 2},
		{name: "list with an argument", args: d.args([]string{"machines", "list", "node1"}), code: 2},
		{name: "bad state", args: d.args([]string{"machines", "list", "--state", "broken"}), code: 2,
			errOut: []string{`--state "broken": want one of declared, discovered, ready, provisioning, installed, wiping, wiped`}},
		{name: "bad label", args: d.args([]string{"machines", "list", "-l", "rack"}), code: 2, errOut: []string{"want key=value"}},
		{name: "bad since", args: d.args([]string{"events", "--since", "yesterday"}), code: 2, errOut: []string{`--since "yesterday"`}},
		{name: "negative limit", args: d.args([]string{"events", "--limit", "-1"}), code: 2},
		{name: "limit not a number", args: d.args([]string{"events", "--limit", "ten"}), code: 2,
			errOut: []string{`provisiond events: --limit "ten": want a whole number`}},
		{name: "unknown flag", args: d.args([]string{"events", "--folow"}), code: 2,
			errOut: []string{"provisiond events: unknown flag --folow; did you mean --follow?\nRun 'provisiond events --help' for usage.\n"}},
		{name: "flag without its value", args: d.args([]string{"events", "--since"}), code: 2,
			errOut: []string{"provisiond events: --since needs a value"}},
	})
	if n := len(d.sent()); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
}

// machines bmc sets, shows and deletes a BMC set through the API; the
// delete's empty 204 is success, not "not JSON".
func TestMachinesBMC(t *testing.T) {
	d := newTestDaemon(t, func(c *boot.Config) {
		box, _, err := seal.LoadOrCreate(filepath.Join(t.TempDir(), "secret-key"))
		if err != nil {
			t.Fatal(err)
		}
		c.Secrets = box
	})
	pw := writeFile(t, "bmc-password", "s3cret\n")
	runCases(t, d, []cliCase{
		{name: "set", args: d.args([]string{"machines", "bmc", "node1"}, "--address", "redfish://10.0.0.11", "--username", "admin", "--password-file", pw),
			out: []string{"redfish://10.0.0.11"}, notOut: []string{"s3cret"}},
		{name: "show", args: d.args([]string{"machines", "bmc", "node1"}), notOut: []string{"s3cret"},
			out: []string{"address:     redfish://10.0.0.11\nsource:      api\ncredentials: set through the API, sealed in the daemon's database\n"}},
		{name: "set says so", args: d.args([]string{"machines", "bmc", "node1"}, "--address", "ipmi://10.0.0.12", "--username", "admin", "--password-file", pw),
			out: []string{"credentials: set through the API"}},
		{name: "bad address says invalid once", args: d.args([]string{"machines", "bmc", "node1"}, "--address", "foo://10.0.0.11", "--username", "admin", "--password-file", pw),
			code: 1, errOut: []string{`provisiond machines: bmc node1: 400 Bad Request: BMC address "foo://10.0.0.11": scheme must be ipmi:// or redfish://` + "\n"},
			check: func(t *testing.T, out string) {
				if out != "" {
					t.Errorf("stdout %q", out)
				}
			}},
		{name: "username without address", args: d.args([]string{"machines", "bmc", "node1"}, "--username", "admin"), code: 2,
			errOut: []string{"--username and --password-file go with --address"}},
		{name: "delete", args: d.args([]string{"machines", "bmc", "node1", "--delete"}), out: []string{"node1: BMC set through the API removed"}},
		{name: "gone", args: d.args([]string{"machines", "bmc", "node1"}), code: 1, errOut: []string{"no BMC"}},
	})
}

func TestMachinesReprovision(t *testing.T) {
	d := newTestDaemon(t)
	// Take node1 to installed through the real phone-home, so that the
	// reprovision is a visible change.
	if _, err := d.core.Installed(context.Background(), node1MAC, "", "", "", true); err != nil {
		t.Fatal(err)
	}
	runCases(t, d, []cliCase{
		{
			name: "shown installed first",
			args: d.args([]string{"machines", "show", "node1"}),
			out:  []string{"installed"},
		},
		{
			name: "reprovision by name",
			args: d.args([]string{"machines", "reprovision", "node1", "--reason", "disk swapped"}),
			check: func(t *testing.T, out string) {
				if out != "node1 ("+node1MAC+"): provisioning\nno BMC: the machine does the rest on its next network boot\n" {
					t.Errorf("stdout = %q", out)
				}
			},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 1 || sent[0].Method != http.MethodPost || sent[0].URL.Path != "/api/v1/machines/node1/reprovision" {
					t.Errorf("requests = %v", sent)
				}
			},
		},
		{
			name: "the event records the reason",
			args: d.args([]string{"events", "--machine", "node1"}),
			check: func(t *testing.T, out string) {
				row := rowOf(t, out, "reprovision")
				if len(row) < 6 || row[2] != node1MAC || row[3] != "reprovision" || !strings.HasSuffix(row[4], "api@127.0.0.1") ||
					strings.Join(row[5:], " ") != "installed -> provisioning: disk swapped" {
					t.Errorf("reprovision event row = %q", row)
				}
			},
		},
		{
			name: "reprovision json",
			args: d.args([]string{"machines", "reprovision", node1UUID, "-o", "json"}),
			check: func(t *testing.T, out string) {
				if v := decodeJSON[api.Machine](t, out); v.MAC != node1MAC || v.State != "provisioning" {
					t.Errorf("machine = %+v", v)
				}
			},
		},
		{
			name:   "reprovision a machine no Machine claims",
			args:   d.args([]string{"machines", "reprovision", strayMAC}),
			code:   1,
			errOut: []string{"provisiond machines: reprovision " + strayMAC + ": 409 Conflict: ", "no Machine in the profiles claims it"},
		},
		{
			name:   "reprovision an unknown machine",
			args:   d.args([]string{"machines", "reprovision", "nope"}),
			code:   1,
			errOut: []string{`reprovision nope: 404 Not Found: machine "nope": no such machine`},
		},
	})
}

func TestEventsCommand(t *testing.T) {
	d := newTestDaemon(t)
	// More events than a page holds below, so that paging is seen.
	for i := range 3 {
		if _, _, err := d.core.Reprovision(context.Background(), node1MAC, "test", "round "+string(rune('a'+i)), false); err != nil {
			t.Fatal(err)
		}
	}
	all, err := d.core.Events(context.Background(), store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 5 {
		t.Fatalf("only %d events to page through", len(all))
	}
	var node1Events int
	for _, e := range all {
		if e.MAC == node1MAC {
			node1Events++
		}
	}

	runCases(t, d, []cliCase{
		{
			name: "all events table",
			args: d.args([]string{"events"}),
			check: func(t *testing.T, out string) {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if h := strings.Join(strings.Fields(lines[0]), " "); h != "TIME SEQ MAC TYPE ACTOR MESSAGE" {
					t.Errorf("header = %q", h)
				}
				if len(lines) != len(all)+1 {
					t.Errorf("%d rows; want %d:\n%s", len(lines)-1, len(all), out)
				}
				// Newest first: round c, the last event, heads the table.
				if !strings.Contains(lines[1], "round c") || !strings.Contains(lines[len(lines)-1], fmt.Sprint(all[0].Seq)) {
					t.Errorf("not newest first:\n%s", out)
				}
				row := rowOf(t, out, "round c")
				if _, err := time.Parse(time.RFC3339, row[0]); err != nil {
					t.Errorf("time column %q: %v", row[0], err)
				}
				if row[2] != node1MAC || row[3] != "reprovision" || row[4] != "test" {
					t.Errorf("row = %q", row)
				}
			},
			requests: func(t *testing.T, sent []*http.Request) {
				if q := sent[0].URL.Query(); len(sent) != 1 || q.Get("limit") != "1000" || q.Get("order") != "newest" || q.Has("after") || q.Has("before") {
					t.Errorf("requests = %v; want one page of 1000, newest first", sent)
				}
			},
		},
		{
			name: "one machine's events as json",
			args: d.args([]string{"events", "--machine", "52-54-00-00-00-01", "--since", "1h", "-o", "json"}),
			check: func(t *testing.T, out string) {
				v := decodeJSON[struct {
					Events []store.Event `json:"events"`
				}](t, out)
				if len(v.Events) != node1Events {
					t.Fatalf("%d events; want %d", len(v.Events), node1Events)
				}
				for i, e := range v.Events {
					if e.MAC != node1MAC || (i > 0 && e.Seq >= v.Events[i-1].Seq) {
						t.Errorf("event %d = %+v; want node1's, newest first", i, e)
					}
				}
			},
			requests: func(t *testing.T, sent []*http.Request) {
				q := sent[0].URL.Query()
				if q.Get("machine") != "52-54-00-00-00-01" || q.Get("since") != "1h" {
					t.Errorf("query = %v", q)
				}
			},
		},
		{
			name:   "since a time in the future",
			args:   d.args([]string{"events", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}),
			errOut: []string{"no events"},
			check: func(t *testing.T, out string) {
				if out != "" {
					t.Errorf("stdout = %q", out)
				}
			},
		},
		{
			name: "limit",
			args: d.args([]string{"events", "--limit", "2", "-o", "json"}),
			check: func(t *testing.T, out string) {
				v := decodeJSON[struct {
					Events []store.Event `json:"events"`
				}](t, out)
				n := len(all)
				if len(v.Events) != 2 || v.Events[0].Seq != all[n-1].Seq || v.Events[1].Seq != all[n-2].Seq {
					t.Errorf("events = %+v; want the newest 2, newest first", v.Events)
				}
			},
			requests: func(t *testing.T, sent []*http.Request) {
				if q := sent[0].URL.Query(); len(sent) != 1 || q.Get("limit") != "2" || q.Get("order") != "newest" {
					t.Errorf("requests = %v; want one, for the newest 2", sent)
				}
			},
		},
		{
			name: "type",
			args: d.args([]string{"events", "--type", "reprovision", "--limit", "2", "-o", "json"}),
			check: func(t *testing.T, out string) {
				v := decodeJSON[struct {
					Events []store.Event `json:"events"`
				}](t, out)
				if len(v.Events) != 2 || !strings.Contains(v.Events[0].Message, "round c") || !strings.Contains(v.Events[1].Message, "round b") {
					t.Errorf("events = %+v; want the rounds c and b", v.Events)
				}
				for _, e := range v.Events {
					if e.Type != "reprovision" {
						t.Errorf("event %+v; want only reprovision events", e)
					}
				}
			},
			requests: func(t *testing.T, sent []*http.Request) {
				if q := sent[0].URL.Query(); len(sent) != 1 || q.Get("type") != "reprovision" {
					t.Errorf("requests = %v; want one with type=reprovision", sent)
				}
			},
		},
		{
			name:   "type nothing has",
			args:   d.args([]string{"events", "--type", "no-such-type"}),
			errOut: []string{"no events"},
		},
		{
			name:   "unknown machine",
			args:   d.args([]string{"events", "--machine", "nope"}),
			code:   1,
			errOut: []string{`provisiond events: 404 Not Found: machine "nope": no such machine`},
		},
	})

	// Paging back from the newest, against the same API with a small page.
	t.Run("newest pages", func(t *testing.T) {
		c, err := (&clientFlags{server: d.url, tokenFile: d.tokenFile, host: testHost}).client()
		if err != nil {
			t.Fatal(err)
		}
		n := len(all)
		// Paging the whole log back ends with a short page, or at seq 1.
		wholeLog := n/2 + 1
		if n%2 == 0 && all[0].Seq == 1 {
			wholeLog--
		}
		for _, tc := range []struct {
			name      string
			pageSize  int
			limit     int
			wantPages int
		}{
			{"all, in pages", 2, 0, wholeLog},
			{"all, one page", 1000, 0, 1},
			{"a limit within one page", 1000, 3, 1},
			{"a limit over pages", 2, 3, 2},
			{"a limit of whole pages", 2, 4, 2},
			{"a limit over the log", 2, n + 5, wholeLog},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d.reset()
				want := slices.Clone(all)
				slices.Reverse(want)
				if tc.limit > 0 && tc.limit < n {
					want = want[:tc.limit]
				}
				es, raw, err := fetchNewestEvents(c, url.Values{}, tc.limit, tc.pageSize)
				if err != nil {
					t.Fatal(err)
				}
				sent := checkPages(t, es, raw, want, d.sent(), tc.wantPages)
				for i, r := range sent {
					q := r.URL.Query()
					wantBefore := ""
					if i > 0 {
						wantBefore = strconv.FormatUint(es[i*tc.pageSize-1].Seq, 10)
					}
					if q.Get("order") != "newest" || q.Get("before") != wantBefore {
						t.Errorf("page %d query %v; want order=newest before=%s", i+1, q, wantBefore)
					}
				}
			})
		}
	})

	// A daemon that ignores order=newest and before= (one older than
	// them) lists oldest first: the client must not page on forever.
	t.Run("old daemon", func(t *testing.T) {
		old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"events": [{"seq": 1, "time": "2025-01-01T00:00:00Z", "type": "a"}, {"seq": 2, "time": "2025-01-01T00:00:00Z", "type": "b"}]}`)
		}))
		defer old.Close()
		c, err := (&clientFlags{server: old.URL, tokenFile: d.tokenFile, host: testHost}).client()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := fetchNewestEvents(c, url.Values{}, 0, 2); err == nil || !strings.Contains(err.Error(), "not paging on") {
			t.Errorf("fetchNewestEvents from an old daemon = %v; want it to stop", err)
		}
	})

	// Paging, against the same API with a small page.
	t.Run("pages", func(t *testing.T) {
		c, err := (&clientFlags{server: d.url, tokenFile: d.tokenFile, host: testHost}).client()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name      string
			pageSize  int
			after     int // index in all of the event to start after; -1: from the start
			wantPages int
		}{
			{"full pages then a short one", 2, -1, len(all)/2 + 1},
			{"after an event", 2, 1, (len(all)-2)/2 + 1},
			{"one page", 1000, -1, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d.reset()
				want, after := all, uint64(0)
				if tc.after >= 0 {
					want, after = all[tc.after+1:], all[tc.after].Seq
				}
				es, raw, err := fetchEvents(c, url.Values{}, after, tc.pageSize)
				if err != nil {
					t.Fatal(err)
				}
				sent := checkPages(t, es, raw, want, d.sent(), tc.wantPages)
				for i, r := range sent[1:] {
					if got, want := r.URL.Query().Get("after"), es[(i+1)*tc.pageSize-1].Seq; got != strconv.FormatUint(want, 10) {
						t.Errorf("page %d after=%s; want %d", i+2, got, want)
					}
				}
			})
		}
	})
}

func TestClientFlagsFromEnvironment(t *testing.T) {
	d := newTestDaemon(t)
	t.Setenv("PROVISIOND_SERVER", d.url)
	t.Setenv("PROVISIOND_TOKEN_FILE", d.tokenFile)
	t.Setenv("PROVISIOND_OUTPUT", "json")
	code, out, errOut := runCmd("machines", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	decodeJSON[map[string]any](t, out)
	// The command line beats the environment.
	code, out, errOut = runCmd("machines", "list", "-o", "table", "--token-file", filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(errOut, "read token file") {
		t.Fatalf("exit %d %q %q; want the flag's missing token file", code, out, errOut)
	}
}

func TestClientAge(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		ago  time.Duration
		want string
	}{
		{"now", 0, "0s ago"},
		{"seconds", 12*time.Second + 900*time.Millisecond, "12s ago"},
		{"just under a minute", 59 * time.Second, "59s ago"},
		{"minutes", 3*time.Minute + 59*time.Second, "3m ago"},
		{"hours", 2*time.Hour + 30*time.Minute, "2h ago"},
		{"a day", 24 * time.Hour, "1d ago"},
		{"days", 4*24*time.Hour + 23*time.Hour, "4d ago"},
		{"clock skew", -5 * time.Second, "0s ago"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ageString(now.Add(-tc.ago), now); got != tc.want {
				t.Errorf("ageString(now - %v) = %q; want %q", tc.ago, got, tc.want)
			}
		})
	}
	if got := ageString(time.Time{}, now); got != "-" {
		t.Errorf("ageString(zero) = %q; want -", got)
	}
}

func TestClientTableCell(t *testing.T) {
	for in, want := range map[string]string{"": "-", "node1": "node1", "a\tb\nc\x1b[31m": "a b c [31m"} {
		if got := tableCell(in); got != want {
			t.Errorf("tableCell(%q) = %q; want %q", in, got, want)
		}
	}
}

// A failed power operation's event carries the BMC's answer in its error
// field, not its message: the table shows both.
func TestEventTableShowsErrors(t *testing.T) {
	var b strings.Builder
	err := eventTable(&b, []store.Event{{Seq: 7, Type: "power", Actor: "alice", Message: "on failed", Fields: map[string]string{"error": "BMC unreachable"}}}, false)
	if err != nil || !strings.Contains(b.String(), "on failed: BMC unreachable") {
		t.Errorf("row %q (%v); want the message and the error", b.String(), err)
	}
}

// checkPages fails t unless es (with raw, its JSON) are want's events in
// order, fetched in wantPages requests; it returns the requests.
func checkPages(t *testing.T, es []store.Event, raw []json.RawMessage, want []store.Event, sent []*http.Request, wantPages int) []*http.Request {
	t.Helper()
	if len(es) != len(want) || len(raw) != len(want) {
		t.Fatalf("%d events; want %d", len(es), len(want))
	}
	for i, e := range es {
		if e.Seq != want[i].Seq {
			t.Errorf("event %d has seq %d; want %d", i, e.Seq, want[i].Seq)
		}
	}
	if len(sent) != wantPages {
		t.Fatalf("%d requests; want %d", len(sent), wantPages)
	}
	return sent
}

// A run reads the unit's settings once: the help text, the server and the
// token file all come from that one read.
func TestUnitSettingsReadOnce(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "provisiond.env")
	if err := os.WriteFile(env, []byte("PROVISIOND_HTTP_ADDR=0.0.0.0:9999\nPROVISIOND_API_TOKEN_FILE='/etc/provisiond/token'\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	c := &cli{host: hostPaths{envFile: env, dataDir: dir}}
	first := addClientFlags(newFlagSet(), c)
	if err := os.Remove(env); err != nil {
		t.Fatal(err)
	}
	for i, f := range []*clientFlags{first, addClientFlags(newFlagSet(), c)} {
		if got := f.serverURL(); got != "http://127.0.0.1:9999" {
			t.Errorf("flags %d: serverURL = %q; want http://127.0.0.1:9999", i, got)
		}
		if got := f.tokenFiles(); len(got) != 3 || got[0] != "/etc/provisiond/token" || got[1] != filepath.Join(dir, "api-token") {
			t.Errorf("flags %d: tokenFiles = %q; want the unit's --api-token-file first", i, got)
		}
	}
}

// Every request names the operator, for the event log, and carries the token.
func TestClientSendsActor(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Skip("no current user:", err)
	}
	var actors, auths []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		actors, auths = append(actors, r.Header.Get(api.ActorHeader)), append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write([]byte(`{"events":[]}`))
	}))
	defer srv.Close()
	c, err := (&clientFlags{server: srv.URL, tokenFile: writeFile(t, "token", testToken+"\n"), host: testHost}).client()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var v map[string]any
		if _, err := c.get("/events", nil, &v); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(actors, []string{u.Username, u.Username}) || !slices.Equal(auths, []string{"Bearer " + testToken, "Bearer " + testToken}) {
		t.Errorf("actors %q, authorization %q; want %s and the token on each request", actors, auths, u.Username)
	}
}
