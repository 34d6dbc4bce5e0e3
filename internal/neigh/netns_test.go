package neigh

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// The real test builds two network namespaces joined by a veth pair and runs
// the lookups in a child test process started with `ip netns exec`. A
// subprocess rather than a netns-switched locked thread: the whole process,
// including every thread the runtime or the netlink package may use, is in
// the namespace, and nothing can leak back into the parent's scheduler.

const (
	childEnv  = "NEIGH_TEST_NETNS_CHILD" // third octet of 10.213.X.0/24
	childV6   = "NEIGH_TEST_NETNS_V6"    // "1" if the IPv6 addresses were set up
	peerMAC   = "02:13:AB:CD:EF:02"      // upper case on purpose: Lookup must canonicalise
	staticMAC = "02:13:AB:CD:EF:50"
)

func TestLookupNetns(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("running as the namespace child")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs the ip command")
	}
	run := func(args ...string) error {
		out, err := exec.Command(ipCmd, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	must := func(args ...string) {
		t.Helper()
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}

	suffix := fmt.Sprintf("%08x", rand.Uint32())
	nsA, nsB := "neighA-"+suffix, "neighB-"+suffix
	x := rand.N(256)
	if err := run("netns", "add", nsA); err != nil {
		// Root in an unprivileged container, for instance.
		t.Skipf("cannot create network namespaces: %v", err)
	}
	t.Cleanup(func() { _ = run("netns", "del", nsA) })
	must("netns", "add", nsB)
	t.Cleanup(func() { _ = run("netns", "del", nsB) })

	// Created inside A with the peer put straight into B, so nothing ever
	// appears in the host's namespace.
	must("-n", nsA, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", nsB)
	must("-n", nsB, "link", "set", "v1", "address", peerMAC)
	must("-n", nsA, "addr", "add", fmt.Sprintf("10.213.%d.1/24", x), "dev", "v0")
	must("-n", nsB, "addr", "add", fmt.Sprintf("10.213.%d.2/24", x), "dev", "v1")
	v6 := "1"
	for _, args := range [][]string{
		{"-n", nsA, "addr", "add", fmt.Sprintf("fd00:213:%x::1/64", x), "dev", "v0", "nodad"},
		{"-n", nsB, "addr", "add", fmt.Sprintf("fd00:213:%x::2/64", x), "dev", "v1", "nodad"},
		{"-n", nsA, "addr", "add", "fe80::213:1/64", "dev", "v0", "nodad"},
		{"-n", nsB, "addr", "add", "fe80::213:2/64", "dev", "v1", "nodad"},
	} {
		if err := run(args...); err != nil {
			t.Logf("IPv6 cases disabled: %v", err)
			v6 = "0"
			break
		}
	}
	for _, ns := range []string{nsA, nsB} {
		must("-n", ns, "link", "set", "lo", "up")
	}
	must("-n", nsA, "link", "set", "v0", "up")
	must("-n", nsB, "link", "set", "v1", "up")
	must("-n", nsA, "neigh", "add", fmt.Sprintf("10.213.%d.50", x), "lladdr", staticMAC, "dev", "v0", "nud", "permanent")

	cmd := exec.Command(ipCmd, "netns", "exec", nsA, os.Args[0], "-test.run=^TestLookupInNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childEnv, x), childV6+"="+v6)
	out, err := cmd.CombinedOutput()
	t.Logf("child in %s:\n%s", nsA, out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestLookupInNetns") {
		t.Fatal("child did not run TestLookupInNetns")
	}
}

// TestLookupInNetns is the body of TestLookupNetns, run inside namespace A.
func TestLookupInNetns(t *testing.T) {
	xs := os.Getenv(childEnv)
	if xs == "" {
		t.Skip("only runs as the child of TestLookupNetns")
	}
	var x int
	if _, err := fmt.Sscan(xs, &x); err != nil {
		t.Fatal(err)
	}
	v6 := os.Getenv(childV6) == "1"
	a4 := func(host int) string { return fmt.Sprintf("10.213.%d.%d", x, host) }
	a6 := func(host int) string { return fmt.Sprintf("fd00:213:%x::%x", x, host) }
	peer := strings.ToLower(peerMAC)

	if _, err := net.InterfaceByName("v0"); err != nil {
		t.Fatalf("not inside namespace A: %v", err)
	}

	// A TCP SYN to the peer makes the kernel resolve it, as a real
	// requester's handshake would. Port 9 is closed; the RST is enough.
	poke := func(addr string) {
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "9"), 3*time.Second)
		t.Logf("poke %s: %v after %v", addr, err, time.Since(t0))
		if err == nil {
			c.Close()
		}
	}
	poke(a4(2))
	if v6 {
		poke(a6(2))
		poke("fe80::213:2%v0")
	}
	// A datagram to an absent host leaves an INCOMPLETE (later FAILED) entry.
	if c, err := net.Dial("udp", net.JoinHostPort(a4(78), "9")); err == nil {
		_, _ = c.Write([]byte{0})
		c.Close()
	}
	v0, err := netlink.LinkByName("v0")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netlink.NeighList(v0.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	sawUnresolved := false
	for _, n := range ns {
		t.Logf("kernel entry: %s %s state %#x", n.IP, n.HardwareAddr, n.State)
		if n.IP.String() == a4(78) && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) != 0 {
			sawUnresolved = true
		}
	}
	if !sawUnresolved {
		t.Errorf("no INCOMPLETE/FAILED entry for %s; that case proves nothing", a4(78))
	}

	type tc struct {
		ip     string
		mac    string
		onLink bool
		noEnt  bool
	}
	cases := []tc{
		{a4(2), peer, true, false},
		{"::ffff:" + a4(2), peer, true, false},
		{a4(50), strings.ToLower(staticMAC), true, false}, // permanent entry
		{a4(77), "", true, true},                          // no entry at all
		{a4(78), "", true, true},                          // INCOMPLETE/FAILED
		{"192.0.2.1", "", false, false},                   // routed (not even a route)
		{a4(1), "", false, false},                         // own
		{"::ffff:" + a4(1), "", false, false},
		{"127.0.0.1", "", false, false},
		{"::1", "", false, false},
	}
	if v6 {
		cases = append(cases,
			tc{a6(2), peer, true, false},
			tc{a6(0x77), "", true, true},
			tc{a6(1), "", false, false},
			tc{"2001:db8::1", "", false, false},
			tc{"fe80::213:2", peer, true, false}, // no zone: all interfaces
			tc{"fe80::213:2%v0", peer, true, false},
			tc{"fe80::213:2%lo", "", false, false},
			tc{"fe80::213:77%v0", "", true, true},
			tc{"fe80::213:1", "", false, false}, // own
		)
	}

	for _, mode := range []string{"get", "dump"} {
		tbl := New()
		tbl.noGet.Store(mode == "dump")
		for _, c := range cases {
			mac, onLink, err := tbl.Lookup(netip.MustParseAddr(c.ip))
			t.Logf("%s Lookup(%s) = %q, %v, %v", mode, c.ip, mac, onLink, err)
			switch {
			case c.noEnt && !errors.Is(err, ErrNoEntry):
				t.Errorf("%s Lookup(%s): err %v, want ErrNoEntry", mode, c.ip, err)
			case !c.noEnt && err != nil:
				t.Errorf("%s Lookup(%s): unexpected error %v", mode, c.ip, err)
			}
			if mac != c.mac || onLink != c.onLink {
				t.Errorf("%s Lookup(%s) = %q, %v; want %q, %v", mode, c.ip, mac, onLink, c.mac, c.onLink)
			}
		}
		if mode == "get" && tbl.noGet.Load() {
			t.Error("kernel refused single-entry get; only the dump path was tested")
		}
	}

	// Local: this host's own addresses and loopback are local; another host
	// on the segment and a routed address are not, so a requester claiming
	// a machine is refused only from the server itself.
	local := map[string]bool{
		a4(1): true, "::ffff:" + a4(1): true, "127.0.0.1": true, "127.0.0.2": true, "::1": true, "0.0.0.0": true,
		a4(2): false, "::ffff:" + a4(2): false, a4(77): false, "192.0.2.1": false,
	}
	if v6 {
		local[a6(1)], local[a6(2)], local["2001:db8::1"] = true, false, false
	}
	tbl := New()
	for ip, want := range local {
		if got := tbl.Local(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Local(%s) = %v; want %v", ip, got, want)
		}
	}

	// Concurrent use (meaningful under -race), then check that repeated
	// lookups leave no file descriptors behind.
	tbl = New()
	target := netip.MustParseAddr(a4(2))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if mac, _, err := tbl.Lookup(target); mac != peer || err != nil {
					t.Errorf("concurrent Lookup = %q, %v", mac, err)
					return
				}
			}
		})
	}
	wg.Wait()
	before := countFDs(t)
	start := time.Now()
	for range 500 {
		_, _, _ = tbl.Lookup(target)
		_, _, _ = tbl.Lookup(netip.MustParseAddr(a4(77)))
	}
	t.Logf("%v per Lookup", time.Since(start)/1000)
	if after := countFDs(t); after != before {
		t.Errorf("open fds went from %d to %d over 1000 lookups", before, after)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
