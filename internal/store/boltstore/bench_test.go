package boltstore

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkSeenParallel measures discovery throughput: each op is one durable
// sighting of a new machine, concurrent callers sharing fsyncs through db.Batch.
func BenchmarkSeenParallel(b *testing.B) {
	db := mustOpen(b, store.Options{})
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	// A discovery storm is many concurrent requests, not GOMAXPROCS of them.
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := db.Seen(ctx, store.Machine{MAC: testMACn(int(next.Add(1))), Arch: "x86_64"}, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClaimLeaseParallel measures the authoritative DHCP server's write
// path: each op is one durable DHCPACK lease of a new address to a new MAC,
// concurrent callers sharing fsyncs through db.Batch.
func BenchmarkClaimLeaseParallel(b *testing.B) {
	db := mustOpen(b, store.Options{})
	ctx := context.Background()
	now := time.Now()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32) // a DORA storm: many requests in flight, as in BenchmarkSeenParallel
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1))
			l := store.Lease{IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), MAC: testMACn(i), Network: "lab", Expires: now.Add(time.Hour)}
			if _, err := db.ClaimLease(ctx, l, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMachineLookup measures the per-request read path over 10,000 machines.
func BenchmarkMachineLookup(b *testing.B) {
	db := mustOpen(b, store.Options{})
	const machines = 10_000
	fillMachines(b, db, machines, func(i int) store.Machine {
		return store.Machine{MAC: testMACn(i), UUID: testUUIDn(i), Arch: "x86_64", Labels: map[string]string{"rack": "r1"}}
	})
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		key  func(int) string
	}{
		{"MAC", testMACn},
		{"UUID", testUUIDn},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := db.Machine(ctx, bc.key(i%machines)); err != nil {
					b.Fatal(err)
				}
				i += 7919 // a prime stride, so lookups wander the B+tree
			}
		})
	}
}

// fillMachines stores the sightings sighting(0..n-1) in one transaction, as
// Seen would one by one: benchmarks start from a full store in a second.
func fillMachines(b *testing.B, db *DB, n int, sighting func(i int) store.Machine) {
	b.Helper()
	now := time.Now().UTC()
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		for i := range n {
			s := sighting(i)
			m, prev, err := seen(tx, s, now)
			if err != nil {
				return err
			}
			if err := putMachine(tx, m); err != nil {
				return err
			}
			if err := indexUUID(tx, s.UUID, prev, m.MAC); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
