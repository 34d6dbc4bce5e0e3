package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the lab. They exist only inside the lab's namespaces.
const (
	siteAddr   = "10.99.0.1"   // the site's plain DHCP server
	provAddr   = "10.99.0.2"   // the PXE stack under test
	routerAddr = "10.99.0.254" // the router's leg on the VLAN
	labMask    = "/24"

	// routedNet is a second subnet, behind the router: its hosts reach the
	// VLAN only routed, so provisiond sees their IP but never their MAC.
	routedNet    = "10.98.0.0/24"
	gatewayAddr  = "10.98.0.254" // the router's leg there: its hosts' gateway and the relay's giaddr
	attackerAddr = "10.98.0.66"  // a host there that never did DHCP
)

// The lab's bridges, in the switch namespace.
const (
	vlanBridge   = "br0" // the VLAN: site DHCP, provisioner, router, VMs
	routedBridge = "br1" // routedNet: router, attacker, routed VMs
)

// lab is a VLAN made of three network namespaces, unique to one test run:
//
//	Switch: bridge br0; a veth per host and a tap per VM are its ports.
//	        QEMU runs here because a tap can only be opened in its namespace.
//	Site:   eth0 at 10.99.0.1, the site's DHCP server (leases, no PXE).
//	Prov:   eth0 at 10.99.0.2, the PXE stack under test.
//
// addRoutedSubnet adds a second subnet behind a router (Router, Attacker),
// and leaseTenant a host there that leases its address (Tenant).
//
// Nothing is configured in the caller's namespace, so no lab packet can leave
// the lab. t.Cleanup tears everything down, in reverse order of creation.
type lab struct {
	t                  *testing.T
	prefix             string // of every namespace's name
	Switch, Site, Prov string
	// Router and Attacker are "" until addRoutedSubnet, Tenant until
	// leaseTenant.
	Router, Attacker, Tenant string
	// Artifacts keeps every log of the run (see testing.T.ArtifactDir).
	Artifacts string
	logs      []namedLog
	taps      int
}

type namedLog struct{ name, path string }

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{
		t:         t,
		prefix:    fmt.Sprintf("pvd%d-", os.Getpid()),
		Artifacts: t.ArtifactDir(),
	}
	// Registered before any resource, this runs after all of them are gone
	// (so every log is complete) and before the artifact directory is.
	t.Cleanup(l.dumpLogsOnFailure)

	l.Switch, l.Site, l.Prov = l.addNetns("switch"), l.addNetns("site"), l.addNetns("prov")
	l.addBridge(vlanBridge)
	l.join(l.Site, "eth0", vlanBridge, "site0", siteAddr)
	l.join(l.Prov, "eth0", vlanBridge, "prov0", provAddr)
	return l
}

// addRoutedSubnet puts routedNet behind a router on the lab:
//
//	Switch:   bridge br1, the subnet's ports.
//	Router:   eth0 at 10.99.0.254 on the VLAN, eth1 at 10.98.0.254 on br1;
//	          it forwards between them (and relays DHCP once startRelay runs).
//	Attacker: eth0 at 10.98.0.66, default route via the router: a host that
//	          reaches provisiond only routed and never asks for a lease.
//
// The site's DHCP host and the provisioner route routedNet via the router, as
// a site's servers would: the one to answer the relay, the other to answer
// boot-server requests and HTTP from the subnet.
func (l *lab) addRoutedSubnet() {
	l.t.Helper()
	l.Router, l.Attacker = l.addNetns("router"), l.addNetns("attacker")
	l.addBridge(routedBridge)
	l.join(l.Router, "eth0", vlanBridge, "router0", routerAddr)
	l.join(l.Router, "eth1", routedBridge, "router1", gatewayAddr)
	l.join(l.Attacker, "eth0", routedBridge, "attacker0", attackerAddr)
	// A new namespace starts with forwarding off; its sysctls are its own.
	if err := inNetns(l.Router, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)
	}); err != nil {
		l.t.Fatalf("router: enable forwarding: %v", err)
	}
	l.mustIP("-n", l.Attacker, "route", "add", "default", "via", gatewayAddr)
	for _, ns := range []string{l.Site, l.Prov} {
		l.mustIP("-n", ns, "route", "add", routedNet, "via", routerAddr)
	}
}

// addNetns creates the lab's namespace name, its loopback up, and returns its
// full name.
func (l *lab) addNetns(name string) string {
	l.t.Helper()
	ns := l.prefix + name
	l.mustIP("netns", "add", ns)
	l.t.Cleanup(func() { l.cleanupIP("netns", "del", ns) })
	l.mustIP("-n", ns, "link", "set", "lo", "up")
	return ns
}

// addHost adds a namespace name with its eth0 at addr on the VLAN, as a
// further host there (a second provisioner, a BMC, an etcd member), and
// returns the namespace's full name.
func (l *lab) addHost(name, addr string) string {
	l.t.Helper()
	ns := l.addNetns(name)
	l.join(ns, "eth0", vlanBridge, name+"0", addr)
	return ns
}

// addBridge creates a bridge in the switch namespace.
func (l *lab) addBridge(name string) {
	l.t.Helper()
	l.mustIP("-n", l.Switch, "link", "add", name, "type", "bridge")
	l.t.Cleanup(func() { l.cleanupIP("-n", l.Switch, "link", "del", name) })
	l.mustIP("-n", l.Switch, "link", "set", name, "up")
}

// join connects namespace ns to bridge through a veth pair: port on the
// bridge, ifname at addr (in labMask) in ns; "" leaves ifname without one.
func (l *lab) join(ns, ifname, bridge, port, addr string) {
	l.t.Helper()
	// Created in the switch namespace with its peer moved straight into
	// the host's, so no interface ever appears in the caller's.
	l.mustIP("-n", l.Switch, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
	l.t.Cleanup(func() { l.cleanupIP("-n", l.Switch, "link", "del", port) })
	l.mustIP("-n", l.Switch, "link", "set", port, "master", bridge, "up")
	if addr != "" {
		l.mustIP("-n", ns, "addr", "add", addr+labMask, "dev", ifname)
	}
	l.mustIP("-n", ns, "link", "set", ifname, "up")
}

// leaseTenant adds a host on routedNet that leases its address through the
// router's relay (startRelay), as any machine there does, so that provisiond
// binds that address to the host's own MAC; it returns the address. The
// lease is applied by the test OS's udhcpc script: the address and a default
// route via the router.
func (l *lab) leaseTenant() string {
	l.t.Helper()
	l.Tenant = l.addNetns("tenant")
	l.join(l.Tenant, "eth0", routedBridge, "tenant0", "")
	script := filepath.Join(l.t.TempDir(), "udhcpc.script")
	if err := os.WriteFile(script, udhcpcScript, 0o755); err != nil {
		l.t.Fatal(err)
	}
	// The site's dnsmasq pings an address for up to 3 s before it offers it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.udhcpc(ctx, l.Tenant, script)
	if err != nil {
		l.t.Fatalf("tenant: udhcpc: %v\n%s", err, out)
	}
	// PVD-E2E-LEASE eth0 10.98.0.101/24 via 10.98.0.254
	lease, ok := consoleLine(string(out), "PVD-E2E-LEASE eth0 ")
	addr, _, _ := strings.Cut(lease, "/")
	if !ok || net.ParseIP(addr) == nil {
		l.t.Fatalf("tenant: no lease in udhcpc's output:\n%s", out)
	}
	return addr
}

// udhcpc leases an address for namespace ns's eth0 once with busybox's DHCP
// client, which hands the reply to script; args add options (-V, -x) to the
// request. It returns the client's output.
func (l *lab) udhcpc(ctx context.Context, ns, script string, args ...string) ([]byte, error) {
	argv := append([]string{"busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "3", "-s", script}, args...)
	return l.command(ctx, ns, argv...).CombinedOutput()
}

// addTap adds a tap port to bridge for one VM and returns its name.
func (l *lab) addTap(bridge string) string {
	l.t.Helper()
	name := fmt.Sprintf("tap%d", l.taps)
	l.taps++
	l.mustIP("-n", l.Switch, "tuntap", "add", name, "mode", "tap")
	l.t.Cleanup(func() { l.cleanupIP("-n", l.Switch, "link", "del", name) })
	l.mustIP("-n", l.Switch, "link", "set", name, "master", bridge, "up")
	return name
}

func (l *lab) mustIP(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// cleanupIP reports but does not stop on errors, so that one leftover does
// not keep the rest of the lab from being removed.
func (l *lab) cleanupIP(args ...string) {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Errorf("cleanup: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// command returns a command that runs argv inside namespace ns. `ip netns
// exec` execs argv in place, so the process is argv itself and killing it
// needs no process-group games.
func (l *lab) command(ctx context.Context, ns string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.WaitDelay = 5 * time.Second
	// If the test binary dies without running its cleanups (a -timeout panic,
	// SIGKILL), its processes die too; `ip netns exec` execs the command, so the
	// signal reaches dnsmasq, provisiond or QEMU itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// logFile creates a log in the artifact directory that is shown, tail only,
// if the test fails.
func (l *lab) logFile(name string) (*os.File, string) {
	l.t.Helper()
	path := filepath.Join(l.Artifacts, name+".log")
	f, err := os.Create(path)
	if err != nil {
		l.t.Fatalf("create log: %v", err)
	}
	l.logs = append(l.logs, namedLog{name, path})
	return f, path
}

// daemon is a long-running process of the lab; its stdout and stderr go to a
// log file.
type daemon struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, once done is closed
}

// start runs argv in namespace ns until the test ends: t.Cleanup stops it with
// SIGTERM, then SIGKILL after 5 s.
func (l *lab) start(ns, name string, argv ...string) *daemon {
	l.t.Helper()
	f, path := l.logFile(name)
	d := &daemon{name: name, log: path, done: make(chan struct{})}
	d.cmd = l.command(context.Background(), ns, argv...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	if err := d.cmd.Start(); err != nil {
		f.Close()
		l.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		f.Close()
		close(d.done)
	}()
	l.t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// waitFor polls ready until it succeeds, the daemon exits, or timeout passes.
func (d *daemon) waitFor(t *testing.T, what string, timeout time.Duration, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ready() {
		select {
		case <-d.done:
			t.Fatalf("%s exited before %s: %v", d.name, what, d.err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v", d.name, what, timeout)
		}
	}
}

// waitLog waits until the daemon's log contains s.
func (d *daemon) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	d.waitFor(t, fmt.Sprintf("%q in its log", s), timeout, func() bool {
		b, _ := os.ReadFile(d.log)
		return bytes.Contains(b, []byte(s))
	})
}

// waitHTTP waits until url answers 2xx, asked from inside namespace ns (the
// lab's addresses are not reachable from the test's own namespace).
func (l *lab) waitHTTP(d *daemon, ns, url string, timeout time.Duration) {
	l.t.Helper()
	d.waitFor(l.t, "answer on "+url, timeout, func() bool {
		// The context bounds each try: busybox 1.35's wget -T segfaults.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return l.command(ctx, ns, "busybox", "wget", "-q", "-O", "/dev/null", url).Run() == nil
	})
}

// httpClient returns an HTTP client whose connections are opened from inside
// namespace ns, as a process on that host would open them: the lab's addresses
// are reachable only there, and the source address (hence what the server's
// neighbour table says about the peer) is that host's. Use IP literals only:
// name resolution would run outside the namespace.
func (l *lab) httpClient(ns string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var conn net.Conn
				err := inNetns(ns, func() error {
					var err error
					// A literal address is dialled on this goroutine, so the
					// socket is created on the thread inNetns switched.
					conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			},
			// No connection outlives a request, so none can outlive the lab.
			DisableKeepAlives: true,
		},
	}
}

// inNetns runs fn on an OS thread switched into namespace ns (the file `ip
// netns add` made). A socket belongs to the namespace it was created in, so
// one made by fn keeps working there after the thread switches back.
func inNetns(ns string, fn func() error) error {
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns of this thread: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", ns, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in ns: it stays locked, so the runtime ends
		// it with this goroutine instead of reusing it.
		return fmt.Errorf("leave netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// startSiteDHCP runs the site's plain DHCP server: leases only, no PXE
// options, exactly what a home router or a datacenter's DHCP would send. It
// also leases routedNet's addresses to requests relayed from there (dnsmasq
// picks the range by giaddr), with the router as their gateway.
func (l *lab) startSiteDHCP() {
	l.t.Helper()
	l.startDnsmasq(l.Site, "site-dnsmasq", "DHCP, IP range",
		"--interface=eth0", "--bind-interfaces",
		"--dhcp-range=10.99.0.100,10.99.0.200,255.255.255.0,1h",
		"--dhcp-range=set:routed,10.98.0.100,10.98.0.200,255.255.255.0,1h",
		"--dhcp-option=tag:routed,option:router,"+gatewayAddr)
}

// startRelay runs a real DHCP relay on the router (addRoutedSubnet): dnsmasq
// relays each DHCP request from routedNet, giaddr 10.98.0.254, to the site's
// DHCP server for the lease AND to provisiond, which must see the relayed
// DHCP to offer a boot and to learn which address is which machine's. Each
// answer goes back onto the subnet as RFC 1542 says: broadcast if its
// broadcast flag is set, else unicast to yiaddr. A proxy offer has no yiaddr
// (and iPXE sets no broadcast flag), so it arrives only if the proxy sets the
// flag, as dnsmasq's own proxy mode does.
func (l *lab) startRelay() {
	l.t.Helper()
	l.startDnsmasq(l.Router, "relay-dnsmasq", "DHCP relay from",
		// Only the subnet's requests are relayed; the servers' answers come
		// in on eth0 and are taken by their giaddr.
		"--interface=eth1",
		// Two relays from one local address: dnsmasq forwards each request
		// to every server.
		"--dhcp-relay="+gatewayAddr+","+siteAddr,
		"--dhcp-relay="+gatewayAddr+","+provAddr)
}

// startDnsmasq runs a DHCP-only dnsmasq (no DNS: --port=0) with args in
// namespace ns and waits for ready in its log.
func (l *lab) startDnsmasq(ns, name, ready string, args ...string) {
	l.t.Helper()
	dir := l.t.TempDir()
	argv := append([]string{"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"),
		"--pid-file=" + filepath.Join(dir, "pid"),
		"--log-dhcp", "--log-facility=-"}, args...)
	l.start(ns, name, argv...).waitLog(l.t, ready, 10*time.Second)
}

// dumpLogsOnFailure shows the tail of every lab log in the test output.
func (l *lab) dumpLogsOnFailure() {
	if !l.t.Failed() {
		return
	}
	for _, lg := range l.logs {
		b, err := os.ReadFile(lg.path)
		if err != nil {
			l.t.Logf("%s: %v", lg.name, err)
			continue
		}
		l.t.Logf("---- last lines of %s (%s) ----\n%s", lg.name, lg.path, tail(printable(b), 40))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ansiEscape matches the terminal control sequences firmware draws its
// screens with.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;=?]*[A-Za-z]`)

// printable drops terminal control sequences and characters so that a log
// tail does not garble the test output.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' {
			return -1
		}
		return r
	}, string(ansiEscape.ReplaceAll(b, nil)))
}
