// Package store is the contract for provisiond's persistent state: the
// records (machines, provisioning sessions, events, DHCP bindings, sealed
// secrets, DHCP leases), the Store interface every backend implements, and
// the rules every backend applies the same way. The backends live beside it:
// boltstore (embedded, the default), etcdstore (shared by a cluster) and
// memstore (unit tests); storetest holds the suite they all pass.
package store

import (
	"context"
	"errors"
	"iter"
	"time"
)

// Sentinel errors, checked with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrInvalid marks malformed input (a MAC, UUID, state or secret name), so
	// callers can tell a bad request from a missing record.
	ErrInvalid      = errors.New("invalid")
	ErrLocked       = errors.New("locked by another process (is another provisiond running on this data dir?)")
	ErrSchemaTooNew = errors.New("schema too new")
	// ErrUnavailable marks a failure of the store itself that may pass by
	// itself (etcd electing a leader, or without quorum): the request may
	// be repeated later. HTTP says 503.
	ErrUnavailable = errors.New("store unavailable")
	// ErrTaken refuses a lease on an address another machine holds, or one
	// a client declined (see Leases.ClaimLease).
	ErrTaken = errors.New("address taken")
)

// Store is what the rest of provisiond needs from persistent state. Keep it
// domain-shaped: every backend implements it, and storetest checks them.
type Store interface {
	// Seen upserts a machine from a sighting (DHCP or HTTP): sets FirstSeen on
	// insert, updates LastSeen, and overwrites the non-empty fields of the
	// sighting (UUID, Arch, LastIP, Name, Profile, Labels); keeps State unless it
	// is empty (insert -> the State given in the sighting, default
	// StateDiscovered). Then fn (nil: none) edits the result in the same
	// transaction. Returns the stored machine and its provisioning data.
	Seen(ctx context.Context, sighting Machine, fn Change) (Machine, Provisioning, error)
	// Update runs fn on an existing machine, by MAC (any spelling) or UUID,
	// in one transaction. ErrNotFound; fn's own errors come back wrapped.
	Update(ctx context.Context, key string, fn Change) (Machine, Provisioning, error)
	// Machine looks a machine up by MAC (any spelling) or UUID (any case,
	// with or without hyphens). ErrNotFound if there is none.
	Machine(ctx context.Context, key string) (Machine, error)
	// Machines lists all machines ordered by MAC.
	Machines(ctx context.Context) ([]Machine, error)
	// Provisioning returns a machine's provisioning data (zero if none yet).
	// ErrNotFound if the machine is unknown.
	Provisioning(ctx context.Context, key string) (Provisioning, error)
	// AppendEvent appends to the capped event log, assigning Seq and Time.
	AppendEvent(ctx context.Context, e Event) (Event, error)
	// Events returns the events matching q, oldest first.
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	// PutSecret stores an opaque blob under (mac, name); the caller encrypts.
	PutSecret(ctx context.Context, mac, name string, blob []byte) error
	// Secret returns the blob stored under (mac, name). ErrNotFound.
	Secret(ctx context.Context, mac, name string) ([]byte, error)
	// DeleteSecret removes the blob under (mac, name). ErrNotFound if none.
	DeleteSecret(ctx context.Context, mac, name string) error
	// Bind records what a DHCP packet showed: b.IP belongs to b.MAC (newest
	// claim wins) and b.MAC sent b.UUID. The store stamps Seen.
	Bind(ctx context.Context, b Binding) error
	// IPBinding returns the binding of an address. ErrNotFound.
	IPBinding(ctx context.Context, ip string) (Binding, error)
	// UUIDBinding returns the UUID a MAC last sent in DHCP. ErrNotFound.
	UUIDBinding(ctx context.Context, mac string) (Binding, error)
	// PruneBindings deletes bindings seen before cutoff and all but the
	// newest max of each kind; it returns how many it deleted.
	PruneBindings(ctx context.Context, cutoff time.Time, max int) (int, error)
	// PruneDiscovered deletes the oldest machines in state discovered
	// (holding no secrets) beyond max, and returns them.
	PruneDiscovered(ctx context.Context, max int) ([]Machine, error)
	// CountByState counts the machines in each lifecycle state.
	CountByState(ctx context.Context) (map[State]int, error)
	// Revision is the store's revision: it grows with every committed write
	// of a machine or an event, and only then, and it is the store's, not a
	// process's (persisted, and the same for every instance sharing the
	// store), so a view keyed by it may skip unchanged work anywhere.
	Revision(ctx context.Context) (uint64, error)
	// Dump calls fn with every record of a consistent snapshot (one
	// transaction, or one etcd revision), kinds in the order of the Kind
	// constants, meta first; it stops at fn's first error and returns it.
	Dump(ctx context.Context, fn func(Record) error) error
	// Restore loads records (a Dump, or a BackupReader's) into the store,
	// which must hold no machine and no event (else ErrNotEmpty), keeping
	// every record as it was (sealed secrets byte for byte). Afterwards the next event Seq follows the
	// dump's last, and Revision is above the dump's (etcd: its revisions are
	// the cluster's, above the dump's if that came from the same cluster).
	// An error from records, or a record CheckRecord refuses, stops it.
	Restore(ctx context.Context, records iter.Seq2[Record, error]) error
	// Leases are the authoritative DHCP server's (see Leases).
	Leases
}

// Options tune Open. Zero values mean the defaults.
type Options struct {
	Timeout     time.Duration    // how long Open waits for the file lock; default 1s
	MaxEvents   int              // event log cap by count; default 100,000
	MaxEventAge time.Duration    // events older than this are trimmed; default 30 days
	Clock       func() time.Time // stamps records and events; default time.Now (tests fake it)
}
