package boot

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/testutil"
)

// A storm of refused requests costs the audit log one event per machine,
// kind and reason per window, plus one counting the rest: an operator's
// reprovision, with its actor, survives 5,000 of them in a log capped at
// 100 events, and the machine itself is still served.
func TestRefusalStormKeepsTheAuditLog(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", lifecycleProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	db := memstore.New(store.Options{MaxEvents: 100})
	c := New(Config{ProfilesDir: dir, AdvertiseURL: "http://h:1", Store: db,
		Neighbors: testutil.Neighbors{"10.0.0.5": "52:54:00:00:00:01", "10.0.0.6": "52:54:00:00:00:66"}})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}
	script(t, c, n1)
	if _, _, err := c.Reprovision(ctx, "n1", "alice", "new disk", false); err != nil {
		t.Fatal(err)
	}
	_, tok := script(t, c, n1)
	const storm = 5000
	rev, err := db.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range storm {
		bad := n1
		bad.Token = "WRONG"
		if i%2 == 1 {
			bad = Request{MAC: n1.MAC, IP: "10.0.0.6"} // another host, too
		}
		if _, _, err := c.Config(ctx, bad, true); err == nil {
			t.Fatal("a bad request was served")
		}
	}
	// A refusal is judged on a read: the storm wrote only the two events
	// that opened its refusal windows, no session transaction each.
	if after, _ := db.Revision(ctx); after-rev != 2 {
		t.Errorf("the storm moved the store's revision by %d, want 2 (its first refusal events)", after-rev)
	}
	c.flushRefusals(ctx, time.Now().Add(2*refusalWindow))
	es, err := db.Events(ctx, store.EventQuery{MAC: n1.MAC})
	if err != nil {
		t.Fatal(err)
	}
	var refusals, counted int
	var operator bool
	for _, e := range es {
		switch e.Type {
		case EventConfigRefused:
			refusals++
			if n := e.Fields["count"]; n != "" {
				counted++
				if n != "2499" {
					t.Errorf("window event counts %s more, want 2499: %+v", n, e)
				}
			}
		case EventReprovision:
			operator = e.Actor == "alice" && strings.Contains(e.Message, "new disk")
		}
	}
	if refusals != 4 || counted != 2 {
		t.Errorf("%d refusal events (%d counting the rest) for %d refusals; want 4 (2)", refusals, counted, storm)
	}
	if !operator {
		t.Errorf("the operator's reprovision is gone from the log: %v", es)
	}
	if _, _, err := c.Config(ctx, Request{MAC: n1.MAC, IP: n1.IP, Token: tok}, true); err != nil {
		t.Errorf("the machine's own config after the storm: %v", err)
	}
}

func TestRefusalWindows(t *testing.T) {
	a := newRefusals()
	k := refusalKey{mac: "m", what: "config", reason: ReasonBadToken}
	t0 := time.Unix(1_800_000_000, 0)
	if first, _ := a.note(k, "10.0.0.1", t0); !first {
		t.Fatal("the first refusal does not open a window")
	}
	for i := range 3 {
		if first, _ := a.note(k, "10.0.0.2", t0.Add(time.Duration(i)*time.Second)); first {
			t.Fatal("a refusal inside the window opened another")
		}
	}
	if got := a.closed(t0.Add(refusalWindow / 2)); len(got) != 0 {
		t.Fatalf("closed before its end: %v", got)
	}
	got := a.closed(t0.Add(refusalWindow))
	if w := got[k]; w.more != 3 || w.ip != "10.0.0.2" {
		t.Fatalf("closed window %+v; want 3 more, last from 10.0.0.2", w)
	}
	if first, _ := a.note(k, "10.0.0.1", t0.Add(refusalWindow)); !first {
		t.Error("a refusal after the window does not open a new one")
	}
	for i := range maxRefusalKeys {
		a.note(refusalKey{mac: string(rune(i))}, "", t0)
	}
	if _, full := a.note(refusalKey{mac: "one too many"}, "", t0); !full {
		t.Error("more windows than maxRefusalKeys")
	}
}

// 2,000 made-up MACs (anyone on the VLAN can send them) leave at most
// MaxDiscovered only-discovered machines once pruned, oldest first; the
// machines Git claims, and the newest arrivals, stay.
func TestRandomMACsBounded(t *testing.T) {
	c, db := lifecycleCore(t, Config{MaxDiscovered: 100})
	ctx := context.Background()
	script(t, c, Request{MAC: "52:54:00:00:00:01"})
	// In order of age, 16 at a time so that the store batches them.
	for batch := 0; batch < 2000; batch += 16 {
		var wg sync.WaitGroup
		for i := batch; i < batch+16; i++ {
			wg.Go(func() {
				mac := fmt.Sprintf("02:%02x:%02x:00:00:01", i>>8, i&0xff)
				if _, err := c.Script(ctx, Request{MAC: mac, Arch: "efi-x86_64"}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	c.prune(ctx)
	counts, err := db.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[store.StateDiscovered] != 100 || counts[store.StateProvisioning] != 1 {
		t.Errorf("after pruning: %v; want 100 discovered and n1", counts)
	}
	if _, err := db.Machine(ctx, "02:07:cf:00:00:01"); err != nil {
		t.Errorf("the newest discovery was pruned: %v", err)
	}
	if _, err := db.Machine(ctx, "02:00:00:00:00:01"); err == nil {
		t.Error("the oldest discovery survived")
	}
	script(t, c, Request{MAC: "52:54:00:00:00:01"})
}

// machineReads counts a store's reads of single machines.
type machineReads struct {
	store.Store
	n atomic.Int64
}

func (s *machineReads) Machine(ctx context.Context, key string) (store.Machine, error) {
	s.n.Add(1)
	return s.Store.Machine(ctx, key)
}

// A refused config or phone-home, the request a storm repeats, reads the
// machine once: the refusal is recorded on the record the check read.
func TestRefusalReadsTheMachineOnce(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", lifecycleProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	db := &machineReads{Store: memstore.New(store.Options{})}
	c, _ := newCoreOn(t, dir, Config{}, db)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5", Token: "WRONG"}
	script(t, c, n1)
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"config", func() error { _, _, err := c.Config(ctx, n1, true); return err }},
		{"phone-home", func() error { _, err := c.Installed(ctx, n1.MAC, n1.Token, "", n1.IP, false); return err }},
	} {
		for i := range 3 { // the first refusal of a window and those counted in it
			db.n.Store(0)
			if err := tc.do(); err == nil {
				t.Fatalf("%s with a wrong token was served", tc.name)
			}
			if n := db.n.Load(); n != 1 {
				t.Errorf("%s refusal %d read the machine %d times, want 1", tc.name, i+1, n)
			}
		}
	}
}
