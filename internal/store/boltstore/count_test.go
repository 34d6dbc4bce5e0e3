package boltstore

import (
	"context"
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

func TestCountByState(t *testing.T) {
	db := mustOpen(t, store.Options{})
	ctx := context.Background()
	want := map[store.State]int{}
	for i, st := range []store.State{store.StateDiscovered, store.StateReady, store.StateReady, store.StateProvisioning, store.StateInstalled, store.StateInstalled, store.StateInstalled, store.StateWiping, store.StateWiped} {
		mustSeen(t, db, store.Machine{MAC: testMACn(i), UUID: testUUIDn(i), Name: `tricky ","state":"wiped`, Labels: map[string]string{"state": "wiped"}})
		if _, _, err := db.Update(ctx, testMACn(i), func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
			m.State = st
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		want[st]++
	}
	// A record not as putMachine writes it is still counted, by the decoder.
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketMachines).Put([]byte(testMACn(100)), []byte(`{ "mac": "02:00:00:00:00:64", "state": "ready" }`))
	})
	if err != nil {
		t.Fatal(err)
	}
	want[store.StateReady]++
	got, err := db.CountByState(ctx)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("CountByState = %v, %v; want %v", got, err, want)
	}
	if err := db.bdb.Update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketMachines).Put([]byte(testMACn(101)), []byte(`{"mac":`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CountByState(ctx); err == nil {
		t.Error("CountByState over an undecodable record succeeded")
	}
}

func TestRecordState(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want store.State
		ok   bool
	}{
		{"as written", `{"mac":"a","name":"n","state":"installed","labels":{"state":"wiped"}}`, store.StateInstalled, true},
		{"escaped quotes before", `{"mac":"a","name":"x\",\"state\":\"wiped\\\\","state":"ready"}`, store.StateReady, true},
		{"nested objects and arrays", `{"a":{"b":[1,{"state":"wiped"}],"c":"}"},"n":12.5,"t":true,"z":null,"state":"wiping"}`, store.StateWiping, true},
		{"whitespace", `{ "state": "ready" }`, "", false},
		{"no state", `{"mac":"a"}`, "", false},
		{"unknown state", `{"state":"lost"}`, "", false},
		{"truncated", `{"mac":"a","state":"rea`, "", false},
		{"empty", ``, "", false},
		{"not an object", `["state","ready"]`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := recordState([]byte(tc.in))
			if got != tc.want || ok != tc.ok {
				t.Errorf("recordState(%s) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzRecordState: whatever strings a machine record holds, the state read
// without decoding is the one json.Marshal wrote.
func FuzzRecordState(f *testing.F) {
	f.Add("n1", "rack", "r1", "p", 2)
	f.Add(`","state":"wiped`, "state", `\"wiped"}`, `{[`, 5)
	f.Fuzz(func(t *testing.T, name, key, value, profile string, s int) {
		states := store.States()
		st := states[uint(s)%uint(len(states))]
		m := store.Machine{MAC: "52:54:00:00:00:01", UUID: name, Arch: value, LastIP: key, Name: name, Profile: profile,
			State: st, Labels: map[string]string{key: value, "state": name}, FirstSeen: time.Unix(1, 0), Power: value}
		v, err := json.Marshal(m)
		if err != nil {
			t.Skip()
		}
		if got, ok := recordState(v); !ok || got != st {
			t.Fatalf("recordState(%s) = %q, %v; want %q", v, got, ok, st)
		}
	})
}

// BenchmarkCountByState is the store's part of a /metrics scrape at 10,000
// machines, beside decoding every record as Machines does.
func BenchmarkCountByState(b *testing.B) {
	db := mustOpen(b, store.Options{})
	fillMachines(b, db, 10_000, func(i int) store.Machine {
		return store.Machine{MAC: testMACn(i), UUID: testUUIDn(i), Arch: "efi-x86_64", LastIP: "10.0.0.1", Name: "worker", Profile: "flatcar-worker", Labels: map[string]string{"rack": "r1"}}
	})
	ctx := context.Background()
	b.Run("CountByState", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := db.CountByState(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Machines", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := db.Machines(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestStates(t *testing.T) {
	all := store.States()
	if len(all) != 6 {
		t.Fatalf("store.States() = %v", all)
	}
	for _, st := range all {
		if !st.Valid() {
			t.Errorf("%q listed but not Valid", st)
		}
	}
	all[0] = "changed"
	if store.States()[0] != store.StateDiscovered {
		t.Error("store.States() hands out its own array")
	}
}
