package storetest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

var secretsTests = []test{
	{"put then get, by MAC in any spelling", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if err := st.PutSecret(ctx, "52-54-00-AB-CD-01", "bmc", []byte("blob")); err != nil {
			t.Fatal(err)
		}
		if got, err := st.Secret(ctx, mac1, "bmc"); err != nil || string(got) != "blob" {
			t.Errorf("Secret = %q, %v", got, err)
		}
	}},
	{"put needs no known machine and overwrites", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, blob := range []string{"one", "two"} {
			if err := st.PutSecret(ctx, mac1, "bmc", []byte(blob)); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := st.Secret(ctx, mac1, "bmc"); err != nil || string(got) != "two" {
			t.Errorf("Secret = %q, %v; want the newest", got, err)
		}
	}},
	{"names and machines are separate", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, k := range [][2]string{{mac1, "a"}, {mac1, "b"}, {mac2, "a"}} {
			if err := st.PutSecret(ctx, k[0], k[1], []byte(k[0]+k[1])); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range [][2]string{{mac1, "a"}, {mac1, "b"}, {mac2, "a"}} {
			if got, err := st.Secret(ctx, k[0], k[1]); err != nil || string(got) != k[0]+k[1] {
				t.Errorf("Secret(%s, %s) = %q, %v", k[0], k[1], got, err)
			}
		}
		_, err := st.Secret(ctx, mac2, "b")
		wantErr(t, "Secret of an unset name", err, store.ErrNotFound)
	}},
	{"unknown is ErrNotFound", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		_, err := st.Secret(ctx, mac1, "bmc")
		wantErr(t, "Secret", err, store.ErrNotFound)
		wantErr(t, "DeleteSecret", st.DeleteSecret(ctx, mac1, "bmc"), store.ErrNotFound)
	}},
	{"delete removes", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if err := st.PutSecret(ctx, mac1, "bmc", []byte("blob")); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteSecret(ctx, "525400ABCD01", "bmc"); err != nil {
			t.Fatal(err)
		}
		_, err := st.Secret(ctx, mac1, "bmc")
		wantErr(t, "Secret after delete", err, store.ErrNotFound)
		wantErr(t, "second DeleteSecret", st.DeleteSecret(ctx, mac1, "bmc"), store.ErrNotFound)
	}},
	{"bad MAC or empty name is ErrInvalid", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, k := range [][2]string{{"nope", "bmc"}, {mac1, ""}} {
			wantErr(t, "PutSecret", st.PutSecret(ctx, k[0], k[1], []byte("x")), store.ErrInvalid)
			_, err := st.Secret(ctx, k[0], k[1])
			wantErr(t, "Secret", err, store.ErrInvalid)
			wantErr(t, "DeleteSecret", st.DeleteSecret(ctx, k[0], k[1]), store.ErrInvalid)
		}
	}},
	{"blobs are copied in and out", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		blob := []byte("blob")
		if err := st.PutSecret(ctx, mac1, "bmc", blob); err != nil {
			t.Fatal(err)
		}
		blob[0] = 'X'
		got, _ := st.Secret(ctx, mac1, "bmc")
		if len(got) > 0 {
			got[0] = 'Y'
		}
		if got, _ := st.Secret(ctx, mac1, "bmc"); !bytes.Equal(got, []byte("blob")) {
			t.Errorf("Secret = %q, want blob", got)
		}
	}},
}

var bindingsTests = []test{
	{"newest claim of an IP wins", func(t *testing.T, s suite) {
		st, c := s.store(t)
		if err := st.Bind(ctx, store.Binding{MAC: mac1, IP: "10.0.0.5"}); err != nil {
			t.Fatal(err)
		}
		now := c.Advance(time.Minute)
		if err := st.Bind(ctx, store.Binding{MAC: mac2, IP: "10.0.0.5"}); err != nil {
			t.Fatal(err)
		}
		b, err := st.IPBinding(ctx, "10.0.0.5")
		if err != nil || b.MAC != mac2 || b.IP != "10.0.0.5" || !b.Seen.Equal(now) {
			t.Errorf("IPBinding = %+v, %v; want %s seen %v", b, err, mac2, now)
		}
	}},
	{"newest UUID of a MAC wins", func(t *testing.T, s suite) {
		st, c := s.store(t)
		if err := st.Bind(ctx, store.Binding{MAC: mac1, UUID: uuid1}); err != nil {
			t.Fatal(err)
		}
		now := c.Advance(time.Minute)
		if err := st.Bind(ctx, store.Binding{MAC: mac1, UUID: uuid2, Seen: t0}); err != nil {
			t.Fatal(err)
		}
		b, err := st.UUIDBinding(ctx, mac1)
		if err != nil || b.MAC != mac1 || b.UUID != uuid2 || !b.Seen.Equal(now) {
			t.Errorf("UUIDBinding = %+v, %v; want %s seen %v", b, err, uuid2, now)
		}
	}},
	{"one packet binds both IP and UUID", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if err := st.Bind(ctx, store.Binding{MAC: mac1, UUID: uuid1, IP: "10.0.0.5"}); err != nil {
			t.Fatal(err)
		}
		if b, err := st.IPBinding(ctx, "10.0.0.5"); err != nil || b.MAC != mac1 {
			t.Errorf("IPBinding = %+v, %v", b, err)
		}
		if b, err := st.UUIDBinding(ctx, mac1); err != nil || b.UUID != uuid1 {
			t.Errorf("UUIDBinding = %+v, %v", b, err)
		}
	}},
	{"canonical forms", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if err := st.Bind(ctx, store.Binding{MAC: "52-54-00-AB-CD-01", UUID: "{" + "8A0C4F2E1B3D4E5F9A6B7C8D9E0F1A2B" + "}", IP: "::ffff:10.0.0.5"}); err != nil {
			t.Fatal(err)
		}
		for _, ip := range []string{"10.0.0.5", "::ffff:10.0.0.5"} {
			if b, err := st.IPBinding(ctx, ip); err != nil || b.MAC != mac1 || b.IP != "10.0.0.5" {
				t.Errorf("IPBinding(%s) = %+v, %v", ip, b, err)
			}
		}
		if b, err := st.UUIDBinding(ctx, "525400abcd01"); err != nil || b.MAC != mac1 || b.UUID != uuid1 {
			t.Errorf("UUIDBinding = %+v, %v", b, err)
		}
	}},
	{"unknown is ErrNotFound", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if err := st.Bind(ctx, store.Binding{MAC: mac1, IP: "10.0.0.5"}); err != nil {
			t.Fatal(err)
		}
		_, err := st.IPBinding(ctx, "10.0.0.6")
		wantErr(t, "IPBinding", err, store.ErrNotFound)
		_, err = st.UUIDBinding(ctx, mac1) // bound an IP, sent no UUID
		wantErr(t, "UUIDBinding", err, store.ErrNotFound)
	}},
	{"bad input is ErrInvalid", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, b := range []store.Binding{{MAC: "nope", IP: "10.0.0.5"}, {MAC: mac1, IP: "10.0.0"}, {MAC: mac1, UUID: "nope"}} {
			wantErr(t, "Bind", st.Bind(ctx, b), store.ErrInvalid)
		}
		_, err := st.IPBinding(ctx, "nope")
		wantErr(t, "IPBinding", err, store.ErrInvalid)
		_, err = st.UUIDBinding(ctx, "nope")
		wantErr(t, "UUIDBinding", err, store.ErrInvalid)
		if _, err := st.UUIDBinding(ctx, mac1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused Bind stored a UUID: %v", err)
		}
	}},
}

var pruneBindingsTests = []test{
	{"cutoff deletes bindings seen before it", func(t *testing.T, s suite) {
		st, c := s.store(t)
		mustBind(t, st, store.Binding{MAC: mac1, IP: "10.0.0.1", UUID: uuid1})
		cutoff := c.Advance(time.Minute)
		mustBind(t, st, store.Binding{MAC: mac2, IP: "10.0.0.2", UUID: uuid2})
		n, err := st.PruneBindings(ctx, cutoff, 100)
		if err != nil || n != 2 {
			t.Errorf("PruneBindings = %d, %v; want 2", n, err)
		}
		if _, err := st.IPBinding(ctx, "10.0.0.1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old IP binding: %v", err)
		}
		if _, err := st.UUIDBinding(ctx, mac1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old UUID binding: %v", err)
		}
		if _, err := st.IPBinding(ctx, "10.0.0.2"); err != nil {
			t.Errorf("binding seen at the cutoff: %v", err)
		}
		if _, err := st.UUIDBinding(ctx, mac2); err != nil {
			t.Errorf("binding seen at the cutoff: %v", err)
		}
	}},
	{"max keeps the newest of each kind", func(t *testing.T, s suite) {
		st, c := s.store(t)
		for i := range 5 {
			c.Advance(time.Second)
			mustBind(t, st, store.Binding{MAC: macN(4 - i), UUID: uuidN(i), IP: "10.0.0." + string(rune('1'+i))})
		}
		n, err := st.PruneBindings(ctx, time.Time{}, 2)
		if err != nil || n != 6 {
			t.Errorf("PruneBindings = %d, %v; want 3 of each kind", n, err)
		}
		for i := range 5 {
			_, errIP := st.IPBinding(ctx, "10.0.0."+string(rune('1'+i)))
			_, errUUID := st.UUIDBinding(ctx, macN(4-i))
			if kept := i >= 3; kept != (errIP == nil) || kept != (errUUID == nil) {
				t.Errorf("binding %d: kept %v, ip %v, uuid %v", i, kept, errIP, errUUID)
			}
		}
	}},
	{"nothing to prune", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustBind(t, st, store.Binding{MAC: mac1, IP: "10.0.0.1"})
		if n, err := st.PruneBindings(ctx, t0, 1); err != nil || n != 0 {
			t.Errorf("PruneBindings = %d, %v; want 0", n, err)
		}
	}},
}

func mustBind(t *testing.T, st store.Store, b store.Binding) {
	t.Helper()
	if err := st.Bind(ctx, b); err != nil {
		t.Fatalf("Bind(%+v): %v", b, err)
	}
}

// setState moves a machine to state through Update.
func setState(t *testing.T, st store.Store, mac string, state store.State) {
	t.Helper()
	if _, _, err := st.Update(ctx, mac, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
		m.State = state
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
}

var pruneDiscoveredTests = []test{
	{"deletes the oldest sightings beyond max", func(t *testing.T, s suite) {
		st, c := s.store(t)
		// Seen in the order 3, 1, 4, 0, 2: the oldest are 3 and 1.
		for _, i := range []int{3, 1, 4, 0, 2} {
			c.Advance(time.Minute)
			mustSeen(t, st, store.Machine{MAC: macN(i)})
		}
		got, err := st.PruneDiscovered(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := slices.Sorted(slices.Values(macs(got))), []string{macN(1), macN(3)}; !slices.Equal(got, want) {
			t.Errorf("pruned %v, want %v", got, want)
		}
		ms, _ := st.Machines(ctx)
		if got, want := macs(ms), []string{macN(0), macN(2), macN(4)}; !slices.Equal(got, want) {
			t.Errorf("left %v, want %v", got, want)
		}
	}},
	{"a later sighting makes a machine young", func(t *testing.T, s suite) {
		st, c := s.store(t)
		for i := range 3 {
			c.Advance(time.Minute)
			mustSeen(t, st, store.Machine{MAC: macN(i)})
		}
		c.Advance(time.Minute)
		mustSeen(t, st, store.Machine{MAC: macN(0)})
		got, err := st.PruneDiscovered(ctx, 2)
		if err != nil || !slices.Equal(macs(got), []string{macN(1)}) {
			t.Errorf("pruned %v, %v; want %s", macs(got), err, macN(1))
		}
	}},
	{"returns the deleted machines whole", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		want := mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1, Arch: "x86_64"})
		got, err := st.PruneDiscovered(ctx, 0)
		if err != nil || len(got) != 1 {
			t.Fatalf("pruned %v, %v", macs(got), err)
		}
		checkMachine(t, "pruned", got[0], want)
	}},
	{"only discovered machines without secrets", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, mac := range []string{mac1, mac2, mac3} {
			mustSeen(t, st, store.Machine{MAC: mac})
		}
		setState(t, st, mac2, store.StateReady)
		if err := st.PutSecret(ctx, mac3, "bmc", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if got, err := st.PruneDiscovered(ctx, 0); err != nil || !slices.Equal(macs(got), []string{mac1}) {
			t.Errorf("pruned %v, %v; want only %s", macs(got), err, mac1)
		}
		ms, _ := st.Machines(ctx)
		if got := macs(ms); !slices.Equal(got, []string{mac2, mac3}) {
			t.Errorf("left %v", got)
		}
	}},
	{"within max nothing is deleted", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1})
		mustSeen(t, st, store.Machine{MAC: mac2})
		if got, err := st.PruneDiscovered(ctx, 2); err != nil || len(got) != 0 {
			t.Errorf("pruned %v, %v", macs(got), err)
		}
	}},
	{"a pruned machine is gone with its provisioning and UUID", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		if _, _, err := st.Update(ctx, mac1, edit(store.StateDiscovered)); err != nil {
			t.Fatal(err)
		}
		if _, err := st.PruneDiscovered(ctx, 0); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{mac1, uuid1} {
			_, err := st.Machine(ctx, key)
			wantErr(t, "Machine "+key, err, store.ErrNotFound)
			_, err = st.Provisioning(ctx, key)
			wantErr(t, "Provisioning "+key, err, store.ErrNotFound)
		}
		// Seen again, it starts over.
		if _, p, err := st.Seen(ctx, store.Machine{MAC: mac1}, edit(store.StateDiscovered)); err != nil || p.ConfigFetches != 1 {
			t.Errorf("seen again: provisioning %+v, %v; want a fresh one", p, err)
		}
	}},
	{"the UUID index stays with a surviving machine", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		mustSeen(t, st, store.Machine{MAC: mac2, UUID: uuid1})
		setState(t, st, mac2, store.StateReady)
		if got, err := st.PruneDiscovered(ctx, 0); err != nil || !slices.Equal(macs(got), []string{mac1}) {
			t.Fatalf("pruned %v, %v", macs(got), err)
		}
		if m, err := st.Machine(ctx, uuid1); err != nil || m.MAC != mac2 {
			t.Errorf("Machine(uuid) = %s, %v; want %s", m.MAC, err, mac2)
		}
	}},
}

var countTests = []test{
	{"counts machines in each state", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if got, err := st.CountByState(ctx); err != nil || len(got) != 0 {
			t.Errorf("CountByState of an empty store = %v, %v", got, err)
		}
		want := map[store.State]int{}
		for i, state := range []store.State{store.StateDiscovered, store.StateReady, store.StateReady, store.StateInstalled, store.StateWiped, store.StateWiped, store.StateWiped} {
			mustSeen(t, st, store.Machine{MAC: macN(i), Name: `tricky ","state":"wiping`, Labels: map[string]string{"state": "wiping"}})
			setState(t, st, macN(i), state)
			want[state]++
		}
		if got, err := st.CountByState(ctx); err != nil || !maps.Equal(got, want) {
			t.Errorf("CountByState = %v, %v; want %v", got, err, want)
		}
	}},
}

var revisionTests = []test{
	{"moves with each write of a machine or an event", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, w := range []struct {
			name  string
			write func() error
		}{
			{"Seen insert", func() error { _, _, err := st.Seen(ctx, store.Machine{MAC: mac1}, nil); return err }},
			{"Seen again", func() error { _, _, err := st.Seen(ctx, store.Machine{MAC: mac1}, nil); return err }},
			{"Seen with a change", func() error { _, _, err := st.Seen(ctx, store.Machine{MAC: mac2}, edit(store.StateReady)); return err }},
			{"Update", func() error { _, _, err := st.Update(ctx, mac1, edit(store.StateReady)); return err }},
			{"AppendEvent", func() error { _, err := st.AppendEvent(ctx, store.Event{Type: "t"}); return err }},
			{"PruneDiscovered deleting", func() error {
				mustSeen(t, st, store.Machine{MAC: mac3})
				_, err := st.PruneDiscovered(ctx, 0)
				return err
			}},
		} {
			before := mustRevision(t, st)
			if err := w.write(); err != nil {
				t.Fatalf("%s: %v", w.name, err)
			}
			if mustRevision(t, st) == before {
				t.Errorf("%s: Revision stayed %d", w.name, before)
			}
		}
	}},
	{"stays with reads and refused writes", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1, State: store.StateReady})
		mustAppend(t, st, store.Event{Type: "t"})
		before := mustRevision(t, st)
		for _, op := range []struct {
			name string
			do   func() error
		}{
			{"Machine", func() error { _, err := st.Machine(ctx, uuid1); return err }},
			{"Machines", func() error { _, err := st.Machines(ctx); return err }},
			{"Provisioning", func() error { _, err := st.Provisioning(ctx, mac1); return err }},
			{"Events", func() error { _, err := st.Events(ctx, store.EventQuery{}); return err }},
			{"invalid Seen", func() error {
				_, _, err := st.Seen(ctx, store.Machine{MAC: "nope"}, nil)
				return ignore(err, store.ErrInvalid)
			}},
			{"Seen with a failing change", func() error {
				_, _, err := st.Seen(ctx, store.Machine{MAC: mac2}, func(*store.Machine, *store.Provisioning) ([]store.Event, error) { return nil, errChange })
				return ignore(err, errChange)
			}},
			{"Update of an unknown machine", func() error { _, _, err := st.Update(ctx, mac3, nil); return ignore(err, store.ErrNotFound) }},
			{"Update with a failing change", func() error {
				_, _, err := st.Update(ctx, mac1, func(*store.Machine, *store.Provisioning) ([]store.Event, error) { return nil, errChange })
				return ignore(err, errChange)
			}},
			{"Update to an unknown state", func() error { _, _, err := st.Update(ctx, mac1, edit("lost")); return ignore(err, store.ErrInvalid) }},
			{"invalid AppendEvent", func() error {
				_, err := st.AppendEvent(ctx, store.Event{MAC: "nope"})
				return ignore(err, store.ErrInvalid)
			}},
			{"PruneDiscovered deleting nothing", func() error { _, err := st.PruneDiscovered(ctx, 0); return err }},
			// A binding is no machine and no event.
			{"Bind", func() error { return st.Bind(ctx, store.Binding{MAC: mac2, UUID: uuid2, IP: "192.0.2.9"}) }},
		} {
			if err := op.do(); err != nil {
				t.Fatalf("%s: %v", op.name, err)
			}
			if got := mustRevision(t, st); got != before {
				t.Errorf("%s: Revision moved from %d to %d", op.name, before, got)
			}
		}
	}},
}

// ignore returns nil if err is want, and otherwise err or a complaint.
func ignore(err, want error) error {
	if errors.Is(err, want) {
		return nil
	}
	if err == nil {
		return errors.New("succeeded, want " + want.Error())
	}
	return err
}

var concurrencyTests = []test{
	{"updates of one machine lose nothing", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1})
		const n = 50
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				fn := func(_ *store.Machine, p *store.Provisioning) ([]store.Event, error) {
					p.ConfigFetches++
					return []store.Event{{Type: "fetch"}}, nil
				}
				var err error
				if i%2 == 0 {
					_, _, err = st.Update(ctx, mac1, fn)
				} else {
					_, _, err = st.Seen(ctx, store.Machine{MAC: mac1, Arch: "x86_64"}, fn)
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if p, err := st.Provisioning(ctx, mac1); err != nil || p.ConfigFetches != n {
			t.Errorf("ConfigFetches = %d, %v; want %d", p.ConfigFetches, err, n)
		}
		if es := mustEvents(t, st, store.EventQuery{MAC: mac1}); len(es) != n {
			t.Errorf("%d events, want %d", len(es), n)
		}
	}},
	{"sightings of many machines lose none", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		const n, workers = 500, 16
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					if _, _, err := st.Seen(ctx, store.Machine{MAC: macN(i), UUID: uuidN(i)}, nil); err != nil {
						t.Error(err)
					}
					if _, _, err := st.Update(ctx, uuidN(i), edit(store.StateReady)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		ms, err := st.Machines(ctx)
		if err != nil || len(ms) != n {
			t.Fatalf("%d machines, %v; want %d", len(ms), err, n)
		}
		for _, m := range ms {
			if m.State != store.StateReady {
				t.Errorf("%s: state %q, want ready", m.MAC, m.State)
			}
		}
	}},
	{"concurrent appends get distinct Seqs", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		const n = 100
		var mu sync.Mutex
		seen := map[uint64]bool{}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				e, err := st.AppendEvent(ctx, store.Event{Type: "t"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if seen[e.Seq] {
					t.Errorf("Seq %d handed out twice", e.Seq)
				}
				seen[e.Seq] = true
			})
		}
		wg.Wait()
		if es := mustEvents(t, st, store.EventQuery{}); len(es) != n {
			t.Errorf("%d events stored, want %d", len(es), n)
		}
	}},
}

var contextTests = []test{
	{"a canceled context is refused", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		for name, do := range map[string]func() error{
			"Seen":            func() error { _, _, err := st.Seen(cctx, store.Machine{MAC: mac2}, nil); return err },
			"Update":          func() error { _, _, err := st.Update(cctx, mac1, nil); return err },
			"Machine":         func() error { _, err := st.Machine(cctx, mac1); return err },
			"Machines":        func() error { _, err := st.Machines(cctx); return err },
			"Provisioning":    func() error { _, err := st.Provisioning(cctx, mac1); return err },
			"AppendEvent":     func() error { _, err := st.AppendEvent(cctx, store.Event{Type: "t"}); return err },
			"Events":          func() error { _, err := st.Events(cctx, store.EventQuery{}); return err },
			"PutSecret":       func() error { return st.PutSecret(cctx, mac1, "n", nil) },
			"Secret":          func() error { _, err := st.Secret(cctx, mac1, "n"); return err },
			"DeleteSecret":    func() error { return st.DeleteSecret(cctx, mac1, "n") },
			"Bind":            func() error { return st.Bind(cctx, store.Binding{MAC: mac1, IP: "10.0.0.1"}) },
			"IPBinding":       func() error { _, err := st.IPBinding(cctx, "10.0.0.1"); return err },
			"UUIDBinding":     func() error { _, err := st.UUIDBinding(cctx, mac1); return err },
			"PruneBindings":   func() error { _, err := st.PruneBindings(cctx, t0, 0); return err },
			"PruneDiscovered": func() error { _, err := st.PruneDiscovered(cctx, 0); return err },
		} {
			wantErr(t, name, do(), context.Canceled)
		}
		if _, err := st.Machine(ctx, mac2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Seen with a canceled context stored the machine: %v", err)
		}
	}},
}
