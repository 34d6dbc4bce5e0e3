package boot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/testutil"
)

// recordingObserver is an Observer that writes down what it is told.
type recordingObserver struct {
	mu      sync.Mutex
	reloads []error
	bmc     []string // "action error"
	refused []string // "what reason"
	synced  []string // results
	live    []string // short commits
	stalled []int    // counts
}

func (o *recordingObserver) Synced(result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.synced = append(o.synced, result)
}

func (o *recordingObserver) LiveCommit(short string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.live = append(o.live, short)
}

func (o *recordingObserver) Reloaded(_ time.Time, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reloads = append(o.reloads, err)
}

func (o *recordingObserver) BMCOperation(action string, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := action + " ok"
	if err != nil {
		s = action + " " + err.Error()
	}
	o.bmc = append(o.bmc, s)
}

func (o *recordingObserver) Pruned(int) {}

func (o *recordingObserver) Stalled(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stalled = append(o.stalled, n)
}

func (o *recordingObserver) Refused(e *RefusedError) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused = append(o.refused, e.What+" "+e.Reason)
}

func TestObserverReloads(t *testing.T) {
	obs := &recordingObserver{}
	dir := t.TempDir()
	write(t, dir, "p.yaml", good)
	c, _ := newCore(t, dir, Config{Observer: obs})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "p.yaml", "kind: Bogus\n")
	if err := c.Reload(); err == nil {
		t.Fatal("a broken tree loaded")
	}
	if len(obs.reloads) != 2 || obs.reloads[0] != nil || obs.reloads[1] == nil {
		t.Errorf("reloads observed %v; want ok, then the error", obs.reloads)
	}
}

func TestObserverRefusals(t *testing.T) {
	obs := &recordingObserver{}
	c, _ := lifecycleCore(t, Config{Observer: obs, Neighbors: testutil.Neighbors{"10.0.0.5": "52:54:00:00:00:01", "10.0.0.6": "52:54:00:00:00:66"}})
	ctx := context.Background()
	n1 := Request{MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}
	if _, err := c.Script(ctx, Request{MAC: n1.MAC, IP: "10.0.0.6"}); refusedFor(err) != ReasonNeighbor {
		t.Fatalf("script from another host: %v", err)
	}
	if _, _, err := c.Config(ctx, n1, true); refusedFor(err) != ReasonNoSession {
		t.Fatalf("config before a script: %v", err)
	}
	_, tok := script(t, c, n1)
	if _, _, err := c.Config(ctx, n1, true); refusedFor(err) != ReasonNoToken {
		t.Fatalf("config without token: %v", err)
	}
	if _, _, err := c.Config(ctx, Request{MAC: n1.MAC, Token: tok, IP: "10.0.0.6"}, true); refusedFor(err) != ReasonNeighbor {
		t.Fatalf("config from another host: %v", err)
	}
	want := []string{"script " + ReasonNeighbor, "config " + ReasonNoSession, "config " + ReasonNoToken, "config " + ReasonNeighbor}
	if !slices.Equal(obs.refused, want) {
		t.Errorf("refusals observed %q; want %q", obs.refused, want)
	}
}

func TestObserverBMC(t *testing.T) {
	obs := &recordingObserver{}
	t.Setenv("PROVISIOND_TEST_N1_BMC", "admin:pw")
	dir := t.TempDir()
	write(t, dir, "p.yaml", powerProfiles)
	write(t, dir, "install.bu", lifecycleButane)
	write(t, dir, "wipe.sh", "#!/bin/sh\n")
	f := &fakeBMC{power: map[string]string{}, fail: map[string]error{"10.0.0.1": nil}}
	c, _ := newCore(t, dir, Config{BMC: f, Observer: obs})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.Power(ctx, "n1", "on", "test")
	c.PowerStatus(ctx, "n1")
	f.fail["10.0.0.1"] = bmc.ErrAuth
	c.Power(ctx, "n1", "cycle", "test")
	c.Power(ctx, "n2", "on", "test") // credentials do not resolve: no BMC was talked to
	c.Power(ctx, "n3", "on", "test") // no BMC at all
	want := []string{"on ok", "status ok", "cycle " + bmc.ErrAuth.Error()}
	if !slices.Equal(obs.bmc, want) {
		t.Errorf("BMC operations observed %q; want %q", obs.bmc, want)
	}
}

func TestIdentify(t *testing.T) {
	c, db := lifecycleCore(t, Config{Neighbors: testutil.Neighbors{"10.0.0.5": "52:54:00:00:00:01"}})
	ctx := context.Background()
	const uuid = "11111111-2222-3333-4444-555555555555"
	// n2 boots from a routed address: the neighbour table cannot tell it,
	// the DHCP binding can, and its /ipxe request recorded its UUID.
	if err := db.Bind(ctx, store.Binding{MAC: "52:54:00:00:00:02", UUID: uuid, IP: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Script(ctx, Request{MAC: "52:54:00:00:00:02", UUID: uuid, IP: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	// A binding whose machine the inventory does not know.
	if err := db.Bind(ctx, store.Binding{MAC: "52:54:00:00:00:33", IP: "192.0.2.33"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip   string
		want Identity
	}{
		{"10.0.0.5", Identity{MAC: "52:54:00:00:00:01", Machine: "n1"}},
		{"::ffff:10.0.0.5", Identity{MAC: "52:54:00:00:00:01", Machine: "n1"}},
		{"192.0.2.7", Identity{MAC: "52:54:00:00:00:02", UUID: uuid, Machine: "n2"}},
		{"192.0.2.33", Identity{MAC: "52:54:00:00:00:33"}},
		{"192.0.2.99", Identity{}},
	} {
		if got := c.Identify(ctx, netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Identify(%s) = %+v; want %+v", tc.ip, got, tc.want)
		}
	}
}

// TestMachineLogFields runs one machine through boot, refusals, phone-home and
// power operations and checks that every log line naming a machine names it
// by mac, uuid and machine, so a grep on any of them finds the whole story.
func TestMachineLogFields(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(syncWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Setenv("PROVISIOND_TEST_N1_BMC", "admin:pw")
	dir := t.TempDir()
	write(t, dir, "p.yaml", powerProfiles+"---\nkind: Default\nprofile: install\n")
	write(t, dir, "install.bu", lifecycleButane)
	write(t, dir, "wipe.sh", "#!/bin/sh\n")
	f := &fakeBMC{power: map[string]string{}, fail: map[string]error{}}
	c, db := newCore(t, dir, Config{BMC: f, Logger: log, WipeProfile: "wipe", Neighbors: testutil.Neighbors{"10.0.0.5": "52:54:00:00:00:01", "10.0.0.6": "52:54:00:00:00:66", "10.0.0.99": "52:54:00:00:00:99"}})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const uuid = "11111111-2222-3333-4444-555555555555"
	n1 := Request{MAC: "52:54:00:00:00:01", UUID: uuid, IP: "10.0.0.5"}
	if err := db.Bind(ctx, store.Binding{MAC: n1.MAC, UUID: uuid}); err != nil { // what its DHCP showed
		t.Fatal(err)
	}
	_, tok := script(t, c, n1)
	if _, err := c.Script(ctx, Request{MAC: n1.MAC, IP: "10.0.0.6"}); err == nil {
		t.Fatal("script from another host served")
	}
	if _, _, err := c.Config(ctx, Request{MAC: n1.MAC, IP: n1.IP}, true); err == nil { // no token; the uuid comes from the inventory
		t.Fatal("config without token served")
	}
	if _, _, err := c.Config(ctx, Request{MAC: n1.MAC, Token: tok, IP: n1.IP}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Installed(ctx, uuid, "wrong", "", n1.IP, false); err == nil {
		t.Fatal("phone-home with a wrong token accepted")
	}
	if _, err := c.Installed(ctx, "n1", tok, "", n1.IP, false); err != nil {
		t.Fatal(err)
	}
	script(t, c, n1)                                                 // boot from disk
	script(t, c, Request{MAC: "52:54:00:00:00:99", IP: "10.0.0.99"}) // the Default profile
	c.Power(ctx, "n1", "on", "test")                                 // a BMC operation
	f.fail["10.0.0.1"] = errors.New("BMC on fire")                   // and a failed one
	c.Power(ctx, "n1", "off", "test")                                //
	if _, _, err := c.Reprovision(ctx, "n1", "test", "", false); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	lines := 0
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %s: %v", sc.Bytes(), err)
		}
		_, mac := rec["mac"]
		_, uid := rec["uuid"]
		_, name := rec["machine"]
		if !mac && !uid && !name {
			continue
		}
		lines++
		if !mac || !uid || !name {
			t.Errorf("line lacks one of mac, uuid, machine: %s", sc.Bytes())
		}
		if rec["mac"] == "52:54:00:00:00:01" && (rec["uuid"] != uuid || rec["machine"] != "n1") {
			t.Errorf("n1's line without its uuid or name: %s", sc.Bytes())
		}
	}
	if lines < 10 {
		t.Errorf("only %d lines about machines:\n%s", lines, buf.String())
	}
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
