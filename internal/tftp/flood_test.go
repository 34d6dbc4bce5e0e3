package tftp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ipxebin "github.com/tinkerbell/ipxedust/binary"
)

// A flood sends at least floodRRQs read requests, floodRate a second: the
// flood that held 4,014 descriptors before the caps sent 4,000. The rate is
// one the server refuses as fast as it arrives even under the race detector,
// so that what the test sees is what the caps hold rather than how far the
// scheduler lags (see fdSlack).
const (
	floodRRQs = 4000
	floodRate = 2000
)

// fdSlack is how many descriptors beyond the transfer cap the process may
// have open during a flood: the legitimate client's socket, the flood's, the
// one reading /proc/self/fd, and above all the sockets of refused requests
// between pin/tftp opening them and the handler goroutine it starts closing
// them. That backlog is as long as the scheduler lags behind pin/tftp's
// accept loop: about 50 at 2,000 requests a second under -race on an idle
// 2-core machine, 200 with its cores busy elsewhere, and more beside the VM
// tests that `go test ./...` may run at the same time. Without the caps each
// request held one until it timed out: 4,000 and more here, so 1,000 still
// tells a bounded server from an unbounded one.
const fdSlack = 1000

// fdSettled is how many descriptors beyond the transfers a flood can hold
// may stay open within settleTime after it, its refusals done.
const (
	fdSettled  = 3
	settleTime = 2 * time.Second
)

// openFDs counts this process's open file descriptors.
func openFDs() (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("count open files: %w", err)
	}
	return len(entries), nil
}

// fdPeak samples openFDs every millisecond until stop is called, which
// returns the highest count seen.
func fdPeak() (stop func() int) {
	done := make(chan struct{})
	peak := make(chan int)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		highest := 0
		for {
			if n, err := openFDs(); err == nil && n > highest {
				highest = n
			}
			select {
			case <-done:
				peak <- highest
				return
			case <-tick.C:
			}
		}
	}()
	return func() int {
		close(done)
		return <-peak
	}
}

// floodResult is what a flood reports when it stops.
type floodResult struct {
	sent int
	took time.Duration
	err  error
}

// flood sends read requests for ipxe.efi to addr as EDK2 words them,
// floodRate a second, each from a new socket (so a new source port) on the
// next of srcs, and never ACKs: the server's replies find a closed port.
// started is closed after the first 500, so that the flood is in full swing
// before a legitimate client starts; flood stops once stop is closed and at
// least floodRRQs are sent.
func flood(addr string, srcs []net.IP, started chan<- struct{}, stop <-chan struct{}) floodResult {
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return floodResult{err: err}
	}
	pkt := rawRequest(1, "ipxe.efi", "tsize", "0", "blksize", "1468")
	start := time.Now()
	for sent := 0; ; sent++ {
		if sent == 500 {
			close(started)
		}
		if ahead := time.Until(start.Add(time.Duration(sent) * time.Second / floodRate)); ahead > 0 {
			time.Sleep(ahead)
		}
		if sent >= floodRRQs {
			select {
			case <-stop:
				return floodResult{sent: sent, took: time.Since(start)}
			default:
			}
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: srcs[sent%len(srcs)]})
		if err != nil {
			return floodResult{sent: sent, err: err}
		}
		_, err = conn.WriteToUDP(pkt, to)
		conn.Close()
		if err != nil {
			return floodResult{sent: sent, err: err}
		}
	}
}

// loopbackHosts returns n addresses in 127.0.0.0/8 from 127.0.1.1 on, none
// of them 127.0.0.1, where the legitimate clients are.
func loopbackHosts(n int) []net.IP {
	hosts := make([]net.IP, n)
	for i := range hosts {
		hosts[i] = net.IPv4(127, 0, byte(1+i/250), byte(1+i%250))
	}
	return hosts
}

// download fetches ipxe.efi from addr with client (pin/tftp's when "") the
// way EDK2 asks, with tsize and blksize 1468, and checks what arrived.
func download(t *testing.T, client, addr string) error {
	t.Helper()
	var got []byte
	if client == "" {
		var err error
		if got, err = fetch(t, addr, "ipxe.efi", 1468); err != nil {
			return err
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out := filepath.Join(t.TempDir(), "ipxe.efi")
		var opts []string
		if client == atftp {
			opts = []string{"tsize 0", "blksize 1468"}
		}
		if output, err := clientCmd(ctx, t, client, addr, "ipxe.efi", out, opts...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", client, err, output)
		}
		var err error
		if got, err = os.ReadFile(out); err != nil {
			return err
		}
	}
	if !bytes.Equal(got, ipxebin.IpxeEFI) {
		return fmt.Errorf("got %d bytes, want the %d of ipxe.efi", len(got), len(ipxebin.IpxeEFI))
	}
	return nil
}

// outcomes counts the transfers reported to OnTransfer by outcome.
type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) add(t Transfer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[t.Outcome()]++
}

func (o *outcomes) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Sprint(o.n)
}

// floodConfig serves with the default caps and a short timeout, so that the
// flood's admitted transfers, never ACKed, give up their slots in seconds:
// the flood takes them again, and the test's end need not wait long.
func floodConfig(o *outcomes) Config {
	return Config{
		Files:        embedded,
		Timeout:      500 * time.Millisecond,
		Retries:      2,
		MaxTransfers: DefaultMaxTransfers,
		MaxPerClient: DefaultMaxPerClient,
		OnTransfer:   o.add,
	}
}

// floodRun is what runFlood saw.
type floodRun struct {
	floodResult
	download     error         // what the legitimate client got
	downloadTook time.Duration // and how long it took
	peak         int           // descriptors open at most during the flood, above those before
	settled      int           // and settleTime after it
}

func (r floodRun) String() string {
	return fmt.Sprintf("%d RRQs in %v (%.0f/s); download: %v after %v; descriptors above the start: %d at peak, %d settled",
		r.sent, r.took.Round(time.Millisecond), float64(r.sent)/r.took.Seconds(),
		r.download, r.downloadTook.Round(time.Millisecond), r.peak, r.settled)
}

// runFlood floods addr from srcs while download runs.
func runFlood(t *testing.T, addr string, srcs []net.IP, download func() error) floodRun {
	t.Helper()
	base, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	stopPeak := fdPeak()
	started, stop, result := make(chan struct{}), make(chan struct{}), make(chan floodResult, 1)
	go func() { result <- flood(addr, srcs, started, stop) }()
	var r floodRun
	select {
	case <-started:
	case r.floodResult = <-result:
		t.Fatalf("flood stopped after %d requests: %v", r.sent, r.err)
	}
	start := time.Now()
	r.download = download()
	r.downloadTook = time.Since(start)
	close(stop)
	r.floodResult = <-result
	r.peak = stopPeak() - base
	if r.err != nil {
		t.Fatalf("flood stopped after %d requests: %v", r.sent, r.err)
	}
	// The fewest seen within settleTime: a loaded machine may take a while
	// to run the handlers that close the last refusals' sockets.
	r.settled = -1
	for deadline := time.Now().Add(settleTime); r.settled < 0 || time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n, err := openFDs()
		if err != nil {
			t.Fatal(err)
		}
		if r.settled < 0 || n-base < r.settled {
			r.settled = n - base
		}
	}
	return r
}

// checkFDs fails t unless the flood's descriptors stayed within the
// transfer cap and fdSlack, and went down to the held transfers after it.
func checkFDs(t *testing.T, r floodRun, held int) {
	t.Helper()
	if r.peak > DefaultMaxTransfers+fdSlack {
		t.Errorf("%d descriptors above the start at peak, want at most %d: the cap of %d and %d slack", r.peak, DefaultMaxTransfers+fdSlack, DefaultMaxTransfers, fdSlack)
	}
	if r.settled > held+fdSettled {
		t.Errorf("%d descriptors above the start %v after the flood, want at most %d: %d transfers and %d slack", r.settled, settleTime, held+fdSettled, held, fdSettled)
	}
}

// TestFlood: one host floods port 69 with read requests from thousands of
// source ports and never ACKs, while a legitimate client on another address
// downloads ipxe.efi. The host holds at most its MaxPerClient slots, the
// rest of its requests are refused at once, the process holds no more
// descriptors than that allows, and the download succeeds.
func TestFlood(t *testing.T) {
	if _, err := openFDs(); err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name   string
		client string // "" for pin/tftp's
	}{
		{"pin/tftp client", ""},
		{"atftp", atftp},
		{"tftp-hpa", tftpHPA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.client != "" {
				needClient(t, tc.client)
			}
			o := &outcomes{n: map[string]int{}}
			addr := startServer(t, floodConfig(o))
			r := runFlood(t, addr, loopbackHosts(1), func() error { return download(t, tc.client, addr) })
			t.Logf("one host: %v; outcomes so far %v", r, o)
			if r.download != nil {
				t.Errorf("download under flood: %v", r.download)
			}
			// The flooding host's slots, and the download's.
			checkFDs(t, r, DefaultMaxPerClient+1)
		})
	}
}

// TestFloodManyHosts: the same flood spread over 1,000 source addresses, as
// from a host spoofing them. The per-client cap no longer helps: the flood
// fills the transfer cap and newcomers are refused "busy" until the flood's
// transfers time out. What must hold is the bound on descriptors, and
// service once the flood ends.
func TestFloodManyHosts(t *testing.T) {
	if _, err := openFDs(); err != nil {
		t.Skip(err)
	}
	o := &outcomes{n: map[string]int{}}
	addr := startServer(t, floodConfig(o))
	r := runFlood(t, addr, loopbackHosts(1000), func() error { return download(t, "", addr) })
	t.Logf("1,000 hosts: %v; outcomes so far %v", r, o)
	if r.download != nil && !strings.Contains(r.download.Error(), ErrBusy.Error()) {
		t.Errorf("download during the flood: %v; want success or %q", r.download, ErrBusy)
	}
	checkFDs(t, r, DefaultMaxTransfers)

	// The flood's transfers give up within Timeout*(Retries+1) plus pin's
	// random backoff of up to a second per retry.
	end := time.Now()
	for {
		err := download(t, "", addr)
		if err == nil {
			break
		}
		if time.Since(end) > 10*time.Second {
			t.Fatalf("download 10 s after the flood: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("served again %v after the flood", time.Since(end).Round(time.Millisecond))
}
