//go:build linux

package reliability

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/provisiond/provisiond/internal/testutil"
)

const (
	crashRounds      = 50
	knownMachines    = 200 // Machines in the profiles, 52:54:00:00:xx:yy
	lifecycleWorkers = 8   // each owns knownMachines/lifecycleWorkers machines
	discoveryWorkers = 6
	minLoad, maxLoad = 50 * time.Millisecond, 400 * time.Millisecond
	startTimeout     = 15 * time.Second
)

// Machine states as the API spells them; "" stands for "not in the store".
const (
	stateAbsent       = ""
	stateDiscovered   = "discovered"
	stateProvisioning = "provisioning"
	stateInstalled    = "installed"
)

// The profiles: one Butane profile the Machines use and a Default for
// everything else, told apart in /ipxe answers by their kernels.
const (
	crashButane = `variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: "{{ .metadata.hostname }}"
`
	nodeKernel      = "/assets/node/vmlinuz"
	discoveryKernel = "/assets/discovery/vmlinuz"
)

func crashProfiles(t *testing.T) string {
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "kind: Profile\nname: node\nboot: {kernel: %s, args: [console=ttyS0]}\nconfig: {butane: node.bu}\n", nodeKernel)
	fmt.Fprintf(&b, "---\nkind: Profile\nname: discovery\nboot: {kernel: %s}\n", discoveryKernel)
	for i := 1; i <= knownMachines; i++ {
		fmt.Fprintf(&b, "---\nkind: Machine\nname: %s\nmatch: {mac: %q}\nprofile: node\nmetadata: {hostname: %s.lab}\n",
			knownName(i), knownMAC(i), knownName(i))
	}
	b.WriteString("---\nkind: Default\nprofile: discovery\n")
	writeFile(t, filepath.Join(dir, "profiles.yaml"), b.String())
	writeFile(t, filepath.Join(dir, "node.bu"), crashButane)
	return dir
}

func knownMAC(i int) string  { return fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff) }
func knownName(i int) string { return fmt.Sprintf("m%03d", i) }

// discoveryMAC is the n-th never-seen MAC; no other test or round uses it.
func discoveryMAC(n uint32) string {
	return fmt.Sprintf("52:54:01:%02x:%02x:%02x", byte(n>>16), byte(n>>8), byte(n))
}

// urlMAC is a MAC as iPXE's ${mac:hexhyp} spells it.
func urlMAC(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

// tracked is what the test knows about one known machine. Only one lifecycle
// worker touches a machine, sequentially, so its last acknowledged operation
// is well defined.
type tracked struct {
	mac, name string
	// acked is the state the machine's last acknowledged operation left it
	// in, or what the last check after a restart found.
	acked string
	// maybe holds the states that operations sent since then, without a
	// complete answer (cut off by the kill), would leave it in.
	maybe map[string]bool
}

// allowed lists the states the store may hold for m after a crash.
func (m *tracked) allowed() []string {
	out := []string{m.acked}
	for s := range m.maybe {
		if s != m.acked {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

type op int

const (
	opBoot        op = iota // GET /ipxe with the machine's MAC
	opReprovision           // POST /api/v1/machines/{mac}/reprovision
	opInstalled             // POST /api/v1/machines/{mac}/installed with the API token
)

func (o op) String() string {
	return [...]string{"boot", "reprovision", "installed"}[o]
}

// pick chooses the next operation for a machine in state s; each choice is
// valid in s, so every answer but 200 is a daemon bug.
func pick(s string, rng *rand.Rand) op {
	switch s {
	case stateAbsent: // only a boot puts a Machine into the store
		return opBoot
	case stateProvisioning:
		switch n := rng.IntN(10); {
		case n < 6:
			return opInstalled
		case n < 8:
			return opBoot
		default:
			return opReprovision
		}
	default: // installed
		if rng.IntN(2) == 0 {
			return opBoot
		}
		return opReprovision
	}
}

// result is the state op leaves a machine in (pick only chooses installed
// for a provisioning machine).
func (o op) result() string {
	if o == opInstalled {
		return stateInstalled
	}
	return stateProvisioning
}

// counters are the figures of the whole run.
type counters struct {
	boots, reprovisions, installs, discoveries atomic.Int64 // acknowledged
	inFlight                                   atomic.Int64 // requests cut off by the kill
	refused                                    atomic.Int64 // sent after the kill: never reached a daemon
	inFlightCommitted                          atomic.Int64 // cut-off requests whose change the restart showed
}

// load is one round's traffic against one daemon.
type load struct {
	c        *http.Client
	base     string
	token    string
	cnt      *counters
	next     *atomic.Uint32 // discovery MAC counter
	mu       sync.Mutex
	problems []string
}

func (l *load) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// lifecycle drives mine until a request fails, which the kill makes happen.
func (l *load) lifecycle(mine []*tracked, rng *rand.Rand) {
	for {
		m := mine[rng.IntN(len(mine))]
		o := pick(m.acked, rng)
		got, err := l.do(o, m.mac)
		if err != nil {
			// Cut off: the change may or may not have committed.
			m.maybe[o.result()] = true
			if isRefused(err) {
				l.cnt.refused.Add(1)
			} else {
				l.cnt.inFlight.Add(1)
			}
			return
		}
		if got != o.result() {
			l.problem("%s %s (%s, state %q): answered with state %q, want %q", o, m.name, m.mac, m.acked, got, o.result())
			m.maybe[o.result()], m.maybe[got] = true, true
			return
		}
		m.acked, m.maybe = got, map[string]bool{}
		switch o {
		case opBoot:
			l.cnt.boots.Add(1)
		case opReprovision:
			l.cnt.reprovisions.Add(1)
		case opInstalled:
			l.cnt.installs.Add(1)
		}
	}
}

// do runs o on mac and returns the state a complete 200 answer acknowledges.
// A transport error (including a body cut short) is returned as err; a
// complete wrong answer is reported as a problem and returned as the state
// "answer:<status>".
func (l *load) do(o op, mac string) (string, error) {
	var req *http.Request
	var err error
	switch o {
	case opBoot:
		req, err = http.NewRequest(http.MethodGet, l.base+"/ipxe?mac="+urlMAC(mac), nil)
	case opReprovision:
		req, err = http.NewRequest(http.MethodPost, l.base+"/api/v1/machines/"+urlMAC(mac)+"/reprovision", strings.NewReader(`{"reason":"reliability test"}`))
	case opInstalled:
		req, err = http.NewRequest(http.MethodPost, l.base+"/api/v1/machines/"+urlMAC(mac)+"/installed", nil)
	}
	if err != nil {
		return "", err
	}
	if o != opBoot {
		req.Header.Set("Authorization", "Bearer "+l.token)
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.c.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err // only a fully received answer counts
	}
	if resp.StatusCode != http.StatusOK {
		return "answer:" + resp.Status + ": " + strings.TrimSpace(string(body)), nil
	}
	if o == opBoot {
		s := string(body)
		if !strings.Contains(s, "kernel "+l.base+nodeKernel) || !strings.Contains(s, "ignition.config.url=") || !strings.Contains(s, "token=") {
			return "answer: 200 without the node profile's script: " + s, nil
		}
		return stateProvisioning, nil
	}
	var m apiMachine
	if err := json.Unmarshal(body, &m); err != nil || m.MAC != mac {
		return fmt.Sprintf("answer: 200 with body %q", body), nil
	}
	return m.State, nil
}

// discover sends /ipxe for never-seen MACs until a request fails. attempted
// are the MACs sent, acked those whose Default script came back whole.
func (l *load) discover() (attempted, acked []string) {
	for {
		mac := discoveryMAC(l.next.Add(1))
		attempted = append(attempted, mac)
		resp, err := l.c.Get(l.base + "/ipxe?mac=" + urlMAC(mac))
		if err != nil {
			l.countCut(err)
			return attempted, acked
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			l.countCut(err)
			return attempted, acked
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "kernel "+l.base+discoveryKernel) {
			l.problem("discovery /ipxe?mac=%s: %s: %q", mac, resp.Status, body)
			return attempted, acked
		}
		acked = append(acked, mac)
		l.cnt.discoveries.Add(1)
	}
}

func (l *load) countCut(err error) {
	if isRefused(err) {
		l.cnt.refused.Add(1)
	} else {
		l.cnt.inFlight.Add(1)
	}
}

// inventory is everything the test expects in the store.
type inventory struct {
	known      []*tracked
	discovered map[string]bool // acknowledged (or seen after a restart): must stay, as discovered
	pending    map[string]bool // sent but cut off: may exist, as discovered, until the next check
}

// check compares the store, through the API, with what was acknowledged, and
// then takes what it found as the new baseline. It returns the problems.
func (inv *inventory) check(c *http.Client, base, token string, cnt *counters) []string {
	list, err := listMachines(c, base, token)
	if err != nil {
		return []string{err.Error()}
	}
	var probs []string
	for mac := range inv.discovered {
		m, ok := list[mac]
		switch {
		case !ok:
			probs = append(probs, fmt.Sprintf("acknowledged discovery %s is lost", mac))
		case m.State != stateDiscovered || m.Machine != "":
			probs = append(probs, fmt.Sprintf("discovered machine %s is now %+v", mac, m))
		}
	}
	for mac := range inv.pending {
		delete(inv.pending, mac) // never sent again: decided now for good
		m, ok := list[mac]
		if !ok {
			continue
		}
		cnt.inFlightCommitted.Add(1)
		inv.discovered[mac] = true
		if m.State != stateDiscovered {
			probs = append(probs, fmt.Sprintf("in-flight discovery %s committed as %+v", mac, m))
		}
	}
	known := map[string]bool{}
	for _, k := range inv.known {
		known[k.mac] = true
		m, ok := list[k.mac]
		got := m.State
		if !ok {
			got = stateAbsent
		}
		allowed := k.allowed()
		if !slices.Contains(allowed, got) {
			probs = append(probs, fmt.Sprintf("machine %s (%s): last acknowledged state %q, in-flight operations allow %q; the store has %q",
				k.name, k.mac, k.acked, allowed, got))
		} else if got != k.acked {
			cnt.inFlightCommitted.Add(1)
		}
		if ok && (m.Machine != k.name || m.Profile != "node") {
			probs = append(probs, fmt.Sprintf("machine %s is stored as %+v", k.mac, m))
		}
		k.acked, k.maybe = got, map[string]bool{}
	}
	for mac, m := range list {
		if !known[mac] && !inv.discovered[mac] {
			probs = append(probs, fmt.Sprintf("the store holds machine %+v that no acknowledged or in-flight request created", m))
		}
	}
	return probs
}

// boltCheck opens the database read-only and runs bbolt's own consistency
// check, returning every error it reports.
func boltCheck(path string) ([]error, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var errs []error
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return nil
	})
	return errs, err
}

// TestCrashSafety SIGKILLs the daemon under load 50 times on one data dir and
// checks after every restart that the store opens and holds every change the
// daemon acknowledged, and after every kill that the bbolt file is consistent.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon and kills it 50 times")
	}
	bin := testutil.Binary(t)
	profiles := crashProfiles(t)
	dataDir, logDir := t.TempDir(), t.TempDir()
	dbPath := filepath.Join(dataDir, "provisiond.db")

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	inv := &inventory{discovered: map[string]bool{}, pending: map[string]bool{}}
	for i := 1; i <= knownMachines; i++ {
		inv.known = append(inv.known, &tracked{mac: knownMAC(i), name: knownName(i), maybe: map[string]bool{}})
	}
	var cnt counters
	var next atomic.Uint32
	var token string
	var startups []time.Duration
	warnings := map[string]int{} // WARN messages over all runs, by message
	start := time.Now()

	// run starts the daemon for round r, waits for it and checks the store.
	run := func(r int) *daemon {
		t.Helper()
		d := startDaemon(t, bin, "", filepath.Join(logDir, fmt.Sprintf("round-%02d.log", r)), "--profiles", profiles, "--data-dir", dataDir)
		took, err := d.waitHealthy(startTimeout)
		if err != nil {
			t.Fatalf("round %d: the daemon did not come back on the data dir of the previous round: %v", r, err)
		}
		startups = append(startups, took)
		if token == "" {
			token = apiToken(t, dataDir)
		}
		c := &http.Client{Timeout: 30 * time.Second}
		probs := inv.check(c, d.base, token, &cnt)
		c.CloseIdleConnections()
		for _, p := range probs {
			t.Errorf("round %d, after restart: %s", r, p)
		}
		if len(probs) > 0 {
			t.FailNow()
		}
		return d
	}
	// after inspects a dead daemon's log and the database it left.
	after := func(r int, d *daemon) {
		t.Helper()
		warns, errs := logProblems(d.log())
		for _, w := range warns {
			warnings[logMsg(w)]++
		}
		for _, e := range errs {
			t.Errorf("round %d: daemon logged an error: %s", r, e)
		}
		errs2, err := boltCheck(dbPath)
		if err != nil {
			t.Fatalf("round %d: open %s read-only after the kill: %v", r, dbPath, err)
		}
		for _, e := range errs2 {
			t.Errorf("round %d: bbolt tx.Check after the kill: %v", r, e)
		}
		if len(errs2) > 0 {
			t.FailNow()
		}
	}

	for r := 1; r <= crashRounds; r++ {
		d := run(r)
		l := &load{
			c:     &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: lifecycleWorkers + discoveryWorkers}},
			base:  d.base,
			token: token,
			cnt:   &cnt,
			next:  &next,
		}
		var wg sync.WaitGroup
		for w := range lifecycleWorkers {
			var mine []*tracked
			for i, k := range inv.known {
				if i%lifecycleWorkers == w {
					mine = append(mine, k)
				}
			}
			wrng := rand.New(rand.NewPCG(seed, uint64(r*1000+w)))
			wg.Go(func() { l.lifecycle(mine, wrng) })
		}
		results := make([][2][]string, discoveryWorkers)
		for w := range discoveryWorkers {
			wg.Go(func() {
				attempted, acked := l.discover()
				results[w] = [2][]string{attempted, acked}
			})
		}
		dur := minLoad + time.Duration(rng.Int64N(int64(maxLoad-minLoad)+1))
		time.Sleep(dur)
		d.kill() // SIGKILL, with requests in flight
		wg.Wait()
		l.c.CloseIdleConnections()
		for _, p := range l.problems {
			t.Errorf("round %d, under load: %s", r, p)
		}
		for _, res := range results {
			for _, mac := range res[0] {
				inv.pending[mac] = true
			}
			for _, mac := range res[1] {
				delete(inv.pending, mac)
				inv.discovered[mac] = true
			}
		}
		after(r, d)
		if t.Failed() {
			t.FailNow()
		}
	}

	// The last kill's aftermath, then a clean shutdown.
	d := run(crashRounds + 1)
	if err := d.stop(10 * time.Second); err != nil {
		t.Errorf("clean shutdown: %v\n%s", err, d.log())
	}
	after(crashRounds+1, d)

	total := time.Since(start)
	acked := cnt.boots.Load() + cnt.reprovisions.Load() + cnt.installs.Load() + cnt.discoveries.Load()
	// A daemon that acknowledged nothing would lose nothing: the checks above
	// mean something only if writes were acknowledged and kills cut some off.
	if acked == 0 || cnt.inFlight.Load() == 0 {
		t.Errorf("%d acknowledged ops and %d cut off in flight; want both, or the kills tested nothing", acked, cnt.inFlight.Load())
	}
	slices.Sort(startups)
	t.Logf("%d SIGKILL rounds in %.1fs: %d acknowledged ops (%d discoveries, %d boots, %d reprovisions, %d installs), all found after restart; "+
		"%d requests cut off in flight (%d of them had committed), %d refused after the kill; %d machines tracked; "+
		"restart to healthy p50 %v max %v; bbolt tx.Check clean after every kill",
		crashRounds, total.Seconds(), acked, cnt.discoveries.Load(), cnt.boots.Load(), cnt.reprovisions.Load(), cnt.installs.Load(),
		cnt.inFlight.Load(), cnt.inFlightCommitted.Load(), cnt.refused.Load(), len(inv.known)+len(inv.discovered),
		percentile(startups, 0.5).Round(time.Millisecond), startups[len(startups)-1].Round(time.Millisecond))
	for msg, n := range warnings {
		t.Logf("daemon warning (%d×): %s", n, msg)
	}
}

// logMsg is a slog text line without its time, for counting repeats.
func logMsg(line string) string {
	if i := strings.Index(line, "level="); i >= 0 {
		return line[i:]
	}
	return line
}
