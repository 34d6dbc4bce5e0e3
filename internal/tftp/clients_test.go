package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	ipxebin "github.com/tinkerbell/ipxedust/binary"
)

// The real TFTP clients installed in the lab (Debian tftp-hpa and atftp).
const (
	tftpHPA = "/usr/bin/tftp"
	atftp   = "/usr/bin/atftp"
)

func needClient(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s not installed (Debian package %s): %v", path, filepath.Base(path), err)
	}
}

// clientCmd builds the command line fetching file from addr into out.
// opts are atftp --option values; tftp-hpa cannot send options.
func clientCmd(ctx context.Context, t *testing.T, client, addr, file, out string, opts ...string) *exec.Cmd {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if client == tftpHPA {
		return exec.CommandContext(ctx, tftpHPA, "-m", "binary", host, port, "-c", "get", file, out)
	}
	args := []string{}
	for _, o := range opts {
		args = append(args, "--option", o)
	}
	args = append(args, "-g", "-r", file, "-l", out, host, port)
	return exec.CommandContext(ctx, atftp, args...)
}

func TestRealClients(t *testing.T) {
	addr := startServer(t, Config{Files: embedded})
	tests := []struct {
		name   string
		client string
		file   string
		opts   []string
		want   []byte // nil: no file must arrive
	}{
		{"tftp-hpa ipxe.efi, 512-byte blocks", tftpHPA, "ipxe.efi", nil, ipxebin.IpxeEFI},
		{"tftp-hpa undionly.kpxe", tftpHPA, "undionly.kpxe", nil, ipxebin.Undionly},
		{"tftp-hpa missing file", tftpHPA, "missing.efi", nil, nil},
		{"atftp blksize 1468 tsize", atftp, "ipxe.efi", []string{"blksize 1468", "tsize 0"}, ipxebin.IpxeEFI},
		{"atftp like EDK2, windowsize 4", atftp, "ipxe.efi", []string{"tsize 0", "blksize 1468", "windowsize 4"}, ipxebin.IpxeEFI},
		{"atftp snp.efi, 512", atftp, "snp.efi", nil, ipxebin.SNP},
		{"atftp traversal", atftp, "../../../../etc/passwd", []string{"blksize 1468"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needClient(t, tt.client)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out := filepath.Join(t.TempDir(), "out")
			cmd := clientCmd(ctx, t, tt.client, addr, tt.file, out, tt.opts...)
			output, err := cmd.CombinedOutput()
			got, readErr := os.ReadFile(out)
			if tt.want == nil {
				// tftp-hpa leaves an empty file behind; what matters is
				// that no content arrived.
				if len(got) > 0 {
					t.Fatalf("%s got %d bytes of %q, want a TFTP error\n%s", tt.client, len(got), tt.file, output)
				}
				return
			}
			if err != nil || readErr != nil {
				t.Fatalf("%v: %v, %v\n%s", cmd.Args, err, readErr, output)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("%s got %d bytes, want %d identical bytes\n%s", tt.client, len(got), len(tt.want), output)
			}
		})
	}
}

// TestConcurrentClients: a rack powering on at once. 20 real clients fetch
// ipxe.efi together and every copy must be byte-identical.
func TestConcurrentClients(t *testing.T) {
	const n = 20
	client, opts := atftp, []string{"blksize 1468", "tsize 0"}
	if _, err := os.Stat(atftp); err != nil {
		client, opts = tftpHPA, nil
	}
	needClient(t, client)
	addr := startServer(t, Config{Files: embedded})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	want := sha256.Sum256(ipxebin.IpxeEFI)

	cmds := make([]*exec.Cmd, n)
	outputs := make([]bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = clientCmd(ctx, t, client, addr, "ipxe.efi", filepath.Join(dir, fmt.Sprint(i)), opts...)
		cmds[i].Stdout, cmds[i].Stderr = &outputs[i], &outputs[i]
	}
	start := time.Now()
	for i, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("client %d: %v\n%s", i, err, outputs[i].String())
		}
	}
	t.Logf("%d x %s fetched ipxe.efi (%d bytes) in %v", n, filepath.Base(client), len(ipxebin.IpxeEFI), time.Since(start))
	for i := range cmds {
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			t.Errorf("client %d: %v", i, err)
			continue
		}
		if sha256.Sum256(got) != want {
			t.Errorf("client %d: %d bytes, sha256 %x, want %x", i, len(got), sha256.Sum256(got), want)
		}
	}
}
