package boot

import (
	"context"
	"fmt"
)

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
func (f *Fleet) lockBMC(ctx context.Context, t target) (func(), error) {
	unlock, err := f.locks.Lock(ctx, t.lockKey())
	if err != nil {
		return nil, fmt.Errorf("%w: lock %s: %w", ErrBusy, t.lockKey(), err)
	}
	return unlock, nil
}
