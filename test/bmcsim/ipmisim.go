package bmcsim

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// IPMIConfig configures StartIPMISim.
type IPMIConfig struct {
	// Script is the chassis-control program (see WriteChassisScript).
	Script string
	// User and Password are the one admin account; default, when User is
	// empty, admin/password.
	User, Password string
	// Addr is host:port to serve IPMI-over-LAN on; default 127.0.0.1 and a
	// free UDP port.
	Addr string
	// Dir holds lan.conf, bmc.emu, the state directory and ipmi_sim.log;
	// default a t.TempDir().
	Dir string
	// Prefix is prepended to the ipmi_sim and readiness ipmitool argv, e.g.
	// {"ip", "netns", "exec", "ns"} to serve from a network namespace.
	Prefix []string
}

// IPMISim is a running ipmi_sim.
type IPMISim struct {
	Host, Port     string // where it serves IPMI-over-LAN (lanplus, -C 3)
	User, Password string // its admin account
	Dir            string // its configuration, state and ipmi_sim.log
	script         string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// StartIPMISim starts OpenIPMI's ipmi_sim as a BMC whose chassis is
// cfg.Script, returns once it answers ipmitool, and stops it, and powers the
// machine off, when t ends: the machine runs in a session of its own and
// would outlive the simulator.
func StartIPMISim(t testing.TB, cfg IPMIConfig) *IPMISim {
	t.Helper()
	testutil.RequireTools(t, testutil.Tool{Command: "ipmi_sim", Package: "openipmi"}, testutil.Tool{Command: "ipmitool", Package: "ipmitool"})
	if cfg.Script == "" {
		t.Fatal("StartIPMISim: no chassis script")
	}
	if cfg.User == "" {
		cfg.User, cfg.Password = "admin", "password"
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Addr == "" {
		cfg.Addr = freeUDPAddr(t)
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		t.Fatalf("StartIPMISim: %v", err)
	}
	for _, s := range []string{cfg.User, cfg.Password, cfg.Script} {
		// lan.conf strings cannot escape a quote.
		if strings.ContainsAny(s, "\"\n") {
			t.Fatalf("StartIPMISim: %q cannot go in lan.conf", s)
		}
	}
	s := &IPMISim{
		Host: host, Port: port, User: cfg.User, Password: cfg.Password,
		Dir: cfg.Dir, script: cfg.Script, exited: make(chan struct{}),
	}

	// ipmi_sim hands chassis_control to popen, hence the shell quoting;
	// the auth lists are what lanplus needs (-C 3: RAKP-HMAC-SHA1).
	lanConf := fmt.Sprintf(`name "bmcsim"
set_working_mc 0x20
  startlan 1
    addr %s %s
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 none md2 md5 straight
`, host, port, shellQuote(cfg.Script), cfg.User, cfg.Password)
	// Without an .emu defining the BMC there is no MC at 0x20 and sessions
	// fail silently.
	const emu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
`
	// A reused state dir would override lan.conf's users.
	state, err := os.MkdirTemp(cfg.Dir, "state")
	if err != nil {
		t.Fatal(err)
	}
	conf, emuPath := filepath.Join(cfg.Dir, "lan.conf"), filepath.Join(cfg.Dir, "bmc.emu")
	if err := os.WriteFile(conf, []byte(lanConf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(emuPath, []byte(emu), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(cfg.Dir, "ipmi_sim.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	// -n: without a terminal on stdin ipmi_sim's console dies at start.
	argv := append(append([]string{}, cfg.Prefix...), "ipmi_sim", "-n", "-c", conf, "-f", emuPath, "-s", state)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("StartIPMISim: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop(t) })

	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := append(append([]string{}, cfg.Prefix...), "ipmitool", "-I", "lanplus", "-C", "3", "-N", "1", "-R", "1",
			"-H", host, "-p", port, "-U", cfg.User, "-E", "chassis", "power", "status")
		cmd := exec.Command(probe[0], probe[1:]...)
		cmd.Env = append(os.Environ(), "IPMITOOL_PASSWORD="+cfg.Password)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("ipmi_sim exited: %v\n%s", s.cmd.ProcessState, s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipmi_sim on %s did not answer: %v: %s\nipmi_sim.log:\n%s", cfg.Addr, err, bytes.TrimSpace(out), s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops ipmi_sim and then the machine, in that order so a pending
// power cycle cannot restart it.
func (s *IPMISim) stop(t testing.TB) {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	if err := (ScriptChassis{Path: s.script}).SetPower(false); err != nil {
		t.Errorf("powering the machine off: %v", err)
	}
}

func (s *IPMISim) log() []byte {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "ipmi_sim.log"))
	return b
}

// freeUDPAddr returns a loopback UDP address nothing listens on now.
func freeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}
