package boot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/seal"
	"github.com/provisiond/provisiond/internal/store"
)

// fakeBMC is a Controller that records what it was asked; machines whose BMC
// host is in fail get that error. The real bmclib path is tested in
// internal/bmc and test/e2e against real BMCs.
type fakeBMC struct {
	mu    sync.Mutex
	calls []string // "host user:password PXENext EFI action"
	power map[string]string
	fail  map[string]error
}

func (f *fakeBMC) Status(_ context.Context, ep bmc.Endpoint) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ep.Host+" status")
	if err := f.fail[ep.Host]; err != nil {
		return "", err
	}
	return cmp.Or(f.power[ep.Host], bmc.StateOff), nil
}

func (f *fakeBMC) Do(_ context.Context, ep bmc.Endpoint, req bmc.Request) (bmc.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s:%s pxe=%v efi=%v %s", ep.Host, ep.User, ep.Password, req.PXENext, req.EFI, req.Action))
	if err := f.fail[ep.Host]; err != nil {
		return bmc.Outcome{}, err
	}
	before := cmp.Or(f.power[ep.Host], bmc.StateOff)
	done := req.Action
	if done == bmc.Cycle && before == bmc.StateOff {
		done = bmc.On
	}
	f.power[ep.Host] = map[bmc.Action]string{bmc.Off: bmc.StateOff, bmc.Soft: bmc.StateOff}[done]
	if f.power[ep.Host] == "" {
		f.power[ep.Host] = bmc.StateOn
	}
	return bmc.Outcome{Before: before, Done: done}, nil
}

func (f *fakeBMC) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

const powerProfiles = `kind: Profile
name: install
boot: {kernel: /assets/k}
config: {butane: install.bu}
once: true
---
kind: Profile
name: wipe
boot: {kernel: /assets/wipe-k}
config: {template: wipe.sh}
---
kind: Machine
name: n1
match: {mac: "52:54:00:00:00:01"}
labels: {rack: r1}
profile: install
bmc: {address: "ipmi://10.0.0.1:6230", credentials: "env:PROVISIOND_TEST_N1_BMC"}
---
kind: Machine
name: n2
match: {mac: "52:54:00:00:00:02"}
labels: {rack: r1}
profile: install
bmc: {address: "redfish://10.0.0.2", credentials: "env:PROVISIOND_TEST_UNSET"}
---
kind: Machine
name: n3
match: {mac: "52:54:00:00:00:03"}
labels: {rack: r2}
profile: install
`

// powerSetup writes powerProfiles (n1's BMC credentials in the
// environment) and returns their directory and a sealer for API-set BMCs.
func powerSetup(t *testing.T) (string, *seal.Box) {
	t.Helper()
	t.Setenv("PROVISIOND_TEST_N1_BMC", "admin:s3cret-n1")
	dir := t.TempDir()
	write(t, dir, "p.yaml", powerProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	write(t, dir, "wipe.sh", "#!/bin/sh\nwipefs -a /dev/sda # {{ .machine.name }}\ncurl -X POST -H 'Authorization: Bearer {{ .provisiond.token }}' {{ .provisiond.installed_url }}\n")
	box, err := seal.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return dir, box
}

func powerCore(t *testing.T) (*Core, store.Store, *fakeBMC) {
	t.Helper()
	dir, box := powerSetup(t)
	f := &fakeBMC{power: map[string]string{}, fail: map[string]error{}}
	c, db := newCore(t, dir, Config{BMC: f, Secrets: box, WipeProfile: "wipe"})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	return c, db, f
}

// A Machine in Git that never booted can be powered on by name: that is how it
// first boots. The inventory gains nothing until it does.
func TestPowerNeverSeenMachine(t *testing.T) {
	c, db, f := powerCore(t)
	ctx := context.Background()
	r := c.Power(ctx, "n1", "on", "alice/api@127.0.0.1")
	if r.Err != nil || r.MAC != "52:54:00:00:00:01" || r.Machine != "n1" || r.State != bmc.StateOn || r.BMC != "ipmi://10.0.0.1:6230" {
		t.Fatalf("Power(n1, on) = %+v", r)
	}
	if got := f.takeCalls(); len(got) != 1 || got[0] != "10.0.0.1 admin:s3cret-n1 pxe=false efi=false on" {
		t.Fatalf("BMC calls %q", got)
	}
	if _, err := db.Machine(ctx, "52:54:00:00:00:01"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a power-on put the machine in the inventory: %v", err)
	}
	evs, _ := db.Events(ctx, store.EventQuery{MAC: "52:54:00:00:00:01"})
	if len(evs) != 1 || evs[0].Type != EventPower || evs[0].Actor != "alice/api@127.0.0.1" || evs[0].Fields["result"] != "ok" || evs[0].Fields["done"] != "on" {
		t.Fatalf("events %+v; want one power event saying who asked and what was done", evs)
	}
	if byName, err := c.Events(ctx, store.EventQuery{MAC: "n1"}); err != nil || len(byName) != 1 {
		t.Fatalf("events by the name of a machine that never booted: %d, %v", len(byName), err)
	}
	if st := c.PowerStatus(ctx, "52-54-00-00-00-01"); st.Err != nil || st.State != bmc.StateOn {
		t.Fatalf("PowerStatus = %+v", st)
	}
}

// A machine that booted before its Machine was added to Git is in the
// inventory without the name; naming it finds it through Git's MAC, so its
// power state is recorded.
func TestPowerByNameOfMachineInventoriedUnnamed(t *testing.T) {
	c, db, _ := powerCore(t)
	ctx := context.Background()
	if _, _, err := db.Seen(ctx, store.Machine{MAC: "52:54:00:00:00:01", Arch: "efi-x86_64"}, nil); err != nil {
		t.Fatal(err)
	}
	if r := c.Power(ctx, "n1", "on", "test"); r.Err != nil || r.MAC != "52:54:00:00:00:01" {
		t.Fatalf("Power(n1) = %+v", r)
	}
	if m, _ := db.Machine(ctx, "52:54:00:00:00:01"); m.Power != bmc.StateOn {
		t.Fatalf("inventory power = %q; want on: the inventoried machine was not found by its Machine's name", m.Power)
	}
}

func TestPowerErrors(t *testing.T) {
	c, db, f := powerCore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		id, action string
		want       error
	}{
		{"n3", "on", ErrNoBMC},
		{"nope", "on", ErrNotFound},
		{"n1", "explode", ErrInvalid},
		{"n2", "on", ErrBMCConfig}, // its env:VAR is not set
	} {
		if r := c.Power(ctx, tc.id, tc.action, "test"); !errors.Is(r.Err, tc.want) {
			t.Errorf("Power(%s, %s) err = %v, want %v", tc.id, tc.action, r.Err, tc.want)
		}
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("BMC called for requests that should fail before it: %q", calls)
	}
	// An unusable BMC configuration is worth an event, by who asked, saying
	// the error once; having no BMC is not.
	evs, _ := db.Events(ctx, store.EventQuery{})
	if len(evs) != 1 || evs[0].MAC != "52:54:00:00:00:02" || evs[0].Actor != "test" || !strings.Contains(evs[0].Fields["error"], "PROVISIOND_TEST_UNSET") {
		t.Fatalf("events %+v; want one by test naming the unset variable", evs)
	}
	if e := evs[0]; strings.Contains(e.Message, "PROVISIOND_TEST_UNSET") || e.Message != "on failed" {
		t.Errorf("event message %q; want %q, the error in its field only", e.Message, "on failed")
	}
}

// CheckBMC says why power actions cannot work, without a BMC call or an
// event; MachineBMC still describes a BMC whose credentials do not resolve.
func TestCheckBMC(t *testing.T) {
	c, db, f := powerCore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		id      string
		address string
		want    error // nil: usable
	}{
		{"n1", "ipmi://10.0.0.1:6230", nil},
		{"n2", "redfish://10.0.0.2", ErrBMCConfig},
		{"n3", "", ErrNoBMC},
		{"nope", "", ErrNotFound},
	} {
		info, err := c.CheckBMC(ctx, tc.id)
		if info.Address != tc.address || !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("CheckBMC(%s) = %+v, %v; want %s, %v", tc.id, info, err, tc.address, tc.want)
		}
		if tc.want == ErrBMCConfig && (!strings.Contains(err.Error(), "PROVISIOND_TEST_UNSET") || strings.Contains(err.Error(), "s3cret")) {
			t.Errorf("CheckBMC(%s) error %q; want the unset variable named, no secret", tc.id, err)
		}
	}
	if info, err := c.MachineBMC(ctx, "n2"); err != nil || info.Address != "redfish://10.0.0.2" || info.Credentials != "env:PROVISIOND_TEST_UNSET" {
		t.Errorf("MachineBMC(n2) = %+v, %v; want the BMC described", info, err)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("CheckBMC called the BMC: %q", calls)
	}
	if evs, _ := db.Events(ctx, store.EventQuery{}); len(evs) != 0 {
		t.Errorf("CheckBMC wrote events: %+v", evs)
	}
}

// Reprovision with a BMC: PXE next, in the firmware mode the machine last
// booted with, then a cycle, which powers on a machine that is off.
func TestReprovisionDrivesBMC(t *testing.T) {
	c, db, f := powerCore(t)
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", Arch: "efi-x86_64"}
	script(t, c, n1)
	if _, err := c.Installed(ctx, "n1", "", "", "", true); err != nil {
		t.Fatal(err)
	}
	m, r, err := c.Reprovision(ctx, "n1", "bob/api@10.0.0.9", "new disk", true)
	if err != nil || m.State != store.StateProvisioning || r == nil || r.Err != nil || r.Outcome.Done != bmc.On {
		t.Fatalf("Reprovision = %+v, %+v, %v", m, r, err)
	}
	if got := f.takeCalls(); len(got) != 1 || got[0] != "10.0.0.1 admin:s3cret-n1 pxe=true efi=true cycle" {
		t.Fatalf("BMC calls %q; want PXE next (EFI) and a cycle", got)
	}
	if m, _ := db.Machine(ctx, "52:54:00:00:00:01"); m.Power != bmc.StateOn {
		t.Errorf("inventory power = %q, want on", m.Power)
	}
	// Without a BMC the lifecycle change alone happens; with power=false too.
	if _, r, err := c.Reprovision(ctx, "n1", "test", "", false); err != nil || r != nil || len(f.takeCalls()) != 0 {
		t.Fatalf("Reprovision(power=false) = %+v, %v", r, err)
	}
	script(t, c, Request{MAC: "52:54:00:00:00:03"})
	if _, r, err := c.Reprovision(ctx, "n3", "test", "", true); err != nil || r != nil {
		t.Fatalf("Reprovision of a machine without BMC = %+v, %v", r, err)
	}
	// A BMC failure does not undo the lifecycle change: the event says what failed.
	f.fail["10.0.0.1"] = fmt.Errorf("ipmi://10.0.0.1:6230: %w within 3s", bmc.ErrTimeout)
	m, r, err = c.Reprovision(ctx, "n1", "test", "", true)
	if err != nil || m.State != store.StateProvisioning || r == nil || !errors.Is(r.Err, bmc.ErrTimeout) {
		t.Fatalf("Reprovision with a hung BMC = %+v, %+v, %v", m, r, err)
	}
	evs, _ := db.Events(ctx, store.EventQuery{MAC: "52:54:00:00:00:01"})
	last := evs[len(evs)-1]
	if last.Type != EventPower || last.Fields["result"] != "error" || !strings.Contains(last.Fields["error"], "did not answer in time") {
		t.Fatalf("last event %+v; want the BMC timeout", last)
	}
}

// Credentials set through the API are sealed, win over Git's, and appear in
// no event and no answer.
func TestSetBMC(t *testing.T) {
	c, db, f := powerCore(t)
	ctx := context.Background()
	info, err := c.SetBMC(ctx, "n1", "redfish://10.9.9.9:8443", "root", "hunter2-api", "test")
	if err != nil || info != (BMCInfo{Address: "redfish://10.9.9.9:8443", Source: SourceAPI}) {
		t.Fatalf("SetBMC = %+v, %v", info, err)
	}
	blob, err := db.Secret(ctx, "52:54:00:00:00:01", "bmc")
	if err != nil || strings.Contains(string(blob), "hunter2") {
		t.Fatalf("stored blob %q, %v; want it sealed", blob, err)
	}
	if r := c.Power(ctx, "n1", "off", "test"); r.Err != nil || r.BMC != "redfish://10.9.9.9:8443" {
		t.Fatalf("Power after SetBMC = %+v", r)
	}
	if got := f.takeCalls(); len(got) != 1 || !strings.HasPrefix(got[0], "10.9.9.9 root:hunter2-api ") {
		t.Fatalf("BMC calls %q; want the API-set BMC", got)
	}
	if info, _ := c.MachineBMC(ctx, "n1"); info.Source != SourceAPI {
		t.Errorf("MachineBMC = %+v", info)
	}
	for _, bad := range [][3]string{{"http://x", "u", "p"}, {"ipmi://x", "", "p"}, {"ipmi://u:p@x", "u", "p"}} {
		if _, err := c.SetBMC(ctx, "n1", bad[0], bad[1], bad[2], "test"); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetBMC(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
	if err := c.DeleteBMC(ctx, "n1", "test"); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.MachineBMC(ctx, "n1"); info.Source != SourceGit || info.Credentials != "env:PROVISIOND_TEST_N1_BMC" {
		t.Errorf("MachineBMC after delete = %+v; want Git's again", info)
	}
	evs, _ := db.Events(ctx, store.EventQuery{})
	for _, e := range evs {
		if s := fmt.Sprint(e); strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") {
			t.Errorf("event leaks a password: %s", s)
		}
	}
}

// Wipe: the machine boots the wipe profile with its own session, gets the
// wipe profile's config, and its phone-home makes it wiped.
func TestWipeLifecycle(t *testing.T) {
	c, db, f := powerCore(t)
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", Arch: "bios"}
	script(t, c, n1)
	m, r, err := c.Wipe(ctx, "n1", "test", "decommission", true)
	if err != nil || m.State != store.StateWiping || r == nil || r.Err != nil {
		t.Fatalf("Wipe = %+v, %+v, %v", m, r, err)
	}
	if got := f.takeCalls(); len(got) != 1 || !strings.Contains(got[0], "pxe=true efi=false cycle") {
		t.Fatalf("BMC calls %q; want PXE next (legacy) and a cycle", got)
	}
	s, tok := script(t, c, n1)
	if tok == "" || !strings.Contains(s, "/assets/wipe-k") {
		t.Fatalf("a wiping machine got:\n%s\nwant the wipe profile's script", s)
	}
	if state(t, db, n1.MAC) != store.StateWiping {
		t.Fatal("booting the wipe profile changed the state")
	}
	withTok := n1
	withTok.Token = tok
	if _, _, err := c.Config(ctx, withTok, true); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("/ignition for a wiping machine: %v; want ErrNoConfig (the wipe profile is a template)", err)
	}
	_, body, err := c.Config(ctx, withTok, false)
	if err != nil || !strings.Contains(string(body), "wipefs -a /dev/sda # n1") || !strings.Contains(string(body), tok) {
		t.Fatalf("/config for a wiping machine = %q, %v", body, err)
	}
	if _, err := c.Installed(ctx, "n1", tok, "", "", false); err != nil {
		t.Fatal(err)
	}
	if state(t, db, n1.MAC) != store.StateWiped {
		t.Fatalf("state after the wipe's phone-home = %s, want wiped", state(t, db, n1.MAC))
	}
	if s, _ := script(t, c, n1); !strings.Contains(s, "/assets/k") {
		t.Fatalf("a wiped machine booting again got:\n%s\nwant its own profile", s)
	}

	c.wipe = ""
	if _, _, err := c.Wipe(ctx, "n1", "test", "", true); !errors.Is(err, ErrNoWipeProfile) {
		t.Fatalf("Wipe without --wipe-profile: %v", err)
	}
}

func TestWipeProfileMustExist(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", good)
	c, _ := newCore(t, dir, Config{WipeProfile: "nope"})
	if err := c.Reload(); err == nil || !strings.Contains(err.Error(), `--wipe-profile "nope"`) {
		t.Fatalf("Reload = %v; want the missing wipe profile named", err)
	}
}

func TestBulkPower(t *testing.T) {
	c, _, f := powerCore(t)
	ctx := context.Background()
	f.fail["10.0.0.1"] = fmt.Errorf("ipmi://10.0.0.1:6230: %w: RAKP 2 HMAC is invalid", bmc.ErrAuth)
	res, err := c.BulkPower(ctx, BulkRequest{Action: "cycle", Selector: map[string]string{"rack": "r1"}, IDs: []string{"n3", "52:54:00:00:00:03", "n1"}, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]error{}
	for _, r := range res {
		got[r.ID] = r.Err
	}
	if len(res) != 3 || res[0].ID != "n3" || !errors.Is(got["n3"], ErrNoBMC) || !errors.Is(got["n1"], bmc.ErrAuth) || !errors.Is(got["n2"], ErrBMCConfig) {
		t.Fatalf("results %+v", res)
	}
	for _, bad := range []BulkRequest{{Action: "cycle"}, {Action: "dance", IDs: []string{"n1"}}} {
		if _, err := c.BulkPower(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("BulkPower(%+v) err = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := c.BulkPower(ctx, BulkRequest{Action: "on", Selector: map[string]string{"rack": "r9"}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty selection err = %v, want ErrNotFound", err)
	}
}
