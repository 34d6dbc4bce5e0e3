package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vincent-petithory/dataurl"
)

// ovmf is the UEFI firmware of Debian's ovmf package.
const ovmf = "/usr/share/qemu/OVMF.fd"

// vm is one machine of the lab: its NIC's MAC (or SMBIOS UUID) is what the stack under test
// matches, and Hostname what its templated config must carry.
type vm struct {
	Name     string
	MAC      string
	UUID     string // SMBIOS UUID (QEMU -uuid); when set, the Machine matches by it alone
	IP       string // the Machine's ip: (an authoritative DHCP reservation); "" for none
	Hostname string
	UEFI     bool
	// HTTPBoot (UEFI only) turns OVMF's PXE clients off through fw_cfg, so
	// that only its UEFI HTTP Boot client can boot the VM.
	HTTPBoot bool
	// Routed puts the VM on the lab's routed subnet (lab.addRoutedSubnet),
	// where its DHCP reaches the servers only through the router's relay.
	Routed bool
	// SecureBoot (UEFI only) runs OVMF's Secure Boot build with Microsoft's
	// keys enrolled, which runs only signed EFI binaries (secboot.go).
	SecureBoot bool
	// varStore is the SecureBoot VM's own writable UEFI variable store;
	// addMachine makes it.
	varStore string
	// BMC is the bmc: of its Machine in the profiles; nil for none.
	BMC *vmBMC
}

// vmBMC is a Machine's bmc: in the profiles.
type vmBMC struct {
	Address     string // ipmi://host:port or redfish://host:port
	Credentials string // env:VAR, file:PATH
}

// bootResult is what one power-on of a VM showed on its serial console.
type bootResult struct {
	Serial string
	// Marks holds, for each marker the power-on watched for that appeared,
	// the time from QEMU's start to its first appearance.
	Marks map[string]time.Duration
	Err   error // QEMU's own failure or timeout
}

// Fetched is the time from power-on to the end of the config on the console;
// zero if it never got there.
func (r bootResult) Fetched() time.Duration { return r.Marks[ignitionEnd] }

// machine is a vm wired into the lab: a tap port on the bridge and a serial
// log. Both are made on the test's goroutine, so that powerOn, which only runs
// QEMU, can run on its own.
type machine struct {
	vm
	lab      *lab
	tap      string
	serial   *os.File
	powerOns int
}

func (l *lab) addMachine(v vm) *machine {
	l.t.Helper()
	serial, _ := l.logFile(v.Name + "-serial")
	l.t.Cleanup(func() { serial.Close() })
	bridge := vlanBridge
	if v.Routed {
		bridge = routedBridge
	}
	if v.SecureBoot {
		v.varStore = l.secureBootVars(v.Name)
	}
	return &machine{vm: v, lab: l, tap: l.addTap(bridge), serial: serial}
}

// power is one power-on of a machine: a QEMU process that runs until the
// guest powers off or reboots (-no-reboot turns both into QEMU's exit), its
// timeout passes, or powerOff is called.
type power struct {
	name    string
	timeout time.Duration
	con     *console
	cancel  context.CancelFunc
	ctx     context.Context
	done    chan struct{} // closed when QEMU has exited
	err     error         // Wait's result, once done is closed
	killed  atomic.Bool   // powerOff ended it
}

// qemuArgs is the command line of v's QEMU on the lab's tap port tap, on
// TCG, with its serial console on stdout. The caller adds the boot order of a
// BIOS VM and what a guest reboot does.
func qemuArgs(v vm, tap string) []string {
	args := []string{
		"qemu-system-x86_64", "-accel", "tcg", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		// Tells SeaBIOS to print on the serial port too, so the BIOS VM's
		// console shows iPXE's progress, not only the kernel's.
		"-machine", "graphics=off",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
	}
	if v.UUID != "" {
		args = append(args, "-uuid", v.UUID)
	}
	if v.UEFI {
		// An empty romfile leaves the NIC without its iPXE option ROM, so
		// OVMF's own EDK2 PXE client boots: it must be handed an EFI NBP
		// over TFTP before iPXE can fetch anything over HTTP.
		firmware := []string{"-bios", ovmf}
		if v.SecureBoot {
			firmware = secureBootFirmware(v.varStore)
		}
		args = append(append(args, firmware...), "-m", "1024",
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+v.MAC)
		if v.HTTPBoot {
			// Without them OVMF spends ~2 minutes in PXEv4 and PXEv6
			// before it tries HTTPv4 (bootindex does not reorder them).
			args = append(args,
				"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
				"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
		}
		return args
	}
	// SeaBIOS boots the NIC's option ROM, which is iPXE (ipxe-qemu).
	return append(args, "-m", "512", "-device", "virtio-net-pci,netdev=n0,mac="+v.MAC)
}

// powerOn starts the machine's QEMU, which PXE-boots (it has no disk), and
// watches its console for marks. The console of every power-on goes to the
// same serial log, each after a header line.
func (m *machine) powerOn(timeout time.Duration, marks ...string) (*power, error) {
	// The test OS ends with reboot -f (after phoning home) or poweroff -f
	// (on failure), a panic reboots: each ends QEMU, and a further boot is
	// a new power-on.
	args := append(qemuArgs(m.vm, m.tap), "-no-reboot")
	if !m.UEFI {
		args = append(args, "-boot", "n")
	}
	return m.powerOnArgs(args, timeout, marks...)
}

// powerOnArgs starts QEMU with args as m's next power-on.
func (m *machine) powerOnArgs(args []string, timeout time.Duration, marks ...string) (*power, error) {
	m.powerOns++
	fmt.Fprintf(m.serial, "\n==== %s: power-on %d (%s) ====\n", m.Name, m.powerOns, time.Now().Format(time.TimeOnly))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	p := &power{name: m.Name, timeout: timeout, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	p.con = &console{start: time.Now(), tee: m.serial, marks: marks}
	cmd := m.lab.command(ctx, m.lab.Switch, args...)
	cmd.Stdout, cmd.Stderr = p.con, p.con
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start qemu %s: %w", m.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// elapsed is the time since power-on.
func (p *power) elapsed() time.Duration { return time.Since(p.con.start) }

// wait waits until QEMU exits on its own or its timeout kills it.
func (p *power) wait() bootResult {
	<-p.done
	return p.result()
}

// powerOff ends QEMU if it still runs, like pulling the plug.
func (p *power) powerOff() bootResult {
	select {
	case <-p.done:
	default:
		p.killed.Store(true)
		p.cancel()
		<-p.done
	}
	return p.result()
}

func (p *power) result() bootResult {
	defer p.cancel()
	var err error
	switch {
	case p.killed.Load():
	case p.ctx.Err() != nil:
		err = fmt.Errorf("%s still running after %v: %w", p.name, p.timeout, p.ctx.Err())
	case p.err != nil:
		err = fmt.Errorf("qemu %s: %w", p.name, p.err)
	}
	serial, marks := p.con.result()
	return bootResult{Serial: serial, Marks: marks, Err: err}
}

// console collects a VM's serial output and notes when each of marks first
// appears.
type console struct {
	start time.Time
	tee   io.Writer
	marks []string

	mu   sync.Mutex
	buf  bytes.Buffer
	seen map[string]time.Duration
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.buf.Len()
	c.buf.Write(p)
	for _, mark := range c.marks {
		if _, ok := c.seen[mark]; ok {
			continue
		}
		// Search only what can hold a marker that ends in p.
		from := max(0, n-len(mark))
		if bytes.Contains(c.buf.Bytes()[from:], []byte(mark)) {
			if c.seen == nil {
				c.seen = make(map[string]time.Duration)
			}
			c.seen[mark] = time.Since(c.start)
		}
	}
	return c.tee.Write(p)
}

// marked returns when mark first appeared, if it has.
func (c *console) marked(mark string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.seen[mark]
	return d, ok
}

func (c *console) result() (string, map[string]time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), maps.Clone(c.seen)
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
	Systemd struct {
		Units []struct {
			Name     string `json:"name"`
			Enabled  *bool  `json:"enabled"`
			Contents string `json:"contents"`
		} `json:"units"`
	} `json:"systemd"`
}

// unitContents returns the contents of the systemd unit name in the config.
func (c *ignition) unitContents(name string) (string, error) {
	for _, u := range c.Systemd.Units {
		if u.Name == name {
			return u.Contents, nil
		}
	}
	return "", fmt.Errorf("no systemd unit %s in the config", name)
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
		du, err := dataurl.DecodeString(f.Contents.Source)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return string(du.Data), nil
	}
	return "", fmt.Errorf("no file %s in the config", path)
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

// consoleLine returns the rest of the first console line that starts with
// prefix.
func consoleLine(serial, prefix string) (string, bool) {
	for line := range strings.Lines(strings.ReplaceAll(serial, "\r", "")) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}
