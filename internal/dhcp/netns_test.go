package dhcp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// Root-only tests on a veth pair between two network namespaces the test creates:
// the real sockets (0.0.0.0 + SO_BINDTODEVICE, broadcast) with no traffic outside them.

// TestNetnsBroadcastPath is the path real PXE ROMs use, which perfdhcp cannot measure:
// DISCOVERs broadcast from port 68 with no giaddr get OFFERs broadcast to port 68, and an
// EDK2 arm64 boot-server REQUEST sent from port 4011 gets its ACK back on port 4011.
func TestNetnsBroadcastPath(t *testing.T) {
	srvNS, cliNS := vethNamespaces(t)
	startNetnsServer(t, srvNS)

	var bootp, bootSrv *net.UDPConn
	err := inNetns(cliNS, func() error {
		var err error
		if bootp, err = server4.NewIPv4UDPConn("vcli", &net.UDPAddr{Port: dhcpv4.ClientPort}); err != nil {
			return err
		}
		bootSrv, err = server4.NewIPv4UDPConn("vcli", &net.UDPAddr{Port: bootServerPort})
		return err
	})
	if err != nil {
		t.Fatalf("client sockets: %v", err)
	}
	t.Cleanup(func() { bootp.Close() })
	t.Cleanup(func() { bootSrv.Close() })

	t.Run("broadcast DISCOVER gets a broadcast OFFER", func(t *testing.T) {
		const clients = 50
		want := map[dhcpv4.TransactionID]bool{}
		for i := range clients {
			req := biosDiscover(t, dhcpv4.WithHwAddr(net.HardwareAddr{0x52, 0x54, 0, 0, 1, byte(i)}))
			want[req.TransactionID] = true
			if _, err := bootp.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
				t.Fatalf("send DISCOVER: %v", err)
			}
		}
		for len(want) > 0 {
			reply, from := readReply(t, bootp)
			if reply == nil {
				t.Fatalf("%d of %d DISCOVERs got no OFFER", len(want), clients)
			}
			if reply.MessageType() != dhcpv4.MessageTypeOffer || reply.BootFileName != "undionly.kpxe" || !reply.ServerIPAddr.Equal(net.IPv4(10, 231, 0, 1)) {
				t.Fatalf("reply from %s: %s file %q siaddr %s", from, reply.MessageType(), reply.BootFileName, reply.ServerIPAddr)
			}
			delete(want, reply.TransactionID)
		}
	})
	t.Run("boot-server REQUEST from port 4011 gets its ACK on 4011", func(t *testing.T) {
		req := packet(t, vendor(vcEDK2ARM), arch(iana.EFI_ARM64), guid(),
			msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 231, 0, 2)))
		if _, err := bootSrv.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 231, 0, 1), Port: bootServerPort}); err != nil {
			t.Fatalf("send REQUEST: %v", err)
		}
		reply, _ := readReply(t, bootSrv)
		if reply == nil {
			t.Fatal("no ACK on port 4011")
		}
		if reply.MessageType() != dhcpv4.MessageTypeAck || reply.TransactionID != req.TransactionID || reply.BootFileName != "snp.efi" {
			t.Errorf("got %s xid %s file %q, want ACK xid %s snp.efi", reply.MessageType(), reply.TransactionID, reply.BootFileName, req.TransactionID)
		}
	})
}

// readReply returns the next DHCP reply on conn, skipping our own broadcasts echoed back,
// or nil after 5 s of silence.
func readReply(t *testing.T, conn *net.UDPConn) (*dhcpv4.DHCPv4, net.Addr) {
	t.Helper()
	buf := make([]byte, 1500)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatalf("deadline: %v", err)
		}
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return nil, nil
		}
		d, err := dhcpv4.FromBytes(buf[:n])
		if err == nil && d.OpCode == dhcpv4.OpcodeBootReply {
			return d, from
		}
	}
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s not installed", name)
	return ""
}

// vethNamespaces creates two namespaces joined by a veth pair: vsrv 10.231.0.1/24 in
// the first, vcli 10.231.0.2/24 in the second. Deleting them removes the pair.
func vethNamespaces(t *testing.T) (srv, cli string) {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace tests skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	ipTool := lookTool(t, "ip")
	prefix := fmt.Sprintf("pdhcp-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	srv, cli = prefix+"-srv", prefix+"-cli"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	for _, ns := range []string{srv, cli} {
		ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command(ipTool, "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	ip("link", "add", "name", "vsrv", "netns", srv, "type", "veth", "peer", "name", "vcli", "netns", cli)
	for _, end := range []struct{ ns, dev, addr string }{{srv, "vsrv", "10.231.0.1/24"}, {cli, "vcli", "10.231.0.2/24"}} {
		ip("-n", end.ns, "addr", "add", end.addr, "dev", end.dev)
		ip("-n", end.ns, "link", "set", end.dev, "up")
		ip("-n", end.ns, "link", "set", "lo", "up")
	}
	return srv, cli
}

// startNetnsServer runs ListenAndServe on vsrv in netns until the test ends, and returns
// once both ports listen.
func startNetnsServer(t *testing.T, netns string) *logWatcher {
	t.Helper()
	watch := &logWatcher{listening: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	var serveErr error
	served := make(chan struct{})
	go func() {
		defer close(served)
		serveErr = inNetns(netns, func() error {
			// Interface lookup and sockets happen here, inside the namespace.
			s, err := New(Config{
				Interface:    "vsrv",
				AdvertiseURL: "http://10.231.0.1:8080",
				Logger:       slog.New(slog.NewTextHandler(watch, nil)),
			})
			if err != nil {
				return err
			}
			return s.ListenAndServe(ctx)
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-served
		if serveErr != nil {
			t.Errorf("server: %v", serveErr)
		}
	})
	select {
	case <-watch.listening:
	case <-served:
		t.Fatal("server did not start")
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start listening")
	}
	return watch
}

// inNetns runs fn on a thread inside the named network namespace; sockets fn opens stay
// in it. The thread is never unlocked, so when fn returns the runtime discards it
// instead of reusing it in the wrong namespace.
func inNetns(netns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + netns)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", netns, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", netns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// logWatcher is a log sink that reports when both ports listen and counts offers sent.
type logWatcher struct {
	mu        sync.Mutex
	ports     int
	offers    int
	listening chan struct{}
}

func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case bytes.Contains(p, []byte(`msg="dhcp offer"`)):
		w.offers++
	case bytes.Contains(p, []byte(`msg="dhcp listening"`)):
		if w.ports++; w.ports == 2 {
			close(w.listening)
		}
	}
	return len(p), nil
}

func (w *logWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.offers
}
