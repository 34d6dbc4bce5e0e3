package boot

import (
	"context"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/keylock"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

const n1MAC = "52:54:00:00:00:01"

// sendBackCores returns n cores that look like n instances of one
// deployment: one store, one Locker, one machine n1 (installed) whose BMC
// is g.
func sendBackCores(t *testing.T, n int) ([]*Core, store.Store, *gateBMC) {
	t.Helper()
	dir, box := powerSetup(t)
	db, locks, g := memstore.New(store.Options{}), keylock.New(), newGateBMC()
	if _, _, err := db.Seen(context.Background(), store.Machine{MAC: n1MAC, Name: "n1", State: store.StateInstalled}, nil); err != nil {
		t.Fatal(err)
	}
	var cores []*Core
	for range n {
		c, _ := newCoreOn(t, dir, Config{BMC: g, Secrets: box, WipeProfile: "wipe", Locks: locks}, db)
		if err := c.Reload(); err != nil {
			t.Fatal(err)
		}
		cores = append(cores, c)
	}
	return cores, db, g
}

type sendBackResult struct {
	m   store.Machine
	r   *PowerResult
	err error
}

func reprovisionAsync(c *Core, id, actor string) <-chan sendBackResult {
	out := make(chan sendBackResult, 1)
	go func() {
		m, r, err := c.Reprovision(context.Background(), id, actor, "", true)
		out <- sendBackResult{m, r, err}
	}()
	return out
}

// waitEvents waits until the store holds n events of type typ for n1.
func waitEvents(t *testing.T, db store.Store, typ string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, err := db.Events(context.Background(), store.EventQuery{MAC: n1MAC, Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s events, want %d", len(es), typ, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two reprovisions of one machine asked for at once, on one instance or on
// two sharing the store and the locks, power-cycle it once: the second,
// once it holds the BMC lock, finds the first's cycle done since it was
// asked, and says so instead of cycling again.
func TestConcurrentReprovisionCyclesOnce(t *testing.T) {
	for _, instances := range []int{1, 2} {
		t.Run(map[int]string{1: "one instance", 2: "two instances"}[instances], func(t *testing.T) {
			cores, db, g := sendBackCores(t, instances)
			first := reprovisionAsync(cores[0], "n1", "alice")
			g.waitEntered(t) // alice's cycle is under way, holding n1's BMC lock
			second := reprovisionAsync(cores[len(cores)-1], n1MAC, "bob")
			// Bob's request is made (its state change is recorded) before
			// alice's cycle ends.
			waitEvents(t, db, EventReprovision, 2)
			close(g.release)
			a, b := <-first, <-second
			if a.err != nil || b.err != nil || a.r == nil || b.r == nil {
				t.Fatalf("alice %+v, bob %+v", a, b)
			}
			if a.r.Err != nil || a.r.DoneBy != "" || a.r.Outcome.Done != bmc.Cycle {
				t.Errorf("alice's result %+v; want her cycle", a.r)
			}
			if b.r.Err != nil || b.r.DoneBy != "alice" || b.r.Outcome.Done != bmc.Cycle || b.r.State != bmc.StateOn {
				t.Errorf("bob's result %+v; want alice's cycle, not his own", b.r)
			}
			if b.m.State != store.StateProvisioning {
				t.Errorf("bob's machine is %s", b.m.State)
			}
			if n := len(g.entered); n != 0 {
				t.Errorf("%d more BMC conversations; want the one cycle", n)
			}
			waitEvents(t, db, EventPower, 1)
			if es, _ := db.Events(context.Background(), store.EventQuery{MAC: n1MAC, Type: EventPower}); len(es) != 1 {
				t.Errorf("power events %+v; want alice's alone", es)
			}
		})
	}
}

// A reprovision asked for after another one's cycle ended cycles again:
// the machine may have booted into the install by then.
func TestReprovisionAfterAnotherCyclesAgain(t *testing.T) {
	cores, _, g := sendBackCores(t, 2)
	close(g.release)
	for i, actor := range []string{"alice", "bob"} {
		m, r, err := cores[i].Reprovision(context.Background(), "n1", actor, "", true)
		if err != nil || r == nil || r.Err != nil || r.DoneBy != "" || r.Outcome.Done != bmc.Cycle || m.State != store.StateProvisioning {
			t.Fatalf("%s: %+v %+v %v", actor, m, r, err)
		}
	}
	if n := len(g.entered); n != 2 {
		t.Fatalf("%d BMC conversations; want 2", n)
	}
}

// A wipe does not count as the cycle of a reprovision asked for meanwhile:
// the machine must boot its install, not the wipe profile.
func TestReprovisionDuringWipeCycles(t *testing.T) {
	cores, db, g := sendBackCores(t, 1)
	c := cores[0]
	wiped := make(chan error, 1)
	go func() {
		_, r, err := c.Wipe(context.Background(), "n1", "alice", "", true)
		if err == nil && r != nil {
			err = r.Err
		}
		wiped <- err
	}()
	g.waitEntered(t)
	second := reprovisionAsync(c, "n1", "bob")
	waitEvents(t, db, EventReprovision, 1)
	g.release <- struct{}{}
	if err := <-wiped; err != nil {
		t.Fatal(err)
	}
	g.waitEntered(t) // bob's own cycle
	g.release <- struct{}{}
	if b := <-second; b.err != nil || b.r == nil || b.r.Err != nil || b.r.DoneBy != "" {
		t.Fatalf("bob: %+v", b)
	}
}
