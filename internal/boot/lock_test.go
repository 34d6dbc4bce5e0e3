package boot

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/keylock"
)

// gateBMC is a Controller whose every call waits at a gate, recording which
// BMCs are in a conversation at once.
type gateBMC struct {
	mu      sync.Mutex
	active  map[string]int
	overlap []string // hosts that had two conversations at once
	entered chan string
	release chan struct{}
}

func newGateBMC() *gateBMC {
	return &gateBMC{active: map[string]int{}, entered: make(chan string, 16), release: make(chan struct{})}
}

func (g *gateBMC) enter(host string) {
	g.mu.Lock()
	if g.active[host]++; g.active[host] > 1 {
		g.overlap = append(g.overlap, host)
	}
	g.mu.Unlock()
	g.entered <- host
	<-g.release
	g.mu.Lock()
	g.active[host]--
	g.mu.Unlock()
}

func (g *gateBMC) Status(_ context.Context, ep bmc.Endpoint) (string, error) {
	g.enter(ep.Host)
	return bmc.StateOn, nil
}

func (g *gateBMC) Do(_ context.Context, ep bmc.Endpoint, req bmc.Request) (bmc.Outcome, error) {
	g.enter(ep.Host)
	return bmc.Outcome{Before: bmc.StateOn, Done: req.Action}, nil
}

func (g *gateBMC) overlaps() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.overlap
}

func gateCore(t *testing.T) (*Core, *gateBMC) {
	t.Helper()
	dir, box := powerSetup(t)
	g := newGateBMC()
	c, _ := newCore(t, dir, Config{BMC: g, Secrets: box, WipeProfile: "wipe"})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	// n3 has no BMC in Git: give it one through the API.
	if _, err := c.SetBMC(context.Background(), "n3", "ipmi://10.0.0.3", "u", "p", "test"); err != nil {
		t.Fatal(err)
	}
	return c, g
}

func (g *gateBMC) waitEntered(t *testing.T) string {
	t.Helper()
	select {
	case h := <-g.entered:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no BMC conversation started")
		return ""
	}
}

// Two operations on one machine, even named differently (by name, by MAC),
// talk to its BMC one after the other.
func TestBMCLockSerialisesOneMachine(t *testing.T) {
	c, g := gateCore(t)
	ctx := context.Background()
	results := make(chan PowerResult, 2)
	go func() { results <- c.Power(ctx, "n1", "cycle", "a") }()
	go func() { results <- c.PowerStatus(ctx, "52-54-00-00-00-01") }()
	g.waitEntered(t)
	select {
	case h := <-g.entered:
		t.Fatalf("a second conversation with %s began while the first was open", h)
	case <-time.After(200 * time.Millisecond):
	}
	g.release <- struct{}{}
	g.waitEntered(t)
	g.release <- struct{}{}
	for range 2 {
		if r := <-results; r.Err != nil {
			t.Fatalf("%+v", r)
		}
	}
	if o := g.overlaps(); len(o) != 0 {
		t.Fatalf("overlapping conversations with %v", o)
	}
}

// Operations on two machines do not wait for each other.
func TestBMCLockTwoMachinesConcurrent(t *testing.T) {
	c, g := gateCore(t)
	ctx := context.Background()
	results := make(chan PowerResult, 2)
	go func() { results <- c.Power(ctx, "n1", "cycle", "a") }()
	go func() { results <- c.PowerStatus(ctx, "n3") }()
	seen := map[string]bool{g.waitEntered(t): true, g.waitEntered(t): true} // both in at once
	if !seen["10.0.0.1"] || !seen["10.0.0.3"] {
		t.Fatalf("conversations with %v", seen)
	}
	close(g.release)
	for range 2 {
		if r := <-results; r.Err != nil {
			t.Fatalf("%+v", r)
		}
	}
}

// A machine whose lock is held past the operation's context fails with
// ErrBusy instead of waiting on; another machine is not held up.
func TestBMCLockBusy(t *testing.T) {
	c, g := gateCore(t)
	ctx := context.Background()
	first := make(chan PowerResult, 1)
	go func() { first <- c.Power(ctx, "n1", "off", "a") }()
	g.waitEntered(t)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if r := c.Power(short, "n1", "on", "b"); !errors.Is(r.Err, ErrBusy) || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("Power with the lock held = %+v; want ErrBusy", r)
	}
	other := make(chan PowerResult, 1)
	go func() { other <- c.Power(ctx, "n3", "on", "c") }()
	if h := g.waitEntered(t); h != "10.0.0.3" {
		t.Fatalf("entered %s", h)
	}
	close(g.release)
	if r := <-first; r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := <-other; r.Err != nil {
		t.Fatal(r.Err)
	}
	// The abandoned wait left nothing behind.
	if n := c.locks.(*keylock.Mutex).Len(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}
