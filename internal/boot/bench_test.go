package boot

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkBootSession is one machine's whole boot path with every secrecy
// check on: /ipxe opens a session (a store write), then /ignition presents its
// token once (a second write). Parallel, as a rack booting at once would be.
func BenchmarkBootSession(b *testing.B) {
	dir := b.TempDir()
	var machines strings.Builder
	const n = 1000
	for i := range n {
		fmt.Fprintf(&machines, "---\nkind: Machine\nname: m%d\nmatch: {mac: %q}\nprofile: install\nmetadata: {hostname: m%d}\n", i, benchMAC(i), i)
	}
	writeB(b, dir, "p.yaml", lifecycleProfiles+machines.String())
	writeB(b, dir, "install.bu", lifecycleButane)
	c, _ := newCoreOn(b, dir, Config{}, boltStore(b))
	if err := c.Reload(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(16) // 16 machines per core booting at once share fsyncs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := Request{MAC: benchMAC(int(next.Add(1)) % n)}
			s, err := c.Script(ctx, r)
			if err != nil {
				b.Fatal(err)
			}
			m := tokenInScript.FindStringSubmatch(s)
			if m == nil {
				b.Fatalf("no token in\n%s", s)
			}
			r.Token = m[1]
			if _, _, err := c.Config(ctx, r, true); err != nil {
				// Another goroutine booted the same machine in between: its
				// session replaced this one, as a real second boot would.
				if refusedFor(err) != ReasonBadToken {
					b.Fatal(err)
				}
			}
		}
	})
}

func benchMAC(i int) string {
	return fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8&0xff, i&0xff)
}
