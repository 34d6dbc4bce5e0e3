package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// ovmf is the UEFI firmware of Debian's ovmf package.
const ovmf = "/usr/share/qemu/OVMF.fd"

// vm is one machine of the lab: its NIC's MAC (or SMBIOS UUID) is what the stack under test
// matches, and Hostname what its templated config must carry.
type vm struct {
	Name     string
	MAC      string
	UUID     string // SMBIOS UUID (QEMU -uuid); when set, the Machine matches by it alone
	Hostname string
	UEFI     bool
}

// bootResult is what one VM showed on its serial console.
type bootResult struct {
	Serial string
	// Fetched is the time from QEMU's start to the end of the config on the
	// console; zero if it never got there.
	Fetched time.Duration
	Err     error // QEMU's own failure or timeout
}

// machine is a vm wired into the lab: a tap port on the bridge and a serial
// log. Both are made on the test's goroutine, so that boot, which only runs
// QEMU, can run on its own.
type machine struct {
	vm
	lab    *lab
	tap    string
	serial *os.File
}

func (l *lab) addMachine(v vm) *machine {
	l.t.Helper()
	serial, _ := l.logFile(v.Name + "-serial")
	l.t.Cleanup(func() { serial.Close() })
	return &machine{vm: v, lab: l, tap: l.addTap(), serial: serial}
}

// boot powers the machine on and waits until it powers itself off (the test
// OS does after printing its config) or timeout passes.
func (m *machine) boot(timeout time.Duration) bootResult {
	args := []string{
		"qemu-system-x86_64", "-accel", "tcg", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		// Tells SeaBIOS to print on the serial port too, so the BIOS VM's
		// console shows iPXE's progress, not only the kernel's.
		"-machine", "graphics=off",
		// The test OS ends with poweroff -f, a panic reboots: both end QEMU.
		"-no-reboot",
		"-netdev", "tap,id=n0,ifname=" + m.tap + ",script=no,downscript=no",
	}
	if m.UUID != "" {
		args = append(args, "-uuid", m.UUID)
	}
	if m.UEFI {
		// An empty romfile leaves the NIC without its iPXE option ROM, so
		// OVMF's own EDK2 PXE client boots: it must be handed an EFI NBP
		// over TFTP before iPXE can fetch anything over HTTP.
		args = append(args, "-bios", ovmf, "-m", "1024",
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+m.MAC)
	} else {
		// SeaBIOS boots the NIC's option ROM, which is iPXE (ipxe-qemu).
		args = append(args, "-m", "512", "-boot", "n",
			"-device", "virtio-net-pci,netdev=n0,mac="+m.MAC)
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := m.lab.command(ctx, m.lab.Switch, args...)
	con := &console{start: time.Now(), tee: m.serial}
	cmd.Stdout, cmd.Stderr = con, con
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s still running after %v: %w", m.Name, timeout, ctx.Err())
	} else if err != nil {
		err = fmt.Errorf("qemu %s: %w", m.Name, err)
	}
	serial, fetched := con.result()
	return bootResult{Serial: serial, Fetched: fetched, Err: err}
}

// console collects a VM's serial output and notes when the end marker of the
// config first appears.
type console struct {
	start time.Time
	tee   io.Writer

	mu      sync.Mutex
	buf     bytes.Buffer
	fetched time.Duration
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Search only what can hold a marker that ends in p.
	from := max(0, c.buf.Len()-len(ignitionEnd))
	c.buf.Write(p)
	if c.fetched == 0 && bytes.Contains(c.buf.Bytes()[from:], []byte(ignitionEnd)) {
		c.fetched = time.Since(c.start)
	}
	return c.tee.Write(p)
}

func (c *console) result() (string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.fetched
}

// ignitionConfig returns the config the test OS printed between its markers.
func ignitionConfig(serial string) ([]byte, error) {
	serial = strings.ReplaceAll(serial, "\r", "")
	if i := strings.Index(serial, testOSFailure); i >= 0 {
		line, _, _ := strings.Cut(serial[i:], "\n")
		return nil, fmt.Errorf("test OS failed: %s", line)
	}
	// Match the markers as whole lines: the command line echoed by the
	// kernel does not contain them, but a line of the config could.
	_, after, ok := strings.Cut(serial, "\n"+ignitionBegin+"\n")
	if !ok {
		return nil, errors.New("no " + ignitionBegin + " line on the serial console")
	}
	config, _, ok := strings.Cut(after, "\n"+ignitionEnd+"\n")
	if !ok {
		return nil, errors.New("no " + ignitionEnd + " line on the serial console")
	}
	return []byte(config), nil
}

// ignition is the part of an Ignition 3.x config the test checks.
type ignition struct {
	Ignition struct {
		Version string `json:"version"`
	} `json:"ignition"`
	Storage struct {
		Files []struct {
			Path     string `json:"path"`
			Contents struct {
				Source      string `json:"source"`
				Compression string `json:"compression"`
			} `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
}

// fileContents returns the contents of the file at path in the config.
func (c *ignition) fileContents(path string) (string, error) {
	for _, f := range c.Storage.Files {
		if f.Path != path {
			continue
		}
		if f.Contents.Compression != "" {
			return "", fmt.Errorf("%s: compressed (%s) contents not supported", path, f.Contents.Compression)
		}
		return decodeDataURL(f.Contents.Source)
	}
	return "", fmt.Errorf("no file %s in the config", path)
}

// decodeDataURL decodes an RFC 2397 data URL, the form Butane gives inline
// file contents.
func decodeDataURL(s string) (string, error) {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return "", fmt.Errorf("not a data URL: %q", s)
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return "", fmt.Errorf("data URL without ',': %q", s)
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return "", fmt.Errorf("data URL %q: %w", s, err)
		}
		return string(b), nil
	}
	text, err := url.PathUnescape(data)
	if err != nil {
		return "", fmt.Errorf("data URL %q: %w", s, err)
	}
	return text, nil
}

// parseIgnition parses a config and checks it claims spec 3.x.
func parseIgnition(config []byte) (*ignition, error) {
	var c ignition
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("config is not JSON: %w", err)
	}
	if !strings.HasPrefix(c.Ignition.Version, "3.") {
		return nil, fmt.Errorf("ignition.version is %q, want 3.x", c.Ignition.Version)
	}
	return &c, nil
}
