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

// Addresses of the lab VLAN. They exist only inside the lab's namespaces.
const (
	siteAddr = "10.99.0.1" // the site's plain DHCP server
	provAddr = "10.99.0.2" // the PXE stack under test
	labMask  = "/24"
)

// lab is a VLAN made of three network namespaces, unique to one test run:
//
//	Switch: bridge br0; a veth per host and a tap per VM are its ports.
//	        QEMU runs here because a tap can only be opened in its namespace.
//	Site:   eth0 at 10.99.0.1, the site's DHCP server (leases, no PXE).
//	Prov:   eth0 at 10.99.0.2, the PXE stack under test.
//
// Nothing is configured in the caller's namespace, so no lab packet can leave
// the lab. t.Cleanup tears everything down, in reverse order of creation.
type lab struct {
	t                  *testing.T
	Switch, Site, Prov string
	// Artifacts keeps every log of the run (see testing.T.ArtifactDir).
	Artifacts string
	logs      []namedLog
	taps      int
}

type namedLog struct{ name, path string }

func newLab(t *testing.T) *lab {
	t.Helper()
	prefix := fmt.Sprintf("pvd%d-", os.Getpid())
	l := &lab{
		t:         t,
		Switch:    prefix + "switch",
		Site:      prefix + "site",
		Prov:      prefix + "prov",
		Artifacts: t.ArtifactDir(),
	}
	// Registered before any resource, this runs after all of them are gone
	// (so every log is complete) and before the artifact directory is.
	t.Cleanup(l.dumpLogsOnFailure)

	for _, ns := range []string{l.Switch, l.Site, l.Prov} {
		l.mustIP("netns", "add", ns)
		t.Cleanup(func() { l.cleanupIP("netns", "del", ns) })
		l.mustIP("-n", ns, "link", "set", "lo", "up")
	}
	l.mustIP("-n", l.Switch, "link", "add", "br0", "type", "bridge")
	t.Cleanup(func() { l.cleanupIP("-n", l.Switch, "link", "del", "br0") })
	l.mustIP("-n", l.Switch, "link", "set", "br0", "up")

	for _, host := range []struct{ ns, port, addr string }{
		{l.Site, "site0", siteAddr},
		{l.Prov, "prov0", provAddr},
	} {
		// Created in the switch namespace with its peer moved straight into
		// the host's, so no interface ever appears in the caller's.
		l.mustIP("-n", l.Switch, "link", "add", host.port, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
		t.Cleanup(func() { l.cleanupIP("-n", l.Switch, "link", "del", host.port) })
		l.mustIP("-n", l.Switch, "link", "set", host.port, "master", "br0", "up")
		l.mustIP("-n", host.ns, "addr", "add", host.addr+labMask, "dev", "eth0")
		l.mustIP("-n", host.ns, "link", "set", "eth0", "up")
	}
	return l
}

// addTap adds a tap port to the bridge for one VM and returns its name.
func (l *lab) addTap() string {
	l.t.Helper()
	name := fmt.Sprintf("tap%d", l.taps)
	l.taps++
	l.mustIP("-n", l.Switch, "tuntap", "add", name, "mode", "tap")
	l.t.Cleanup(func() { l.cleanupIP("-n", l.Switch, "link", "del", name) })
	l.mustIP("-n", l.Switch, "link", "set", name, "master", "br0", "up")
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
// options, exactly what a home router or a datacenter's DHCP would send.
func (l *lab) startSiteDHCP() {
	l.t.Helper()
	dir := l.t.TempDir()
	d := l.start(l.Site, "site-dnsmasq",
		"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces",
		"--dhcp-range=10.99.0.100,10.99.0.200,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--pid-file="+filepath.Join(dir, "pid"),
		"--log-dhcp", "--log-facility=-")
	d.waitLog(l.t, "DHCP, IP range", 10*time.Second)
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
