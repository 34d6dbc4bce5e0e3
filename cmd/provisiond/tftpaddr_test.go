package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/provisiond/provisiond/internal/ipxe"
)

func TestTFTPAddrFlag(t *testing.T) {
	ifaceIP := net.ParseIP("10.99.0.2")
	for _, tc := range []struct {
		name    string
		addr    string
		ifaceIP net.IP // of --dhcp-interface; nil: not given
		want    string // the address TFTP listens on; "" for off
		err     string // a usage error containing this
	}{
		{"off without either flag", "", nil, "", ""},
		{"default with --dhcp-interface", "", ifaceIP, "10.99.0.2:69", ""},
		{"alone", "10.99.0.2:69", nil, "10.99.0.2:69", ""},
		{"alone on all addresses", ":69", nil, ":69", ""},
		{"the interface's address", "10.99.0.2:69", ifaceIP, "10.99.0.2:69", ""},
		{"all addresses with --dhcp-interface", "0.0.0.0:69", ifaceIP, "0.0.0.0:69", ""},
		{"another address than the proxy names", "10.99.0.3:69", ifaceIP, "", "the proxyDHCP on --dhcp-interface eth0 names 10.99.0.2 as TFTP server"},
		{"no port", "10.99.0.2", nil, "", "want host:port or :port"},
		{"empty port", "10.99.0.2:", nil, "", "want host:port or :port"},
		{"IPv6", "[::1]:69", nil, "", "want an IPv4 address as host"},
		{"a name", "tftp.example.com:69", nil, "", "want an IPv4 address as host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serveConfig{TFTPAddr: tc.addr}
			if tc.ifaceIP != nil {
				c.DHCPInterface = "eth0"
			}
			err := c.finishTFTPAddr(tc.ifaceIP)
			if tc.err != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("finishTFTPAddr(%q) = %v; want a usage error with %q", tc.addr, err, tc.err)
				}
				return
			}
			if err != nil || c.TFTPAddr != tc.want {
				t.Fatalf("finishTFTPAddr(%q) = %v, TFTPAddr %q; want %q", tc.addr, err, c.TFTPAddr, tc.want)
			}
		})
	}
	// Through the command line, the error names the flag as given.
	if _, err := parseServe([]string{"--profiles", "x", "--tftp-addr", "nonsense"}); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `--tftp-addr "nonsense"`) {
		t.Errorf("parseServe --tftp-addr nonsense = %v", err)
	}
}

// With --tftp-addr and no --dhcp-interface, serve runs TFTP alone: a real
// TFTP client gets iPXE from it, and no proxyDHCP ever ran.
func TestServeTFTPWithoutProxyDHCP(t *testing.T) {
	profilesDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(profilesDir, "all.yaml"), []byte(testProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeUDPAddr(t)
	d, err := startDaemon(t, t.TempDir(), "--profiles", profilesDir, "--tftp-addr", addr)
	if err != nil {
		t.Fatal(err)
	}

	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	wt, err := c.Receive("undionly.kpxe", "octet")
	if err != nil {
		t.Fatalf("TFTP undionly.kpxe from %s: %v\n%s", addr, err, d.logs.String())
	}
	var got bytes.Buffer
	if _, err := wt.WriteTo(&got); err != nil {
		t.Fatalf("TFTP undionly.kpxe: %v", err)
	}
	bins, err := ipxe.NewBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := bins.Open("undionly.kpxe")
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("TFTP sent %d bytes, not the embedded undionly.kpxe (%d bytes)", got.Len(), len(want))
	}

	// The server counts the transfer once the client's last ACK arrives,
	// which may be just after the client has returned.
	const counted = `provisiond_tftp_transfers_total{file="undionly.kpxe",outcome="ok"} 1`
	metrics := httpGetBody(t, d.base+"/metrics")
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(metrics, counted) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		metrics = httpGetBody(t, d.base+"/metrics")
	}
	if !strings.Contains(metrics, counted) {
		t.Errorf("/metrics counts no TFTP transfer of undionly.kpxe:\n%s", grepLines(metrics, "provisiond_tftp_transfers_total"))
	}
	if strings.Contains(metrics, "provisiond_dhcp_packets_total{") {
		t.Errorf("/metrics counts DHCP packets, but no proxyDHCP should run:\n%s", grepLines(metrics, "provisiond_dhcp_packets_total"))
	}
	if logs := d.logs.String(); strings.Contains(logs, `msg="dhcp listening"`) || !strings.Contains(logs, `msg="tftp listening" addr=`+addr) {
		t.Errorf("want TFTP listening on %s and no proxyDHCP:\n%s", addr, logs)
	}
}

// freeUDPAddr returns a loopback UDP address nothing listens on.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.LocalAddr().String()
}

func httpGetBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}
