package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/store/storetest"
)

func openBolt(t *testing.T) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "provisiond.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestMigrateFromBolt: a bbolt store copied into etcd (store.Copy, what
// `provisiond store migrate` does) reads the same through every method,
// and etcd's event Seq goes on after bbolt's. Enough machines that the
// restore spans several transactions under etcd's --max-txn-ops.
func TestMigrateFromBolt(t *testing.T) {
	ctx := context.Background()
	src := openBolt(t)
	storetest.Populate(t, src)
	for i := range 300 {
		if _, _, err := src.Seen(ctx, store.Machine{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Labels: map[string]string{"n": fmt.Sprint(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	dst := open(t, freshPrefix(), store.Options{})
	sum, err := store.Copy(ctx, dst, src)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if sum.Counts[store.KindMachine] != 303 {
		t.Errorf("copied %v", sum.Counts)
	}
	storetest.CheckSame(t, dst, src)
	last, err := src.Events(ctx, store.EventQuery{Newest: true, Limit: 1})
	if err != nil || len(last) != 1 {
		t.Fatal(last, err)
	}
	e, err := dst.AppendEvent(ctx, store.Event{Type: "migrated"})
	if err != nil || e.Seq != last[0].Seq+1 {
		t.Errorf("first event after the migration: seq %d, %v; want %d", e.Seq, err, last[0].Seq+1)
	}

	// Back again, etcd to a fresh bbolt: a restore is no one-way street.
	back := openBolt(t)
	if _, err := store.Copy(ctx, back, dst); err != nil {
		t.Fatalf("Copy back: %v", err)
	}
	storetest.CheckSame(t, back, dst)

	// A second migration into the now populated prefix is refused.
	if _, err := store.Copy(ctx, dst, src); !errors.Is(err, store.ErrNotEmpty) {
		t.Errorf("Copy into a populated prefix: %v, want ErrNotEmpty", err)
	}
}

// TestRestoreLargeRecords: machines with the most and longest labels a
// sighting may carry, more than fit in one etcd request of 120 of them.
func TestRestoreLargeRecords(t *testing.T) {
	ctx := context.Background()
	labels := map[string]string{}
	for i := range store.MaxLabels {
		labels[fmt.Sprintf("%03d%s", i, strings.Repeat("k", store.MaxName-3))] = strings.Repeat("v", store.MaxName)
	}
	src := memstore.New(store.Options{})
	for i := range 130 {
		if _, _, err := src.Seen(ctx, store.Machine{MAC: fmt.Sprintf("02:00:00:00:00:%02x", i), Labels: labels}, nil); err != nil {
			t.Fatal(err)
		}
	}
	dst := open(t, freshPrefix(), store.Options{})
	if _, err := store.Copy(ctx, dst, src); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	storetest.CheckSame(t, dst, src)
}

// TestRestoreLargeSecrets: two secrets that fit one etcd request each but
// not together (its default --max-request-bytes is 1.5 MiB) go in two.
func TestRestoreLargeSecrets(t *testing.T) {
	ctx := context.Background()
	src := memstore.New(store.Options{})
	blob := []byte(strings.Repeat("s", 900<<10))
	for _, mac := range []string{"02:00:00:00:00:01", "02:00:00:00:00:02"} {
		if err := src.PutSecret(ctx, mac, "big", blob); err != nil {
			t.Fatal(err)
		}
	}
	dst := open(t, freshPrefix(), store.Options{})
	if _, err := store.Copy(ctx, dst, src); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	storetest.CheckSame(t, dst, src)
}
