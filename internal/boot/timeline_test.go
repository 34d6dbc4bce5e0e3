package boot

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// One boot as the timeline sees it: the firmware's DHCP and iPXE's stay one
// boot, retries are counted, not recorded; a DHCP after the boot loader
// ran, or a new session after a script, starts the next boot.
func TestTimelineDedup(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dhcp := Step{Name: StepDHCP, Outcome: "offered"}
	tftp := Step{Name: StepTFTP, Detail: "ipxe.efi", Outcome: "ok"}
	chain := Step{Name: StepChain, Outcome: "ok"}
	script := Step{Name: StepScript, Detail: "flatcar", Outcome: "served"}
	k404 := Step{Name: StepAsset, Detail: "flatcar/vmlinuz", Outcome: AssetNotFound}
	b := &bootTrack{mac: "52:54:00:00:00:01"}
	at := t0
	repeats := 0
	for _, tc := range []struct {
		name    string
		step    Step
		session bool
		record  bool
		newBoot bool
	}{
		{"firmware dhcp", dhcp, false, true, true},
		{"ipxe binary", tftp, false, true, false},
		{"ipxe's own dhcp", dhcp, false, false, false},
		{"chain", chain, false, true, false},
		{"script opens a session", script, true, true, false},
		{"kernel 404", k404, false, true, false},
		{"retried chain", chain, false, false, false},
		{"retried script, session reused", script, false, false, false},
		{"kernel 404 again", k404, false, false, false},
		{"the same path started is another step", Step{Name: StepAsset, Detail: "flatcar/vmlinuz", Outcome: AssetStarted}, false, true, false},
		{"a session after a script: the next boot", script, true, true, true},
		{"its kernel 404 is recorded again", k404, false, true, false},
		{"the machine resets: dhcp", dhcp, false, true, true},
		{"tftp of that boot", tftp, false, true, false},
	} {
		at = at.Add(time.Second)
		start := b.start
		got := b.take(tc.step, tc.session, at)
		if !got {
			repeats++
		}
		if newBoot := b.start != start; got != tc.record || newBoot != tc.newBoot {
			t.Errorf("%s: recorded %v, new boot %v; want %v, %v", tc.name, got, newBoot, tc.record, tc.newBoot)
		}
		if tc.newBoot {
			repeats = 0
		}
		if b.repeats != repeats {
			t.Errorf("%s: %d repeats; want %d", tc.name, b.repeats, repeats)
		}
		if tc.record && (b.last != tc.step || !b.lastAt.Equal(at)) {
			t.Errorf("%s: last step %+v at %v; want it at %v", tc.name, b.last, b.lastAt, at)
		}
		if !tc.record && b.lastAt.Equal(at) {
			t.Errorf("%s: a repeat counted as progress", tc.name)
		}
	}
}

// The stall decision: a boot without a new step for the stall time is
// stalled while its machine provisions, reported once per boot; a new step
// ends it; a machine found not provisioning is not asked about again until
// its next step.
func TestStallDecision(t *testing.T) {
	tl := newTimeline(10 * time.Minute)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mac, other := "52:54:00:00:00:01", "52:54:00:00:00:02"
	tl.take(queuedStep{mac: mac, step: Step{Name: StepScript, Detail: "p", Outcome: "served"}, session: true, at: t0})
	tl.take(queuedStep{mac: mac, step: Step{Name: StepAsset, Detail: "os/vmlinuz", Outcome: AssetNotFound, kind: "kernel"}, at: t0.Add(time.Second)})
	tl.take(queuedStep{mac: other, step: Step{Name: StepPhoneHome, Outcome: "installed"}, at: t0})
	for i := range 30 { // the loop retries: no progress
		tl.take(queuedStep{mac: mac, step: Step{Name: StepAsset, Detail: "os/vmlinuz", Outcome: AssetNotFound, kind: "kernel"}, at: t0.Add(time.Duration(i+2) * 10 * time.Second)})
	}
	if o := tl.overdue(t0.Add(9 * time.Minute)); len(o) != 0 {
		t.Fatalf("overdue after 9 min: %+v", o)
	}
	o := tl.overdue(t0.Add(11 * time.Minute))
	if len(o) != 2 {
		t.Fatalf("overdue after 11 min: %+v; want both machines", o)
	}
	for _, c := range o {
		provisioning := c.mac == mac
		if report := tl.verdict(c, provisioning); report != provisioning {
			t.Errorf("%s: report %v; want %v", c.mac, report, provisioning)
		}
		if provisioning && (c.repeats != 30 || c.last.label() != "kernel") {
			t.Errorf("stalled boot: %+v; want 30 repeats at the kernel", c)
		}
	}
	want := Stall{Since: t0.Add(time.Second), LastStep: "kernel"}
	if s, ok := stalledOf(tl, mac); !ok || s != want || tl.stalledCount() != 1 {
		t.Errorf("Stalled = %+v, %v, count %d; want %+v", s, ok, tl.stalledCount(), want)
	}
	if _, ok := stalledOf(tl, other); ok {
		t.Error("an installed machine is stalled")
	}
	// The next round: the installed machine is settled; the stalled one is
	// checked again but not reported again.
	o = tl.overdue(t0.Add(12 * time.Minute))
	if len(o) != 1 || o[0].mac != mac || tl.verdict(o[0], true) {
		t.Errorf("second round: %+v; want the stalled machine, not reported again", o)
	}
	// A step that arrived between the list and the verdict wins.
	tl.take(queuedStep{mac: mac, step: Step{Name: StepConfig, Detail: "ignition", Outcome: "served"}, at: t0.Add(12 * time.Minute)})
	if tl.verdict(o[0], true) {
		t.Error("a verdict on a boot that moved on was taken")
	}
	if _, ok := stalledOf(tl, mac); ok || tl.stalledCount() != 0 {
		t.Errorf("still stalled after progress (count %d)", tl.stalledCount())
	}
	// Stalled again in the same boot: marked, but its event was written.
	o = tl.overdue(t0.Add(30 * time.Minute))
	if len(o) != 1 || tl.verdict(o[0], true) || tl.stalledCount() != 1 {
		t.Errorf("stalled again: %+v, count %d; want marked and not reported", o, tl.stalledCount())
	}
	// The operator wipes it: no longer provisioning, no longer stalled.
	if tl.verdict(o[0], false) || tl.stalledCount() != 0 {
		t.Errorf("a wiped machine stays stalled (count %d)", tl.stalledCount())
	}
}

func stalledOf(tl *timeline, mac string) (Stall, bool) {
	return (&Decider{steps: tl}).Stalled(mac)
}

// The memory is bounded: past maxBoots, the least recently active machine
// is forgotten, and the stalled count follows.
func TestTimelineBounded(t *testing.T) {
	tl := newTimeline(time.Minute)
	t0 := time.Now()
	for i := range maxBoots + 10 {
		tl.take(queuedStep{mac: benchMAC(i), step: Step{Name: StepDHCP, Outcome: "offered"}, at: t0})
	}
	if n := tl.lru.Len(); n != maxBoots || len(tl.boots) != maxBoots {
		t.Errorf("%d boots, %d in the map; want %d", n, len(tl.boots), maxBoots)
	}
	if tl.known(benchMAC(0)) || !tl.known(benchMAC(maxBoots+9)) {
		t.Error("the oldest machine is remembered, or the newest is not")
	}
	// One boot asking for ever new paths records maxSteps of them.
	b := &bootTrack{mac: benchMAC(0)}
	recorded := 0
	for i := range 3 * maxSteps {
		if b.take(Step{Name: StepAsset, Detail: fmt.Sprint("x/", i), Outcome: AssetNotFound}, false, t0) {
			recorded++
		}
	}
	if recorded != maxSteps || b.repeats != 2*maxSteps {
		t.Errorf("%d distinct steps recorded, %d repeats; want %d, %d", recorded, b.repeats, maxSteps, 2*maxSteps)
	}
}

// timelineCore is a Core whose machine n1 boots the kernel os/vmlinuz,
// with its Run going, an observer, and n1's DHCP binding at 192.0.2.10.
func timelineCore(t *testing.T, db store.Store) (*Core, *recordingObserver) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "p.yaml", "kind: Profile\nname: p\nboot: {kernel: /assets/os/vmlinuz, initrd: [/assets/os/initrd.img]}\n"+
		"---\nkind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n")
	obs := &recordingObserver{}
	c, _ := newCoreOn(t, dir, Config{Secrets: sessionBox(t, 1), Observer: obs}, db)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := db.Bind(context.Background(), store.Binding{MAC: "52:54:00:00:00:01", IP: "192.0.2.10"}); err != nil {
		t.Fatal(err)
	}
	return c, obs
}

// drain waits until every step queued so far is recorded: the worker is
// one goroutine, so a marker step's event comes after all of theirs.
func drain(t *testing.T, c *Core, db store.Store) {
	t.Helper()
	const markerMAC = "02:ff:ff:ff:ff:ff"
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// Queued again until seen: a full queue drops it.
		c.Step(markerMAC, Step{Name: StepAgent, Detail: marker, Outcome: "ok"})
		time.Sleep(20 * time.Millisecond)
		es, err := db.Events(context.Background(), store.EventQuery{MAC: markerMAC, Type: EventBootStep})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Fields["detail"] == marker {
				return
			}
		}
	}
	t.Fatal("the timeline did not record its marker in 10 s")
}

// timelineOf lists mac's timeline events as "type step detail outcome".
func timelineOf(t *testing.T, db store.Store, mac string) []string {
	t.Helper()
	es, err := db.Events(context.Background(), store.EventQuery{MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		switch e.Type {
		case EventBootStep:
			out = append(out, fmt.Sprintf("%s %s %s %s", e.Type, e.Fields["step"], e.Fields["detail"], e.Fields["outcome"]))
		case EventAssetMissing:
			out = append(out, fmt.Sprintf("%s %s %s", e.Type, e.Fields["path"], e.Fields["kind"]))
		case EventStalled:
			out = append(out, fmt.Sprintf("%s %s %s", e.Type, e.Fields["last_step"], e.Fields["repeats"]))
		}
	}
	return out
}

// The looping boot: the kernel is missing, iPXE retries every 10 s.
// The timeline shows each step once, the 404 once with its asset-missing
// event, then the machine stalled at the kernel; a new DHCP starts over.
func TestTimelineLoopingBoot(t *testing.T) {
	db := memstore.New(store.Options{})
	c, obs := timelineCore(t, db)
	ctx := context.Background()
	mac := "52:54:00:00:00:01"
	ip := netip.MustParseAddr("192.0.2.10")
	r := Request{MAC: mac, IP: ip.String()}
	if a, err := c.BootPXE(ctx, r); err != nil || !a.Boot {
		t.Fatalf("BootPXE = %+v, %v", a, err)
	}
	c.Step(mac, Step{Name: StepTFTP, Detail: "ipxe.efi", Outcome: "ok"})
	for range 20 {
		if err := c.Chained(ctx, r); err != nil {
			t.Fatal(err)
		}
		script(t, c, r)
		c.AssetFetch(ip, "os/vmlinuz", AssetNotFound)
	}
	c.AssetFetch(netip.MustParseAddr("192.0.2.99"), "os/vmlinuz", AssetNotFound) // nobody known
	drain(t, c, db)
	want := []string{
		"boot-step dhcp  offered", "boot-step tftp ipxe.efi ok", "boot-step chain  ok", "boot-step script p served",
		"boot-step asset os/vmlinuz 404", "asset-missing os/vmlinuz kernel",
	}
	if got := timelineOf(t, db, mac); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("timeline:\n%q\nwant\n%q", got, want)
	}

	c.checkStalls(ctx, time.Now().Add(9*time.Minute))
	if _, ok := c.Stalled(mac); ok {
		t.Error("stalled before --stall-after")
	}
	c.checkStalls(ctx, time.Now().Add(11*time.Minute))
	c.checkStalls(ctx, time.Now().Add(12*time.Minute))
	s, ok := c.Stalled(mac)
	if !ok || s.LastStep != "kernel" || time.Since(s.Since) > time.Minute {
		t.Errorf("Stalled = %+v, %v; want stalled at the kernel", s, ok)
	}
	got := timelineOf(t, db, mac)
	if last := got[len(got)-1]; len(got) != len(want)+1 || last != "stalled kernel 57" {
		t.Errorf("after the stall check: %q; want one stalled event at the kernel with 57 repeats", got)
	}
	obs.mu.Lock()
	if n := len(obs.stalled); n != 3 || obs.stalled[0] != 0 || obs.stalled[2] != 1 {
		t.Errorf("stalled counts reported: %v; want 0, 1, 1", obs.stalled)
	}
	obs.mu.Unlock()

	// The machine is reset: a new boot, recorded again, no longer stalled.
	if _, err := c.BootPXE(ctx, r); err != nil {
		t.Fatal(err)
	}
	drain(t, c, db)
	if _, ok := c.Stalled(mac); ok {
		t.Error("still stalled after a new DHCP")
	}
	if got := timelineOf(t, db, mac); got[len(got)-1] != "boot-step dhcp  offered" {
		t.Errorf("after the reset: %q", got)
	}
}

// The rest of a boot: config and phone-home are steps; an installed
// machine is never stalled, however long it is quiet.
func TestTimelineInstalled(t *testing.T) {
	c, db := lifecycleCore(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	mac := "52:54:00:00:00:01"
	r := Request{MAC: mac}
	_, token := script(t, c, r)
	r.Token = token
	if _, _, err := c.Config(ctx, r, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Installed(ctx, mac, token, "", "", false); err != nil {
		t.Fatal(err)
	}
	drain(t, c, db)
	got := timelineOf(t, db, mac)
	want := []string{"boot-step script install served", "boot-step config butane served", "boot-step phone-home  installed"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("timeline:\n%q\nwant\n%q", got, want)
	}
	c.checkStalls(ctx, time.Now().Add(time.Hour))
	if _, ok := c.Stalled(mac); ok {
		t.Error("an installed machine is stalled")
	}
}

// blockingStore holds every event write until released: a store that lost
// its quorum.
type blockingStore struct {
	store.Store
	release chan struct{}
}

func (s *blockingStore) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return s.Store.AppendEvent(ctx, e)
}

// Under load, with the store not answering, the hooks on the request path
// never wait: steps beyond the queue are dropped and counted. Once the
// store answers, each machine's steps are recorded once.
func TestTimelineUnderLoad(t *testing.T) {
	db := &blockingStore{Store: memstore.New(store.Options{}), release: make(chan struct{})}
	c, _ := newCoreOn(t, t.TempDir(), Config{}, db)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const machines, workers, each = 200, 32, 2000
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				mac := benchMAC((w*each + i) % machines)
				c.Step(mac, Step{Name: StepAsset, Detail: "os/vmlinuz", Outcome: AssetNotFound})
				c.AssetFetch(netip.MustParseAddr("192.0.2.1"), "os/vmlinuz", AssetStarted)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("%d steps took %v with the store blocked: the hooks waited", 2*workers*each, took)
	}
	if c.steps.dropped.Load() == 0 {
		t.Error("nothing dropped with the store blocked and the queue full")
	}
	t.Logf("%d steps queued in %v (%v each) with the store blocked; %d dropped", 2*workers*each, took, took/(2*workers*each), c.steps.dropped.Load())
	close(db.release)
	drain(t, c, db)
	es, err := db.Events(context.Background(), store.EventQuery{Type: EventBootStep})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, e := range es {
		per[e.MAC]++
	}
	for mac, n := range per {
		if n != 1 && mac != "02:ff:ff:ff:ff:ff" {
			t.Errorf("%s: %d boot-step events; want 1", mac, n)
		}
	}
	if len(per) < 2 {
		t.Errorf("events of %d machines recorded", len(per))
	}
}

// BenchmarkTimelineHook is the cost a request pays for the timeline: the
// hooks /assets and the core call, with the recorder running.
func BenchmarkTimelineHook(b *testing.B) {
	db := memstore.New(store.Options{})
	c, _ := newCoreOn(b, b.TempDir(), Config{}, db)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	ip := netip.MustParseAddr("192.0.2.1")
	b.Run("AssetFetch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.AssetFetch(ip, "flatcar/flatcar_production_pxe.vmlinuz", AssetStarted)
		}
	})
	b.Run("step", func(b *testing.B) {
		b.ReportAllocs()
		s := Step{Name: StepScript, Detail: "flatcar", Outcome: "served"}
		for b.Loop() {
			c.step("52:54:00:00:00:01", s, false)
		}
	})
	b.Logf("dropped on a full queue: %d", c.steps.dropped.Load())
}
