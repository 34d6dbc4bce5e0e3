package keylock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMutex(t *testing.T) {
	k := New()
	ctx := context.Background()
	unlock, err := k.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is free; the same key waits until its context ends.
	unlockB, err := k.Lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := k.Lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held key: %v; want the context's error", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := k.Lock(ctx, "a")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	unlock() // releasing twice is harmless
	if err := <-got; err != nil {
		t.Fatalf("a waiter after the release: %v", err)
	}
	if n := k.Len(); n != 0 {
		t.Errorf("%d keys left after every lock was released", n)
	}
}
