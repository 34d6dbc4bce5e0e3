package bmcsim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"

	"github.com/provisiond/provisiond/internal/testutil"
)

// sleeper is a machine that runs until killed: a shell with a child, so
// powering off must kill the process group, not just the leader.
func sleeper(string) []string { return []string{"sh", "-c", "sleep 600 & wait"} }

func writeScript(t *testing.T, start func(string) []string) (dir, path string) {
	t.Helper()
	testutil.RequireTools(t, testutil.Tool{Command: "setsid", Package: "util-linux"}, testutil.Tool{Command: "flock", Package: "util-linux"})
	dir = t.TempDir()
	path, err := WriteChassisScript(dir, start)
	if err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// machinePID returns the pid the script in dir recorded for the machine.
func machinePID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "machine.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// groupMembers returns how many live (not zombie) processes are in the
// process group pgid.
func groupMembers(t *testing.T, pgid int) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

func wantBoots(t *testing.T, dir string, want ...string) {
	t.Helper()
	got, err := ReadBoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("boots = %q, want %q", got, want)
	}
}

func wantOverride(t *testing.T, c Chassis, want Boot) {
	t.Helper()
	got, err := c.BootOverride()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("boot override = %+v, want %+v", got, want)
	}
}

func wantPower(t *testing.T, c Chassis, want bool) {
	t.Helper()
	on, err := c.Power()
	if err != nil {
		t.Fatal(err)
	}
	if on != want {
		t.Fatalf("power on = %v, want %v", on, want)
	}
}

func TestScriptChassis(t *testing.T) {
	dir, path := writeScript(t, func(dev string) []string {
		if dev == "cdrom" {
			return nil
		}
		return sleeper(dev)
	})
	c := ScriptChassis{Path: path}
	t.Cleanup(func() { _ = c.SetPower(false) })

	wantPower(t, c, false)
	wantOverride(t, c, Boot{Device: "none", Once: true})
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, false) // reset leaves a powered-off machine off

	pxe := Boot{Device: "pxe", Once: true, EFI: true}
	if err := c.SetBootOverride(pxe); err != nil {
		t.Fatal(err)
	}
	wantOverride(t, c, pxe)
	if err := c.SetBootOverride(Boot{Device: "cdrom", Once: true}); err == nil {
		t.Fatal("cdrom override accepted, but the machine has no cdrom command")
	} else {
		t.Logf("cdrom override refused: %v", err)
	}

	began := time.Now()
	if err := c.SetPower(true); err != nil {
		t.Fatal(err)
	}
	t.Logf("power on: %v", time.Since(began))
	wantPower(t, c, true)
	wantBoots(t, dir, "pxe")
	wantOverride(t, c, Boot{Device: "none", Once: true}) // consumed
	first := machinePID(t, dir)
	if err := c.SetPower(true); err != nil { // already on: no restart
		t.Fatal(err)
	}
	wantBoots(t, dir, "pxe")

	disk := Boot{Device: "disk"} // persistent
	if err := c.SetBootOverride(disk); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	wantBoots(t, dir, "pxe", "disk")
	wantOverride(t, c, disk) // persistent: kept
	if n := groupMembers(t, first); n != 0 {
		t.Fatalf("reset left %d processes of the first start", n)
	}
	second := machinePID(t, dir)
	if n := groupMembers(t, second); n != 2 {
		t.Fatalf("machine has %d live processes, want 2 (sh and sleep)", n)
	}

	began = time.Now()
	if err := c.SetPower(false); err != nil {
		t.Fatal(err)
	}
	t.Logf("power off: %v", time.Since(began))
	wantPower(t, c, false)
	if n := groupMembers(t, second); n != 0 {
		t.Fatalf("power off left %d processes", n)
	}
	if err := c.SetBootOverride(Boot{Device: "none"}); err != nil {
		t.Fatal(err)
	}
	wantOverride(t, c, Boot{Device: "none", Once: true})

	calls, err := ReadCalls(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 || calls[0] != "0x20 get power" {
		t.Fatalf("calls log starts %q", calls)
	}
}

// ipmitoolLogger returns an ipmitool that logs each run's arguments to the
// returned file, so a test can count how often bmclib runs it.
func ipmitoolLogger(t *testing.T) (path, log string) {
	t.Helper()
	real, err := exec.LookPath("ipmitool")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, log = filepath.Join(dir, "ipmitool"), filepath.Join(dir, "runs.log")
	// bmclib runs ipmitool with no environment but IPMITOOL_PASSWORD: no PATH.
	script := "#!/bin/sh\necho \"$*\" >>" + shellQuote(log) + "\nexec " + shellQuote(real) + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestIPMISimBmclib drives ipmi_sim with bmclib's ipmitool provider, as
// internal/bmc does, and checks the machine behind it.
func TestIPMISimBmclib(t *testing.T) {
	dir, path := writeScript(t, sleeper)
	sim := StartIPMISim(t, IPMIConfig{Script: path})
	chassis := ScriptChassis{Path: path}
	ipmitool, runs := ipmitoolLogger(t)

	client := func(pass string, opts ...bmclib.Option) *bmclib.Client {
		opts = append([]bmclib.Option{
			bmclib.WithIpmitoolPort(sim.Port),
			bmclib.WithIpmitoolPath(ipmitool),
			bmclib.WithPerProviderTimeout(10 * time.Second),
		}, opts...)
		c := bmclib.NewClient(sim.Host, sim.User, pass, opts...)
		c.Registry.Drivers = c.Registry.For("ipmitool")
		return c
	}
	// timed runs f with a timeout, logs its latency, and returns how often it
	// ran ipmitool.
	timed := func(name string, f func(ctx context.Context) error) (int, time.Duration, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		before, began := countLines(t, runs), time.Now()
		err := f(ctx)
		took, n := time.Since(began), countLines(t, runs)-before
		t.Logf("%-22s %4d ms, %d ipmitool runs", name, took.Milliseconds(), n)
		return n, took, err
	}
	must := func(_ int, _ time.Duration, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	power := func(c *bmclib.Client, state string) func(context.Context) error {
		return func(ctx context.Context) error {
			ok, err := c.SetPowerState(ctx, state)
			if err == nil && !ok {
				t.Fatalf("SetPowerState(%s) not ok", state)
			}
			return err
		}
	}
	wantState := func(c *bmclib.Client, want string) {
		t.Helper()
		var state string
		must(timed("GetPowerState", func(ctx context.Context) (err error) {
			state, err = c.GetPowerState(ctx)
			return err
		}))
		// bmclib passes on ipmitool's text: "Chassis Power is on".
		if !strings.Contains(state, "Power is "+want) {
			t.Fatalf("power state %q, want %s", state, want)
		}
	}
	// untilOn waits for ipmi_sim's power-on after a cycle: it polls the
	// machine once a second.
	untilOn := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if on, err := chassis.Power(); err == nil && on {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("machine not on again 5 s after a power cycle")
			}
		}
	}

	c := client(sim.Password)
	must(timed("Open", c.Open))
	defer c.Close(context.Background())
	wantState(c, "off")

	must(timed("SetPowerState(on)", power(c, "on")))
	wantPower(t, chassis, true)
	wantBoots(t, dir, "disk")
	wantState(c, "on")
	first := machinePID(t, dir)

	must(timed("SetBootDevice(pxe)", func(ctx context.Context) error {
		_, err := c.SetBootDevice(ctx, "pxe", false, true)
		return err
	}))
	// ipmi_sim passes the device alone: EFI (and persistence) are dropped.
	wantOverride(t, chassis, Boot{Device: "pxe", Once: true})

	began := time.Now()
	must(timed("SetPowerState(cycle)", power(c, "cycle")))
	untilOn()
	t.Logf("%-22s %4d ms until the machine runs again", "cycle", time.Since(began).Milliseconds())
	wantBoots(t, dir, "disk", "pxe")
	wantOverride(t, chassis, Boot{Device: "none", Once: true})
	if n := groupMembers(t, first); n != 0 {
		t.Fatalf("cycle left %d processes of the first start", n)
	}
	wantState(c, "on")

	must(timed("SetPowerState(reset)", power(c, "reset")))
	wantBoots(t, dir, "disk", "pxe", "disk") // the override was once only
	wantPower(t, chassis, true)

	last := machinePID(t, dir)
	must(timed("SetPowerState(off)", power(c, "off")))
	wantPower(t, chassis, false)
	if n := groupMembers(t, last); n != 0 {
		t.Fatalf("power off left %d processes", n)
	}
	wantState(c, "off")

	// A wrong password fails fast, without retries: one ipmitool run per
	// cipher suite tried, bmclib's default being 3 then 17 and internal/bmc's
	// one suite. Each run is one login attempt (ipmitool gives up on the
	// RAKP 2 the simulator answers), and none reaches the chassis.
	callsBefore, err := ReadCalls(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []bmclib.Option
		runs int
	}{
		{"default ciphers", nil, 2},
		{"cipher 3", []bmclib.Option{bmclib.WithIpmitoolCipherSuite("3")}, 1},
	} {
		bad := client("wrong", tc.opts...)
		runs, took, err := timed("Open, wrong password, "+tc.name, bad.Open)
		if err == nil {
			t.Fatal("Open with a wrong password succeeded")
		}
		t.Logf("wrong password error: %q", err)
		if runs != tc.runs || took > 5*time.Second {
			t.Errorf("wrong password, %s: %d ipmitool runs in %v, want %d, fast", tc.name, runs, took, tc.runs)
		}
	}
	callsAfter, err := ReadCalls(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(callsAfter) != len(callsBefore) {
		t.Fatalf("a refused login reached the chassis: %q", callsAfter[len(callsBefore):])
	}
}

// TestIPMISimNetns serves the BMC from a network namespace, as the lab does,
// and checks that the machine it powers on runs in that namespace too.
func TestIPMISimNetns(t *testing.T) {
	missing := testutil.Missing(testutil.Tool{Command: "ip", Package: "iproute2"})
	if os.Geteuid() != 0 {
		missing = append(missing, "root (creates a network namespace)")
	}
	testutil.RequireLab(t, missing...)
	dir, path := writeScript(t, sleeper)
	ns := "bmcsim-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	inNS := []string{"ip", "netns", "exec", ns}
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}

	sim := StartIPMISim(t, IPMIConfig{Script: path, Addr: "127.0.0.1:623", Prefix: inNS})
	on := slices.Concat(inNS, []string{"ipmitool", "-I", "lanplus", "-C", "3", "-H", sim.Host, "-p", sim.Port,
		"-U", sim.User, "-P", sim.Password, "chassis", "power", "on"})
	if out, err := exec.Command(on[0], on[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	machineNS, err := os.Readlink("/proc/" + strconv.Itoa(machinePID(t, dir)) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var want syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &want); err != nil {
		t.Fatal(err)
	}
	if machineNS != "net:["+strconv.FormatUint(want.Ino, 10)+"]" {
		t.Fatalf("machine in %s, want namespace %s (inode %d)", machineNS, ns, want.Ino)
	}
}
