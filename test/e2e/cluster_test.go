package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
)

// The hosts TestCluster adds to the VLAN.
const (
	provBAddr = "10.99.0.3" // the second provisiond; the first is at provAddr
	etcdAddr  = "10.99.0.4" // etcd, the store both instances share
	bmcAddr   = "10.99.0.5" // the VM's BMC (ipmi_sim)
)

// TestCluster runs two provisiond instances on the VLAN, each with
// proxyDHCP, TFTP and HTTP, sharing one etcd, and a BIOS VM behind an
// ipmi_sim BMC whose guest reboot powers it off (so the test chooses which
// instance is alive at its next boot):
//
//  1. The BMC is registered once, through the first instance (sealed in
//     etcd with the key both share); the second powers the VM on with it.
//     Both answer its PXE; it installs through one of them.
//  2. That instance is SIGKILLed. The survivor powers the VM on again and
//     tells it to boot from disk: boot-once lives in the shared store.
//  3. Reprovision with power through the survivor: the VM installs again,
//     with a new session token, through the survivor.
//  4. The killed instance is restarted and powers the VM on; then
//     reprovision with power is asked of both instances at once: the BMC
//     must power-cycle the VM exactly once, and one answer must say the
//     other's cycle already did it.
//
// Under TCG, measured from the power-on or the request: installed ~26 s, boot
// from disk ~19 s, reinstalled ~26 s; the whole test about 100 s (165 s
// with the host's load average at 18, installs then taking ~57 s).
func TestCluster(t *testing.T) {
	kernel, release, busybox := requireLab(t)
	requireBMCLab(t)
	l := newLab(t)
	tos := buildTestOS(t, kernel, release, busybox)
	l.startSiteDHCP()
	etcdURL := l.startEtcd(l.addHost("etcd", etcdAddr), etcdAddr)
	m := l.addBMCMachineAt(vm{Name: "vm-cluster", MAC: "52:54:00:e2:e2:01", Hostname: "vm-cluster.e2e"}, bmcIPMI,
		bmcSite{ns: l.addHost("bmc", bmcAddr), host: bmcAddr, offOnReboot: true})
	c := l.startCluster(tos, etcdURL, m.vm)
	m.clusterLifecycle(t, c)
}

// cluster is two provisiond instances sharing one etcd, the API token and
// the key that seals BMC credentials.
type cluster struct {
	lab   *lab
	specs [2]provisiondSpec
	runs  [2]*provisiondRun
	// starts counts each instance's starts, to name the log of a restart.
	starts [2]int
}

// startCluster starts the instances: "a" in the lab's Prov namespace at
// provAddr, "b" in a namespace of its own at provBAddr, both serving v (its
// BMC left to the API) from the same profiles.
func (l *lab) startCluster(tos *testOS, etcdURL string, v vm) *cluster {
	t := l.t
	t.Helper()
	v.BMC = nil
	profiles := writeProfiles(t, tos, []vm{v})
	shared := t.TempDir()
	tokenFile := filepath.Join(shared, "api-token")
	if err := os.WriteFile(tokenFile, []byte(rand.Text()+rand.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--store", "etcd", "--etcd-endpoints", etcdURL,
		"--api-token-file", tokenFile,
		// The first instance generates it; the second must find it there.
		"--secret-key-file", filepath.Join(shared, "secret-key")}
	c := &cluster{lab: l}
	for i, host := range []struct{ ns, addr string }{{l.Prov, provAddr}, {l.addHost("prov-b", provBAddr), provBAddr}} {
		c.specs[i] = provisiondSpec{
			name: "provisiond-" + string(rune('a'+i)), ns: host.ns, addr: host.addr,
			profiles: profiles, assets: tos.Dir, data: t.TempDir(), args: args,
		}
		c.start(i)
	}
	return c
}

// start starts instance i (again) and waits until it answers.
func (c *cluster) start(i int) {
	c.lab.t.Helper()
	spec := c.specs[i]
	if c.starts[i] > 0 {
		spec.name = fmt.Sprintf("%s-start%d", spec.name, c.starts[i]+1)
	}
	c.starts[i]++
	c.runs[i] = c.lab.serveProvisiond(spec)
}

// kill ends instance i with SIGKILL, a crash: no shutdown of any kind.
func (c *cluster) kill(i int) {
	c.lab.t.Helper()
	d := c.runs[i].daemon
	if err := d.cmd.Process.Kill(); err != nil {
		c.lab.t.Fatalf("kill %s: %v", d.name, err)
	}
	<-d.done
}

// served is the index of the instance whose URL starts url.
func (c *cluster) served(t *testing.T, u string) int {
	t.Helper()
	for i, r := range c.runs {
		if strings.HasPrefix(u, r.url+"/") {
			return i
		}
	}
	t.Fatalf("%s is none of the instances' URLs (%s, %s)", u, c.runs[0].url, c.runs[1].url)
	return 0
}

// clusterLifecycle takes the machine through TestCluster's steps.
func (m *bmcMachine) clusterLifecycle(t *testing.T, c *cluster) {
	a, b := c.runs[0], c.runs[1]
	var events []apiEvent
	defer func() {
		if !t.Failed() {
			return
		}
		for _, r := range c.runs {
			if evs, err := r.api.events(m.MAC); err == nil {
				for _, e := range evs {
					t.Logf("%s: event %s", m.Name, e)
				}
				return
			}
		}
	}()
	// waitOff waits until the VM's guest has powered it off (its reboot,
	// under -no-reboot) after the phone-home's status is on the console.
	waitOff := func(from int) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			on, err := m.chassis.Power()
			_, phoned := consoleLine(m.serialSince(from), phonedHome+" ")
			if err == nil && !on && phoned {
				return m.serialSince(from)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not off with the phone-home on its console 30 s after the install (on %v, %v; phoned home %v)", m.Name, on, err, phoned)
			}
			time.Sleep(pollEvery)
		}
	}
	powerOn := func(pd *provisiondRun) {
		t.Helper()
		var res apiPowerResult
		if _, err := pd.api.post("/machines/"+url.PathEscape(m.Name)+"/power", map[string]string{"action": "on"}, &res); err != nil {
			t.Fatal(err)
		}
		if !res.OK || res.Done != "on" || res.Before != "off" {
			t.Fatalf("power on through %s answered %+v, want ok, done on, before off", pd.url, res)
		}
	}

	// 1. The BMC registered once, through a; b finds it in the shared store
	// and unseals it with the shared key to power the VM on.
	var set, got struct {
		Address string `json:"address"`
		Source  string `json:"source"`
	}
	body, err := json.Marshal(map[string]string{"address": m.BMC.Address, "username": bmcUser, "password": bmcPassword})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.api.do(http.MethodPut, "/machines/"+url.PathEscape(m.Name)+"/bmc", body, &set); err != nil {
		t.Fatal(err)
	}
	if _, err := b.api.get("/machines/"+url.PathEscape(m.Name)+"/bmc", &got); err != nil {
		t.Fatal(err)
	}
	if got.Address != m.BMC.Address || got.Source != "api" {
		t.Fatalf("%s shows the BMC set through %s as %+v, want address %s from the api", b.url, a.url, got, m.BMC.Address)
	}
	from1 := m.serialSize()
	start := time.Now()
	powerOn(b)
	m.waitBoots(t, "disk") // no override: disk, then the network
	events = m.waitEvents(t, b.api, "the machine installed", from1, bootTimeout, "installed", 1)
	serial1 := waitOff(from1)
	ignURL, ok := consoleLine(serial1, "PVD-IGNITION-URL ")
	if !ok {
		t.Fatal("no PVD-IGNITION-URL line on the first boot's console")
	}
	x := c.served(t, ignURL)
	y := 1 - x
	sx, sy := c.runs[x], c.runs[y]
	token1 := checkConfigFrom(t, sx.url, m.vm, nil, serial1)
	checkPhoneHome(t, serial1, token1)
	for _, r := range c.runs {
		if !offered(t, r, m.MAC) {
			t.Errorf("%s logged no DHCP offer to %s: every instance on the VLAN must answer its PXE", r.url, m.MAC)
		}
	}
	t.Logf("%s: installed through %s: power on to config fetched %s, to installed %s",
		m.Name, sx.url, seconds(since(start, events, "config-served", 0)), seconds(since(start, events, "installed", 0)))

	// 2. The instance that installed it dies; the survivor powers the VM
	// on and, from the shared store alone, sends it to its disk.
	c.kill(x)
	from2 := m.serialSize()
	start = time.Now()
	powerOn(sy)
	m.waitBoots(t, "disk", "disk")
	events = m.waitEvents(t, sy.api, "a boot-local event", from2, secondBootTimeout, "boot-local", 1)
	sy.daemon.waitLog(t, "script: boot from disk", 10*time.Second)
	m.waitFor(t, "the firmware back in control", from2, restGrace, func() (bool, error) {
		return strings.Contains(m.serialSince(from2), "No bootable device"), nil
	})
	t.Logf("%s: with %s killed, power on through %s to boot-local %s", m.Name, sx.url, sy.url, seconds(since(start, events, "boot-local", 0)))
	for _, s := range []string{"PVD-IGNITION-URL", ignitionBegin, "Linux version"} {
		if strings.Contains(m.serialSince(from2), s) {
			t.Errorf("the boot after the install shows %q: it booted the test OS again instead of the disk", s)
		}
	}
	if n := len(ofType(events, "config-served")); n != 1 {
		t.Errorf("%d config-served events after the boot from disk, want 1", n)
	}

	// 3. Reprovision through the survivor: a power cycle into a reinstall
	// there, with a new session.
	from3 := m.serialSize()
	start = time.Now()
	var again reprovisionAnswer
	if _, err := sy.api.post("/machines/"+url.PathEscape(m.Name)+"/reprovision",
		map[string]any{"reason": "e2e: reinstall through the survivor", "power": true}, &again); err != nil {
		t.Fatal(err)
	}
	if p := again.BMC; p == nil || !p.OK || p.Done != "cycle" || p.Before != "on" {
		t.Fatalf("reprovision through %s answered bmc_result %+v, want ok, done cycle, before on", sy.url, p)
	}
	m.waitBoots(t, "disk", "disk", "pxe")
	events = m.waitEvents(t, sy.api, "the machine installed again", from3, bootTimeout, "installed", 2)
	serial3 := waitOff(from3)
	token3 := checkConfigFrom(t, sy.url, m.vm, nil, serial3)
	checkPhoneHome(t, serial3, token3)
	if token3 == token1 {
		t.Errorf("the reinstall was served the first install's session token %s", token1)
	}
	if n := len(ofType(events, "config-served")); n != 2 {
		t.Errorf("%d config-served events after the reinstall, want 2", n)
	}
	t.Logf("%s: reprovision through %s to config fetched %s, to installed %s",
		m.Name, sy.url, seconds(since(start, events, "config-served", 1)), seconds(since(start, events, "installed", 1)))

	// 4. Both instances up again, the VM on; reprovision asked of both at
	// once must cycle it once.
	c.start(x)
	sx = c.runs[x]
	boots0 := append(m.boots(t), "disk")
	powerOn(sx)
	m.waitBoots(t, boots0...)
	calls0 := len(m.calls(t))
	var answers [2]json.RawMessage
	var errs [2]error
	var ready, wg sync.WaitGroup
	ready.Add(1)
	for i, pd := range c.runs {
		wg.Go(func() {
			ready.Wait()
			_, errs[i] = pd.api.post("/machines/"+url.PathEscape(m.Name)+"/reprovision",
				map[string]any{"reason": fmt.Sprintf("e2e: concurrent reprovision %d", i), "power": true}, &answers[i])
		})
	}
	ready.Done()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// ipmi_sim powers the VM back on a second after the cycle's power off,
	// perhaps after the answer: give a second cycle time to show too.
	for deadline := time.Now().Add(10 * time.Second); len(m.boots(t)) == len(boots0); time.Sleep(pollEvery) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not started again within 10 s of the reprovision answers", m.Name)
		}
	}
	time.Sleep(3 * time.Second)
	checkOneCycle(t, m, c, answers, m.boots(t)[len(boots0):], m.calls(t)[calls0:])
}

// offered reports whether pd's log shows a proxyDHCP offer to mac.
func offered(t *testing.T, pd *provisiondRun, mac string) bool {
	t.Helper()
	b, err := os.ReadFile(pd.daemon.log)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, `msg="dhcp offer"`) && strings.Contains(line, " mac="+mac+" ") {
			return true
		}
	}
	return false
}

// checkOneCycle checks what concurrent reprovision requests to both
// instances did: one power cycle into PXE, and an answer from each, one the
// cycle's and the other saying it was already done.
func checkOneCycle(t *testing.T, m *bmcMachine, c *cluster, answers [2]json.RawMessage, boots, calls []string) {
	t.Helper()
	var offs []string
	for _, call := range calls {
		if rest, ok := strings.CutPrefix(call, "0x20 set "); ok && (rest == "power 0" || rest == "reset 1") {
			offs = append(offs, rest)
		}
	}
	t.Logf("%s: concurrent reprovision: BMC calls %q; machine starts %q", m.Name, calls, boots)
	for i, raw := range answers {
		var one bytes.Buffer
		if err := json.Compact(&one, raw); err != nil {
			t.Fatalf("answer of %s: %v: %s", c.runs[i].url, err, raw)
		}
		t.Logf("%s: answer of %s: %s", m.Name, c.runs[i].url, one.Bytes())
	}
	if len(offs) != 1 || len(boots) != 1 || boots[0] != "pxe" {
		t.Errorf("the BMC stopped the VM %d times and started it %d times (%q), want one power cycle into pxe", len(offs), len(boots), boots)
	}
	// Each answer is ok: one did the cycle (before on, done cycle), the
	// other says that cycle, by the first's actor, already did it.
	var own, already []int
	results := make([]*apiPowerResult, len(answers))
	for i, raw := range answers {
		var a reprovisionAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("answer of %s: %v: %s", c.runs[i].url, err, raw)
		}
		if a.State != "provisioning" {
			t.Errorf("answer of %s: state %q, want provisioning", c.runs[i].url, a.State)
		}
		switch p := a.BMC; {
		case p == nil:
			t.Errorf("answer of %s has no bmc_result: it should say what the BMC did, or that it was done already", c.runs[i].url)
		case !p.OK || p.Done != "cycle" || p.Before != "on":
			t.Errorf("answer of %s: bmc_result %+v, want ok, done cycle, before on (its own cycle's or the other's)", c.runs[i].url, *p)
		case p.DoneBy == "":
			own = append(own, i)
		default:
			already = append(already, i)
		}
		results[i] = a.BMC
	}
	if len(own) != 1 || len(already) != 1 {
		t.Fatalf("answers that did the cycle themselves: %d, that say it was already done: %d; want 1 and 1", len(own), len(already))
	}
	winner, loser := own[0], already[0]
	if want := "api@" + c.specs[winner].addr; results[loser].DoneBy != want {
		t.Errorf("answer of %s: done_by %q, want the cycling request's actor %q", c.runs[loser].url, results[loser].DoneBy, want)
	}
	if !strings.HasPrefix(results[loser].Note, "already done") {
		t.Errorf("answer of %s: note %q, want it to say the cycle was already done", c.runs[loser].url, results[loser].Note)
	}
}

// startEtcd runs a one-member etcd, test/etcdserver built from this
// checkout, on host ns at addr:2379 and returns its client URL once it is
// healthy. Its peer URL is on ns's loopback: there are no peers.
func (l *lab) startEtcd(ns, addr string) string {
	t := l.t
	t.Helper()
	bin := etcdtest.Binary(t)
	client, peer := "http://"+addr+":2379", "http://127.0.0.1:2380"
	d := l.start(ns, "etcd", bin, "--name", "e2e",
		"--data-dir", filepath.Join(t.TempDir(), "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e2e="+peer, "--log-level", "warn")
	l.waitHTTP(d, ns, client+"/health", 30*time.Second)
	return client
}
