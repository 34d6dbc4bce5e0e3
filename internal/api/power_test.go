package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/seal"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// fakeController is a bmc.Controller that keeps each BMC's power state and
// records what it was asked; a BMC whose host is in fail answers that error.
type fakeController struct {
	mu    sync.Mutex
	calls []string // "host user:password pxe=… efi=… action"
	power map[string]string
	fail  map[string]error
}

func newFakeController() *fakeController {
	return &fakeController{power: map[string]string{}, fail: map[string]error{}}
}

func (f *fakeController) Status(_ context.Context, ep bmc.Endpoint) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s:%s status", ep.Host, ep.User, ep.Password))
	if err := f.fail[ep.Host]; err != nil {
		return "", err
	}
	return f.state(ep.Host), nil
}

func (f *fakeController) Do(_ context.Context, ep bmc.Endpoint, req bmc.Request) (bmc.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s:%s pxe=%v efi=%v %s", ep.Host, ep.User, ep.Password, req.PXENext, req.EFI, req.Action))
	if err := f.fail[ep.Host]; err != nil {
		return bmc.Outcome{}, err
	}
	out := bmc.Outcome{Before: f.state(ep.Host), Done: req.Action}
	switch {
	case req.Action == bmc.Cycle && out.Before == bmc.StateOff:
		out.Done = bmc.On // as the real client does
	case req.Action == bmc.On && out.Before == bmc.StateOn,
		(req.Action == bmc.Off || req.Action == bmc.Soft) && out.Before == bmc.StateOff:
		out.Done = ""
	}
	switch out.Done {
	case bmc.On, bmc.Cycle, bmc.Reset:
		f.power[ep.Host] = bmc.StateOn
	case bmc.Off, bmc.Soft:
		f.power[ep.Host] = bmc.StateOff
	}
	if req.PXENext && ep.Protocol == bmc.Redfish {
		out.BootReadback = "pxe (once)"
	}
	return out, nil
}

func (f *fakeController) state(host string) string {
	if s := f.power[host]; s != "" {
		return s
	}
	return bmc.StateOff
}

func (f *fakeController) setFail(host string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[host] = err
}

// takeCalls returns the calls since the last takeCalls, sorted.
func (f *fakeController) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	slices.Sort(c)
	return c
}

const (
	n1MAC     = "52:54:00:00:00:01"
	n1Secret  = "s3cret-n1-from-env"
	n2Secret  = "s3cret-n2-from-env"
	apiSecret = "hunter2-set-by-api"
)

// powerProfiles: n1 and n2 (rack r1) have BMCs with credentials in the
// environment, n3 (rack r2) has none, n4's credentials variable is unset.
const powerProfiles = `kind: Profile
name: install
boot: {kernel: /assets/k}
config: {template: cfg.txt}
once: true
---
kind: Profile
name: wipe
boot: {kernel: /assets/wipe-k}
config: {template: wipe.txt}
---
kind: Machine
name: n1
match: {mac: "52:54:00:00:00:01"}
labels: {rack: r1, role: db}
profile: install
bmc: {address: "ipmi://10.0.0.1:6230", credentials: "env:PROVISIOND_API_TEST_N1_BMC"}
---
kind: Machine
name: n2
match: {mac: "52:54:00:00:00:02"}
labels: {rack: r1}
profile: install
bmc: {address: "redfish://10.0.0.2", credentials: "env:PROVISIOND_API_TEST_N2_BMC"}
---
kind: Machine
name: n3
match: {mac: "52:54:00:00:00:03"}
labels: {rack: r2}
profile: install
---
kind: Machine
name: n4
match: {mac: "52:54:00:00:00:04"}
labels: {rack: r3}
profile: install
bmc: {address: "ipmi://10.0.0.4", credentials: "env:PROVISIOND_API_TEST_UNSET"}
`

// newPowerFixture is the API over a core with a fake BMC controller, a
// secret box and a wipe profile.
func newPowerFixture(t *testing.T) (*fixture, *fakeController) {
	t.Helper()
	t.Setenv("PROVISIOND_API_TEST_N1_BMC", "admin:"+n1Secret)
	t.Setenv("PROVISIOND_API_TEST_N2_BMC", "root:"+n2Secret)
	box, err := seal.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeController()
	f := newFixtureWith(t, boot.Config{BMC: fc, Secrets: box, WipeProfile: "wipe"}, map[string]string{
		"p.yaml":   powerProfiles,
		"wipe.txt": "#!/bin/sh\nwipefs -a /dev/sda\ntoken={{ .provisiond.token }}\n",
	})
	return f, fc
}

// mustCall is call that fails the test on an unexpected status.
func (f *fixture) mustCall(t *testing.T, method, path, body string, code int) string {
	t.Helper()
	got, out := f.call(t, method, path, apiToken, body)
	if got != code {
		t.Fatalf("%s %s = %d, want %d\n%s", method, path, got, code, out)
	}
	return out
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, body)
	}
	return v
}

// noSecret fails the test if body carries a BMC password.
func noSecret(t *testing.T, what, body string) {
	t.Helper()
	for _, s := range []string{n1Secret, n2Secret, apiSecret} {
		if strings.Contains(body, s) {
			t.Errorf("%s leaks a BMC password:\n%s", what, body)
		}
	}
}

// events returns the whole event log.
func (f *fixture) events(t *testing.T) []store.Event {
	t.Helper()
	body := f.mustCall(t, "GET", "/events", "", 200)
	noSecret(t, "GET /events", body)
	return decode[EventList](t, body).Events
}

// lastEvent returns the last event of type typ.
func (f *fixture) lastEvent(t *testing.T, typ string) store.Event {
	t.Helper()
	evs := f.events(t)
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i]
		}
	}
	t.Fatalf("no %s event in %+v", typ, evs)
	return store.Event{}
}

// Status and an action on a Machine whose BMC is in Git, its credentials in
// the environment; the power state read lands in the inventory.
func TestPowerStatusAndAction(t *testing.T) {
	f, fc := newPowerFixture(t)
	f.boot(t, boot.Request{MAC: n1MAC, Arch: "efi-x86_64"})

	if st := decode[PowerState](t, f.mustCall(t, "GET", "/machines/n1/power", "", 200)); st.State != bmc.StateOff {
		t.Fatalf("status = %+v, want off", st)
	}
	if got := fc.takeCalls(); !slices.Equal(got, []string{"10.0.0.1 admin:" + n1Secret + " status"}) {
		t.Fatalf("BMC calls %q; want one status with the credentials from the environment", got)
	}

	// cycle on a machine that is off powers it on.
	body := f.mustCall(t, "POST", "/machines/n1/power", `{"action":"cycle"}`, 200)
	noSecret(t, "POST power", body)
	r := decode[PowerResult](t, body)
	want := PowerResult{ID: "n1", MAC: n1MAC, Machine: "n1", Action: "cycle", OK: true, State: "on", Before: "off", Done: "on", BMC: "ipmi://10.0.0.1:6230", TookMS: r.TookMS}
	if r != want {
		t.Fatalf("POST power = %+v\nwant %+v", r, want)
	}
	if got := fc.takeCalls(); !slices.Equal(got, []string{"10.0.0.1 admin:" + n1Secret + " pxe=false efi=false cycle"}) {
		t.Fatalf("BMC calls %q", got)
	}
	// on towards on: nothing done, the state is still reported.
	if r := decode[PowerResult](t, f.mustCall(t, "POST", "/machines/52-54-00-00-00-01/power", `{"action":"on"}`, 200)); !r.OK || r.Done != "" || r.State != "on" || r.ID != "52-54-00-00-00-01" {
		t.Fatalf("on of a machine that is on = %+v", r)
	}
	if st := decode[PowerState](t, f.mustCall(t, "GET", "/machines/n1/power", "", 200)); st.State != bmc.StateOn {
		t.Fatalf("status after cycle = %+v, want on", st)
	}
	m := decode[Machine](t, f.mustCall(t, "GET", "/machines/n1", "", 200))
	if m.Power != bmc.StateOn || m.PowerAt.IsZero() {
		t.Fatalf("machine power = %q at %v; want on, with a time", m.Power, m.PowerAt)
	}
	if ms := decode[MachineList](t, f.mustCall(t, "GET", "/machines?state=provisioning", "", 200)); len(ms.Machines) != 1 || ms.Machines[0].Power != bmc.StateOn {
		t.Fatalf("list = %+v", ms)
	}
	e := f.lastEvent(t, boot.EventPower)
	if e.MAC != n1MAC || e.Actor != "api@127.0.0.1" || e.Fields["action"] != "on" || e.Fields["result"] != "ok" || e.Fields["bmc"] != "ipmi://10.0.0.1:6230" {
		t.Fatalf("last power event %+v", e)
	}
}

// A Machine in Git that never booted can be powered on by name.
func TestPowerNeverBootedMachine(t *testing.T) {
	f, fc := newPowerFixture(t)
	r := decode[PowerResult](t, f.mustCall(t, "POST", "/machines/n2/power", `{"action":"on"}`, 200))
	if !r.OK || r.MAC != "52:54:00:00:00:02" || r.Machine != "n2" || r.Done != "on" || r.BMC != "redfish://10.0.0.2" {
		t.Fatalf("power on of a never-booted machine = %+v", r)
	}
	if got := fc.takeCalls(); !slices.Equal(got, []string{"10.0.0.2 root:" + n2Secret + " pxe=false efi=false on"}) {
		t.Fatalf("BMC calls %q", got)
	}
	// It is still only declared: listed from Git, with no record.
	m := decode[Machine](t, f.mustCall(t, "GET", "/machines/n2", "", 200))
	if m.State != store.StateDeclared || m.MAC != "52:54:00:00:00:02" || !m.LastSeen.IsZero() || m.Provisioning != nil {
		t.Fatalf("GET /machines/n2 = %+v, want it declared, never seen", m)
	}
}

func TestPowerErrors(t *testing.T) {
	f, fc := newPowerFixture(t)
	authErr := fmt.Errorf("redfish://10.0.0.2: %w: 401 Unauthorized", bmc.ErrAuth)
	timeoutErr := fmt.Errorf("redfish://10.0.0.2: %w within 30s", bmc.ErrTimeout)
	for _, tc := range []struct {
		name, method, path, body string
		fail                     error // of n2's BMC
		code                     int
		contains                 []string
	}{
		{name: "no token", method: "POST", path: "/machines/n1/power", body: `{"action":"on"}`, code: 401},
		{name: "status, no BMC", method: "GET", path: "/machines/n3/power", code: 409, contains: []string{"the machine has no BMC"}},
		{name: "action, no BMC", method: "POST", path: "/machines/n3/power", body: `{"action":"on"}`, code: 409, contains: []string{"the machine has no BMC"}},
		{name: "credentials unset", method: "POST", path: "/machines/n4/power", body: `{"action":"on"}`, code: 409, contains: []string{"BMC configuration unusable", "PROVISIOND_API_TEST_UNSET"}},
		{name: "bad action", method: "POST", path: "/machines/n1/power", body: `{"action":"explode"}`, code: 400, contains: []string{`power action \"explode\"`}},
		{name: "no action", method: "POST", path: "/machines/n1/power", code: 400},
		{name: "unknown field", method: "POST", path: "/machines/n1/power", body: `{"acton":"on"}`, code: 400, contains: []string{"unknown field"}},
		{name: "status, unknown machine", method: "GET", path: "/machines/ghost/power", code: 404, contains: []string{"no such machine"}},
		{name: "action, unknown MAC", method: "POST", path: "/machines/52:54:00:00:00:77/power", body: `{"action":"on"}`, code: 404},
		{name: "status, BMC refuses", method: "GET", path: "/machines/n2/power", fail: authErr, code: 502,
			contains: []string{`"ok": false`, `"action": "status"`, `"bmc": "redfish://10.0.0.2"`, "BMC refused the credentials"}},
		{name: "action, BMC refuses", method: "POST", path: "/machines/n2/power", body: `{"action":"off"}`, fail: authErr, code: 502,
			contains: []string{`"ok": false`, `"action": "off"`, `"machine": "n2"`, "BMC refused the credentials"}},
		{name: "status, BMC hangs", method: "GET", path: "/machines/n2/power", fail: timeoutErr, code: 504,
			contains: []string{`"ok": false`, "BMC did not answer in time"}},
		{name: "action, BMC hangs", method: "POST", path: "/machines/n2/power", body: `{"action":"reset"}`, fail: timeoutErr, code: 504,
			contains: []string{`"ok": false`, `"action": "reset"`, "BMC did not answer in time"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc.setFail("10.0.0.2", tc.fail)
			token := apiToken
			if tc.name == "no token" {
				token = ""
			}
			code, body := f.call(t, tc.method, tc.path, token, tc.body)
			if code != tc.code {
				t.Fatalf("%s %s = %d, want %d\n%s", tc.method, tc.path, code, tc.code, body)
			}
			for _, c := range tc.contains {
				if !strings.Contains(body, c) {
					t.Errorf("body lacks %q:\n%s", c, body)
				}
			}
			noSecret(t, tc.name, body)
		})
	}
	// Only the BMC failures reached the BMC.
	for _, c := range fc.takeCalls() {
		if !strings.HasPrefix(c, "10.0.0.2 ") {
			t.Errorf("BMC called for a request that should fail before it: %q", c)
		}
	}
	// The failures the BMC gave are events, saying what failed.
	e := f.lastEvent(t, boot.EventPower)
	if e.MAC != "52:54:00:00:00:02" || e.Fields["result"] != "error" || !strings.Contains(e.Fields["error"], "did not answer in time") {
		t.Errorf("last power event %+v; want the timeout", e)
	}
}

// BMC credentials set through the API win over Git's, are used, and are in
// no answer and no event.
func TestBMCCredentials(t *testing.T) {
	f, fc := newPowerFixture(t)

	info := decode[boot.BMCInfo](t, f.mustCall(t, "GET", "/machines/n1/bmc", "", 200))
	if info != (boot.BMCInfo{Address: "ipmi://10.0.0.1:6230", Source: boot.SourceGit, Credentials: "env:PROVISIOND_API_TEST_N1_BMC"}) {
		t.Fatalf("GET bmc = %+v", info)
	}
	// Credentials that do not resolve still show where the BMC is.
	if info := decode[boot.BMCInfo](t, f.mustCall(t, "GET", "/machines/n4/bmc", "", 200)); info.Address != "ipmi://10.0.0.4" {
		t.Fatalf("GET bmc of n4 = %+v", info)
	}
	f.mustCall(t, "GET", "/machines/n3/bmc", "", 409)
	f.mustCall(t, "GET", "/machines/ghost/bmc", "", 404)

	put := `{"address":"redfish://10.9.9.9:8443","username":"operator","password":"` + apiSecret + `"}`
	body := f.mustCall(t, "PUT", "/machines/n1/bmc", put, 200)
	noSecret(t, "PUT bmc", body)
	if info := decode[boot.BMCInfo](t, body); info != (boot.BMCInfo{Address: "redfish://10.9.9.9:8443", Source: boot.SourceAPI}) {
		t.Fatalf("PUT bmc = %+v", info)
	}
	body = f.mustCall(t, "GET", "/machines/n1/bmc", "", 200)
	noSecret(t, "GET bmc", body)
	if info := decode[boot.BMCInfo](t, body); info != (boot.BMCInfo{Address: "redfish://10.9.9.9:8443", Source: boot.SourceAPI}) {
		t.Fatalf("GET bmc after PUT = %+v", info)
	}
	if r := decode[PowerResult](t, f.mustCall(t, "POST", "/machines/n1/power", `{"action":"on"}`, 200)); r.BMC != "redfish://10.9.9.9:8443" {
		t.Fatalf("power after PUT = %+v; want the API's BMC", r)
	}
	if got := fc.takeCalls(); !slices.Equal(got, []string{"10.9.9.9 operator:" + apiSecret + " pxe=false efi=false on"}) {
		t.Fatalf("BMC calls %q; want the API-set BMC and credentials", got)
	}
	// A Machine without a BMC in Git gets one by PUT.
	f.mustCall(t, "PUT", "/machines/n3/bmc", `{"address":"ipmi://10.0.0.3","username":"u","password":"`+apiSecret+`"}`, 200)
	f.mustCall(t, "GET", "/machines/n3/power", "", 200)

	for _, bad := range []string{
		`{"address":"http://10.9.9.9","username":"u","password":"p"}`,
		`{"address":"ipmi://u:p@10.9.9.9","username":"u","password":"p"}`,
		`{"address":"ipmi://10.9.9.9","username":"u"}`,
		`{"address":"ipmi://10.9.9.9","user":"u","password":"p"}`,
	} {
		if code, body := f.call(t, "PUT", "/machines/n1/bmc", apiToken, bad); code != 400 {
			t.Errorf("PUT bmc %s = %d, want 400\n%s", bad, code, body)
		}
	}
	f.mustCall(t, "PUT", "/machines/ghost/bmc", put, 404)

	f.mustCall(t, "DELETE", "/machines/n1/bmc", "", 204)
	body = f.mustCall(t, "GET", "/machines/n1/bmc", "", 200)
	if info := decode[boot.BMCInfo](t, body); info.Source != boot.SourceGit || info.Credentials != "env:PROVISIOND_API_TEST_N1_BMC" {
		t.Fatalf("GET bmc after DELETE = %+v; want Git's again", info)
	}
	noSecret(t, "GET bmc after DELETE", body)
	f.mustCall(t, "DELETE", "/machines/n1/bmc", "", 404)
	f.mustCall(t, "DELETE", "/machines/ghost/bmc", "", 404)

	var bmcEvents int
	for _, e := range f.events(t) { // events checks for passwords
		if e.Type == boot.EventBMC {
			bmcEvents++
		}
	}
	if bmcEvents != 3 {
		t.Errorf("%d bmc events, want 3 (two set, one removed)", bmcEvents)
	}
}

// Reprovision network-boots the machine through its BMC unless power is
// false; the lifecycle change stands whatever the BMC says.
func TestReprovisionWithPower(t *testing.T) {
	f, fc := newPowerFixture(t)
	f.boot(t, boot.Request{MAC: n1MAC, Arch: "efi-x86_64"})
	f.mustCall(t, "POST", "/machines/n1/installed", "", 200)

	body := f.mustCall(t, "POST", "/machines/n1/reprovision", `{"reason":"new disk"}`, 200)
	noSecret(t, "reprovision", body)
	res := decode[SendBackResult](t, body)
	if res.State != store.StateProvisioning || res.MAC != n1MAC || res.BMCResult == nil {
		t.Fatalf("reprovision = %+v", res)
	}
	if p := *res.BMCResult; !p.OK || p.Action != "reprovision" || p.ID != "n1" || p.Before != "off" || p.Done != "on" || p.State != "on" || p.BMC != "ipmi://10.0.0.1:6230" {
		t.Fatalf("reprovision power = %+v; want a cycle that powered the machine on", p)
	}
	if got := fc.takeCalls(); !slices.Equal(got, []string{"10.0.0.1 admin:" + n1Secret + " pxe=true efi=true cycle"}) {
		t.Fatalf("BMC calls %q; want PXE next (EFI) and a cycle", got)
	}

	// power false: the lifecycle change alone, and no power in the answer.
	body = f.mustCall(t, "POST", "/machines/n1/reprovision", `{"reason":"again","power":false}`, 200)
	if v := decode[map[string]any](t, body); v["bmc_result"] != nil || v["state"] != "provisioning" {
		t.Fatalf("reprovision without power = %s", body)
	}
	if got := fc.takeCalls(); len(got) != 0 {
		t.Fatalf("BMC called with power false: %q", got)
	}

	// A machine without a BMC: no power either.
	f.boot(t, boot.Request{MAC: "52:54:00:00:00:03"})
	if v := decode[map[string]any](t, f.mustCall(t, "POST", "/machines/n3/reprovision", "", 200)); v["bmc_result"] != nil {
		t.Fatalf("reprovision of a machine without BMC = %v", v)
	}

	// The BMC fails: still 200, the failure in power.error.
	fc.setFail("10.0.0.1", fmt.Errorf("ipmi://10.0.0.1:6230: %w", bmc.ErrUnreachable))
	res = decode[SendBackResult](t, f.mustCall(t, "POST", "/machines/n1/reprovision", "", 200))
	if res.State != store.StateProvisioning || res.BMCResult == nil || res.BMCResult.OK || !strings.Contains(res.BMCResult.Error, "BMC unreachable") {
		t.Fatalf("reprovision with a failing BMC = %+v %+v", res, res.BMCResult)
	}
	e := f.lastEvent(t, boot.EventReprovision)
	if e.Actor != "api@127.0.0.1" {
		t.Errorf("reprovision event actor %q", e.Actor)
	}
}

// Wipe, end to end: the machine is sent to wiping and network-booted, boots
// the wipe profile, and its phone-home makes it wiped.
func TestWipe(t *testing.T) {
	f, fc := newPowerFixture(t)
	n2 := boot.Request{MAC: "52:54:00:00:00:02", Arch: "bios"}
	f.boot(t, n2)

	res := decode[SendBackResult](t, f.mustCall(t, "POST", "/machines/n2/wipe", `{"reason":"decommission"}`, 200))
	if res.State != store.StateWiping || res.BMCResult == nil || !res.BMCResult.OK || res.BMCResult.Action != "wipe" || res.BMCResult.Boot != "pxe (once)" {
		t.Fatalf("wipe = %+v %+v", res, res.BMCResult)
	}
	if got := fc.takeCalls(); !slices.Equal(got, []string{"10.0.0.2 root:" + n2Secret + " pxe=true efi=false cycle"}) {
		t.Fatalf("BMC calls %q; want PXE next (legacy) and a cycle", got)
	}
	if e := f.lastEvent(t, boot.EventWipe); e.Message != "provisioning -> wiping: decommission" {
		t.Errorf("wipe event %+v", e)
	}
	s, err := f.core.Script(context.Background(), n2)
	if err != nil || !strings.Contains(s, "/assets/wipe-k") {
		t.Fatalf("a wiping machine got %v:\n%s\nwant the wipe profile", err, s)
	}
	tok := tokenRE.FindStringSubmatch(s)
	if tok == nil {
		t.Fatalf("no token in %s", s)
	}
	m := decode[Machine](t, f.mustCall(t, "GET", "/machines/n2", "", 200))
	if m.State != store.StateWiping || m.Provisioning == nil || m.Provisioning.Profile != "wipe" {
		t.Fatalf("machine = %+v %+v", m, m.Provisioning)
	}
	code, body := f.call(t, "POST", "/machines/n2/installed", tok[1], `{"message":"wiped"}`)
	if code != 200 || decode[Machine](t, body).State != store.StateWiped {
		t.Fatalf("phone-home after wipe = %d\n%s", code, body)
	}
	f.mustCall(t, "POST", "/machines/ghost/wipe", "", 404)
}

// POST /power over a label selector: one result per machine, each failing
// on its own.
func TestBulkPower(t *testing.T) {
	f, fc := newPowerFixture(t)
	fc.setFail("10.0.0.2", fmt.Errorf("redfish://10.0.0.2: %w", bmc.ErrAuth))

	body := f.mustCall(t, "POST", "/power", `{"action":"cycle","selector":{"rack":"r1"}}`, 200)
	noSecret(t, "bulk", body)
	res := decode[BulkResult](t, body)
	if len(res.Results) != 2 || res.OK != 1 || res.Failed != 1 {
		t.Fatalf("bulk = %+v; want n1 ok and n2 failed", res)
	}
	if r := res.Results[0]; r.ID != "n1" || !r.OK || r.Done != "on" || r.MAC != n1MAC {
		t.Errorf("n1: %+v", r)
	}
	if r := res.Results[1]; r.ID != "n2" || r.OK || !strings.Contains(r.Error, "BMC refused the credentials") || r.BMC != "redfish://10.0.0.2" {
		t.Errorf("n2: %+v", r)
	}
	if got := fc.takeCalls(); len(got) != 2 {
		t.Errorf("BMC calls %q; want one per machine", got)
	}

	// Named machines first, then the selected; each once; failures are per machine.
	res = decode[BulkResult](t, f.mustCall(t, "POST", "/power", `{"action":"status","machines":["n3","n1","ghost"],"selector":{"rack":"r1","role":"db"}}`, 200))
	var ids []string
	for _, r := range res.Results {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"n3", "n1", "ghost"}) || res.OK != 1 || res.Failed != 2 {
		t.Fatalf("bulk status = %+v", res)
	}
	if r := res.Results[0]; !strings.Contains(r.Error, "no BMC") {
		t.Errorf("n3: %+v", r)
	}
	if r := res.Results[1]; !r.OK || r.State != "on" || r.Action != "status" {
		t.Errorf("n1: %+v", r)
	}
	if r := res.Results[2]; !strings.Contains(r.Error, "no such machine") {
		t.Errorf("ghost: %+v", r)
	}

	for _, tc := range []struct {
		body     string
		code     int
		contains string
	}{
		{`{"action":"off","selector":{}}`, 400, "empty selector"},
		{`{"action":"off"}`, 400, "empty selector"},
		{``, 400, `power action \"\": want on, off`},
		{`{"action":"dance","selector":{"rack":"r1"}}`, 400, `power action \"dance\"`},
		{`{"action":"off","selector":{"rack":"r9"}}`, 404, "no such machine"},
		{`{"action":"off","selectr":{"rack":"r1"}}`, 400, "unknown field"},
	} {
		code, body := f.call(t, "POST", "/power", apiToken, tc.body)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("POST /power %s = %d, want %d with %q\n%s", tc.body, code, tc.code, tc.contains, body)
		}
	}
	if got := fc.takeCalls(); len(got) != 1 {
		t.Errorf("BMC calls %q; want only n1's status", got)
	}
}

// Before any profile set has loaded, a bulk action by selector is a 503
// that says so, not a store outage.
func TestBulkPowerNotLoaded(t *testing.T) {
	core := boot.New(boot.Config{ProfilesDir: t.TempDir(), AdvertiseURL: base, Store: memstore.New(store.Options{})})
	f := serveAPI(t, Config{Backend: core, Token: apiToken})
	code, body := f.call(t, "POST", "/power", apiToken, `{"action":"off","selector":{"rack":"r1"}}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, boot.ErrNotLoaded.Error()) {
		t.Errorf("POST /power before any profiles loaded = %d %s; want 503 %q", code, body, boot.ErrNotLoaded)
	}
}

// Bulk reprovision through the selector: the machines that booted go back to
// provisioning and are network-booted.
func TestBulkReprovision(t *testing.T) {
	f, fc := newPowerFixture(t)
	f.boot(t, boot.Request{MAC: n1MAC})
	res := decode[BulkResult](t, f.mustCall(t, "POST", "/power", `{"action":"reprovision","selector":{"rack":"r1"},"reason":"rack refresh"}`, 200))
	// n2 never booted: it cannot be reprovisioned.
	if len(res.Results) != 2 || res.OK != 1 || res.Failed != 1 || !res.Results[0].OK || res.Results[0].Action != "reprovision" ||
		!strings.Contains(res.Results[1].Error, "n2 was never seen") {
		t.Fatalf("bulk reprovision = %+v", res)
	}
	if got := fc.takeCalls(); !slices.Equal(got, []string{"10.0.0.1 admin:" + n1Secret + " pxe=true efi=false cycle"}) {
		t.Fatalf("BMC calls %q", got)
	}
	if e := f.lastEvent(t, boot.EventReprovision); !strings.HasSuffix(e.Message, ": rack refresh") || e.MAC != n1MAC {
		t.Errorf("reprovision event %+v", e)
	}
}

// The caller's self-declared name prefixes the actor; a name that is not a
// plain word is ignored.
func TestActorHeader(t *testing.T) {
	f, _ := newPowerFixture(t)
	for _, tc := range []struct{ name, want string }{
		{"alice", "alice/api@127.0.0.1"},
		{"a.b_c-9", "a.b_c-9/api@127.0.0.1"},
		{"", "api@127.0.0.1"},
		{"alice smith", "api@127.0.0.1"},
		{"al\tice", "api@127.0.0.1"},
		{"alice/root", "api@127.0.0.1"},
		{"root@10.0.0.1", "api@127.0.0.1"},
		{"ålice", "api@127.0.0.1"},
		{strings.Repeat("a", 33), "api@127.0.0.1"},
		{strings.Repeat("a", 32), strings.Repeat("a", 32) + "/api@127.0.0.1"},
	} {
		t.Run(fmt.Sprintf("%q", tc.name), func(t *testing.T) {
			h := http.Header{}
			if tc.name != "" {
				h.Set(ActorHeader, tc.name)
			}
			if code, body := f.callWith(t, "POST", "/machines/n1/power", apiToken, `{"action":"on"}`, h); code != 200 {
				t.Fatalf("POST power = %d\n%s", code, body)
			}
			if e := f.lastEvent(t, boot.EventPower); e.Actor != tc.want {
				t.Errorf("actor %q, want %q", e.Actor, tc.want)
			}
		})
	}
	// The other routes that change something record it too.
	h := http.Header{ActorHeader: {"bob"}}
	f.callWith(t, "PUT", "/machines/n1/bmc", apiToken, `{"address":"ipmi://10.0.0.9","username":"u","password":"`+apiSecret+`"}`, h)
	if e := f.lastEvent(t, boot.EventBMC); e.Actor != "bob/api@127.0.0.1" {
		t.Errorf("bmc event actor %q", e.Actor)
	}
	f.boot(t, boot.Request{MAC: n1MAC})
	f.callWith(t, "POST", "/machines/n1/reprovision", apiToken, `{"power":false}`, h)
	if e := f.lastEvent(t, boot.EventReprovision); e.Actor != "bob/api@127.0.0.1" {
		t.Errorf("reprovision event actor %q", e.Actor)
	}
}

// A reprovision that another identical one made needless says so, as a
// success: the machine was network-booted, once.
func TestPowerJSONDoneBy(t *testing.T) {
	got := powerJSON(boot.PowerResult{ID: "n1", Action: "reprovision", DoneBy: "alice/api@10.0.0.5",
		Outcome: bmc.Outcome{Before: bmc.StateOn, Done: bmc.Cycle}, State: bmc.StateOn})
	if !got.OK || got.DoneBy != "alice/api@10.0.0.5" || got.Done != "cycle" || !strings.Contains(got.Note, "not cycled again") || got.Error != "" {
		t.Fatalf("powerJSON = %+v", got)
	}
}
