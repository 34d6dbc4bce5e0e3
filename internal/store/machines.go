package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// State is where a machine is in its lifecycle.
type State string

// The lifecycle states.
const (
	StateDiscovered   State = "discovered"
	StateReady        State = "ready"
	StateProvisioning State = "provisioning"
	StateInstalled    State = "installed"
	StateWiping       State = "wiping"
	StateWiped        State = "wiped"
)

// states are the lifecycle states; States hands out copies.
var states = [...]State{StateDiscovered, StateReady, StateProvisioning, StateInstalled, StateWiping, StateWiped}

// States lists the lifecycle states in lifecycle order.
func States() []State { return slices.Clone(states[:]) }

// Valid reports whether s is one of the lifecycle states.
func (s State) Valid() bool { return slices.Contains(states[:], s) }

// Machine is what provisiond remembers about one machine, keyed by its MAC.
type Machine struct {
	MAC       string            `json:"mac"` // canonical: aa:bb:cc:dd:ee:ff
	UUID      string            `json:"uuid,omitempty"`
	Arch      string            `json:"arch,omitempty"`
	LastIP    string            `json:"last_ip,omitempty"`
	Name      string            `json:"name,omitempty"`    // matched Machine (Git), "" if none
	Profile   string            `json:"profile,omitempty"` // matched Profile
	State     State             `json:"state"`
	Labels    map[string]string `json:"labels,omitempty"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	Power     string            `json:"power,omitempty"`   // last state a BMC reported: on, off, unknown
	PowerAt   time.Time         `json:"power_at,omitzero"` // when it reported it
}

// Provisioning is a machine's current provisioning round: the session its
// /ipxe script opened. Only a hash of the session token is kept, so the
// database never holds a credential a machine could be impersonated with.
type Provisioning struct {
	TokenHash     string    `json:"token_hash,omitempty"` // hex SHA-256 of the session token; "" = no open session
	Profile       string    `json:"profile,omitempty"`    // the profile the session boots
	IssuedAt      time.Time `json:"issued_at,omitzero"`
	ConfigServed  time.Time `json:"config_served,omitzero"` // first time the config was served this session
	ConfigFetches int       `json:"config_fetches,omitempty"`
	Installed     time.Time `json:"installed,omitzero"` // phone-home of the last session
}

// Limits on what a sighting may store. Sightings come from unauthenticated
// requests: without them one request with a 500 KB arch grew the database
// by megabytes, and every later read of the machine paid for it.
const (
	MaxArch   = 64  // "efi-x86_64" and friends, with room to spare
	MaxName   = 253 // Machine and Profile names, label keys and values: a DNS name's length
	MaxLabels = 64
)

// checkSizes refuses a sighting whose fields exceed the limits, or whose
// LastIP is not an address.
func (m Machine) checkSizes() error {
	if len(m.Arch) > MaxArch {
		return fmt.Errorf("arch of %d bytes, over %d: %w", len(m.Arch), MaxArch, ErrInvalid)
	}
	if m.LastIP != "" {
		if _, err := netip.ParseAddr(m.LastIP); err != nil {
			return fmt.Errorf("last ip %.64q: %w", m.LastIP, ErrInvalid)
		}
	}
	if len(m.Name) > MaxName || len(m.Profile) > MaxName {
		return fmt.Errorf("name or profile over %d bytes: %w", MaxName, ErrInvalid)
	}
	if len(m.Labels) > MaxLabels {
		return fmt.Errorf("%d labels, over %d: %w", len(m.Labels), MaxLabels, ErrInvalid)
	}
	for k, v := range m.Labels {
		if len(k) > MaxName || len(v) > MaxName {
			return fmt.Errorf("label over %d bytes: %w", MaxName, ErrInvalid)
		}
	}
	return nil
}

// Change edits a machine and its provisioning data inside one transaction and
// returns the events to append in that same transaction. It may run more than
// once (a failed batch is retried), so it must compute only from its
// arguments and whatever it captured before the call.
type Change func(m *Machine, p *Provisioning) ([]Event, error)

// Seen implements Store. It goes through db.Batch so that a burst of
// discoveries shares fsyncs; see seen for why that is safe.
func (db *DB) Seen(ctx context.Context, s Machine, fn Change) (Machine, Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return Machine{}, Provisioning{}, err
	}
	s, err := s.Sighting()
	if err != nil {
		return Machine{}, Provisioning{}, fmt.Errorf("store: %w", err)
	}
	mac := s.MAC
	now := db.now()
	var out Machine
	var prov Provisioning
	err = db.batch(func(tx *bolt.Tx) error {
		m, prevUUID, err := seen(tx, s, now)
		if err != nil {
			return err
		}
		if out, prov, err = db.apply(tx, m, fn, now); err != nil {
			return err // a refused Change: the index must not move either
		}
		if err := indexUUID(tx, s.UUID, prevUUID, m.MAC); err != nil {
			return err
		}
		return bumpRevision(tx)
	})
	if err != nil {
		return Machine{}, Provisioning{}, fmt.Errorf("store: machine %s: %w", mac, err)
	}
	return out, prov, nil
}

// Update implements Store. Batch, like Seen: Change is required to be safe to re-run.
func (db *DB) Update(ctx context.Context, key string, fn Change) (Machine, Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return Machine{}, Provisioning{}, err
	}
	now := db.now()
	var out Machine
	var prov Provisioning
	err := db.batch(func(tx *bolt.Tx) error {
		mac, err := resolve(tx, key)
		if err != nil {
			return refused{err}
		}
		m, err := getMachine(tx, mac)
		if err != nil {
			return refused{err}
		}
		if out, prov, err = db.apply(tx, m, fn, now); err != nil {
			return err
		}
		return bumpRevision(tx)
	})
	if err != nil {
		return Machine{}, Provisioning{}, fmt.Errorf("store: machine %s: %w", key, err)
	}
	return out, prov, nil
}

// refused is an outcome found before anything was written: an unknown
// machine, a Change's own error. Returned from a bbolt Batch closure as an
// error it would roll back and re-run every other caller's work in the
// batch, so batch hands it to its caller alone.
type refused struct{ err error }

func (r refused) Error() string { return r.err.Error() }
func (r refused) Unwrap() error { return r.err }

// batch runs fn in a bbolt Batch, where a refused error fails only this call
// and the batch commits the others' work.
func (db *DB) batch(fn func(*bolt.Tx) error) error {
	var out error
	err := db.bdb.Batch(func(tx *bolt.Tx) error {
		out = nil // a re-run starts over
		err := fn(tx)
		if r, ok := errors.AsType[refused](err); ok {
			out = r.err
			return nil
		}
		return err
	})
	return cmp.Or(err, out)
}

// apply runs fn on m and its provisioning data and writes what it changed,
// with its events, in tx. fn may not rename the machine or give it an
// unknown state.
func (db *DB) apply(tx *bolt.Tx, m Machine, fn Change, now time.Time) (Machine, Provisioning, error) {
	p, err := getProvisioning(tx, m.MAC)
	if err != nil {
		return Machine{}, Provisioning{}, err
	}
	if fn == nil {
		return m, p, putMachine(tx, m)
	}
	mac := m.MAC
	events, err := fn(&m, &p)
	if err != nil {
		return Machine{}, Provisioning{}, refused{err}
	}
	if err := CheckChange(mac, m); err != nil {
		return Machine{}, Provisioning{}, refused{err}
	}
	if err := putMachine(tx, m); err != nil {
		return Machine{}, Provisioning{}, err
	}
	if err := putProvisioning(tx, mac, p); err != nil {
		return Machine{}, Provisioning{}, err
	}
	for _, e := range events {
		e.MAC = mac
		if _, err := db.appendEvent(tx, e, now); err != nil {
			return Machine{}, Provisioning{}, err
		}
	}
	return m, p, nil
}

// seen merges a canonical sighting into the stored record (Machine.Merge)
// and returns it with the UUID the record had, for indexUUID; the caller
// writes both. db.Batch may run it more than once (a rolled-back batch is
// retried); it is idempotent because it reads the current record, leaves s
// untouched and returns its result rather than accumulating it.
func seen(tx *bolt.Tx, s Machine, now time.Time) (m Machine, prevUUID string, err error) {
	m, err = getMachine(tx, s.MAC)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Machine{}, "", err
	}
	return m.Merge(s, now), m.UUID, nil
}

// indexUUID points a sighted uuid (none: "") at mac, dropping the machine's
// previous one, once the sighting's transaction is sure to commit. The last
// sighting wins: several NICs of one machine share its UUID.
func indexUUID(tx *bolt.Tx, uuid, prev, mac string) error {
	if uuid == "" {
		return nil
	}
	if prev != "" && prev != uuid {
		if err := unindexUUID(tx, prev, mac); err != nil {
			return err
		}
	}
	return bucket(tx, bucketUUIDs).Put([]byte(uuid), []byte(mac))
}

// unindexUUID drops uuid from the index unless another MAC has claimed it since.
func unindexUUID(tx *bolt.Tx, uuid, mac string) error {
	b := bucket(tx, bucketUUIDs)
	if string(b.Get([]byte(uuid))) != mac {
		return nil
	}
	return b.Delete([]byte(uuid))
}

// Machine implements Store.
func (db *DB) Machine(ctx context.Context, key string) (Machine, error) {
	if err := ctx.Err(); err != nil {
		return Machine{}, err
	}
	var m Machine
	err := db.bdb.View(func(tx *bolt.Tx) error {
		mac, err := resolve(tx, key)
		if err != nil {
			return err
		}
		m, err = getMachine(tx, mac)
		return err
	})
	if err != nil {
		return Machine{}, fmt.Errorf("store: machine %s: %w", key, err)
	}
	return m, nil
}

// resolve turns a MAC or UUID in any spelling into the canonical MAC key.
func resolve(tx *bolt.Tx, key string) (string, error) {
	if mac, err := CanonicalMAC(key); err == nil {
		return mac, nil
	}
	uuid, err := CanonicalUUID(key)
	if err != nil {
		return "", fmt.Errorf("neither a MAC nor a UUID: %w", ErrInvalid)
	}
	mac := bucket(tx, bucketUUIDs).Get([]byte(uuid))
	if mac == nil {
		return "", ErrNotFound
	}
	return string(mac), nil // string() copies out of the mmap
}

// Machines implements Store.
func (db *DB) Machines(ctx context.Context) ([]Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ms []Machine
	err := db.bdb.View(func(tx *bolt.Tx) error {
		return bucket(tx, bucketMachines).ForEach(func(k, v []byte) error {
			var m Machine
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode machine %s: %w", k, err)
			}
			ms = append(ms, m)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: machines: %w", err)
	}
	return ms, nil
}

// Provisioning implements Store.
func (db *DB) Provisioning(ctx context.Context, key string) (Provisioning, error) {
	if err := ctx.Err(); err != nil {
		return Provisioning{}, err
	}
	var p Provisioning
	err := db.bdb.View(func(tx *bolt.Tx) error {
		mac, err := resolve(tx, key)
		if err != nil {
			return err
		}
		if bucket(tx, bucketMachines).Get([]byte(mac)) == nil {
			return ErrNotFound
		}
		p, err = getProvisioning(tx, mac)
		return err
	})
	if err != nil {
		return Provisioning{}, fmt.Errorf("store: machine %s: provisioning: %w", key, err)
	}
	return p, nil
}

func putProvisioning(tx *bolt.Tx, mac string, p Provisioning) error {
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return bucket(tx, bucketProvisioning).Put([]byte(mac), v)
}

// getProvisioning returns the zero value for a machine with no data yet.
func getProvisioning(tx *bolt.Tx, mac string) (Provisioning, error) {
	var p Provisioning
	v := bucket(tx, bucketProvisioning).Get([]byte(mac))
	if v == nil {
		return p, nil
	}
	if err := json.Unmarshal(v, &p); err != nil {
		return p, fmt.Errorf("decode provisioning: %w", err)
	}
	return p, nil
}

// getMachine decodes the record for a canonical MAC; decoding copies it out of
// the mmap, so the result outlives the transaction.
func getMachine(tx *bolt.Tx, mac string) (Machine, error) {
	var m Machine
	v := bucket(tx, bucketMachines).Get([]byte(mac))
	if v == nil {
		return m, ErrNotFound
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return m, fmt.Errorf("decode machine: %w", err)
	}
	return m, nil
}

func putMachine(tx *bolt.Tx, m Machine) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return bucket(tx, bucketMachines).Put([]byte(m.MAC), v)
}

// CountByState counts the machines in each lifecycle state, for metrics
// scraped every few seconds. It reads each record's state and nothing else:
// decoding whole records (Machines) costs ~6 µs each, 60 ms a scrape at
// 10,000 machines; this ~0.25 µs.
func (db *DB) CountByState(ctx context.Context) (map[State]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	counts := map[State]int{}
	err := db.bdb.View(func(tx *bolt.Tx) error {
		return bucket(tx, bucketMachines).ForEach(func(k, v []byte) error {
			st, ok := recordState(v)
			if !ok {
				// Not as putMachine writes it: let the decoder judge.
				var m struct {
					State State `json:"state"`
				}
				if err := json.Unmarshal(v, &m); err != nil {
					return fmt.Errorf("decode machine %s: %w", k, err)
				}
				st = m.State
			}
			counts[st]++
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: count machines by state: %w", err)
	}
	return counts, nil
}

// recordState reads the top-level "state" of a machine record as json.Marshal
// writes it (no whitespace), stepping over the other members without decoding
// them. ok is false for anything else, and the caller decodes properly.
func recordState(v []byte) (State, bool) {
	if len(v) < 2 || v[0] != '{' {
		return "", false
	}
	for i := 1; i < len(v) && v[i] == '"'; {
		end := stringEnd(v, i)
		if end < 0 || end >= len(v) || v[end] != ':' {
			return "", false
		}
		key := v[i+1 : end-1]
		i = end + 1
		if string(key) == "state" {
			end = stringEnd(v, i)
			if end < 0 {
				return "", false
			}
			for _, st := range states {
				if string(v[i+1:end-1]) == string(st) {
					return st, true
				}
			}
			return "", false
		}
		i = valueEnd(v, i)
		if i < 0 || i >= len(v) || v[i] != ',' {
			return "", false // the record ended without a state
		}
		i++
	}
	return "", false
}

// stringEnd returns the index after the JSON string starting at v[i], or -1.
func stringEnd(v []byte, i int) int {
	if i >= len(v) || v[i] != '"' {
		return -1
	}
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++ // the escaped character, which may be a quote
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index after the JSON value starting at v[i], or -1.
// Objects and arrays are skipped by depth, strings in them whole.
func valueEnd(v []byte, i int) int {
	if i >= len(v) {
		return -1
	}
	switch v[i] {
	case '"':
		return stringEnd(v, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(v); j++ {
			switch v[j] {
			case '"':
				end := stringEnd(v, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	// A number, true, false or null runs to the next delimiter.
	for j := i; j < len(v); j++ {
		if v[j] == ',' || v[j] == '}' || v[j] == ']' {
			return j
		}
	}
	return -1
}
