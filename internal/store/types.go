package store

import (
	"context"
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

// StateDeclared is a listing state, never a stored one: a Machine declared
// in Git that no request has shown yet, as the boot core lists it (package
// boot, declared.go). It is not a lifecycle state, so Valid refuses it and
// no backend ever writes it; ListedStates includes it.
const StateDeclared State = "declared"

// ListedStates lists the states a listing of machines can show:
// StateDeclared, then the lifecycle states in lifecycle order.
func ListedStates() []State { return append([]State{StateDeclared}, states[:]...) }

// Listed reports whether s is one of ListedStates.
func (s State) Listed() bool { return s == StateDeclared || s.Valid() }

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
	// Hardware is what the inspection agent last reported from inside the
	// machine (provisiond agent); nil until it has. Sightings never change it.
	Hardware *Hardware `json:"hardware,omitempty"`
}

// Hardware is a machine's hardware as its inspection agent read it from
// /sys and /proc. Sizes are bytes; "" and 0 mean the machine did not say.
type Hardware struct {
	ReportedAt time.Time `json:"reported_at"`
	System     System    `json:"system"`
	CPU        CPU       `json:"cpu"`
	Memory     uint64    `json:"memory_bytes"`
	Disks      []Disk    `json:"disks,omitempty"`
	NICs       []NIC     `json:"nics,omitempty"`
}

// System is the SMBIOS identity of a machine (/sys/class/dmi/id).
type System struct {
	Vendor          string `json:"vendor,omitempty"`
	Product         string `json:"product,omitempty"`
	Serial          string `json:"serial,omitempty"`
	BoardVendor     string `json:"board_vendor,omitempty"`
	BoardProduct    string `json:"board_product,omitempty"`
	BoardSerial     string `json:"board_serial,omitempty"`
	BIOSVendor      string `json:"bios_vendor,omitempty"`
	BIOSVersion     string `json:"bios_version,omitempty"`
	ChassisAssetTag string `json:"chassis_asset_tag,omitempty"`
}

// CPU is a machine's processors.
type CPU struct {
	Model   string `json:"model,omitempty"`
	Arch    string `json:"arch,omitempty"` // uname machine: x86_64, aarch64
	Sockets int    `json:"sockets,omitempty"`
	Cores   int    `json:"cores,omitempty"`   // physical cores, all sockets
	Threads int    `json:"threads,omitempty"` // logical CPUs
}

// Disk is one block device that is a disk (not a partition, loop or ram).
type Disk struct {
	Name       string   `json:"name"` // kernel name: sda, nvme0n1, vda
	Model      string   `json:"model,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	WWN        string   `json:"wwn,omitempty"`
	Size       uint64   `json:"size_bytes"`
	Rotational bool     `json:"rotational"`
	ByID       []string `json:"by_id,omitempty"` // stable /dev/disk/by-id paths
}

// NIC is one network interface with a hardware address.
type NIC struct {
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	Driver string `json:"driver,omitempty"`
	Speed  int    `json:"speed_mbps,omitempty"` // 0: unknown or no link
	Link   bool   `json:"link"`
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
	// Tokenless marks a session whose machine boots a signed UKI, whose
	// command line is fixed when it is built and so carries no token: its
	// config URL names the machine alone. TokenHash is then the hash of a
	// token no one is given, until the machine's first config fetch, proven
	// by its address, mints the session's token (package boot, uki.go).
	Tokenless bool `json:"tokenless,omitempty"`
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

// Lease is an address provisiond's authoritative DHCP server handed out. The
// address is the key: a store holds at most one lease per IP, which is what
// keeps one address from going to two machines, whichever instance answers.
// A MAC holds at most one lease: claiming another address drops its old one.
type Lease struct {
	IP      string `json:"ip"`            // canonical IPv4, e.g. 10.99.0.100
	MAC     string `json:"mac,omitempty"` // canonical; "" for a declined address
	Network string `json:"network"`       // the profiles' Network the address is from
	// Expires is when the address becomes free again (an OFFER never
	// writes a lease; an ACK writes it with the Network's lease time).
	Expires time.Time `json:"expires"`
	// Declined marks an address a client reported in use by someone else
	// (DHCPDECLINE): it belongs to no one and is not handed out until Expires.
	Declined bool      `json:"declined,omitempty"`
	Updated  time.Time `json:"updated"` // stamped by the store on every write
}

// Leases is the part of the store the authoritative DHCP server keeps its
// leases in. Every method is one transaction; times are the caller's (the
// instance answering the client), so expiry is judged by one clock per
// decision.
type Leases interface {
	// ClaimLease writes l if its address is free for l.MAC at now (see
	// Lease.FreeFor): no lease, an expired one, or one l.MAC already holds.
	// Any other lease of l.MAC is deleted in the same transaction. An
	// address held by another MAC, or declined, fails with ErrTaken and
	// the lease that holds it. l.MAC must be set and l.Expires after now.
	ClaimLease(ctx context.Context, l Lease, now time.Time) (Lease, error)
	// ReleaseLease deletes the lease of ip if mac holds it (DHCPRELEASE).
	// ErrNotFound if mac holds no lease on ip.
	ReleaseLease(ctx context.Context, ip, mac string) error
	// DeclineLease turns the lease of ip that mac holds into a declined
	// address (no MAC) until until (DHCPDECLINE). ErrNotFound if mac holds
	// no lease on ip.
	DeclineLease(ctx context.Context, ip, mac string, until time.Time) error
	// Lease returns the lease of an address, expired or not. ErrNotFound.
	Lease(ctx context.Context, ip string) (Lease, error)
	// MACLease returns the lease mac holds, expired or not. ErrNotFound.
	MACLease(ctx context.Context, mac string) (Lease, error)
	// AllLeases lists every lease, expired ones included, ordered by address.
	AllLeases(ctx context.Context) ([]Lease, error)
	// PruneLeases deletes leases that expired before cutoff and returns how
	// many it deleted.
	PruneLeases(ctx context.Context, cutoff time.Time) (int, error)
}
