// Package bmc drives machines' baseboard management controllers through
// bmclib: IPMI with its ipmitool provider, Redfish with its gofish provider.
// It reads and sets power and sets the next boot device, each call bounded in
// time and in how many BMCs are talked to at once. It knows nothing of
// profiles or the inventory: callers hand it an Endpoint.
package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrAuth: the BMC refused the credentials. Nothing is retried, so a
	// wrong password costs one failed login, not a locked account.
	ErrAuth = errors.New("BMC refused the credentials")
	// ErrTimeout: the BMC did not finish within the operation timeout.
	ErrTimeout = errors.New("BMC did not answer in time")
	// ErrUnreachable: the BMC's address refused or could not be reached.
	ErrUnreachable = errors.New("BMC unreachable")
	// ErrInvalid: a malformed address, credential reference or action.
	ErrInvalid = errors.New("invalid")
)

// Protocol is how a BMC is spoken to.
type Protocol string

// The protocols, as bmc.address schemes.
const (
	IPMI    Protocol = "ipmi"
	Redfish Protocol = "redfish"
)

// Endpoint is one BMC and the credentials to log in with. It formats and logs
// as its address only, so the password cannot leak through a %v or a log line.
type Endpoint struct {
	Protocol Protocol
	Host     string // IP or name, no port
	Port     string // "" = the protocol's default (623, 443)
	// Cipher is the IPMI cipher suite (the address's ?cipher=); "" means 3,
	// the one most BMCs accept. Exactly one suite is tried: bmclib's
	// fallback to a second suite would make a wrong password two failed logins.
	Cipher   string
	User     string
	Password string
}

// ParseAddress parses "ipmi://host[:port][?cipher=N]" or "redfish://host[:port]".
// The address must not carry credentials: they come separately.
func ParseAddress(s string) (Endpoint, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%w: BMC address %q: %v", ErrInvalid, s, err)
	}
	ep := Endpoint{Protocol: Protocol(u.Scheme), Host: u.Hostname(), Port: u.Port()}
	switch {
	case ep.Protocol != IPMI && ep.Protocol != Redfish:
		return Endpoint{}, fmt.Errorf("%w: BMC address %q: scheme must be ipmi:// or redfish://", ErrInvalid, s)
	case ep.Host == "":
		return Endpoint{}, fmt.Errorf("%w: BMC address %q: no host", ErrInvalid, s)
	case strings.Count(u.Host, ":") > 1 && !strings.HasPrefix(u.Host, "["):
		return Endpoint{}, fmt.Errorf("%w: BMC address %q: put an IPv6 address in brackets", ErrInvalid, s)
	case u.User != nil:
		return Endpoint{}, fmt.Errorf("%w: BMC address must not carry credentials", ErrInvalid)
	case u.Path != "" && u.Path != "/":
		return Endpoint{}, fmt.Errorf("%w: BMC address %q: unexpected path %q", ErrInvalid, s, u.Path)
	}
	for k, v := range u.Query() {
		if k != "cipher" || ep.Protocol != IPMI || len(v) != 1 || !isDigits(v[0]) {
			return Endpoint{}, fmt.Errorf("%w: BMC address %q: unknown option %s (ipmi:// takes ?cipher=N)", ErrInvalid, s, k)
		}
		ep.Cipher = v[0]
	}
	return ep, nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// Address is the endpoint as ParseAddress reads it, without credentials.
func (e Endpoint) Address() string {
	host := e.Host
	if e.Port != "" {
		host = net.JoinHostPort(e.Host, e.Port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	s := string(e.Protocol) + "://" + host
	if e.Cipher != "" {
		s += "?cipher=" + e.Cipher
	}
	return s
}

// String is Address: credentials never reach a formatted string.
func (e Endpoint) String() string { return e.Address() }

// LogValue is Address: credentials never reach a log line.
func (e Endpoint) LogValue() slog.Value { return slog.StringValue(e.Address()) }

// Action is a power action.
type Action string

// The power actions. Cycle on a machine that is off powers it on.
const (
	On    Action = "on"
	Off   Action = "off"   // immediate, like pulling the plug
	Soft  Action = "soft"  // ACPI shutdown; the OS may ignore it
	Cycle Action = "cycle" // off, then on
	Reset Action = "reset" // hard reset without removing power
)

// ParseAction validates an action name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case On, Off, Soft, Cycle, Reset:
		return a, nil
	}
	return "", fmt.Errorf("%w: power action %q: want on, off, soft, cycle or reset", ErrInvalid, s)
}

// Power states as Status reports them.
const (
	StateOn      = "on"
	StateOff     = "off"
	StateUnknown = "unknown"
)

// Request is one conversation with a BMC: optionally set the next boot to the
// network, then optionally take a power action, in one login.
type Request struct {
	PXENext bool   // next boot (once) from the network
	EFI     bool   // with PXENext: UEFI network boot rather than legacy
	Action  Action // "" = none
}

// Outcome is what a Request did.
type Outcome struct {
	Before string // power state before the action
	// Done is the action taken: Cycle becomes On for a machine that was off.
	Done Action
	// BootReadback is the next-boot override the BMC reports after PXENext,
	// e.g. "pxe (once, efi)"; "" when its provider cannot read it back (IPMI).
	BootReadback string
	Took         time.Duration
}

// Controller is what provisiond needs from BMCs; *Client implements it.
type Controller interface {
	// Status returns "on", "off" or "unknown".
	Status(ctx context.Context, ep Endpoint) (string, error)
	// Do runs req against ep in one session.
	Do(ctx context.Context, ep Endpoint, req Request) (Outcome, error)
}
