package bmcsim

import (
	"context"
	"errors"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/bmc"
	"github.com/stmcginnis/gofish/common"
)

// These tests drive the simulator only through bmclib's gofish provider, as
// provisiond does, so they pin what bmclib v2.3.5 sends and makes of the
// answers.

const (
	rfUser     = "admin"
	rfPassword = "calvin"

	resetAction = "POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset"
)

// redfishClient returns a bmclib client for the BMC at addr that speaks only
// Redfish through the gofish provider.
func redfishClient(t *testing.T, addr, password string, opts ...bmclib.Option) *bmclib.Client {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	c := bmclib.NewClient(host, rfUser, password, append(opts, bmclib.WithRedfishPort(port))...)
	c.Registry.Drivers = c.Registry.For("gofish")
	if len(c.Registry.Drivers) != 1 {
		t.Fatalf("bmclib has %d gofish drivers, want 1", len(c.Registry.Drivers))
	}
	return c
}

// op bounds one bmclib call.
func op(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openRedfish opens c and closes it when the test ends.
func openRedfish(t *testing.T, c *bmclib.Client) {
	t.Helper()
	if err := c.Open(op(t)); err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
}

func TestRedfishOpenClose(t *testing.T) {
	rf, addr := StartRedfish(t, NewMemChassis(false), rfUser, rfPassword)
	c := redfishClient(t, addr, rfPassword)

	if err := c.Open(op(t)); err != nil {
		t.Fatalf("open: %v", err)
	}
	// Open reads the service root anonymously and logs in once; the
	// self-signed certificate passes because bmclib skips verification.
	want := map[string]int{
		"GET /redfish/v1/":                         1,
		"POST /redfish/v1/SessionService/Sessions": 1,
	}
	if got := rf.Requests(); !maps.Equal(got, want) {
		t.Errorf("requests on open: %v, want %v", got, want)
	}
	if got := rf.Sessions(); got != 1 {
		t.Errorf("%d sessions open, want 1", got)
	}

	if err := c.Close(op(t)); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := rf.Requests()["DELETE /redfish/v1/SessionService/Sessions/1"]; got != 1 {
		t.Errorf("close sent %d session DELETEs, want 1 (requests %v)", got, rf.Requests())
	}
	if got := rf.Sessions(); got != 0 {
		t.Errorf("%d sessions open after close, want 0", got)
	}
}

func TestRedfishGetPowerState(t *testing.T) {
	m := NewMemChassis(true)
	_, addr := StartRedfish(t, m, rfUser, rfPassword)
	c := redfishClient(t, addr, rfPassword)
	openRedfish(t, c)

	// bmclib hands back Redfish's PowerState verbatim, capitalised.
	state, err := c.GetPowerState(op(t))
	if err != nil || state != "On" {
		t.Fatalf("GetPowerState = %q, %v; want On", state, err)
	}
	if err := m.SetPower(false); err != nil {
		t.Fatal(err)
	}
	state, err = c.GetPowerState(op(t))
	if err != nil || state != "Off" {
		t.Fatalf("GetPowerState = %q, %v; want Off", state, err)
	}
}

func TestRedfishSetPowerState(t *testing.T) {
	m := NewMemChassis(false)
	rf, addr := StartRedfish(t, m, rfUser, rfPassword)
	c := redfishClient(t, addr, rfPassword)
	openRedfish(t, c)

	// One machine through a sequence of bmclib power verbs. bmclib maps
	// on/off/soft/reset/cycle to On/ForceOff/GracefulShutdown/PowerCycle/
	// ForceRestart, and sends nothing when on or off finds the machine there.
	steps := []struct {
		state   string
		wantErr string // substring of bmclib's error; "" for success
		wantOn  bool
		boots   int // boots recorded so far
		resets  int // Reset actions the step POSTs
	}{
		{state: "on", wantOn: true, boots: 1, resets: 1},
		{state: "on", wantOn: true, boots: 1},
		{state: "cycle", wantOn: true, boots: 2, resets: 1},
		{state: "reset", wantOn: true, boots: 3, resets: 1},
		{state: "off", wantOn: false, boots: 3, resets: 1},
		{state: "off", wantOn: false, boots: 3},
		{state: "reset", wantOn: true, boots: 4, resets: 1},
		// bmclib's SystemPowerOff returns ok=false after a successful
		// GracefulShutdown, so SetPowerState reports failure although the
		// machine went off: callers must read the power state back.
		{state: "soft", wantErr: "failed to set power state", wantOn: false, boots: 4, resets: 1},
		// bmclib refuses to cycle a machine that is off, without asking.
		{state: "cycle", wantErr: "not supported in present state", wantOn: false, boots: 4},
	}
	for i, s := range steps {
		before := rf.Requests()[resetAction]
		_, err := c.SetPowerState(op(t), s.state)
		switch {
		case s.wantErr == "" && err != nil:
			t.Fatalf("step %d %s: %v", i, s.state, err)
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Fatalf("step %d %s: error %v, want one containing %q", i, s.state, err, s.wantErr)
		}
		if on, _ := m.Power(); on != s.wantOn {
			t.Errorf("step %d %s: machine on = %v, want %v", i, s.state, on, s.wantOn)
		}
		if got := rf.Requests()[resetAction] - before; got != s.resets {
			t.Errorf("step %d %s: %d Reset actions, want %d", i, s.state, got, s.resets)
		}
		if got := len(m.Boots()); got != s.boots {
			t.Errorf("step %d %s: %d boots, want %d", i, s.state, got, s.boots)
		}
	}
	for i, b := range m.Boots() {
		if b != (Boot{Device: "disk"}) {
			t.Errorf("boot %d = %+v, want the firmware's disk default", i, b)
		}
	}
}

func TestRedfishBootOverride(t *testing.T) {
	m := NewMemChassis(false)
	rf, addr := StartRedfish(t, m, rfUser, rfPassword)
	c := redfishClient(t, addr, rfPassword)
	openRedfish(t, c)

	if _, err := c.SetBootDevice(op(t), "pxe", false, true); err != nil {
		t.Fatalf("SetBootDevice pxe: %v", err)
	}
	if b, _ := m.BootOverride(); b != (Boot{Device: "pxe", Once: true, EFI: true}) {
		t.Errorf("chassis override = %+v, want one-time UEFI pxe", b)
	}
	got, err := c.GetBootDeviceOverride(op(t))
	want := bmc.BootDeviceOverride{Device: bmc.BootDeviceTypePXE, IsEFIBoot: true, IsPersistent: false}
	if err != nil || got != want {
		t.Fatalf("GetBootDeviceOverride = %+v, %v; want %+v", got, err, want)
	}

	// The next power-on consumes the one-time override.
	if _, err := c.SetPowerState(op(t), "on"); err != nil {
		t.Fatalf("power on: %v", err)
	}
	if boots := m.Boots(); len(boots) != 1 || boots[0] != (Boot{Device: "pxe", Once: true, EFI: true}) {
		t.Errorf("boots = %+v, want one UEFI pxe boot", boots)
	}
	got, err = c.GetBootDeviceOverride(op(t))
	if err != nil || got.Device != bmc.BootDeviceTypeNone || got.IsPersistent {
		t.Fatalf("override after boot = %+v, %v; want none", got, err)
	}

	// A persistent override survives boots.
	if _, err := c.SetBootDevice(op(t), "disk", true, false); err != nil {
		t.Fatalf("SetBootDevice disk: %v", err)
	}
	for range 2 {
		if _, err := c.SetPowerState(op(t), "cycle"); err != nil {
			t.Fatalf("cycle: %v", err)
		}
	}
	persistentDisk := Boot{Device: "disk", Once: false, EFI: false}
	if boots := m.Boots(); len(boots) != 3 || boots[1] != persistentDisk || boots[2] != persistentDisk {
		t.Errorf("boots = %+v, want pxe then two persistent legacy disk boots", boots)
	}
	got, err = c.GetBootDeviceOverride(op(t))
	want = bmc.BootDeviceOverride{Device: bmc.BootDeviceTypeDisk, IsEFIBoot: false, IsPersistent: true}
	if err != nil || got != want {
		t.Fatalf("GetBootDeviceOverride = %+v, %v; want %+v", got, err, want)
	}
	// Each PATCH carried the system's ETag as If-Match, which the simulator
	// checks; one PATCH per SetBootDevice means none was refused.
	if n := rf.Requests()["PATCH /redfish/v1/Systems/1"]; n != 2 {
		t.Errorf("%d PATCHes of the system, want 2", n)
	}
}

func TestRedfishBootDeviceRefused(t *testing.T) {
	m := NewMemChassis(false)
	rf, addr := StartRedfish(t, m, rfUser, rfPassword)
	c := redfishClient(t, addr, rfPassword)
	openRedfish(t, c)

	// Floppy is a target bmclib knows but the BMC does not offer.
	_, err := c.SetBootDevice(op(t), "floppy", false, false)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "PropertyValueNotInList") {
		t.Fatalf("SetBootDevice floppy: %v, want a 400 PropertyValueNotInList", err)
	}
	if b, _ := m.BootOverride(); b.Device != "none" {
		t.Errorf("chassis override = %+v, want none", b)
	}
	// bmclib retries a refused PATCH once with only target and enabled.
	if n := rf.Requests()["PATCH /redfish/v1/Systems/1"]; n != 2 {
		t.Errorf("%d PATCHes of the system, want 2", n)
	}
}

func TestRedfishWrongPassword(t *testing.T) {
	m := NewMemChassis(true)
	rf, addr := StartRedfish(t, m, rfUser, rfPassword)
	c := redfishClient(t, addr, "wrong")

	err := c.Open(op(t))
	if err == nil {
		c.Close(op(t))
		t.Fatal("open with a wrong password succeeded")
	}
	var rfErr *common.Error
	if !errors.As(err, &rfErr) || rfErr.HTTPReturnedStatusCode != 401 {
		t.Errorf("open error %v (%T) carries no Redfish 401", err, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "401") || !strings.Contains(msg, "Invalid username or password") {
		t.Errorf("open error %q does not say the credentials were refused", msg)
	}
	if n := rf.FailedLogins(); n != 1 {
		t.Errorf("%d failed logins, want 1: bmclib must not retry", n)
	}
	if n := rf.Requests()["POST /redfish/v1/SessionService/Sessions"]; n != 1 {
		t.Errorf("%d login requests, want 1", n)
	}
	if n := rf.Sessions(); n != 0 {
		t.Errorf("%d sessions open, want 0", n)
	}
}

func TestRedfishBasicAuth(t *testing.T) {
	m := NewMemChassis(true)
	rf, addr := StartRedfish(t, m, rfUser, rfPassword)

	c := redfishClient(t, addr, rfPassword, bmclib.WithRedfishUseBasicAuth(true))
	if err := c.Open(op(t)); err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := c.SetPowerState(op(t), "off"); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if on, _ := m.Power(); on {
		t.Error("machine still on after power off")
	}
	if err := c.Close(op(t)); err != nil {
		t.Fatalf("close: %v", err)
	}
	req := rf.Requests()
	if req["POST /redfish/v1/SessionService/Sessions"] != 0 || rf.Sessions() != 0 {
		t.Errorf("basic auth opened a session: requests %v", req)
	}

	// With Basic auth bmclib's Open only reads the anonymous service root, so
	// wrong credentials surface at the first real request.
	bad := redfishClient(t, addr, "wrong", bmclib.WithRedfishUseBasicAuth(true))
	openRedfish(t, bad)
	_, err := bad.GetPowerState(op(t))
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("GetPowerState with a wrong password: %v, want a 401", err)
	}
	if n := rf.FailedLogins(); n != 1 {
		t.Errorf("%d failed logins, want 1", n)
	}
}
