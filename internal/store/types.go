package store

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
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
	TokenHash string `json:"token_hash,omitempty"` // hex SHA-256 of the session token; "" = no open session
	// SealedToken is the session token sealed under the deployment's secret
	// key (never stored in clear), base64, so that a repeated /ipxe on any
	// instance can hand the same session out again; "": not reusable. A
	// string keeps Provisioning comparable.
	SealedToken   string    `json:"sealed_token,omitempty"`
	Profile       string    `json:"profile,omitempty"` // the profile the session boots
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

// Event is one entry of the append-only event log.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	MAC     string            `json:"mac,omitempty"` // canonical; "" for events about no machine
	Type    string            `json:"type"`
	Message string            `json:"message,omitempty"`
	Actor   string            `json:"actor,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// EventQuery selects events; zero fields do not filter.
type EventQuery struct {
	MAC      string    // only this machine's events (any spelling)
	Since    time.Time // only events at or after Since
	AfterSeq uint64    // only events with Seq > AfterSeq: resume where a previous page ended
	// BeforeSeq (0: none) keeps only events with Seq < BeforeSeq: with
	// Newest, the page older than one that ended at BeforeSeq.
	BeforeSeq uint64
	Type      string // only events of this type
	Limit     int    // at most this many; 0 = all
	Newest    bool   // newest first, so Limit keeps the latest (a timeline), not the oldest
}

// Binding is what one DHCP packet showed provisiond about a client: the
// machine with MAC sent UUID (option 97) and uses address IP (option 50,
// ciaddr or the source of its boot-server request). Either of UUID and IP
// may be empty. Bindings, unlike requests, are observations: the boot core
// trusts a requester only as far as they reach.
type Binding struct {
	MAC  string    `json:"mac"`
	UUID string    `json:"uuid,omitempty"`
	IP   string    `json:"ip,omitempty"`
	Seen time.Time `json:"seen"`
}
