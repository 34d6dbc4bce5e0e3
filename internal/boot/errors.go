package boot

import (
	"errors"
	"strings"

	"github.com/provisiond/provisiond/internal/bmc"
)

// The core's sentinels, checked with errors.Is; internal/httperr maps each
// to its one HTTP status.
var (
	// ErrNoIdentity: the request names neither a usable MAC nor a UUID.
	ErrNoIdentity = errors.New("request names no usable mac or uuid")
	// ErrUnknownMachine: no Machine matches and there is no Default.
	ErrUnknownMachine = errors.New("unknown machine: no Machine matches it and there is no Default")
	// ErrLoader: the machine's profile boots with another boot.loader than
	// the one asking, e.g. GRUB asking for a machine whose profile chains iPXE.
	ErrLoader = errors.New("the machine's profile boots with another loader")
	// ErrNoConfig: the machine's profile serves no config of the kind asked for.
	ErrNoConfig = errors.New("the machine's profile has no config of this kind")
	// ErrNotLoaded: no profile set has loaded successfully yet.
	ErrNotLoaded = errors.New("no valid profiles loaded")
	// ErrNotFound: no machine in the inventory has this id.
	ErrNotFound = errors.New("no such machine")
	// ErrAmbiguous: a Machine name that several inventoried machines share.
	ErrAmbiguous = errors.New("ambiguous machine name")
	// ErrState: the machine's lifecycle state does not allow the operation.
	ErrState = errors.New("not allowed in this state")
	// ErrUnauthorized: a phone-home without this machine's current session token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNoSync: the daemon follows a plain directory, not a Git repository.
	ErrNoSync = errors.New("no --profiles-git configured")
	// ErrNoBMC: the machine has no BMC in Git and none set through the API.
	ErrNoBMC = errors.New("the machine has no BMC: give its Machine a bmc: in Git, or set one with PUT /api/v1/machines/{id}/bmc")
	// ErrNoWipeProfile: a wipe was asked for, but --wipe-profile names none.
	ErrNoWipeProfile = errors.New("no wipe profile: start provisiond with --wipe-profile naming a Profile")
	// ErrInvalid: a malformed request (an address, an action, a selector).
	ErrInvalid = errors.New("invalid request")
	// ErrBMCConfig: the machine's BMC is configured but unusable here: its
	// address does not parse, or its credentials do not resolve or unseal.
	ErrBMCConfig = errors.New("BMC configuration unusable")
	// ErrBusy: another operation holds the machine's BMC lock, and it was not
	// released before the operation's context ended.
	ErrBusy = errors.New("another BMC operation on this machine is in progress")
)

// RefusedError is a script, config or phone-home request that failed a
// secrecy check (HTTP 403).
type RefusedError struct {
	What   string // "script", "config", "phone-home" or "hardware-report"
	Reason string // one of the Reason constants
}

func (e *RefusedError) Error() string { return e.What + " refused: " + e.Reason }

// invalidError is a bmc.ErrInvalid error as the core's ErrInvalid. Its text
// is bmc's without the leading "invalid: ": wrapped in ErrInvalid's words
// too, an API answer read "invalid request: invalid: BMC address".
type invalidError struct{ err error }

func invalid(err error) error { return invalidError{err} }

func (e invalidError) Error() string {
	return strings.TrimPrefix(e.err.Error(), bmc.ErrInvalid.Error()+": ")
}
func (e invalidError) Unwrap() []error { return []error{ErrInvalid, e.err} }
