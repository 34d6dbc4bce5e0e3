package tftp

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// TestTransferLogLevel: the package's own transfer line is the info line
// only when no hook is set; with one, the hook's owner logs it (with the
// machine) and the package's line drops to debug, so each transfer has
// exactly one info line.
func TestTransferLogLevel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hook  bool
		level string
	}{
		{"no hook: info", false, "level=INFO"},
		{"hook: debug", true, "level=DEBUG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testutil.Buffer{}
			done := make(chan Transfer, 1)
			cfg := Config{Files: embedded, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			if tc.hook {
				cfg.OnTransfer = func(tr Transfer) { done <- tr }
			}
			addr := startServer(t, cfg)
			if _, err := fetch(t, addr, "undionly.kpxe", 1468); err != nil {
				t.Fatal(err)
			}
			if tc.hook {
				if tr := <-done; tr.File != "undionly.kpxe" || tr.Outcome() != "ok" {
					t.Errorf("hook got %+v", tr)
				}
			}
			deadline := time.Now().Add(3 * time.Second)
			for !strings.Contains(logs.String(), `msg="tftp transfer"`) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			var lines []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, `msg="tftp transfer"`) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], tc.level) {
				t.Errorf("transfer lines %q; want one at %s", lines, tc.level)
			}
		})
	}
}

// UEFI firmware starts every PXE boot with a size probe: a request with
// tsize whose OACK it answers with ERROR 8. That is outcome "probe", not
// "error", so an alert on TFTP errors does not fire on every UEFI boot.
func TestSizeProbe(t *testing.T) {
	done := make(chan Transfer, 1)
	addr := startServer(t, Config{Files: embedded, OnTransfer: func(tr Transfer) { done <- tr }})
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to, _ := net.ResolveUDPAddr("udp", addr)
	if _, err := c.WriteToUDP(rawRequest(1, "ipxe.efi", "tsize", "0", "blksize", "1468", "windowsize", "4"), to); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil || binary.BigEndian.Uint16(buf[:n]) != 6 {
		t.Fatalf("no OACK: %v %q", err, buf[:n])
	}
	errPkt := append(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 5), 8), "User aborted the transfer\x00"...)
	if _, err := c.WriteToUDP(errPkt, from); err != nil {
		t.Fatal(err)
	}
	select {
	case tr := <-done:
		if tr.Outcome() != "probe" || !errors.Is(tr.Err, ErrProbe) {
			t.Errorf("size probe: outcome %q (%v), want probe", tr.Outcome(), tr.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the probe never ended")
	}
}

// TestListeningLine: the server says where it listens, as the DHCP and HTTP
// servers do, so an operator sees TFTP came up (and on which address).
func TestListeningLine(t *testing.T) {
	logs := &testutil.Buffer{}
	addr := startServer(t, Config{Files: embedded, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	want := `msg="tftp listening" addr=` + addr
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(logs.String(), want) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}
