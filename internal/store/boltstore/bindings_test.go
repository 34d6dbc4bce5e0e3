package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/provisiond/provisiond/internal/store"
)

func TestBindings(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).UTC()
	db := mustOpen(t, store.Options{Clock: func() time.Time { return now }})
	ctx := context.Background()
	if _, err := db.IPBinding(ctx, "10.0.0.7"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("binding before any DHCP: %v, want store.ErrNotFound", err)
	}
	for _, b := range []store.Binding{
		{MAC: "52-54-00-00-00-01", UUID: "AAAAAAAA-0000-0000-0000-000000000001", IP: "::ffff:10.0.0.7"},
		{MAC: "52:54:00:00:00:02", IP: "10.0.0.8"},
		{MAC: "52:54:00:00:00:02", IP: "10.0.0.7"}, // the address moved: the newest claim wins
	} {
		if err := db.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for ip, want := range map[string]string{"10.0.0.7": "52:54:00:00:00:02", "10.0.0.8": "52:54:00:00:00:02"} {
		if b, err := db.IPBinding(ctx, ip); err != nil || b.MAC != want || !b.Seen.Equal(now) {
			t.Errorf("IPBinding(%s) = %+v, %v; want %s at %v", ip, b, err, want, now)
		}
	}
	if b, err := db.UUIDBinding(ctx, "52:54:00:00:00:01"); err != nil || b.UUID != "aaaaaaaa-0000-0000-0000-000000000001" {
		t.Errorf("UUIDBinding = %+v, %v; want the canonical UUID", b, err)
	}
	if _, err := db.UUIDBinding(ctx, "52:54:00:00:00:02"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UUIDBinding of a MAC that sent none: %v, want store.ErrNotFound", err)
	}
	for _, bad := range []store.Binding{{MAC: "nope"}, {MAC: testMAC, IP: "10.0.0.300"}, {MAC: testMAC, UUID: "x"}} {
		if err := db.Bind(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Bind(%+v) = %v, want store.ErrInvalid", bad, err)
		}
	}
}

func TestPruneBindings(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).UTC()
	db := mustOpen(t, store.Options{Clock: func() time.Time { return now }})
	ctx := context.Background()
	for i := range 10 {
		now = now.Add(time.Minute)
		if err := db.Bind(ctx, store.Binding{MAC: testMACn(i), UUID: testUUIDn(i), IP: fmt.Sprintf("10.0.0.%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Seen before the cutoff: 0-2 (3 of each kind); over the cap of 5: 3 and 4.
	n, err := db.PruneBindings(ctx, now.Add(-6*time.Minute-time.Second), 5)
	if err != nil || n != 10 {
		t.Fatalf("pruned %d, %v; want 10", n, err)
	}
	for i := range 10 {
		_, err := db.IPBinding(ctx, fmt.Sprintf("10.0.0.%d", i))
		if kept := i >= 5; kept != (err == nil) {
			t.Errorf("binding %d: %v; kept %v", i, err, kept)
		}
	}
}

func TestPruneDiscovered(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).UTC()
	db := mustOpen(t, store.Options{Clock: func() time.Time { return now }})
	ctx := context.Background()
	for i := range 10 {
		now = now.Add(time.Second)
		m := store.Machine{MAC: testMACn(i), UUID: testUUIDn(i)}
		if i%3 == 0 {
			m.State = store.StateReady // claimed by a store.Machine in Git: never pruned
		}
		mustSeen(t, db, m)
	}
	if err := db.PutSecret(ctx, testMACn(1), "bmc", []byte("sealed")); err != nil { // an operator's: kept
		t.Fatal(err)
	}
	pruned, err := db.PruneDiscovered(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range pruned {
		got = append(got, m.MAC)
	}
	// Discovered: 1 2 4 5 7 8; 1 holds a secret; the oldest two of the rest go.
	if want := []string{testMACn(2), testMACn(4)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pruned %v, want %v", got, want)
	}
	for _, i := range []int{2, 4} {
		if _, err := db.Machine(ctx, testUUIDn(i)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("pruned machine %d still found by UUID: %v", i, err)
		}
	}
	ms, _ := db.Machines(ctx)
	if len(ms) != 8 {
		t.Errorf("%d machines left, want 8", len(ms))
	}
}

// BenchmarkRandomMACs is the store after b.N sightings of made-up MACs (an
// attacker on the VLAN), pruned to the default cap as the boot core does
// every few seconds, or never: run with -benchtime 10000x for the closing
// note's figure.
func BenchmarkRandomMACs(b *testing.B) {
	for _, tc := range []struct {
		name string
		max  int
	}{{"cap-2000", 2000}, {"no-cap", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			db := mustOpen(b, store.Options{})
			ctx := context.Background()
			i := 0
			for b.Loop() {
				mustSeen(b, db, store.Machine{MAC: testMACn(i), Arch: "efi-x86_64", LastIP: "10.0.0.1"})
				i++
				if tc.max > 0 && i%1000 == 0 {
					if _, err := db.PruneDiscovered(ctx, tc.max); err != nil {
						b.Fatal(err)
					}
				}
			}
			if tc.max > 0 {
				if _, err := db.PruneDiscovered(ctx, tc.max); err != nil {
					b.Fatal(err)
				}
			}
			ms, _ := db.Machines(ctx)
			var used int64
			_ = db.bdb.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
			fi, err := os.Stat(db.bdb.Path())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(ms)), "machines")
			b.ReportMetric(float64(used), "used-bytes")
			b.ReportMetric(float64(fi.Size()), "file-bytes")
		})
	}
}
