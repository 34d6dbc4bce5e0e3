package grubfiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/grub"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/testutil"
	"github.com/provisiond/provisiond/internal/tftp"
)

const profiles = `kind: Profile
name: secure
boot: {loader: shim, kernel: /assets/vmlinuz, initrd: [/assets/initrd.gz], args: [console=ttyS0, "ds=nocloud-net;s=${config-url}&f="]}
config: {template: t.cfg}
---
kind: Profile
name: plain
boot: {kernel: /assets/vmlinuz}
---
kind: Machine
name: s1
match: {mac: "52:54:00:00:00:01"}
profile: secure
---
kind: Machine
name: s2
match: {mac: "52:54:00:00:00:02"}
profile: secure
---
kind: Machine
name: n3
match: {mac: "52:54:00:00:00:03"}
profile: plain
`

const (
	s1 = "52:54:00:00:00:01" // at 127.0.0.1, where the real clients send from
	s2 = "52:54:00:00:00:02" // at 127.0.0.2
	n3 = "52:54:00:00:00:03" // at 127.0.0.3, an iPXE profile
)

// serve runs the TFTP server as serve would for Secure Boot: the GRUB
// configs from a real boot core, and the assets under assets/.
func serve(t *testing.T) (addr string, db store.Store) {
	t.Helper()
	dir, assets := t.TempDir(), t.TempDir()
	for name, body := range map[string]string{"p.yaml": profiles, "t.cfg": "hello"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"vmlinuz": "kernel", "initrd.gz": "initrd"} {
		if err := os.WriteFile(filepath.Join(assets, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db = memstore.New(store.Options{})
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: "http://10.99.0.2:8080", Store: db,
		Neighbors: testutil.Neighbors{"127.0.0.1": s1, "127.0.0.2": s2, "127.0.0.3": n3}})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	srv, err := tftp.New(tftp.Config{Dynamic: New(core, nil), Dirs: []tftp.Dir{{Path: assets, Prefix: "assets/"}},
		Timeout: 250 * time.Millisecond, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn.LocalAddr().String(), db
}

// get fetches file with atftp (Debian's), as GRUB asks: blksize 1024, tsize.
func get(t *testing.T, addr, file string) []byte {
	t.Helper()
	if _, err := os.Stat("/usr/bin/atftp"); err != nil {
		t.Skipf("atftp not installed: %v", err)
	}
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/atftp", "--option", "blksize 1024", "--option", "tsize 0", "-g", "-r", file, "-l", out, host, port)
	output, err := cmd.CombinedOutput()
	got, _ := os.ReadFile(out)
	if err != nil {
		t.Logf("%v: %v\n%s", cmd.Args, err, output)
	}
	return got
}

// errorCode sends a read request for file from src and returns the TFTP
// ERROR code of the reply, or -1 for a DATA or OACK.
func errorCode(t *testing.T, src netip.Addr, addr, file string) int {
	t.Helper()
	lc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	to, _ := net.ResolveUDPAddr("udp4", addr)
	if _, err := lc.WriteToUDP([]byte("\x00\x01"+file+"\x00octet\x00"), to); err != nil {
		t.Fatal(err)
	}
	lc.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := lc.ReadFromUDP(buf)
	if err != nil || n < 4 {
		t.Fatalf("no reply to %q: %v", file, err)
	}
	if binary.BigEndian.Uint16(buf) != 5 {
		return -1
	}
	return int(binary.BigEndian.Uint16(buf[2:]))
}

// linuxLine is the kernel and the config URL GRUB passes, token included,
// ${config-url} expanded as iPXE would.
var linuxLine = regexp.MustCompile(`(?m)^linux '([^']+)' 'console=ttyS0' 'ds=nocloud-net;s=http://10\.99\.0\.2:8080/config\?mac=52-54-00-00-00-01&token=([A-Z0-9]+)&f='$`)

func TestGrubOverTFTP(t *testing.T) {
	addr, db := serve(t)
	ctx := context.Background()

	if got := get(t, addr, "grub/grub.cfg"); string(got) != grub.ChainConfig() {
		t.Fatalf("grub/grub.cfg = %q", got)
	}

	// s1's own file, from s1's address: its session's config, whose kernel
	// the same server serves.
	cfg := string(get(t, addr, grub.MachineFile(s1)))
	m := linuxLine.FindStringSubmatch(cfg)
	if m == nil {
		t.Fatalf("s1's config:\n%s", cfg)
	}
	sum := sha256.Sum256([]byte(m[2]))
	if p, err := db.Provisioning(ctx, s1); err != nil || p.TokenHash != hex.EncodeToString(sum[:]) || p.Profile != "secure" {
		t.Fatalf("s1's session %+v (%v) is not the one whose token its config carries", p, err)
	}
	if kernel := get(t, addr, m[1]); string(kernel) != "kernel" {
		t.Errorf("the config's kernel %s: %q", m[1], kernel)
	}
	if initrd := get(t, addr, "/assets/initrd.gz"); string(initrd) != "initrd" {
		t.Errorf("initrd: %q", initrd)
	}

	// The attacker's side: 127.0.0.1 is s1, so s2's file is refused to it,
	// with ERROR code 2 to any other address, and s2 gets no session.
	if got := get(t, addr, grub.MachineFile(s2)); len(got) > 0 {
		t.Fatalf("s1's address got s2's config:\n%s", got)
	}
	if code := errorCode(t, netip.MustParseAddr("127.0.0.9"), addr, grub.MachineFile(s2)); code != 2 {
		t.Errorf("s2's file from 127.0.0.9: code %d, want 2 (access violation)", code)
	}
	if _, err := db.Machine(ctx, s2); err == nil {
		t.Error("refused requests recorded s2")
	}
	if code := errorCode(t, netip.MustParseAddr("127.0.0.2"), addr, grub.MachineFile(s2)); code != -1 {
		t.Errorf("s2's file from s2's address: code %d, want data", code)
	}

	// Not found: an iPXE profile's machine, a name that is no MAC, a file
	// nobody serves.
	for _, file := range []string{grub.MachineFile(n3), "grub/machines/junk.cfg", "grub/x86_64-efi/grub.cfg"} {
		if code := errorCode(t, netip.MustParseAddr("127.0.0.3"), addr, file); code != 1 {
			t.Errorf("%s from n3's address: code %d, want 1 (not found)", file, code)
		}
	}
	if p, err := db.Provisioning(ctx, n3); err == nil && p.TokenHash != "" {
		t.Error("GRUB opened a session for an iPXE profile's machine")
	}
	if !bytes.Contains(get(t, addr, grub.MachineFile(s1)), []byte("linux '/assets/vmlinuz'")) {
		t.Error("s1 could not fetch its config again")
	}
}
