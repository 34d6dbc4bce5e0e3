package bmc

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
	"github.com/provisiond/provisiond/test/bmcsim"
)

// redfishEndpoint starts a Redfish BMC simulator in front of c.
func redfishEndpoint(t *testing.T, c bmcsim.Chassis, password string) (Endpoint, *bmcsim.Redfish) {
	t.Helper()
	rf, addr := bmcsim.StartRedfish(t, c, "admin", "right-password")
	host, port, _ := net.SplitHostPort(addr)
	return Endpoint{Protocol: Redfish, Host: host, Port: port, User: "admin", Password: password}, rf
}

// The operations against a Redfish BMC that bmclib's gofish provider drives.
func TestRedfish(t *testing.T) {
	chassis := bmcsim.NewMemChassis(false)
	ep, rf := redfishEndpoint(t, chassis, "right-password")
	c := New(Options{Timeout: 10 * time.Second})
	ctx := context.Background()

	if st, err := c.Status(ctx, ep); err != nil || st != StateOff {
		t.Fatalf("Status = %q, %v; want off", st, err)
	}
	// Reprovision's request: PXE next (EFI), then cycle a machine that is off.
	out, err := c.Do(ctx, ep, Request{PXENext: true, EFI: true, Action: Cycle})
	if err != nil || out.Before != StateOff || out.Done != On || out.BootReadback != "pxe (once, efi)" {
		t.Fatalf("Do(pxe+cycle) = %+v, %v", out, err)
	}
	if boots := chassis.Boots(); len(boots) != 1 || boots[0] != (bmcsim.Boot{Device: "pxe", Once: true, EFI: true}) {
		t.Fatalf("boots %+v; want one PXE EFI boot", boots)
	}
	if ov, _ := chassis.BootOverride(); ov.Device != "none" {
		t.Errorf("override after the boot = %+v; want it consumed", ov)
	}
	for _, tc := range []struct {
		act        Action
		before     string
		done       Action
		on         bool
		extraBoots int
	}{
		{Cycle, StateOn, Cycle, true, 1},
		{On, StateOn, "", true, 0}, // already on: nothing sent
		{Soft, StateOn, Soft, false, 0},
		{Off, StateOff, "", false, 0},
		{Reset, StateOff, Reset, true, 1},
		{Off, StateOn, Off, false, 0},
	} {
		n := len(chassis.Boots())
		out, err := c.Do(ctx, ep, Request{Action: tc.act})
		if err != nil || out.Before != tc.before || out.Done != tc.done {
			t.Fatalf("Do(%s) = %+v, %v; want before %s, done %q", tc.act, out, err, tc.before, tc.done)
		}
		if on, _ := chassis.Power(); on != tc.on || len(chassis.Boots()) != n+tc.extraBoots {
			t.Fatalf("after %s: on=%v boots=%d; want on=%v boots=%d", tc.act, on, len(chassis.Boots()), tc.on, n+tc.extraBoots)
		}
	}
	if rf.Sessions() != 0 {
		t.Errorf("%d sessions left open; every call must log out", rf.Sessions())
	}
}

// A wrong password is one failed login and a clear error, never a retry storm
// that would lock the account.
func TestWrongPassword(t *testing.T) {
	ep, rf := redfishEndpoint(t, bmcsim.NewMemChassis(true), "wrong-password")
	_, err := New(Options{Timeout: 10 * time.Second}).Do(context.Background(), ep, Request{Action: Off})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v; want ErrAuth", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("the error shows the password: %v", err)
	}
	if n := rf.FailedLogins(); n != 1 {
		t.Fatalf("%d failed logins; want exactly 1", n)
	}
	t.Logf("wrong password: %v", err)
}

// hangUDP receives datagrams and never answers, like an IPMI BMC that hangs.
func hangUDP(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// closedUDP is a UDP address nothing listens on.
func closedUDP(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// Unreachable BMCs fail within the timeout with a clear error.
func TestUnreachableBMCs(t *testing.T) {
	const timeout = 2 * time.Second
	c := New(Options{Timeout: timeout})
	cases := []struct {
		name  string
		proto Protocol
		addr  string
		want  error
	}{
		{"redfish accepts and never answers", Redfish, testutil.SilentAddr(t), ErrTimeout},
		{"redfish refuses", Redfish, testutil.FreeAddr(t), ErrUnreachable},
	}
	if _, err := exec.LookPath("ipmitool"); err == nil {
		cases = append(cases,
			struct {
				name  string
				proto Protocol
				addr  string
				want  error
			}{"ipmi never answers", IPMI, hangUDP(t), ErrTimeout},
			struct {
				name  string
				proto Protocol
				addr  string
				want  error
			}{"ipmi port closed", IPMI, closedUDP(t), nil},
		)
	} else {
		t.Log("ipmitool not installed: IPMI cases skipped")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host, port, _ := net.SplitHostPort(tc.addr)
			ep := Endpoint{Protocol: tc.proto, Host: host, Port: port, User: "admin", Password: "pw"}
			start := time.Now()
			_, err := c.Do(context.Background(), ep, Request{Action: Cycle})
			took := time.Since(start)
			if err == nil {
				t.Fatal("no error from an unreachable BMC")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v; want %v", err, tc.want)
			}
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnreachable) {
				t.Errorf("err = %v; want a timeout or unreachable error", err)
			}
			if took > timeout+closeTimeout {
				t.Errorf("took %s; the operation timeout is %s", took, timeout)
			}
			t.Logf("%s after %s", err, took.Round(time.Millisecond))
		})
	}
}

// A hung BMC holds its own lock and one slot, not the others'.
func TestHungBMCBlocksNoOther(t *testing.T) {
	c := New(Options{Timeout: 1500 * time.Millisecond, Parallel: 2})
	host, port, _ := net.SplitHostPort(testutil.SilentAddr(t))
	hung := Endpoint{Protocol: Redfish, Host: host, Port: port, User: "a", Password: "b"}
	done := make(chan error, 2)
	for range 2 { // two calls to the same hung BMC: one slot, the second queues on its lock
		go func() { _, err := c.Status(context.Background(), hung); done <- err }()
	}
	time.Sleep(200 * time.Millisecond)
	ep, _ := redfishEndpoint(t, bmcsim.NewMemChassis(true), "right-password")
	start := time.Now()
	if st, err := c.Status(context.Background(), ep); err != nil || st != StateOn {
		t.Fatalf("Status of a healthy BMC beside a hung one = %q, %v", st, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a healthy BMC waited %s behind a hung one", took)
	}
	for range 2 {
		if err := <-done; !errors.Is(err, ErrTimeout) {
			t.Errorf("hung BMC: %v, want ErrTimeout", err)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]string{
		"ipmi://10.0.0.1":          "ipmi://10.0.0.1",
		"ipmi://10.0.0.1:6230":     "ipmi://10.0.0.1:6230",
		"ipmi://bmc1?cipher=17":    "ipmi://bmc1?cipher=17",
		"redfish://[fd00::1]:8443": "redfish://[fd00::1]:8443",
		"redfish://fd00::1":        "", // ambiguous without brackets
		"http://10.0.0.1":          "",
		"ipmi://admin:pw@10.0.0.1": "",
		"ipmi://":                  "",
		"redfish://x?cipher=3":     "",
		"ipmi://x/path":            "",
	} {
		ep, err := ParseAddress(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParseAddress(%q) = %v; want an error", in, ep)
			}
			continue
		}
		if err != nil || ep.Address() != want {
			t.Errorf("ParseAddress(%q) = %q, %v; want %q", in, ep.Address(), err, want)
		}
	}
	ep := Endpoint{Protocol: IPMI, Host: "h", User: "u", Password: "hunter2"}
	for _, s := range []string{ep.String(), ep.LogValue().String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("formatted endpoint shows the password: %s", s)
		}
	}
}

func TestCredentials(t *testing.T) {
	t.Setenv("BMC_OK", "admin:pa:ss\n")
	t.Setenv("BMC_BAD", "nocolon")
	dir := t.TempDir()
	for ref, want := range map[string]string{
		"env:BMC_OK":              "admin/pa:ss",
		"env:BMC_BAD":             "",
		"env:BMC_MISSING":         "",
		"file:" + dir + "/absent": "",
		"admin:pw":                "",
	} {
		u, p, err := Credentials(ref)
		if want == "" {
			if err == nil {
				t.Errorf("Credentials(%q) succeeded", ref)
			} else if strings.Contains(err.Error(), "nocolon") {
				t.Errorf("Credentials(%q) error shows the secret: %v", ref, err)
			}
			continue
		}
		if err != nil || u+"/"+p != want {
			t.Errorf("Credentials(%q) = %q, %q, %v", ref, u, p, err)
		}
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		a      Action
		before string
		want   Action
	}{
		{Cycle, StateOff, On}, {Cycle, StateOn, Cycle}, {Cycle, StateUnknown, Cycle},
		{On, StateOn, ""}, {On, StateOff, On}, {Off, StateOff, ""}, {Soft, StateOff, ""},
		{Off, StateOn, Off}, {Reset, StateOff, Reset},
	} {
		if got := plan(tc.a, tc.before); got != tc.want {
			t.Errorf("plan(%s, %s) = %q, want %q", tc.a, tc.before, got, tc.want)
		}
	}
}

func TestNormalizeState(t *testing.T) {
	for in, want := range map[string]string{
		"Chassis Power is on\n": StateOn, "Chassis Power is off\n": StateOff, "On": StateOn, "Off": StateOff,
		"PoweringOn": StateOn, "PoweringOff": StateOff, "": StateUnknown, "Paused": StateUnknown,
	} {
		if got := normalizeState(in); got != want {
			t.Errorf("normalizeState(%q) = %q, want %q", in, got, want)
		}
	}
}
