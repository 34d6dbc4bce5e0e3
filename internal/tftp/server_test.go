package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	ipxebin "github.com/tinkerbell/ipxedust/binary"
)

// mapFiles is an in-memory Files, standing in for the embedded binaries.
type mapFiles map[string][]byte

func (m mapFiles) Open(name string) (io.ReadSeeker, int64, error) {
	data, ok := m[name]
	if !ok {
		return nil, 0, fmt.Errorf("%q: %w", name, fs.ErrNotExist)
	}
	return bytes.NewReader(data), int64(len(data)), nil
}

// brokenFiles fails every call with an error other than not-found.
type brokenFiles struct{}

func (brokenFiles) Open(string) (io.ReadSeeker, int64, error) {
	return nil, 0, errors.New("disk on fire")
}

// embedded is what the daemon serves from internal/ipxe.
var embedded = mapFiles{
	"undionly.kpxe": ipxebin.Undionly,
	"ipxe.efi":      ipxebin.IpxeEFI,
	"snp.efi":       ipxebin.SNP,
}

// startServer serves cfg on a loopback port until the test ends and returns
// the address.
func startServer(t *testing.T, cfg Config) string {
	t.Helper()
	// Short, so that shutting down after tests whose raw clients never ACK
	// does not wait out the production retransmission budget.
	if cfg.Timeout == 0 {
		cfg.Timeout = 250 * time.Millisecond
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	// Every test client is on 127.0.0.1, as no rack of machines would be.
	if cfg.MaxPerClient == 0 {
		cfg.MaxPerClient = DefaultMaxTransfers
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return conn.LocalAddr().String()
}

// fetch gets name with pin/tftp's client; blksize 0 asks for no options.
func fetch(t *testing.T, addr, name string, blksize int) ([]byte, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	if blksize > 0 {
		c.SetBlockSize(blksize)
		c.RequestTSize(true)
	}
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTransfer(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "pxelinux.0"), "pxelinux")
	writeFile(t, filepath.Join(root, "pxelinux.cfg", "default"), "DEFAULT linux")
	writeFile(t, filepath.Join(root, "ipxe.efi"), "shadowed by the embedded binary")
	writeFile(t, filepath.Join(root, "empty"), "")
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("pxelinux.cfg/default", filepath.Join(root, "inside-link")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret")
	writeFile(t, outside, "secret")
	if err := os.Symlink(outside, filepath.Join(root, "escape-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(root, "escape-dir")); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, Config{Files: embedded, Root: root})

	tests := []struct {
		name    string
		file    string
		want    []byte // nil: the transfer must fail
		blksize int
	}{
		{"embedded ipxe.efi, 512", "ipxe.efi", ipxebin.IpxeEFI, 0},
		{"embedded ipxe.efi, 1468", "ipxe.efi", ipxebin.IpxeEFI, 1468},
		{"embedded with leading slash", "/undionly.kpxe", ipxebin.Undionly, 1468},
		{"embedded snp.efi", "snp.efi", ipxebin.SNP, 1468},
		{"root file", "pxelinux.0", []byte("pxelinux"), 0},
		{"root file in subdirectory", "/pxelinux.cfg/default", []byte("DEFAULT linux"), 1468},
		{"empty root file", "empty", []byte{}, 0},
		{"symlink inside root", "inside-link", []byte("DEFAULT linux"), 0},
		{"symlink escaping root", "escape-link", nil, 0},
		{"symlinked dir escaping root", "escape-dir/secret", nil, 0},
		{"directory", "dir", nil, 0},
		{"missing", "nope", nil, 0},
		{"traversal", "../" + filepath.Base(filepath.Dir(outside)) + "/secret", nil, 0},
		{"absolute", "/" + outside, nil, 0},
		{"etc passwd", "/etc/passwd", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fetch(t, addr, tt.file, tt.blksize)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("fetch(%q) returned %d bytes, want a TFTP error", tt.file, len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("fetch(%q): %v", tt.file, err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("fetch(%q) = %d bytes, want %d", tt.file, len(got), len(tt.want))
			}
		})
	}
}

func TestTransferFilesOnly(t *testing.T) {
	addr := startServer(t, Config{Files: embedded})
	if _, err := fetch(t, addr, "pxelinux.0", 0); err == nil {
		t.Error("fetch of a file in no source succeeded")
	}
	got, err := fetch(t, addr, "ipxe.efi", 1468)
	if err != nil || !bytes.Equal(got, ipxebin.IpxeEFI) {
		t.Errorf("fetch(ipxe.efi) = %d bytes, %v", len(got), err)
	}
}

func TestTransferBrokenFiles(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "ipxe.efi"), "from root")
	done := make(chan Transfer, 1)
	addr := startServer(t, Config{Files: brokenFiles{}, Root: root, OnTransfer: func(tr Transfer) { done <- tr }})
	// A failing source is an error, not a reason to serve something else.
	if data, err := fetch(t, addr, "ipxe.efi", 0); err == nil {
		t.Fatalf("fetch succeeded with %q", data)
	}
	if got := <-done; got.Outcome() != "error" {
		t.Errorf("outcome %q, want error", got.Outcome())
	}
}

func TestNew(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, "x")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"nothing to serve", Config{}},
		{"missing root", Config{Root: filepath.Join(t.TempDir(), "nope")}},
		{"root is a file", Config{Files: embedded, Root: file}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Error("New succeeded, want an error")
			}
		})
	}
}

// request sends a raw TFTP request from 127.0.0.1 and returns the first reply.
func request(t *testing.T, addr string, op uint16, file string, opts ...string) []byte {
	t.Helper()
	return requestFrom(t, net.IPv4(127, 0, 0, 1), addr, op, file, opts...)
}

// requestFrom sends a raw TFTP request from src, any loopback address, and
// returns the first reply.
func requestFrom(t *testing.T, src net.IP, addr string, op uint16, file string, opts ...string) []byte {
	t.Helper()
	pkt := rawRequest(op, file, opts...)
	// Not a connected socket: the reply comes from the transfer's new port.
	lc, err := net.ListenUDP("udp", &net.UDPAddr{IP: src})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	to, _ := net.ResolveUDPAddr("udp", addr)
	if _, err := lc.WriteToUDP(pkt, to); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	n, _, err := lc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no reply to request for %q: %v", file, err)
	}
	return buf[:n]
}

// rawRequest builds an RRQ (op 1) or WRQ (op 2) packet in octet mode.
func rawRequest(op uint16, file string, opts ...string) []byte {
	pkt := binary.BigEndian.AppendUint16(nil, op)
	for _, s := range append([]string{file, "octet"}, opts...) {
		pkt = append(append(pkt, s...), 0)
	}
	return pkt
}

// oackOptions parses an OACK packet.
func oackOptions(t *testing.T, pkt []byte) map[string]string {
	t.Helper()
	if binary.BigEndian.Uint16(pkt) != 6 {
		t.Fatalf("reply opcode %d, want OACK (6): %q", binary.BigEndian.Uint16(pkt), pkt)
	}
	fields := strings.Split(strings.TrimSuffix(string(pkt[2:]), "\x00"), "\x00")
	opts := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		opts[fields[i]] = fields[i+1]
	}
	return opts
}

func TestOptionNegotiation(t *testing.T) {
	addr := startServer(t, Config{Files: embedded})
	size := strconv.Itoa(len(ipxebin.IpxeEFI))
	tests := []struct {
		name string
		opts []string
		want map[string]string // nil: no OACK, DATA block 1 of 512 bytes
	}{
		{"no options: RFC 1350 512-byte blocks", nil, nil},
		{"blksize 1468", []string{"blksize", "1468"}, map[string]string{"blksize": "1468"}},
		{"blksize above the cap", []string{"blksize", "8192"}, map[string]string{"blksize": "1468"}},
		{"blksize below the cap", []string{"blksize", "1024"}, map[string]string{"blksize": "1024"}},
		{"tsize", []string{"tsize", "0"}, map[string]string{"tsize": size}},
		{"EDK2: tsize blksize windowsize", []string{"tsize", "0", "blksize", "1468", "windowsize", "4"},
			map[string]string{"tsize": size, "blksize": "1468"}},
		{"unknown option only", []string{"multicast", ""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := request(t, addr, 1, "ipxe.efi", tt.opts...)
			if tt.want == nil {
				if op := binary.BigEndian.Uint16(reply); op != 3 || len(reply) != 4+512 || binary.BigEndian.Uint16(reply[2:]) != 1 {
					t.Fatalf("reply opcode %d, %d bytes; want DATA block 1 with 512 bytes", op, len(reply)-4)
				}
				return
			}
			got := oackOptions(t, reply)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("OACK %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteRefused(t *testing.T) {
	root := t.TempDir()
	addr := startServer(t, Config{Files: embedded, Root: root})

	reply := request(t, addr, 2, "upload.bin")
	if op, code := binary.BigEndian.Uint16(reply), binary.BigEndian.Uint16(reply[2:]); op != 5 || code != 2 {
		t.Errorf("reply to WRQ: opcode %d code %d (%q), want ERROR code 2", op, code, reply[4:])
	}

	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	rf, err := c.Send("ipxe.efi", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("overwrite"))
	}
	if err == nil {
		t.Error("pin/tftp client write succeeded")
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Errorf("root has %d entries after writes, want none", len(entries))
	}
	if got, err := fetch(t, addr, "ipxe.efi", 1468); err != nil || !bytes.Equal(got, ipxebin.IpxeEFI) {
		t.Errorf("ipxe.efi changed after write attempt: %d bytes, %v", len(got), err)
	}
}

func TestGarbagePackets(t *testing.T) {
	addr := startServer(t, Config{Files: embedded})
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rrq := func(parts ...string) []byte {
		pkt := []byte{0, 1}
		for _, p := range parts {
			pkt = append(append(pkt, p...), 0)
		}
		return pkt
	}
	garbage := [][]byte{
		{},
		{0},
		{0, 1},
		{0, 1, 'a'},
		[]byte("\x00\x01ipxe.efi"),     // no terminator, no mode
		[]byte("\x00\x01ipxe.efi\x00"), // no mode
		[]byte("\x00\x02\x00\x00"),     // WRQ, empty name
		{0, 3, 0, 1, 'x'},              // DATA to port 69
		{0, 4, 0, 1},                   // ACK to port 69
		{0, 5, 0, 1, 0},                // ERROR to port 69
		{0, 6, 'a', 0, 'b', 0},         // OACK to port 69
		{0, 99, 1, 2, 3},               // unknown opcode
		{0xff, 0xff, 0xff, 0xff},
		bytes.Repeat([]byte{0xa5}, 65000), // oversized
		append([]byte{0, 1}, bytes.Repeat([]byte("a"), 9000)...), // oversized RRQ
		rrq("ipxe.efi", "octet", "blksize"),                      // option without value
		rrq("ipxe.efi", "octet", "blksize", "-1"),
		rrq("ipxe.efi", "octet", "blksize", "99999999999999999999"),
		rrq("ipxe.efi", "octet", "tsize", "abc"),
		rrq("ipxe.efi", "octet", "timeout", "0"),
		rrq("ipxe.efi", "bogusmode"),
		rrq("", "octet"),
		rrq("../../etc/passwd", "octet"),
	}
	for range 3 {
		for _, pkt := range garbage {
			if _, err := conn.Write(pkt); err != nil {
				t.Fatalf("send %d bytes: %v", len(pkt), err)
			}
		}
	}
	got, err := fetch(t, addr, "ipxe.efi", 1468)
	if err != nil {
		t.Fatalf("fetch after garbage: %v", err)
	}
	if !bytes.Equal(got, ipxebin.IpxeEFI) {
		t.Fatalf("fetch after garbage: %d bytes, want %d", len(got), len(ipxebin.IpxeEFI))
	}
}

func TestOnTransfer(t *testing.T) {
	var (
		mu  sync.Mutex
		got []Transfer
	)
	addr := startServer(t, Config{Files: embedded, OnTransfer: func(tr Transfer) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, tr)
	}})
	if _, err := fetch(t, addr, "snp.efi", 1468); err != nil {
		t.Fatal(err)
	}
	fetch(t, addr, "missing.efi", 0)
	fetch(t, addr, "../x", 0)

	// The hook runs after the last ACK, which may be after the client returns.
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("OnTransfer called %d times, want 3: %+v", len(got), got)
	}
	byFile := map[string]Transfer{}
	for _, tr := range got {
		byFile[tr.File] = tr
	}
	ok := byFile["snp.efi"]
	if ok.Outcome() != "ok" || ok.Bytes != int64(len(ipxebin.SNP)) || ok.Duration <= 0 || !strings.HasPrefix(ok.Client, "127.0.0.1:") {
		t.Errorf("snp.efi transfer = %+v", ok)
	}
	if tr := byFile["missing.efi"]; tr.Outcome() != "not_found" || tr.Bytes != 0 {
		t.Errorf("missing.efi transfer = %+v, outcome %q", tr, tr.Outcome())
	}
	if tr := byFile["../x"]; tr.Outcome() != "denied" {
		t.Errorf("../x transfer = %+v, outcome %q", tr, tr.Outcome())
	}
}

func TestMaxTransferTime(t *testing.T) {
	done := make(chan Transfer, 1)
	addr := startServer(t, Config{
		Files:           embedded,
		MaxTransferTime: time.Nanosecond,
		OnTransfer:      func(tr Transfer) { done <- tr },
	})
	if _, err := fetch(t, addr, "ipxe.efi", 1468); err == nil {
		t.Fatal("transfer past MaxTransferTime succeeded")
	}
	if tr := <-done; !errors.Is(tr.Err, errTransferTooLong) {
		t.Errorf("transfer error %v, want errTransferTooLong", tr.Err)
	}
}

// TestShutdownWithVanishedClient starts a transfer whose client never ACKs,
// then cancels: Serve must return within the retransmission budget.
func TestShutdownWithVanishedClient(t *testing.T) {
	srv, err := New(Config{Files: embedded, Timeout: 100 * time.Millisecond, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()

	request(t, conn.LocalAddr().String(), 1, "ipxe.efi") // DATA 1 arrives, never ACKed
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5s after cancel with a vanished client")
	}
	if _, err := conn.WriteTo([]byte{0}, conn.LocalAddr()); err == nil {
		t.Error("conn still open after Serve returned")
	}
}

// TestListenAndServe serves on the wildcard address, as ":69" does, and
// checks that blksize 1468 is still granted there: pin/tftp falls back to 512
// when it cannot tell which interface a request came in on.
func TestListenAndServe(t *testing.T) {
	srv, err := New(Config{Files: embedded, Timeout: 250 * time.Millisecond, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ListenAndServe(context.Background(), "256.0.0.1:69"); err == nil {
		t.Fatal("ListenAndServe on a bad address succeeded")
	}
	// Find a free port, then serve on it.
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(probe.LocalAddr().(*net.UDPAddr).Port)
	probe.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx, ":"+port) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	}()

	addr := net.JoinHostPort("127.0.0.1", port)
	var got []byte
	for range 50 {
		if got, err = fetch(t, addr, "undionly.kpxe", 0); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || !bytes.Equal(got, ipxebin.Undionly) {
		t.Fatalf("fetch = %d bytes, %v", len(got), err)
	}
	if opts := oackOptions(t, request(t, addr, 1, "ipxe.efi", "blksize", "1468")); opts["blksize"] != "1468" {
		t.Errorf("OACK %v on the wildcard listener, want blksize 1468", opts)
	}
}
