// Package boot is the policy core every protocol asks: given a machine's identity,
// what does it get now — a network boot or not, which iPXE script, which config.
//
// It is three parts, each with its own state, that cluster mode touches at
// its own seam:
//   - Live: the live profile Set, swapped atomically on reload, its reload
//     status and the Git revision and sync status it came from;
//   - Decider: the boot decisions (scripts, configs, phone-home, next boot),
//     who a request is from, and the inventory they record, written behind;
//   - Fleet: power control over the machines' BMCs, one and in bulk, their
//     credentials and the per-machine locks that serialise them.
//
// Core composes the three for callers that want all of them.
package boot

import (
	"log/slog"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Config configures a Core, and each of its parts from the fields it names.
type Config struct {
	// ProfilesDir is what Reload loads; "" when LoadRevision supplies the
	// trees (--profiles-git). Live.
	ProfilesDir string
	// AdvertiseURL is the base URL machines reach the HTTP server at, no
	// trailing slash. Live (rendered configs) and Decider (scripts).
	AdvertiseURL string
	// Store holds inventory, sessions and events; required by every part.
	Store store.Store
	// Neighbors identifies requesters (see verify.go); nil takes requests
	// at their word, for tests only. Decider.
	Neighbors Neighbors
	Policy    Policy // relaxations of the config secrecy checks. Decider.
	// BindingTTL is how long a DHCP binding identifies a routed requester;
	// 0: DefaultBindingTTL. Decider.
	BindingTTL time.Duration
	// MaxDiscovered caps the machines kept that only were discovered, the
	// oldest pruned first; 0: DefaultMaxDiscovered. Decider.
	MaxDiscovered int
	// StallAfter is how long a provisioning machine may take no new boot
	// step before it counts as stalled (stalled.go); 0: DefaultStallAfter.
	// Decider.
	StallAfter time.Duration
	// CacheFile persists rendered configs between runs so a restart does not
	// translate every machine's Butane again; "" keeps them in memory only. Live.
	CacheFile string
	// BMC drives machines' BMCs; nil: power control is unavailable. Fleet.
	BMC bmc.Controller
	// Secrets seals BMC credentials set through the API (Fleet; nil: they
	// cannot be set) and the session tokens /ipxe hands out again (Decider,
	// session.go; nil: every /ipxe opens a new session).
	Secrets Sealer
	// WipeProfile names the Profile a wiped machine boots; "" disables wipe.
	// Live: a set without it does not go live.
	WipeProfile string
	// Check judges a loaded set against how this daemon serves (its DHCP
	// mode, its shim directory): problems keep the set from going live,
	// warnings are logged with the profiles' own. nil: none. Live.
	Check func(*profiles.Set) (problems, warnings profiles.Problems)
	// Locks serialises BMC operations per machine across instances sharing
	// the store; nil: an in-process lock per machine (one instance). Fleet.
	Locks Locker
	// Observer is told of reloads, BMC operations and refusals, for metrics; nil: none.
	Observer Observer
	Logger   *slog.Logger // nil: discard
}

// Core is the whole policy core: the live profiles, the boot decisions and
// the fleet, sharing one live set. Its methods are its parts'. Its zero
// value is not usable; call New.
type Core struct {
	*Live
	*Decider
	*Fleet
}

// New returns a Core with no profiles loaded; call Reload.
func New(cfg Config) *Core {
	live := NewLive(cfg)
	return &Core{Live: live, Decider: NewDecider(cfg, live), Fleet: NewFleet(cfg, live)}
}

// logger is cfg's logger, or one that discards.
func (cfg Config) logger() *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}

// observer is cfg's observer, or one that ignores everything.
func (cfg Config) observer() Observer {
	if cfg.Observer == nil {
		return noObserver{}
	}
	return cfg.Observer
}
