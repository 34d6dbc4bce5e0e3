package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
)

// boot.Locker's method set, without importing boot.
var _ interface {
	Lock(context.Context, string) (func(), error)
} = (*etcdstore.Locker)(nil)

// tryLock reports whether l gets key within a short wait.
func tryLock(t *testing.T, l *etcdstore.Locker, key string) (func(), bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	unlock, err := l.Lock(ctx, key)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return unlock, true
}

// Two Stores on one prefix (two instances) exclude each other on one key,
// not on different keys, and a waiter gets the lock once it is released.
func TestLockerExcludes(t *testing.T) {
	prefix := freshPrefix()
	a, b := open(t, prefix, store.Options{}).Locker(), open(t, prefix, store.Options{}).Locker()
	ua, ok := tryLock(t, a, mac1)
	if !ok {
		t.Fatal("first lock not had")
	}
	if _, ok := tryLock(t, b, mac1); ok {
		t.Fatal("b locked a key a holds")
	}
	if _, ok := tryLock(t, a, mac1); ok {
		t.Fatal("a locked a key it holds itself (same session)")
	}
	ub, ok := tryLock(t, b, mac2)
	if !ok {
		t.Fatal("b could not lock another key")
	}
	ub()
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u, err := b.Lock(ctx, mac1)
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ua()
	if err := <-got; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
	// Another prefix (another deployment) shares nothing.
	other := open(t, freshPrefix(), store.Options{}).Locker()
	ua, _ = tryLock(t, a, mac1)
	if u, ok := tryLock(t, other, mac1); !ok {
		t.Fatal("a lock under another prefix excluded")
	} else {
		u()
	}
	ua()
}

// A lock held by a Store that is closed (its session revoked) is free at
// once for the others.
func TestLockerReleasedOnClose(t *testing.T) {
	prefix := freshPrefix()
	s, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{endpoint}, Prefix: prefix}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, prefix, store.Options{}).Locker()
	if _, ok := tryLock(t, s.Locker(), mac1); !ok {
		t.Fatal("lock not had")
	}
	if _, ok := tryLock(t, b, mac1); ok {
		t.Fatal("b locked a held key")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	u, ok := tryLock(t, b, mac1)
	if !ok {
		t.Fatal("the lock of a closed store was not released")
	}
	u()
	if _, err := s.Locker().Lock(context.Background(), mac2); err == nil {
		t.Fatal("a closed store's locker locked")
	}
}
