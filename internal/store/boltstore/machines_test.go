package boltstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

const (
	testMAC  = "52:54:00:ab:cd:01"
	testUUID = "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b"
)

func TestSeen(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sightings []store.Machine
		want      store.Machine // FirstSeen and LastSeen are checked separately
	}{
		{
			name:      "insert defaults to discovered",
			sightings: []store.Machine{{MAC: "52-54-00-AB-CD-01", Arch: "x86_64"}},
			want:      store.Machine{MAC: testMAC, Arch: "x86_64", State: store.StateDiscovered},
		},
		{
			name:      "insert takes the sighting's state",
			sightings: []store.Machine{{MAC: testMAC, State: store.StateReady}},
			want:      store.Machine{MAC: testMAC, State: store.StateReady},
		},
		{
			name: "update keeps the stored state",
			sightings: []store.Machine{
				{MAC: testMAC, State: store.StateInstalled},
				{MAC: testMAC, State: store.StateDiscovered},
			},
			want: store.Machine{MAC: testMAC, State: store.StateInstalled},
		},
		{
			name: "update overwrites non-empty fields",
			sightings: []store.Machine{
				{MAC: testMAC, UUID: testUUID, Arch: "x86_64", LastIP: "10.0.0.5", Name: "node1", Profile: "p1", Labels: map[string]string{"rack": "r1"}},
				{MAC: testMAC, Arch: "arm64", LastIP: "10.0.0.6", Name: "node2", Profile: "p2", Labels: map[string]string{"rack": "r2"}},
			},
			want: store.Machine{MAC: testMAC, UUID: testUUID, Arch: "arm64", LastIP: "10.0.0.6", Name: "node2", Profile: "p2", State: store.StateDiscovered, Labels: map[string]string{"rack": "r2"}},
		},
		{
			name: "update keeps fields the sighting leaves empty",
			sightings: []store.Machine{
				{MAC: testMAC, UUID: testUUID, Arch: "x86_64", LastIP: "10.0.0.5", Name: "node1", Profile: "p1", Labels: map[string]string{"rack": "r1"}},
				{MAC: "52:54:00:ab:cd:01"},
			},
			want: store.Machine{MAC: testMAC, UUID: testUUID, Arch: "x86_64", LastIP: "10.0.0.5", Name: "node1", Profile: "p1", State: store.StateDiscovered, Labels: map[string]string{"rack": "r1"}},
		},
		{
			name:      "UUID is canonicalised",
			sightings: []store.Machine{{MAC: testMAC, UUID: "8A0C4F2E1B3D4E5F9A6B7C8D9E0F1A2B"}},
			want:      store.Machine{MAC: testMAC, UUID: testUUID, State: store.StateDiscovered},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t, store.Options{})
			var first store.Machine
			var got store.Machine
			for i, s := range tc.sightings {
				got = mustSeen(t, db, s)
				if i == 0 {
					first = got
				}
			}
			if got.FirstSeen.IsZero() || !got.FirstSeen.Equal(first.FirstSeen) {
				t.Errorf("FirstSeen = %v, want the first sighting's %v", got.FirstSeen, first.FirstSeen)
			}
			if got.LastSeen.Before(got.FirstSeen) {
				t.Errorf("LastSeen %v before FirstSeen %v", got.LastSeen, got.FirstSeen)
			}
			if len(tc.sightings) > 1 && !got.LastSeen.After(first.LastSeen) {
				t.Errorf("LastSeen %v did not move past the first sighting's %v", got.LastSeen, first.LastSeen)
			}
			stored, err := db.Machine(context.Background(), testMAC)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(stored, got) {
				t.Errorf("stored %+v, Seen returned %+v", stored, got)
			}
			got.FirstSeen, got.LastSeen = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestSeenRejects(t *testing.T) {
	db := mustOpen(t, store.Options{})
	for _, tc := range []struct {
		name     string
		sighting store.Machine
	}{
		{"no MAC", store.Machine{}},
		{"bad MAC", store.Machine{MAC: "52:54:00:00:00"}},
		{"bad UUID", store.Machine{MAC: testMAC, UUID: "not-a-uuid"}},
		{"unknown state", store.Machine{MAC: testMAC, State: "exploded"}},
		{"huge arch", store.Machine{MAC: testMAC, Arch: strings.Repeat("x", 500<<10)}},
		{"arch one byte over", store.Machine{MAC: testMAC, Arch: strings.Repeat("x", store.MaxArch+1)}},
		{"last ip not an address", store.Machine{MAC: testMAC, LastIP: "10.0.0.1; rm -rf"}},
		{"huge name", store.Machine{MAC: testMAC, Name: strings.Repeat("n", store.MaxName+1)}},
		{"huge label", store.Machine{MAC: testMAC, Labels: map[string]string{"k": strings.Repeat("v", store.MaxName+1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := db.Seen(context.Background(), tc.sighting, nil); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("err = %v, want store.ErrInvalid", err)
			}
		})
	}
}

// db.Batch may run a closure more than once in one transaction's lifetime;
// running seen twice must store what running it once does.
func TestSeenIdempotent(t *testing.T) {
	db := mustOpen(t, store.Options{})
	mustSeen(t, db, store.Machine{MAC: testMAC, UUID: testUUID})
	s := store.Machine{MAC: testMAC, UUID: "00000000-0000-0000-0000-000000000002", Labels: map[string]string{"a": "b"}}
	now := time.Now().UTC()
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		once, prev, err := seen(tx, s, now)
		if err != nil {
			return err
		}
		twice, prev2, err := seen(tx, s, now)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(once, twice) || prev != prev2 {
			t.Errorf("second run %+v (%s), first %+v (%s)", twice, prev2, once, prev)
		}
		for range 2 {
			if err := indexUUID(tx, s.UUID, prev, testMAC); err != nil {
				return err
			}
		}
		if v := bucket(tx, bucketUUIDs).Get([]byte(testUUID)); v != nil {
			t.Errorf("old UUID still indexed to %s", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMachineLookup(t *testing.T) {
	db := mustOpen(t, store.Options{})
	mustSeen(t, db, store.Machine{MAC: testMAC, UUID: testUUID})
	// A re-imaged board reporting a new UUID must drop the old index entry.
	mustSeen(t, db, store.Machine{MAC: "52:54:00:00:00:02", UUID: "00000000-0000-0000-0000-00000000000a"})
	mustSeen(t, db, store.Machine{MAC: "52:54:00:00:00:02", UUID: "00000000-0000-0000-0000-00000000000b"})
	// A UUID another MAC has claimed since stays with that MAC when the first
	// one moves on (NICs of one board share its UUID).
	mustSeen(t, db, store.Machine{MAC: "52:54:00:00:00:03", UUID: "00000000-0000-0000-0000-00000000000c"})
	mustSeen(t, db, store.Machine{MAC: "52:54:00:00:00:04", UUID: "00000000-0000-0000-0000-00000000000c"})
	mustSeen(t, db, store.Machine{MAC: "52:54:00:00:00:03", UUID: "00000000-0000-0000-0000-00000000000d"})
	for _, tc := range []struct {
		name    string
		key     string
		wantMAC string
		wantErr error
	}{
		{name: "canonical MAC", key: "52:54:00:ab:cd:01", wantMAC: testMAC},
		{name: "upper-case hyphenated MAC", key: "52-54-00-AB-CD-01", wantMAC: testMAC},
		{name: "bare upper-case MAC", key: "525400ABCD01", wantMAC: testMAC},
		{name: "mixed-case colon MAC", key: "52:54:00:Ab:cD:01", wantMAC: testMAC},
		{name: "upper-case UUID", key: "8A0C4F2E-1B3D-4E5F-9A6B-7C8D9E0F1A2B", wantMAC: testMAC},
		{name: "UUID without hyphens", key: "8a0c4f2e1b3d4e5f9a6b7c8d9e0f1a2b", wantMAC: testMAC},
		{name: "new UUID", key: "00000000-0000-0000-0000-00000000000b", wantMAC: "52:54:00:00:00:02"},
		{name: "replaced UUID", key: "00000000-0000-0000-0000-00000000000a", wantErr: store.ErrNotFound},
		{name: "UUID claimed by another MAC since", key: "00000000-0000-0000-0000-00000000000c", wantMAC: "52:54:00:00:00:04"},
		{name: "unknown MAC", key: "52:54:00:00:00:99", wantErr: store.ErrNotFound},
		{name: "unknown UUID", key: "ffffffff-0000-0000-0000-000000000000", wantErr: store.ErrNotFound},
		{name: "neither", key: "node1", wantErr: store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := db.Machine(context.Background(), tc.key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if m.MAC != tc.wantMAC {
				t.Errorf("MAC = %q, want %q", m.MAC, tc.wantMAC)
			}
		})
	}
}

func TestMachinesOrderedByMAC(t *testing.T) {
	db := mustOpen(t, store.Options{})
	for _, mac := range []string{"52:54:00:00:00:03", "52:54:00:ab:cd:01", "52:54:00:00:00:02"} {
		mustSeen(t, db, store.Machine{MAC: mac})
	}
	ms, err := db.Machines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.MAC)
	}
	want := []string{"52:54:00:00:00:02", "52:54:00:00:00:03", "52:54:00:ab:cd:01"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MACs = %v, want %v", got, want)
	}
}

func TestUpdate(t *testing.T) {
	errBoom := errors.New("boom")
	open := func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		m.State, p.TokenHash = store.StateProvisioning, "h1"
		return []store.Event{{Type: "provisioning", Message: "opened"}}, nil
	}
	for _, tc := range []struct {
		name       string
		key        string
		fn         store.Change
		wantErr    error
		wantState  store.State // stored state afterwards
		wantHash   string      // stored token hash afterwards
		wantEvents int
	}{
		{name: "nil change", key: testMAC, wantState: store.StateDiscovered},
		{name: "state, provisioning and event together", key: testMAC, fn: open, wantState: store.StateProvisioning, wantHash: "h1", wantEvents: 1},
		{name: "other MAC spelling", key: "52-54-00-AB-CD-01", fn: open, wantState: store.StateProvisioning, wantHash: "h1", wantEvents: 1},
		{name: "by UUID", key: testUUID, fn: open, wantState: store.StateProvisioning, wantHash: "h1", wantEvents: 1},
		{name: "error rolls everything back", key: testMAC, fn: func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
			m.State, p.TokenHash = store.StateInstalled, "leaked"
			return []store.Event{{Type: "x"}}, errBoom
		}, wantErr: errBoom, wantState: store.StateDiscovered},
		{name: "renaming is refused", key: testMAC, fn: func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
			m.MAC = "52:54:00:00:00:77"
			return nil, nil
		}, wantErr: store.ErrInvalid, wantState: store.StateDiscovered},
		{name: "unknown state is refused", key: testMAC, fn: func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
			m.State = "exploded"
			return nil, nil
		}, wantErr: store.ErrInvalid, wantState: store.StateDiscovered},
		{name: "unknown machine", key: "52:54:00:00:00:99", fn: open, wantErr: store.ErrNotFound, wantState: store.StateDiscovered},
		{name: "neither MAC nor UUID", key: "node1", fn: open, wantErr: store.ErrInvalid, wantState: store.StateDiscovered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t, store.Options{})
			ctx := context.Background()
			mustSeen(t, db, store.Machine{MAC: testMAC, UUID: testUUID})
			m, _, err := db.Update(ctx, tc.key, tc.fn)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && m.State != tc.wantState {
				t.Errorf("returned state %s, want %s", m.State, tc.wantState)
			}
			stored, err := db.Machine(ctx, testMAC)
			if err != nil {
				t.Fatal(err)
			}
			if stored.State != tc.wantState {
				t.Errorf("stored state %s, want %s", stored.State, tc.wantState)
			}
			p, err := db.Provisioning(ctx, testMAC)
			if err != nil {
				t.Fatal(err)
			}
			if p.TokenHash != tc.wantHash {
				t.Errorf("stored token hash %q, want %q", p.TokenHash, tc.wantHash)
			}
			es, err := db.Events(ctx, store.EventQuery{MAC: testMAC})
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != tc.wantEvents {
				t.Errorf("%d events, want %d", len(es), tc.wantEvents)
			}
		})
	}
}

// A sighting and its Change land in one transaction: the change sees the
// sighting's fields and the result is what is stored.
func TestSeenWithChange(t *testing.T) {
	db := mustOpen(t, store.Options{})
	ctx := context.Background()
	ready := func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
		if m.Name != "" && m.State == store.StateDiscovered {
			m.State = store.StateReady
			return []store.Event{{Type: "ready"}}, nil
		}
		return nil, nil
	}
	if m, _, err := db.Seen(ctx, store.Machine{MAC: testMAC}, ready); err != nil || m.State != store.StateDiscovered {
		t.Fatalf("unnamed sighting: state %s, err %v; want discovered", m.State, err)
	}
	m, _, err := db.Seen(ctx, store.Machine{MAC: testMAC, Name: "node1"}, ready)
	if err != nil || m.State != store.StateReady {
		t.Fatalf("named sighting: state %s, err %v; want ready", m.State, err)
	}
	if stored, _ := db.Machine(ctx, testMAC); stored.State != store.StateReady {
		t.Errorf("stored state %s, want ready", stored.State)
	}
	if es, _ := db.Events(ctx, store.EventQuery{MAC: testMAC}); len(es) != 1 || es[0].Type != "ready" || es[0].MAC != testMAC {
		t.Errorf("events %+v, want one ready event for %s", es, testMAC)
	}
}

func TestProvisioning(t *testing.T) {
	db := mustOpen(t, store.Options{})
	ctx := context.Background()
	mustSeen(t, db, store.Machine{MAC: testMAC, UUID: testUUID})
	if p, err := db.Provisioning(ctx, testMAC); err != nil || p != (store.Provisioning{}) {
		t.Fatalf("before any update: %+v, %v; want zero", p, err)
	}
	set := func(_ *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		p.TokenHash = "h1"
		return nil, nil
	}
	if _, _, err := db.Update(ctx, testMAC, set); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		want      store.Provisioning
		wantErr   error
	}{
		{name: "other MAC spelling", key: "52-54-00-AB-CD-01", want: store.Provisioning{TokenHash: "h1"}},
		{name: "by UUID", key: testUUID, want: store.Provisioning{TokenHash: "h1"}},
		{name: "unknown machine", key: "52:54:00:00:00:99", wantErr: store.ErrNotFound},
		{name: "bad key", key: "x", wantErr: store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.Provisioning(ctx, tc.key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Concurrent read-modify-writes through batched transactions lose nothing.
func TestUpdateConcurrent(t *testing.T) {
	db := mustOpen(t, store.Options{})
	ctx := context.Background()
	mustSeen(t, db, store.Machine{MAC: testMAC})
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, _, err := db.Update(ctx, testMAC, func(_ *store.Machine, p *store.Provisioning) ([]store.Event, error) {
				p.ConfigFetches++
				return nil, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	p, err := db.Provisioning(ctx, testMAC)
	if err != nil {
		t.Fatal(err)
	}
	if p.ConfigFetches != n {
		t.Errorf("ConfigFetches = %d, want %d", p.ConfigFetches, n)
	}
}

// Refusals in a batch (an unknown machine, a Change's error) fail their own
// call only: the batch does not roll back and re-run the others' Changes.
func TestUpdateRefusalsDoNotRerunTheBatch(t *testing.T) {
	db := mustOpen(t, store.Options{})
	ctx := context.Background()
	mustSeen(t, db, store.Machine{MAC: testMAC})
	var runs atomic.Int64
	var wg sync.WaitGroup
	const n = 64
	for i := range n {
		wg.Go(func() {
			switch i % 4 {
			case 0: // unknown machine
				if _, _, err := db.Update(ctx, fmt.Sprintf("52:54:00:ff:00:%02x", i), nil); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("update of an unknown machine: %v; want store.ErrNotFound", err)
				}
			case 1: // the store.Change refuses
				_, _, err := db.Update(ctx, testMAC, func(*store.Machine, *store.Provisioning) ([]store.Event, error) { return nil, store.ErrInvalid })
				if !errors.Is(err, store.ErrInvalid) {
					t.Errorf("refusing change: %v; want its error", err)
				}
			default:
				_, _, err := db.Update(ctx, testMAC, func(_ *store.Machine, p *store.Provisioning) ([]store.Event, error) {
					runs.Add(1)
					p.ConfigFetches++
					return nil, nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if p, _ := db.Provisioning(ctx, testMAC); p.ConfigFetches != n/2 || runs.Load() != n/2 {
		t.Errorf("%d changes applied, %d runs; want %d and %d (each run once)", p.ConfigFetches, runs.Load(), n/2, n/2)
	}
}

// 10,000 machines discovered at once through batched writes: none may be lost.
func TestSeenConcurrent(t *testing.T) {
	db := mustOpen(t, store.Options{})
	ctx := context.Background()
	const machines, workers = 10_000, 64
	macs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range macs {
				if _, _, err := db.Seen(ctx, store.Machine{MAC: testMACn(i), UUID: testUUIDn(i)}, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range machines {
		macs <- i
	}
	close(macs)
	wg.Wait()

	ms, err := db.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != machines {
		t.Fatalf("%d machines stored, want %d", len(ms), machines)
	}
	for _, i := range []int{0, machines / 2, machines - 1} {
		m, err := db.Machine(ctx, testUUIDn(i))
		if err != nil {
			t.Fatal(err)
		}
		if m.MAC != testMACn(i) {
			t.Errorf("UUID %s -> %s, want %s", testUUIDn(i), m.MAC, testMACn(i))
		}
	}
}

func testMACn(i int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}

func testUUIDn(i int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", i)
}
