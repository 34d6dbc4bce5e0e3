package boot

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrBusy: another operation holds the machine's BMC lock, and it was not
// released before the operation's context ended.
var ErrBusy = errors.New("another BMC operation on this machine is in progress")

// Locker serialises BMC conversations per machine: one instance (or, with a
// shared store, one of several) talks to a machine's BMC at a time. Lock
// blocks until key is held or ctx ends; then it fails with ctx's error.
// unlock is called exactly once. *etcdstore.Locker implements it.
type Locker interface {
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// lockKey is what t's BMC lock is named by: its MAC, or its Machine's name
// while it has no MAC.
func (t target) lockKey() string {
	if t.mac != "" {
		return t.mac
	}
	return "machine:" + t.name()
}

// lockBMC takes t's BMC lock for the length of one operation.
func (c *Core) lockBMC(ctx context.Context, t target) (func(), error) {
	unlock, err := c.locks.Lock(ctx, t.lockKey())
	if err != nil {
		return nil, fmt.Errorf("%w: lock %s: %w", ErrBusy, t.lockKey(), err)
	}
	return unlock, nil
}

// keyedMutex is the in-process Locker, all a single instance needs: a
// one-slot channel per key, so a wait can give up with its context, and
// entries live only while someone holds or waits for them.
type keyedMutex struct {
	mu   sync.Mutex
	keys map[string]*keySlot
}

type keySlot struct {
	ch   chan struct{}
	refs int // holders and waiters
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{keys: map[string]*keySlot{}} }

func (k *keyedMutex) Lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	s := k.keys[key]
	if s == nil {
		s = &keySlot{ch: make(chan struct{}, 1)}
		k.keys[key] = s
	}
	s.refs++
	k.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-s.ch; k.release(key, s) }) }, nil
	case <-ctx.Done():
		k.release(key, s)
		return nil, context.Cause(ctx)
	}
}

func (k *keyedMutex) release(key string, s *keySlot) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(k.keys, key)
	}
}
