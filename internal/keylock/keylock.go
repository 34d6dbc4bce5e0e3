// Package keylock is an in-process mutex per key whose waits give up with
// their context: BMC operations take one per machine, and the etcd locker
// one per key before it asks the cluster.
package keylock

import (
	"context"
	"sync"
)

// Mutex holds one lock per key; entries live only while someone holds or
// waits for them. The zero value is not usable; call New.
type Mutex struct {
	mu   sync.Mutex
	keys map[string]*slot
}

type slot struct {
	ch   chan struct{} // one-slot: full while held
	refs int           // holders and waiters
}

// New returns a Mutex with no key held.
func New() *Mutex { return &Mutex{keys: map[string]*slot{}} }

// Lock waits for key's lock until ctx ends, and returns the function that
// releases it (safe to call more than once), or ctx's cause.
func (k *Mutex) Lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	s := k.keys[key]
	if s == nil {
		s = &slot{ch: make(chan struct{}, 1)}
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

// Len is how many keys are held or waited for.
func (k *Mutex) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

func (k *Mutex) release(key string, s *slot) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(k.keys, key)
	}
}
