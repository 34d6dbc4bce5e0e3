package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// perClient is a Dynamic like the GRUB configs: a generic file for anyone,
// and one file per machine, served only to the address that machine has.
type perClient struct {
	generic map[string]string
	owner   map[string]netip.Addr // name -> the only client that may read it
}

func (p perClient) Open(_ context.Context, client netip.Addr, name string) (io.ReadSeeker, int64, error) {
	if body, ok := p.generic[name]; ok {
		return bytes.NewReader([]byte(body)), int64(len(body)), nil
	}
	owner, ok := p.owner[name]
	switch {
	case !ok:
		return nil, 0, fmt.Errorf("%q: %w", name, fs.ErrNotExist)
	case owner != client:
		return nil, 0, fmt.Errorf("%q to %s: %w", name, client, ErrDenied)
	}
	body := "config of " + name + " for " + client.String()
	return bytes.NewReader([]byte(body)), int64(len(body)), nil
}

// failing is a Dynamic whose renderer is broken.
type failing struct{}

func (failing) Open(context.Context, netip.Addr, string) (io.ReadSeeker, int64, error) {
	return nil, 0, errors.New("store unavailable")
}

// atftpGet fetches file with atftp, as GRUB asks (blksize 1024, tsize), and
// returns what arrived; tftp-hpa stands in where atftp is missing.
func atftpGet(t *testing.T, addr, file string) ([]byte, error) {
	t.Helper()
	client, opts := atftp, []string{"blksize 1024", "tsize 0"}
	if _, err := os.Stat(atftp); err != nil {
		client, opts = tftpHPA, nil
	}
	needClient(t, client)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out")
	cmd := clientCmd(ctx, t, client, addr, file, out, opts...)
	output, err := cmd.CombinedOutput()
	got, _ := os.ReadFile(out)
	if err != nil || len(got) == 0 && bytes.Contains(output, []byte("rror")) {
		return got, fmt.Errorf("%v: %v\n%s", cmd.Args, err, output)
	}
	return got, nil
}

// transfers collects OnTransfer reports.
func transfers() (chan Transfer, func(Transfer)) {
	c := make(chan Transfer, 64)
	return c, func(t Transfer) { c <- t }
}

func nextTransfer(t *testing.T, c chan Transfer, file string) Transfer {
	t.Helper()
	for {
		select {
		case tr := <-c:
			if tr.File == file {
				return tr
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no transfer of %q reported", file)
		}
	}
}

func TestDynamic(t *testing.T) {
	loopback := netip.MustParseAddr("127.0.0.1")
	dyn := perClient{
		generic: map[string]string{"grub/grub.cfg": "configfile /grub/machines/${net_default_mac}.cfg\n"},
		owner: map[string]netip.Addr{
			"grub/machines/52:54:00:00:00:01.cfg": loopback,
			"grub/machines/52:54:00:00:00:02.cfg": netip.MustParseAddr("127.0.0.2"),
			"ipxe.efi":                            netip.MustParseAddr("127.0.0.2"), // shadows the embedded one
		},
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "grub", "machines", "52:54:00:00:00:02.cfg"), "a static file must not answer for a denied one")
	writeFile(t, filepath.Join(root, "grub", "x86_64-efi", "grub.cfg"), "static")
	reports, hook := transfers()
	addr := startServer(t, Config{Dynamic: dyn, Files: embedded, Root: root, OnTransfer: hook})

	t.Run("generic file, real client", func(t *testing.T) {
		got, err := atftpGet(t, addr, "grub/grub.cfg")
		if err != nil || string(got) != dyn.generic["grub/grub.cfg"] {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("own file from its address, real client", func(t *testing.T) {
		got, err := atftpGet(t, addr, "/grub/machines/52:54:00:00:00:01.cfg")
		if err != nil || string(got) != "config of grub/machines/52:54:00:00:00:01.cfg for 127.0.0.1" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("another machine's file, real client", func(t *testing.T) {
		got, err := atftpGet(t, addr, "grub/machines/52:54:00:00:00:02.cfg")
		if err == nil || len(got) > 0 {
			t.Fatalf("127.0.0.1 got %q of another machine's file (%v)", got, err)
		}
		if tr := nextTransfer(t, reports, "grub/machines/52:54:00:00:00:02.cfg"); tr.Outcome() != "denied" || !errors.Is(tr.Err, ErrDenied) {
			t.Errorf("transfer %+v, outcome %q; want denied", tr, tr.Outcome())
		}
	})
	t.Run("denied is ERROR code 2", func(t *testing.T) {
		reply := requestFrom(t, net.IPv4(127, 0, 0, 3), addr, 1, "grub/machines/52:54:00:00:00:01.cfg", "blksize", "1024")
		if op, code := binary.BigEndian.Uint16(reply), binary.BigEndian.Uint16(reply[2:]); op != 5 || code != 2 {
			t.Errorf("reply opcode %d code %d (%q), want ERROR code 2", op, code, reply[4:])
		}
	})
	t.Run("own file from another loopback address", func(t *testing.T) {
		reply := requestFrom(t, net.IPv4(127, 0, 0, 2), addr, 1, "grub/machines/52:54:00:00:00:02.cfg")
		if op, block := binary.BigEndian.Uint16(reply), binary.BigEndian.Uint16(reply[2:]); op != 3 || block != 1 ||
			string(reply[4:]) != "config of grub/machines/52:54:00:00:00:02.cfg for 127.0.0.2" {
			t.Errorf("reply opcode %d block %d %q, want DATA 1 with 127.0.0.2's file", op, block, reply[4:])
		}
	})
	t.Run("not found falls through to the other sources", func(t *testing.T) {
		if got, err := fetch(t, addr, "grub/x86_64-efi/grub.cfg", 1024); err != nil || string(got) != "static" {
			t.Errorf("root file: %q, %v", got, err)
		}
		if got, err := fetch(t, addr, "snp.efi", 1024); err != nil || !bytes.Equal(got, embedded["snp.efi"]) {
			t.Errorf("embedded file: %d bytes, %v", len(got), err)
		}
	})
	t.Run("dynamic is asked first", func(t *testing.T) {
		// 127.0.0.1 may not read the Dynamic's ipxe.efi: refused, not
		// served from Files.
		if got, err := fetch(t, addr, "ipxe.efi", 1024); err == nil {
			t.Errorf("got %d bytes of a file the first source denied", len(got))
		}
	})
}

func TestDynamicFailure(t *testing.T) {
	reports, hook := transfers()
	addr := startServer(t, Config{Dynamic: failing{}, Files: embedded, OnTransfer: hook})
	if got, err := fetch(t, addr, "ipxe.efi", 1024); err == nil {
		t.Fatalf("a failing first source: served %d bytes from the next", len(got))
	}
	if tr := nextTransfer(t, reports, "ipxe.efi"); tr.Outcome() != "error" {
		t.Errorf("outcome %q, want error", tr.Outcome())
	}
}

// shimDir is an operator's --shim-dir holding Debian's signed shim and GRUB
// when installed (shim-signed, grub-efi-amd64-signed), else stand-ins.
func shimDir(t *testing.T) (dir string, want map[string][]byte) {
	t.Helper()
	dir = t.TempDir()
	want = map[string][]byte{}
	for name, src := range map[string]string{
		"shimx64.efi": "/usr/lib/shim/shimx64.efi.signed",
		"grubx64.efi": "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
		"mmx64.efi":   "/usr/lib/shim/mmx64.efi.signed",
	} {
		data, err := os.ReadFile(src)
		if err != nil {
			data = bytes.Repeat([]byte(name), 5000)
		}
		want[name] = data
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, want
}

func TestDirs(t *testing.T) {
	shim, want := shimDir(t)
	writeFile(t, filepath.Join(shim, "sub", "nested.efi"), "not at the top level")
	outside := filepath.Join(t.TempDir(), "secret")
	writeFile(t, outside, "secret")
	if err := os.Symlink(outside, filepath.Join(shim, "escape.efi")); err != nil {
		t.Fatal(err)
	}
	assets := t.TempDir()
	writeFile(t, filepath.Join(assets, "vmlinuz"), "kernel")
	writeFile(t, filepath.Join(assets, "debian", "initrd.gz"), "initrd")
	writeFile(t, filepath.Join(assets, "shimx64.efi"), "only under assets/")
	if err := os.Symlink(outside, filepath.Join(assets, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(assets, "escape-dir")); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "grubx64.efi"), "shadowed by the shim dir")
	writeFile(t, filepath.Join(root, "pxelinux.0"), "pxelinux")
	addr := startServer(t, Config{Files: embedded, Root: root, Dirs: []Dir{
		{Path: shim, TopLevel: true},
		{Path: assets, Prefix: "assets/"},
	}})

	for _, tt := range []struct {
		name, file string
		want       []byte // nil: refused
	}{
		{"shim", "shimx64.efi", want["shimx64.efi"]},
		{"grub beside it", "/grubx64.efi", want["grubx64.efi"]},
		{"MokManager", "mmx64.efi", want["mmx64.efi"]},
		{"root still served", "pxelinux.0", []byte("pxelinux")},
		{"embedded still first", "ipxe.efi", embedded["ipxe.efi"]},
		{"asset", "/assets/vmlinuz", []byte("kernel")},
		{"asset in a subdirectory", "assets/debian/initrd.gz", []byte("initrd")},
		{"an asset is not at the root", "vmlinuz", nil},
		{"shim dir subdirectory", "sub/nested.efi", nil},
		{"shim symlink out of its dir", "escape.efi", nil},
		{"asset symlink out of its dir", "assets/escape", nil},
		{"asset symlinked dir out of its dir", "assets/escape-dir/secret", nil},
		{"asset traversal", "assets/../" + filepath.Base(outside), nil},
		{"asset deep traversal", "assets/debian/../../../etc/passwd", nil},
		{"the assets dir itself", "assets/", nil},
		{"a revocation list shim looks for", "revocations_sbat.efi", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := atftpGet(t, addr, tt.file)
			if tt.want == nil {
				if len(got) > 0 {
					t.Fatalf("%q served %d bytes (%q), want refused", tt.file, len(got), got)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("%q: %d bytes, %v; want %d identical bytes", tt.file, len(got), err, len(tt.want))
			}
		})
	}
	if got, err := fetch(t, addr, "grubx64.efi", 1468); err != nil || !bytes.Equal(got, want["grubx64.efi"]) {
		t.Errorf("grubx64.efi: %d bytes, %v; the shim dir comes before --tftp-root", len(got), err)
	}
}

func TestDirErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	for name, cfg := range map[string]Config{
		"missing dir":       {Dirs: []Dir{{Path: filepath.Join(dir, "nope")}}},
		"dir is a file":     {Dirs: []Dir{{Path: file}}},
		"prefix escapes":    {Dirs: []Dir{{Path: dir, Prefix: "../assets/"}}},
		"prefix not clean":  {Dirs: []Dir{{Path: dir, Prefix: "a/./b"}}},
		"prefix backslash":  {Dirs: []Dir{{Path: dir, Prefix: `a\b`}}},
		"no source at all":  {},
		"root missing too":  {Files: embedded, Root: filepath.Join(dir, "nope")},
		"second dir broken": {Dirs: []Dir{{Path: dir}, {Path: file, Prefix: "assets"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := New(Config{Dirs: []Dir{{Path: dir, Prefix: "/assets"}}}); err != nil {
		t.Errorf("prefix /assets: %v", err)
	}
}

// TestLargeFile serves a 100 MB initrd to a client asking blksize 1024, as
// GRUB does: over 65535 blocks, so the block number rolls over, and the
// server streams the file rather than holding it.
func TestLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB transfer")
	}
	assets := t.TempDir()
	const size = 100 << 20
	f, err := os.Create(filepath.Join(assets, "initrd.img"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	block := make([]byte, 1024)
	for i := range size / len(block) {
		binary.BigEndian.PutUint64(block, uint64(i)) // every block distinct: a repeat or skip shows
		sum.Write(block)
		if _, err := f.Write(block); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, Config{Dirs: []Dir{{Path: assets, Prefix: "assets/"}}})
	start := time.Now()
	got, err := atftpGet(t, addr, "assets/initrd.img")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MB at blksize 1024 in %v", len(got)>>20, time.Since(start))
	if len(got) != size || [32]byte(sum.Sum(nil)) != sha256.Sum256(got) {
		t.Fatalf("got %d bytes, want %d identical", len(got), size)
	}
}
