// Package storetest is a conformance suite for store.Store: the same semantic
// tests run against every backend (bbolt, the in-memory fake, etcd later),
// after tailscale's ipn/store/storetest.
//
// A backend's test calls Run with a function that opens a fresh, empty store;
// the suite sets Options.Clock to control time and may set MaxEvents and
// MaxEventAge.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// Run runs the conformance suite. open returns a fresh, empty store for one
// subtest, opened with opts, and arranges its cleanup with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T, opts store.Options) store.Store) {
	s := suite{open: open}
	for _, g := range []struct {
		name  string
		tests []test
	}{
		{"Seen", seenTests},
		{"SeenChange", seenChangeTests},
		{"Update", updateTests},
		{"Machine", machineTests},
		{"Machines", machinesTests},
		{"Provisioning", provisioningTests},
		{"Events", eventsTests},
		{"Secrets", secretsTests},
		{"Bindings", bindingsTests},
		{"PruneBindings", pruneBindingsTests},
		{"Leases", leasesTests},
		{"PruneDiscovered", pruneDiscoveredTests},
		{"CountByState", countTests},
		{"Revision", revisionTests},
		{"Concurrency", concurrencyTests},
		{"Context", contextTests},
		{"Backup", backupTests},
	} {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
			}
		})
	}
}

// test is one rule the suite checks.
type test struct {
	name string
	fn   func(t *testing.T, s suite)
}

type suite struct {
	open func(t *testing.T, opts store.Options) store.Store
}

// t0 is the time the suite's clock starts at.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a fake store clock the test moves by hand; safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// store opens a fresh store whose clock starts at t0.
func (s suite) store(t *testing.T) (store.Store, *clock) {
	return s.storeOpts(t, store.Options{})
}

func (s suite) storeOpts(t *testing.T, opts store.Options) (store.Store, *clock) {
	t.Helper()
	c := &clock{now: t0}
	opts.Clock = c.Now
	return s.open(t, opts), c
}

// Fixtures. The MACs sort in the order of their last octet.
const (
	mac1  = "52:54:00:ab:cd:01"
	mac2  = "52:54:00:ab:cd:02"
	mac3  = "52:54:00:ab:cd:03"
	uuid1 = "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b"
	uuid2 = "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2c"
)

var (
	errChange = errors.New("change refused")
	ctx       = context.Background()
)

func macN(i int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}

func uuidN(i int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", i)
}

func mustSeen(t *testing.T, st store.Store, m store.Machine) store.Machine {
	t.Helper()
	got, _, err := st.Seen(ctx, m, nil)
	if err != nil {
		t.Fatalf("Seen(%+v): %v", m, err)
	}
	return got
}

func mustMachine(t *testing.T, st store.Store, key string) store.Machine {
	t.Helper()
	m, err := st.Machine(ctx, key)
	if err != nil {
		t.Fatalf("Machine(%q): %v", key, err)
	}
	return m
}

func mustRevision(t *testing.T, st store.Store) uint64 {
	t.Helper()
	rev, err := st.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func mustAppend(t *testing.T, st store.Store, e store.Event) store.Event {
	t.Helper()
	got, err := st.AppendEvent(ctx, e)
	if err != nil {
		t.Fatalf("AppendEvent(%+v): %v", e, err)
	}
	return got
}

func mustEvents(t *testing.T, st store.Store, q store.EventQuery) []store.Event {
	t.Helper()
	es, err := st.Events(ctx, q)
	if err != nil {
		t.Fatalf("Events(%+v): %v", q, err)
	}
	return es
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

// diffMachine describes how got differs from want, "" if not at all. Empty
// and nil label maps are the same; times compare with Equal.
func diffMachine(got, want store.Machine) string {
	var d string
	for _, f := range []struct {
		name string
		same bool
		g, w any
	}{
		{"MAC", got.MAC == want.MAC, got.MAC, want.MAC},
		{"UUID", got.UUID == want.UUID, got.UUID, want.UUID},
		{"Arch", got.Arch == want.Arch, got.Arch, want.Arch},
		{"LastIP", got.LastIP == want.LastIP, got.LastIP, want.LastIP},
		{"Name", got.Name == want.Name, got.Name, want.Name},
		{"Profile", got.Profile == want.Profile, got.Profile, want.Profile},
		{"State", got.State == want.State, got.State, want.State},
		{"Labels", maps.Equal(got.Labels, want.Labels), got.Labels, want.Labels},
		{"FirstSeen", got.FirstSeen.Equal(want.FirstSeen), got.FirstSeen, want.FirstSeen},
		{"LastSeen", got.LastSeen.Equal(want.LastSeen), got.LastSeen, want.LastSeen},
		{"Power", got.Power == want.Power, got.Power, want.Power},
		{"PowerAt", got.PowerAt.Equal(want.PowerAt), got.PowerAt, want.PowerAt},
	} {
		if !f.same {
			d += fmt.Sprintf(" %s: got %v, want %v;", f.name, f.g, f.w)
		}
	}
	return d
}

func checkMachine(t *testing.T, what string, got, want store.Machine) {
	t.Helper()
	if d := diffMachine(got, want); d != "" {
		t.Errorf("%s:%s", what, d)
	}
}

func seqs(es []store.Event) []uint64 {
	out := make([]uint64, 0, len(es))
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func macs(ms []store.Machine) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.MAC)
	}
	return out
}
