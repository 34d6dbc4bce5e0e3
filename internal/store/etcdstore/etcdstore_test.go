package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
	"github.com/provisiond/provisiond/internal/store/storetest"
	"github.com/provisiond/provisiond/internal/testutil"
)

// endpoint is the client URL of the one etcd member TestMain starts for the
// whole test binary; each test works under its own prefix.
var endpoint string

func TestMain(m *testing.M) {
	os.Exit(runWithEtcd(m))
}

func runWithEtcd(m *testing.M) int {
	e, err := etcdtest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Close()
	endpoint = e.Endpoint
	return m.Run()
}

var prefixes atomic.Int64

// freshPrefix is a prefix no other test uses.
func freshPrefix() string { return fmt.Sprintf("/test/%d", prefixes.Add(1)) }

func open(t *testing.T, prefix string, opts store.Options) *etcdstore.Store {
	t.Helper()
	return openOn(t, []string{endpoint}, prefix, opts)
}

// openOn opens a Store on endpoints, closed when t ends.
func openOn(t *testing.T, endpoints []string, prefix string, opts store.Options) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: endpoints, Prefix: prefix, DialTimeout: 5 * time.Second}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return open(t, freshPrefix(), opts)
	})
}

const (
	mac1 = "52:54:00:ab:cd:01"
	mac2 = "52:54:00:ab:cd:02"
)

// TestTwoClients: two Stores on one prefix (two provisiond instances) see
// each other's writes, share one Revision, and concurrent Changes of one
// machine from both lose nothing.
func TestTwoClients(t *testing.T) {
	ctx := context.Background()
	prefix := freshPrefix()
	a, b := open(t, prefix, store.Options{}), open(t, prefix, store.Options{})

	if _, _, err := a.Seen(ctx, store.Machine{MAC: mac1, Arch: "x86_64"}, nil); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Machine(ctx, mac1); err != nil || m.Arch != "x86_64" {
		t.Fatalf("b.Machine = %+v, %v; want a's sighting", m, err)
	}
	e, err := b.AppendEvent(ctx, store.Event{Type: "from-b"})
	if err != nil {
		t.Fatal(err)
	}
	if es, err := a.Events(ctx, store.EventQuery{}); err != nil || len(es) != 1 || es[0].Seq != e.Seq {
		t.Fatalf("a.Events = %+v, %v; want b's event", es, err)
	}
	// Each serves Revision from its watch, which sees the other's write a
	// moment later: they agree once both watches caught up.
	var ra, rb uint64
	var errA, errB error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ra, errA = a.Revision(ctx)
		rb, errB = b.Revision(ctx)
		if errA == nil && errB == nil && ra == rb && ra != 0 || time.Now().After(deadline) {
			break
		}
	}
	if errA != nil || errB != nil || ra != rb || ra == 0 {
		t.Fatalf("Revision: a %d %v, b %d %v; want one non-zero revision", ra, errA, rb, errB)
	}

	const n = 40 // Changes, half from each client
	var wg sync.WaitGroup
	for i := range n {
		st := []*etcdstore.Store{a, b}[i%2]
		wg.Go(func() {
			fn := func(_ *store.Machine, p *store.Provisioning) ([]store.Event, error) {
				p.ConfigFetches++
				return []store.Event{{Type: "fetch"}}, nil
			}
			var err error
			if i%4 < 2 {
				_, _, err = st.Update(ctx, mac1, fn)
			} else {
				_, _, err = st.Seen(ctx, store.Machine{MAC: mac1}, fn)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for name, st := range map[string]*etcdstore.Store{"a": a, "b": b} {
		if p, err := st.Provisioning(ctx, mac1); err != nil || p.ConfigFetches != n {
			t.Errorf("%s: ConfigFetches = %d, %v; want %d", name, p.ConfigFetches, err, n)
		}
		es, err := st.Events(ctx, store.EventQuery{Type: "fetch"})
		if err != nil || len(es) != n {
			t.Fatalf("%s: %d fetch events, %v; want %d", name, len(es), err, n)
		}
		seqs := make([]uint64, 0, n)
		for _, e := range es {
			seqs = append(seqs, e.Seq)
		}
		if !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != n {
			t.Errorf("%s: Seqs %v, want %d distinct in order", name, seqs, n)
		}
	}
	ra, _ = a.Revision(ctx)
	rb, _ = b.Revision(ctx)
	if ra != rb {
		t.Errorf("Revision after the race: a %d, b %d", ra, rb)
	}
}

// TestPrefixesAreSeparate: deployments sharing a cluster see only their own keys.
func TestPrefixesAreSeparate(t *testing.T) {
	ctx := context.Background()
	a, b := open(t, freshPrefix(), store.Options{}), open(t, freshPrefix(), store.Options{})
	if _, _, err := a.Seen(ctx, store.Machine{MAC: mac1}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AppendEvent(ctx, store.Event{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := a.PutSecret(ctx, mac2, "bmc", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if ms, err := b.Machines(ctx); err != nil || len(ms) != 0 {
		t.Errorf("b.Machines = %d, %v; want none", len(ms), err)
	}
	if es, err := b.Events(ctx, store.EventQuery{}); err != nil || len(es) != 0 {
		t.Errorf("b.Events = %d, %v; want none", len(es), err)
	}
	if _, err := b.Secret(ctx, mac2, "bmc"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b.Secret: %v, want ErrNotFound", err)
	}
	if rev, err := b.Revision(ctx); err != nil || rev != 0 {
		t.Errorf("b.Revision = %d, %v; want 0", rev, err)
	}
}

// TestOpenUnreachable: Open gives up within DialTimeout with a clear error.
func TestOpenUnreachable(t *testing.T) {
	addr := testutil.FreeAddr(t) // closed again: nothing listens there
	const timeout = 500 * time.Millisecond
	start := time.Now()
	_, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{"http://" + addr}, DialTimeout: timeout}, store.Options{})
	if took := time.Since(start); err == nil || took > timeout+2*time.Second {
		t.Fatalf("Open = %v after %v; want an error within about %v", err, took, timeout)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open: %v, want it to wrap context.DeadlineExceeded", err)
	}
	t.Log(err)
}

// TestOpenRefusesNewerSchema: a prefix written by a newer provisiond stays untouched.
func TestOpenRefusesNewerSchema(t *testing.T) {
	prefix := freshPrefix()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(context.Background(), prefix+"/meta/schema", "99"); err != nil {
		t.Fatal(err)
	}
	_, err = etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{endpoint}, Prefix: prefix}, store.Options{})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Errorf("Open: %v, want ErrSchemaTooNew", err)
	}
}

// TestOpenRefusesUnreadableSchema: a schema key no provisiond wrote is
// refused at once, not retried until the dial timeout as an unreachable
// cluster is.
func TestOpenRefusesUnreadableSchema(t *testing.T) {
	prefix := freshPrefix()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(context.Background(), prefix+"/meta/schema", "version one"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{endpoint}, Prefix: prefix, DialTimeout: 5 * time.Second}, store.Options{})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Open: %v, want ErrInvalid", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Open refused after %v, want at once", took)
	}
}
