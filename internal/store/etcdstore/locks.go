package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/provisiond/provisiond/internal/keylock"
)

// lockTTL (seconds) is the lease behind a Store's locks: the locks of an
// instance that dies, or loses etcd, are freed this long after.
const lockTTL = 10

// errLockerClosed: the Store was closed.
var errLockerClosed = errors.New("etcdstore: locker closed")

// Locker is a per-key mutual exclusion among every Store on one Prefix, in
// any process: etcd's own concurrency.Mutex at P/locks/<key>, on one
// Session (lease) per Store that the client keeps alive. Closing the Store
// revokes the lease, freeing its locks at once; a dead instance's expire
// with the lease. Its method set is boot.Locker's.
type Locker struct {
	s *Store
	// local serialises holders in this process first: two Mutexes on one
	// Session and key share one etcd key, so etcd would not exclude them.
	local  *keylock.Mutex
	sem    chan struct{} // one-slot: guards sess and closed, waits honour ctx
	sess   *concurrency.Session
	closed bool
}

func newLocker(s *Store) *Locker {
	return &Locker{s: s, local: keylock.New(), sem: make(chan struct{}, 1)}
}

// Locker is the Store's Locker.
func (s *Store) Locker() *Locker { return s.locks }

// Lock holds key until unlock is called, waiting for other holders (in
// this process or another) until ctx ends, when it fails with ctx's error.
func (l *Locker) Lock(ctx context.Context, key string) (unlock func(), err error) {
	unlocal, err := l.local.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	sess, err := l.session(ctx)
	if err != nil {
		unlocal()
		return nil, err
	}
	m := concurrency.NewMutex(sess, l.s.key("locks/"+key))
	if err := m.Lock(ctx); err != nil {
		unlocal()
		return nil, fmt.Errorf("etcdstore: lock %s: %w", key, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// Should the delete fail, the lease's expiry frees the key.
			uctx, cancel := context.WithTimeout(context.Background(), lockTTL*time.Second)
			m.Unlock(uctx)
			cancel()
			unlocal()
		})
	}, nil
}

// session is the live Session, a new one if the last expired.
func (l *Locker) session(ctx context.Context) (*concurrency.Session, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-l.sem }()
	if l.closed {
		return nil, errLockerClosed
	}
	if l.sess != nil {
		select {
		case <-l.sess.Done(): // lease lost: its locks are gone with it
			l.sess = nil
		default:
			return l.sess, nil
		}
	}
	// The lease is granted under ctx, so an unreachable cluster fails this
	// Lock rather than hanging it; the Session then lives with the client.
	lease, err := l.s.cli.Grant(ctx, lockTTL)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: lock lease: %w", markUnavailable(err))
	}
	sess, err := concurrency.NewSession(l.s.cli, concurrency.WithTTL(lockTTL), concurrency.WithLease(lease.ID))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: lock session: %w", err)
	}
	l.sess = sess
	return sess, nil
}

// closeLocks revokes the Session, releasing every lock this Store holds.
func (l *Locker) closeLocks() {
	l.sem <- struct{}{}
	defer func() { <-l.sem }()
	l.closed = true
	if l.sess != nil {
		l.sess.Close()
		l.sess = nil
	}
}
