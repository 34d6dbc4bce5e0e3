package storetest

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

var seenTests = []test{
	{"insert stamps FirstSeen and LastSeen", func(t *testing.T, s suite) {
		st, c := s.store(t)
		c.Advance(time.Hour)
		got := mustSeen(t, st, store.Machine{MAC: mac1})
		want := store.Machine{MAC: mac1, State: store.StateDiscovered, FirstSeen: c.Now(), LastSeen: c.Now()}
		checkMachine(t, "Seen", got, want)
		checkMachine(t, "Machine", mustMachine(t, st, mac1), want)
	}},
	{"insert defaults state to discovered", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if got := mustSeen(t, st, store.Machine{MAC: mac1}); got.State != store.StateDiscovered {
			t.Errorf("State = %q, want discovered", got.State)
		}
	}},
	{"insert takes the sighting's state", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, State: store.StateReady})
		if got := mustMachine(t, st, mac1); got.State != store.StateReady {
			t.Errorf("State = %q, want ready", got.State)
		}
	}},
	{"later sighting keeps state", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, State: store.StateInstalled})
		mustSeen(t, st, store.Machine{MAC: mac1, State: store.StateDiscovered})
		if got := mustMachine(t, st, mac1); got.State != store.StateInstalled {
			t.Errorf("State = %q, want installed", got.State)
		}
	}},
	{"later sighting overwrites non-empty fields and LastSeen only", func(t *testing.T, s suite) {
		st, c := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1, Arch: "x86_64", LastIP: "10.0.0.5", Name: "n1", Profile: "p1", Labels: map[string]string{"rack": "r1", "row": "a"}})
		c.Advance(time.Minute)
		got := mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid2, Arch: "arm64", LastIP: "10.0.0.6", Name: "n2", Profile: "p2", Labels: map[string]string{"rack": "r2"}})
		want := store.Machine{MAC: mac1, UUID: uuid2, Arch: "arm64", LastIP: "10.0.0.6", Name: "n2", Profile: "p2", State: store.StateDiscovered,
			Labels: map[string]string{"rack": "r2"}, FirstSeen: t0, LastSeen: c.Now()}
		checkMachine(t, "Seen", got, want)
		checkMachine(t, "Machine", mustMachine(t, st, mac1), want)
	}},
	{"later sighting keeps fields it leaves empty", func(t *testing.T, s suite) {
		st, c := s.store(t)
		first := store.Machine{MAC: mac1, UUID: uuid1, Arch: "x86_64", LastIP: "10.0.0.5", Name: "n1", Profile: "p1", Labels: map[string]string{"rack": "r1"}}
		mustSeen(t, st, first)
		c.Advance(time.Minute)
		got := mustSeen(t, st, store.Machine{MAC: mac1})
		want := first
		want.State, want.FirstSeen, want.LastSeen = store.StateDiscovered, t0, c.Now()
		checkMachine(t, "Seen", got, want)
		checkMachine(t, "Machine", mustMachine(t, st, mac1), want)
	}},
	{"MAC and UUID spellings are canonicalised", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		got := mustSeen(t, st, store.Machine{MAC: "52-54-00-AB-CD-01", UUID: strings.ToUpper(strings.ReplaceAll(uuid1, "-", ""))})
		if got.MAC != mac1 || got.UUID != uuid1 {
			t.Errorf("Seen stored %q %q, want %q %q", got.MAC, got.UUID, mac1, uuid1)
		}
		mustSeen(t, st, store.Machine{MAC: "5254.00ab.cd01"})
		if ms, err := st.Machines(ctx); err != nil || len(ms) != 1 {
			t.Errorf("Machines = %v, %v; want one machine", macs(ms), err)
		}
	}},
	{"invalid sightings are refused with ErrInvalid", func(t *testing.T, s suite) {
		long := func(n int) string { return strings.Repeat("x", n) }
		tooMany := map[string]string{}
		for i := range store.MaxLabels + 1 {
			tooMany[macN(i)] = "v"
		}
		for _, tc := range []struct {
			name string
			m    store.Machine
		}{
			{"empty MAC", store.Machine{}},
			{"bad MAC", store.Machine{MAC: "52:54:00:zz:cd:01"}},
			{"bad UUID", store.Machine{MAC: mac1, UUID: "not-a-uuid"}},
			{"unknown state", store.Machine{MAC: mac1, State: "lost"}},
			{"arch too long", store.Machine{MAC: mac1, Arch: long(store.MaxArch + 1)}},
			{"name too long", store.Machine{MAC: mac1, Name: long(store.MaxName + 1)}},
			{"profile too long", store.Machine{MAC: mac1, Profile: long(store.MaxName + 1)}},
			{"too many labels", store.Machine{MAC: mac1, Labels: tooMany}},
			{"label key too long", store.Machine{MAC: mac1, Labels: map[string]string{long(store.MaxName + 1): "v"}}},
			{"label value too long", store.Machine{MAC: mac1, Labels: map[string]string{"k": long(store.MaxName + 1)}}},
			{"last ip not an address", store.Machine{MAC: mac1, LastIP: "10.0.0.256"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, _ := s.store(t)
				_, _, err := st.Seen(ctx, tc.m, nil)
				wantErr(t, "Seen", err, store.ErrInvalid)
				if ms, _ := st.Machines(ctx); len(ms) != 0 {
					t.Errorf("refused sighting stored %v", macs(ms))
				}
			})
		}
	}},
	{"fields at the size limits are accepted", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		labels := map[string]string{}
		for i := range store.MaxLabels - 1 {
			labels[macN(i)] = "v"
		}
		labels[strings.Repeat("k", store.MaxName)] = strings.Repeat("v", store.MaxName)
		m := store.Machine{MAC: mac1, Arch: strings.Repeat("a", store.MaxArch), Name: strings.Repeat("n", store.MaxName),
			Profile: strings.Repeat("p", store.MaxName), Labels: labels, LastIP: "fe80::1"}
		if _, _, err := st.Seen(ctx, m, nil); err != nil {
			t.Fatalf("Seen at the limits: %v", err)
		}
	}},
	{"stored machine does not alias the caller's labels", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		labels := map[string]string{"rack": "r1"}
		got := mustSeen(t, st, store.Machine{MAC: mac1, Labels: labels})
		labels["rack"] = "changed"
		got.Labels["rack"] = "changed too"
		if m := mustMachine(t, st, mac1); m.Labels["rack"] != "r1" {
			t.Errorf("stored label = %q, want r1", m.Labels["rack"])
		}
		m := mustMachine(t, st, mac1)
		m.Labels["rack"] = "changed again"
		if m := mustMachine(t, st, mac1); m.Labels["rack"] != "r1" {
			t.Errorf("stored label after editing a read = %q, want r1", m.Labels["rack"])
		}
	}},
	{"UUID index follows the newest sighting", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		mustSeen(t, st, store.Machine{MAC: mac2, UUID: uuid1}) // a second NIC of the machine
		if m := mustMachine(t, st, uuid1); m.MAC != mac2 {
			t.Errorf("Machine(uuid) = %s, want the newest sighting %s", m.MAC, mac2)
		}
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		if m := mustMachine(t, st, uuid1); m.MAC != mac1 {
			t.Errorf("Machine(uuid) = %s, want the newest sighting %s", m.MAC, mac1)
		}
	}},
	{"a new UUID drops the old one from the index", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid2})
		if _, err := st.Machine(ctx, uuid1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Machine(old uuid): %v, want ErrNotFound", err)
		}
		if m := mustMachine(t, st, uuid2); m.MAC != mac1 {
			t.Errorf("Machine(new uuid) = %s, want %s", m.MAC, mac1)
		}
	}},
	{"a new UUID keeps the old one's index if another MAC claimed it since", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		mustSeen(t, st, store.Machine{MAC: mac2, UUID: uuid1})
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid2})
		if m := mustMachine(t, st, uuid1); m.MAC != mac2 {
			t.Errorf("Machine(uuid1) = %s, want %s", m.MAC, mac2)
		}
	}},
}

var seenChangeTests = []test{
	{"change sees the merged sighting and its edits are stored", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, Arch: "x86_64", Name: "n1"})
		var seenByChange store.Machine
		got, p, err := st.Seen(ctx, store.Machine{MAC: mac1, Name: "n2"}, func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
			seenByChange = *m
			m.State = store.StateReady
			p.Profile = "p1"
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seenByChange.Arch != "x86_64" || seenByChange.Name != "n2" {
			t.Errorf("change saw arch %q name %q, want the stored arch and the sighting's name", seenByChange.Arch, seenByChange.Name)
		}
		if got.State != store.StateReady || p.Profile != "p1" {
			t.Errorf("Seen returned state %q profile %q", got.State, p.Profile)
		}
		if m := mustMachine(t, st, mac1); m.State != store.StateReady || m.Name != "n2" {
			t.Errorf("stored state %q name %q", m.State, m.Name)
		}
		if p, err := st.Provisioning(ctx, mac1); err != nil || p.Profile != "p1" {
			t.Errorf("Provisioning = %+v, %v", p, err)
		}
	}},
	{"change sees a new machine's defaults", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		_, _, err := st.Seen(ctx, store.Machine{MAC: mac1}, func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
			if m.MAC != mac1 || m.State != store.StateDiscovered || !m.FirstSeen.Equal(t0) || !m.LastSeen.Equal(t0) {
				t.Errorf("change saw %+v", *m)
			}
			if *p != (store.Provisioning{}) {
				t.Errorf("change saw provisioning %+v, want zero", *p)
			}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}},
	{"change events are appended with the machine's MAC and clock", func(t *testing.T, s suite) {
		st, c := s.store(t)
		c.Advance(time.Hour)
		_, _, err := st.Seen(ctx, store.Machine{MAC: "52-54-00-AB-CD-01"}, func(*store.Machine, *store.Provisioning) ([]store.Event, error) {
			return []store.Event{{Type: "discovered"}, {Type: "other", MAC: mac2, Time: t0}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		es := mustEvents(t, st, store.EventQuery{})
		if len(es) != 2 {
			t.Fatalf("%d events, want 2", len(es))
		}
		for _, e := range es {
			if e.MAC != mac1 || !e.Time.Equal(c.Now()) {
				t.Errorf("event %s: mac %q time %v, want %q %v", e.Type, e.MAC, e.Time, mac1, c.Now())
			}
		}
		if es[0].Type != "discovered" || es[1].Type != "other" || es[0].Seq >= es[1].Seq {
			t.Errorf("events %+v, want discovered then other", es)
		}
	}},
	{"change error comes back and writes nothing", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		gen := mustRevision(t, st)
		_, _, err := st.Seen(ctx, store.Machine{MAC: mac1, UUID: uuid1}, func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
			p.Profile = "p1"
			return []store.Event{{Type: "x"}}, errChange
		})
		wantErr(t, "Seen", err, errChange)
		if _, err := st.Machine(ctx, mac1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Machine(mac): %v, want ErrNotFound", err)
		}
		if _, err := st.Machine(ctx, uuid1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Machine(uuid): %v, want ErrNotFound", err)
		}
		if es := mustEvents(t, st, store.EventQuery{}); len(es) != 0 {
			t.Errorf("events written: %+v", es)
		}
		if mustRevision(t, st) != gen {
			t.Error("Revision moved")
		}
	}},
	{"change error on a known machine leaves its sighting and UUID index", func(t *testing.T, s suite) {
		st, c := s.store(t)
		before := mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1, Arch: "x86_64"})
		c.Advance(time.Minute)
		_, _, err := st.Seen(ctx, store.Machine{MAC: mac1, UUID: uuid2, Arch: "arm64"}, func(*store.Machine, *store.Provisioning) ([]store.Event, error) {
			return nil, errChange
		})
		wantErr(t, "Seen", err, errChange)
		checkMachine(t, "Machine(uuid1)", mustMachine(t, st, uuid1), before)
		if _, err := st.Machine(ctx, uuid2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Machine(uuid2): %v, want ErrNotFound", err)
		}
	}},
	{"change may not rename the machine", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		_, _, err := st.Seen(ctx, store.Machine{MAC: mac1}, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
			m.MAC = mac2
			return nil, nil
		})
		wantErr(t, "Seen", err, store.ErrInvalid)
		if ms, _ := st.Machines(ctx); len(ms) != 0 {
			t.Errorf("stored %v", macs(ms))
		}
	}},
	{"change may not set an unknown state", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, state := range []store.State{"", "lost"} {
			_, _, err := st.Seen(ctx, store.Machine{MAC: mac1}, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
				m.State = state
				return nil, nil
			})
			wantErr(t, "Seen setting state "+string(state), err, store.ErrInvalid)
		}
		if ms, _ := st.Machines(ctx); len(ms) != 0 {
			t.Errorf("stored %v", macs(ms))
		}
	}},
}

// edit is a Change that sets the state and counts a config fetch.
func edit(state store.State) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		m.State = state
		p.ConfigFetches++
		return []store.Event{{Type: "edited"}}, nil
	}
}

var updateTests = []test{
	{"unknown machine is ErrNotFound", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		for _, key := range []string{mac2, uuid2} {
			_, _, err := st.Update(ctx, key, edit(store.StateReady))
			wantErr(t, "Update "+key, err, store.ErrNotFound)
		}
	}},
	{"a key neither MAC nor UUID is ErrInvalid", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		_, _, err := st.Update(ctx, "node1", edit(store.StateReady))
		wantErr(t, "Update", err, store.ErrInvalid)
	}},
	{"edits by MAC in any spelling or UUID", func(t *testing.T, s suite) {
		for _, key := range []string{mac1, "52-54-00-AB-CD-01", "525400abcd01", uuid1, strings.ToUpper(uuid1), "{" + uuid1 + "}"} {
			t.Run(key, func(t *testing.T) {
				st, c := s.store(t)
				mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
				c.Advance(time.Minute)
				m, p, err := st.Update(ctx, key, edit(store.StateReady))
				if err != nil {
					t.Fatal(err)
				}
				if m.MAC != mac1 || m.State != store.StateReady || p.ConfigFetches != 1 {
					t.Errorf("Update returned %+v %+v", m, p)
				}
				if !m.LastSeen.Equal(t0) {
					t.Errorf("Update moved LastSeen to %v; it is not a sighting", m.LastSeen)
				}
				checkMachine(t, "Machine", mustMachine(t, st, mac1), m)
				if got, _ := st.Provisioning(ctx, mac1); got != p {
					t.Errorf("Provisioning = %+v, want %+v", got, p)
				}
			})
		}
	}},
	{"change events are appended with the machine's MAC", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		if _, _, err := st.Update(ctx, uuid1, func(*store.Machine, *store.Provisioning) ([]store.Event, error) {
			return []store.Event{{Type: "a", MAC: mac2}, {Type: "b"}}, nil
		}); err != nil {
			t.Fatal(err)
		}
		es := mustEvents(t, st, store.EventQuery{MAC: mac1})
		if len(es) != 2 || es[0].Type != "a" || es[1].Type != "b" {
			t.Errorf("events of %s: %+v", mac1, es)
		}
	}},
	{"change error comes back wrapped and writes nothing", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		before := mustSeen(t, st, store.Machine{MAC: mac1})
		gen := mustRevision(t, st)
		_, _, err := st.Update(ctx, mac1, func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
			m.State, p.ConfigFetches = store.StateReady, 7
			return []store.Event{{Type: "x"}}, errChange
		})
		wantErr(t, "Update", err, errChange)
		checkMachine(t, "Machine", mustMachine(t, st, mac1), before)
		if p, _ := st.Provisioning(ctx, mac1); p != (store.Provisioning{}) {
			t.Errorf("Provisioning = %+v, want zero", p)
		}
		if es := mustEvents(t, st, store.EventQuery{}); len(es) != 0 {
			t.Errorf("events written: %+v", es)
		}
		if mustRevision(t, st) != gen {
			t.Error("Revision moved")
		}
	}},
	{"change may not rename the machine", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1})
		_, _, err := st.Update(ctx, mac1, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
			m.MAC = mac2
			return nil, nil
		})
		wantErr(t, "Update", err, store.ErrInvalid)
		if ms, _ := st.Machines(ctx); !slices.Equal(macs(ms), []string{mac1}) {
			t.Errorf("Machines = %v, want only %s", macs(ms), mac1)
		}
	}},
	{"change may not set an unknown state", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, State: store.StateReady})
		_, _, err := st.Update(ctx, mac1, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
			m.State = "lost"
			return nil, nil
		})
		wantErr(t, "Update", err, store.ErrInvalid)
		if m := mustMachine(t, st, mac1); m.State != store.StateReady {
			t.Errorf("State = %q, want ready", m.State)
		}
	}},
	{"returned machine does not alias the store", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, Labels: map[string]string{"rack": "r1"}})
		var inChange map[string]string
		m, _, err := st.Update(ctx, mac1, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
			inChange = m.Labels
			m.Labels = maps.Clone(m.Labels)
			m.Labels["row"] = "a"
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Labels["rack"] = "changed"
		inChange["rack"] = "changed too"
		if got := mustMachine(t, st, mac1).Labels; !maps.Equal(got, map[string]string{"rack": "r1", "row": "a"}) {
			t.Errorf("stored labels = %v", got)
		}
	}},
	{"a change's machine does not alias the store", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, Labels: map[string]string{"rack": "r1"}})
		var kept map[string]string
		for _, change := range []func(store.Change) error{
			func(fn store.Change) error { _, _, err := st.Update(ctx, mac1, fn); return err },
			func(fn store.Change) error { _, _, err := st.Seen(ctx, store.Machine{MAC: mac1}, fn); return err },
		} {
			if err := change(func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
				kept = m.Labels
				return nil, nil
			}); err != nil {
				t.Fatal(err)
			}
			kept["rack"] = "changed"
			if got := mustMachine(t, st, mac1).Labels; !maps.Equal(got, map[string]string{"rack": "r1"}) {
				t.Errorf("stored labels = %v", got)
			}
		}
	}},
}

var machineTests = []test{
	{"by MAC in any spelling", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1})
		for _, key := range []string{mac1, "52:54:00:AB:CD:01", "52-54-00-ab-cd-01", "525400ABCD01", "5254.00ab.cd01"} {
			if m, err := st.Machine(ctx, key); err != nil || m.MAC != mac1 {
				t.Errorf("Machine(%q) = %s, %v", key, m.MAC, err)
			}
		}
	}},
	{"by UUID in any case with or without hyphens", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		for _, key := range []string{uuid1, strings.ToUpper(uuid1), strings.ReplaceAll(uuid1, "-", ""), "{" + uuid1 + "}"} {
			if m, err := st.Machine(ctx, key); err != nil || m.MAC != mac1 {
				t.Errorf("Machine(%q) = %s, %v", key, m.MAC, err)
			}
		}
	}},
	{"unknown is ErrNotFound", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		for _, key := range []string{mac2, uuid2} {
			_, err := st.Machine(ctx, key)
			wantErr(t, "Machine "+key, err, store.ErrNotFound)
		}
	}},
	{"neither MAC nor UUID is ErrInvalid", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, key := range []string{"", "node1", "52:54:00:ab:cd"} {
			_, err := st.Machine(ctx, key)
			wantErr(t, "Machine "+key, err, store.ErrInvalid)
		}
	}},
}

var machinesTests = []test{
	{"empty store lists none", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		if ms, err := st.Machines(ctx); err != nil || len(ms) != 0 {
			t.Errorf("Machines = %v, %v", macs(ms), err)
		}
	}},
	{"ordered by MAC", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, mac := range []string{mac3, "00:00:00:00:00:ff", mac1, "FF-00-00-00-00-00", mac2} {
			mustSeen(t, st, store.Machine{MAC: mac})
		}
		ms, err := st.Machines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"00:00:00:00:00:ff", mac1, mac2, mac3, "ff:00:00:00:00:00"}
		if got := macs(ms); !slices.Equal(got, want) {
			t.Errorf("Machines = %v, want %v", got, want)
		}
	}},
	{"listed machines are whole", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		want := mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1, Arch: "x86_64", Labels: map[string]string{"k": "v"}})
		ms, err := st.Machines(ctx)
		if err != nil || len(ms) != 1 {
			t.Fatalf("Machines = %v, %v", macs(ms), err)
		}
		checkMachine(t, "Machines[0]", ms[0], want)
	}},
}

var provisioningTests = []test{
	{"zero for a new machine", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		for _, key := range []string{mac1, uuid1} {
			if p, err := st.Provisioning(ctx, key); err != nil || p != (store.Provisioning{}) {
				t.Errorf("Provisioning(%s) = %+v, %v; want zero", key, p, err)
			}
		}
	}},
	{"unknown machine is ErrNotFound", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		for _, key := range []string{mac1, uuid1} {
			_, err := st.Provisioning(ctx, key)
			wantErr(t, "Provisioning "+key, err, store.ErrNotFound)
		}
		_, err := st.Provisioning(ctx, "nope")
		wantErr(t, "Provisioning nope", err, store.ErrInvalid)
	}},
	{"returns what a change stored", func(t *testing.T, s suite) {
		st, c := s.store(t)
		mustSeen(t, st, store.Machine{MAC: mac1, UUID: uuid1})
		want := store.Provisioning{TokenHash: "ab", Profile: "p", IssuedAt: c.Advance(time.Second), ConfigFetches: 2}
		if _, _, err := st.Update(ctx, mac1, func(_ *store.Machine, p *store.Provisioning) ([]store.Event, error) {
			*p = want
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		got, err := st.Provisioning(ctx, uuid1)
		if err != nil || got.TokenHash != want.TokenHash || got.Profile != want.Profile || !got.IssuedAt.Equal(want.IssuedAt) || got.ConfigFetches != 2 {
			t.Errorf("Provisioning = %+v, %v; want %+v", got, err, want)
		}
	}},
}
