package tftp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	l := newLimiter(3, 2)
	steps := []struct {
		name     string
		client   netip.Addr
		release  bool // give a slot back instead of taking one
		wantBusy string
	}{
		{"a takes one", a, false, ""},
		{"a takes its second", a, false, ""},
		{"a over its own cap", a, false, "2 transfers in flight to 10.0.0.1"},
		{"b takes one", b, false, ""},
		{"c over the total", c, false, "3 transfers in flight"},
		{"a gives one back", a, true, ""},
		{"c fits now", c, false, ""},
		{"b over the total", b, false, "3 transfers in flight"},
	}
	for _, st := range steps {
		if st.release {
			l.release(st.client)
			continue
		}
		err := l.acquire(st.client)
		switch {
		case st.wantBusy == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.wantBusy != "" && (!errors.Is(err, ErrBusy) || !strings.HasSuffix(err.Error(), st.wantBusy)):
			t.Fatalf("%s: error %v, want ErrBusy with %q", st.name, err, st.wantBusy)
		case st.wantBusy != "" && (Transfer{Err: err}).Outcome() != "busy":
			t.Fatalf("%s: outcome %q, want busy", st.name, Transfer{Err: err}.Outcome())
		}
	}
	for _, addr := range []netip.Addr{a, b, c} {
		l.release(addr)
	}
	if l.total != 0 || len(l.clients) != 0 {
		t.Errorf("after releasing everything: total %d, clients %v; want none", l.total, l.clients)
	}
}

// TestCaps drives the caps through the server with raw requests whose
// clients never ACK, so each admitted one holds its slot until it times out.
func TestCaps(t *testing.T) {
	var (
		mu   sync.Mutex
		busy []Transfer
	)
	addr := startServer(t, Config{Files: embedded, MaxTransfers: 3, MaxPerClient: 2, OnTransfer: func(tr Transfer) {
		if tr.Outcome() == "busy" {
			mu.Lock()
			defer mu.Unlock()
			busy = append(busy, tr)
		}
	}})
	one, other := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 3)
	steps := []struct {
		name     string
		from     net.IP
		wantBusy bool
	}{
		{"first client, first transfer", one, false},
		{"first client, second transfer", one, false},
		{"first client over its cap", one, true},
		{"second client, first transfer", other, false},
		{"second client over the total", other, true},
	}
	for _, st := range steps {
		start := time.Now()
		reply := requestFrom(t, st.from, addr, 1, "ipxe.efi")
		op := binary.BigEndian.Uint16(reply)
		if !st.wantBusy {
			if op != 3 {
				t.Fatalf("%s: reply opcode %d (%q), want DATA", st.name, op, reply)
			}
			continue
		}
		if op != 5 || string(reply[4:len(reply)-1]) != ErrBusy.Error() {
			t.Fatalf("%s: reply %q, want ERROR %q", st.name, reply, ErrBusy.Error())
		}
		// Refused at once, not after the held transfers' timeouts.
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: refusal took %v", st.name, took)
		}
	}
	mu.Lock()
	if len(busy) != 2 || !strings.HasPrefix(busy[0].Client, "127.0.0.1:") || !strings.HasPrefix(busy[1].Client, "127.0.0.3:") {
		t.Errorf("busy transfers reported: %+v; want one from each client", busy)
	}
	mu.Unlock()

	// The held transfers give up on their silent clients (startServer's
	// short Timeout and Retries) and their slots serve again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reply := requestFrom(t, other, addr, 1, "ipxe.efi"); binary.BigEndian.Uint16(reply) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slots not given back after the silent clients' transfers timed out")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
