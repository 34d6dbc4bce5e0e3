package leases

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// big is a /16 whose range holds 65,000 addresses; huge a /14 with room
// for every MAC a benchmark makes up.
var (
	big = Network{
		Name:   "big",
		Subnet: netip.MustParsePrefix("10.96.0.0/16"),
		First:  a("10.96.0.10"),
		Last:   a("10.96.253.241"),
	}
	huge = Network{
		Name:   "huge",
		Subnet: netip.MustParsePrefix("10.100.0.0/14"),
		First:  a("10.100.0.10"),
		Last:   a("10.103.255.250"),
	}
)

// benchMAC is the i-th made-up MAC.
func benchMAC(i uint64) string {
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
}

// dora runs one client's DISCOVER/OFFER, REQUEST/ACK.
func dora(al *Allocator, link netip.Addr, mac string) error {
	ctx := context.Background()
	as, err := al.Offer(ctx, link, mac, netip.Addr{})
	if err != nil {
		return err
	}
	_, err = al.Ack(ctx, link, mac, as.IP)
	return err
}

// BenchmarkDORA is the server's hot path: Offer then Ack for a new MAC,
// from 64 goroutines as the DHCP server runs them, on bbolt.
func BenchmarkDORA(b *testing.B) {
	st := openBolt(b, filepath.Join(b.TempDir(), "state.db"))
	al := New(st, Options{})
	al.SetPlan(mustPlan(b, nil, huge))
	link := a("10.100.0.1")
	var next atomic.Uint64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 goroutines in all
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := dora(al, link, benchMAC(next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "DORA/s")
}

// BenchmarkThousandLeases measures the time to hand out 1,000 leases to
// 1,000 new clients on a fresh bbolt store, one client at a time and 64 at
// a time.
func BenchmarkThousandLeases(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var total time.Duration
			for i := range b.N {
				b.StopTimer()
				st := openBolt(b, filepath.Join(b.TempDir(), fmt.Sprintf("state%d.db", i)))
				al := New(st, Options{})
				al.SetPlan(mustPlan(b, nil, big))
				if err := al.ensureLoaded(context.Background()); err != nil {
					b.Fatal(err)
				}
				var next atomic.Uint64
				var wg sync.WaitGroup
				b.StartTimer()
				start := time.Now()
				for range clients {
					wg.Go(func() {
						for n := next.Add(1); n <= 1000; n = next.Add(1) {
							if err := dora(al, a("10.96.0.1"), benchMAC(n)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/1000leases")
		})
	}
}

// BenchmarkOffer measures an offer from a /16 range of 65,000 addresses,
// empty, or 90% leased at random and just loaded (the cursor at the start,
// as after a restart). A held range is released by moving the clock past
// the holds.
func BenchmarkOffer(b *testing.B) {
	for _, leased := range []float64{0, 0.9} {
		b.Run(fmt.Sprintf("leased=%.0f%%", leased*100), func(b *testing.B) {
			ctx := context.Background()
			st := memstore.New(store.Options{})
			rng := rand.New(rand.NewPCG(1, 2))
			n := mustPlan(b, nil, big).network(a("10.96.0.1"))
			for i := range n.size {
				if rng.Float64() < leased {
					l := store.Lease{IP: n.addr(i).String(), MAC: benchMAC(1<<31 | uint64(i)), Network: "big", Expires: t0.Add(1000 * time.Hour)}
					if _, err := st.ClaimLease(ctx, l, t0); err != nil {
						b.Fatal(err)
					}
				}
			}
			c := newClock()
			al := newAllocator(st, mustPlan(b, nil, big), c)
			if err := al.ensureLoaded(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var i uint64
			for b.Loop() {
				i++
				_, err := al.Offer(ctx, a("10.96.0.1"), benchMAC(i), netip.Addr{})
				if err == nil {
					continue
				}
				if !errors.Is(err, dhcp.ErrExhausted) {
					b.Fatal(err)
				}
				c.Advance(DefaultOfferHold)
			}
		})
	}
}
