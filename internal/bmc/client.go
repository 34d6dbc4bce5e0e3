package bmc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	bmclibbmc "github.com/bmc-toolbox/bmclib/v2/bmc"
	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
)

// Options tune a Client. Zero values mean the defaults.
type Options struct {
	// Timeout bounds one operation: login, every call, and logout. Default 30s.
	Timeout time.Duration
	// Parallel is how many BMCs are talked to at once. Default 16.
	Parallel int
	Logger   *slog.Logger
}

// Client is the bmclib Controller. It is safe for concurrent use: calls to
// one BMC are serialised (a BMC is a small computer with few session slots,
// and interleaved power actions make no sense), calls to different BMCs run
// up to Parallel at once.
type Client struct {
	timeout time.Duration
	slots   chan struct{}
	log     *slog.Logger

	mu    sync.Mutex
	locks map[string]chan struct{} // per BMC address; one entry per BMC ever used
}

var _ Controller = (*Client)(nil)

// closeTimeout bounds the logout, which runs even when the operation's own
// time ran out: an abandoned Redfish session would hold one of the BMC's slots.
const closeTimeout = 5 * time.Second

// New returns a Client.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Parallel <= 0 {
		o.Parallel = 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{timeout: o.Timeout, slots: make(chan struct{}, o.Parallel), log: o.Logger, locks: map[string]chan struct{}{}}
}

// Status implements Controller.
func (c *Client) Status(ctx context.Context, ep Endpoint) (string, error) {
	var state string
	err := c.session(ctx, ep, func(ctx context.Context, cl *bmclib.Client) error {
		s, err := cl.GetPowerState(ctx)
		if err != nil {
			return fmt.Errorf("read power state: %w", err)
		}
		state = normalizeState(s)
		return nil
	})
	return state, err
}

// Do implements Controller.
func (c *Client) Do(ctx context.Context, ep Endpoint, req Request) (Outcome, error) {
	if req.Action != "" {
		if _, err := ParseAction(string(req.Action)); err != nil {
			return Outcome{}, err
		}
	}
	start := time.Now()
	var out Outcome
	err := c.session(ctx, ep, func(ctx context.Context, cl *bmclib.Client) error {
		if req.PXENext {
			if err := setPXENext(ctx, cl, ep, req.EFI, &out); err != nil {
				return err
			}
		}
		if req.Action == "" {
			return nil
		}
		s, err := cl.GetPowerState(ctx)
		if err != nil {
			return fmt.Errorf("read power state: %w", err)
		}
		out.Before = normalizeState(s)
		act := plan(req.Action, out.Before)
		if act == "" {
			return nil // already in the state asked for
		}
		if _, err := cl.SetPowerState(ctx, string(act)); err != nil && !softSent(ep, act, err) {
			return fmt.Errorf("power %s: %w", act, err)
		}
		out.Done = act
		return nil
	})
	out.Took = time.Since(start)
	return out, err
}

// plan is the action that achieves a on a machine whose power is before: a
// cycle of a machine that is off is a power-on (Redfish refuses to restart a
// machine that is off), and on/off/soft towards the state it is already in
// are nothing ("").
func plan(a Action, before string) Action {
	switch {
	case a == Cycle && before == StateOff:
		return On
	case a == On && before == StateOn, (a == Off || a == Soft) && before == StateOff:
		return ""
	}
	return a
}

// softSent recognises bmclib v2.3.5's gofish provider reporting a graceful
// shutdown it did send as not done: it returns ok=false with no error after
// the BMC accepted the request, which bmclib words as below.
func softSent(ep Endpoint, act Action, err error) bool {
	return ep.Protocol == Redfish && act == Soft && strings.Contains(err.Error(), "provider: gofish, failed to set power state")
}

// setPXENext sets the next boot, once, to the network and reads it back where
// the provider can: bmclib's ipmitool provider cannot.
func setPXENext(ctx context.Context, cl *bmclib.Client, ep Endpoint, efi bool, out *Outcome) error {
	if _, err := cl.SetBootDevice(ctx, "pxe", false, efi); err != nil {
		return fmt.Errorf("set next boot to pxe: %w", err)
	}
	if ep.Protocol != Redfish {
		return nil
	}
	ov, err := cl.GetBootDeviceOverride(ctx)
	if err != nil {
		return fmt.Errorf("read back next boot: %w", err)
	}
	out.BootReadback = describeOverride(ov)
	if ov.Device != bmclibbmc.BootDeviceTypePXE {
		return fmt.Errorf("next boot set to pxe, but the BMC reports %s", out.BootReadback)
	}
	return nil
}

func describeOverride(ov bmclibbmc.BootDeviceOverride) string {
	mode, firmware := "once", "legacy"
	if ov.IsPersistent {
		mode = "persistent"
	}
	if ov.IsEFIBoot {
		firmware = "efi"
	}
	return fmt.Sprintf("%s (%s, %s)", ov.Device, mode, firmware)
}

// normalizeState maps a provider's answer ("Chassis Power is on" from
// ipmitool, "On" from Redfish, "PoweringOn", ...) to on, off or unknown.
func normalizeState(s string) string {
	s = strings.ToLower(strings.TrimSpace(s)) // ipmitool's answer ends in a newline
	switch {
	case strings.HasSuffix(s, "off") || strings.Contains(s, "poweringoff"):
		return StateOff
	case strings.HasSuffix(s, "on"):
		return StateOn
	}
	return StateUnknown
}

// session logs in to ep with exactly one provider, runs fn, and logs out,
// all within the timeout, holding ep's lock and a parallelism slot.
func (c *Client) session(ctx context.Context, ep Endpoint, fn func(context.Context, *bmclib.Client) error) error {
	cl, err := newBMCLib(ep)
	if err != nil {
		return err
	}
	release, err := c.acquire(ctx, ep.Address())
	if err != nil {
		return fmt.Errorf("%s: waiting for a BMC slot: %w", ep, err)
	}
	defer release()
	opCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := cl.Open(opCtx); err != nil {
		return c.classify(opCtx, ep, "log in", err)
	}
	err = fn(opCtx, cl)
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancelClose()
	if cerr := cl.Close(closeCtx); cerr != nil {
		c.log.Warn("BMC logout failed", "bmc", ep, "error", redact(cerr.Error(), ep))
	}
	if err != nil {
		return c.classify(opCtx, ep, "", err)
	}
	return nil
}

// newBMCLib returns a bmclib client with only ep's provider registered, so a
// failure is reported as it is instead of bmclib trying every other vendor's
// API against the BMC with the same password.
func newBMCLib(ep Endpoint) (*bmclib.Client, error) {
	var opts []bmclib.Option
	provider := redfish.ProviderName
	switch ep.Protocol {
	case IPMI:
		if _, err := exec.LookPath("ipmitool"); err != nil {
			return nil, fmt.Errorf("%s: ipmitool is needed for IPMI BMCs: %w", ep, err)
		}
		provider = ipmitool.ProviderName
		opts = append(opts, bmclib.WithIpmitoolPort(cmp.Or(ep.Port, "623")), bmclib.WithIpmitoolCipherSuite(cmp.Or(ep.Cipher, "3")))
	case Redfish:
		opts = append(opts, bmclib.WithRedfishPort(cmp.Or(ep.Port, "443")))
	default:
		return nil, fmt.Errorf("%w: BMC protocol %q", ErrInvalid, ep.Protocol)
	}
	cl := bmclib.NewClient(ep.Host, ep.User, ep.Password, opts...)
	cl.Registry.Drivers = cl.Registry.For(provider)
	if len(cl.Registry.Drivers) == 0 {
		return nil, fmt.Errorf("%s: bmclib provider %s is not available", ep, provider)
	}
	return cl, nil
}

// acquire takes key's lock and then a parallelism slot, in that order, so a
// call queued behind a hung BMC does not hold a slot others could use.
func (c *Client) acquire(ctx context.Context, key string) (release func(), err error) {
	c.mu.Lock()
	lock, ok := c.locks[key]
	if !ok {
		lock = make(chan struct{}, 1)
		c.locks[key] = lock
	}
	c.mu.Unlock()
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		<-lock
		return nil, ctx.Err()
	}
	return func() { <-c.slots; <-lock }, nil
}

// classify wraps a provider error with what it means for the operator:
// authentication, timeout or unreachable, keeping the BMC's own words.
func (c *Client) classify(ctx context.Context, ep Endpoint, step string, err error) error {
	msg := tidy(redact(err.Error(), ep))
	if step != "" {
		msg = step + ": " + msg
	}
	lower := strings.ToLower(msg)
	var kind error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || containsAny(lower, "deadline exceeded", "timeout", "timed out"):
		return fmt.Errorf("%s: %w within %s (%s)", ep, ErrTimeout, c.timeout, msg)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", ep, ctx.Err())
	case containsAny(lower, "connection refused", "no route to host", "network is unreachable", "no such host", "host is down"):
		kind = ErrUnreachable
	case containsAny(lower, " 401:", "unauthorized", "rakp", "authentication", "invalid user", "password", "login failed", "failed to login"):
		kind = ErrAuth
	case ep.Protocol == IPMI && strings.Contains(lower, "unable to establish ipmi v2"):
		// ipmitool's whole answer to a refused login; an unanswered one
		// runs into the timeout above instead.
		kind, msg = ErrAuth, msg+" (wrong user, password or cipher suite?)"
	default:
		return fmt.Errorf("%s: %s", ep, msg)
	}
	return fmt.Errorf("%s: %w: %s", ep, kind, msg)
}

// tidy flattens bmclib's multi-error ("2 errors occurred: * provider: ...")
// into one line and drops its "no ... implementations found" trailer, which
// only says that the one provider failed.
func tidy(msg string) string {
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line == "" || strings.HasSuffix(line, "errors occurred:") || strings.HasSuffix(line, "error occurred:") ||
			strings.HasPrefix(line, "no ") && strings.HasSuffix(line, "implementations found") {
			continue
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// redact removes the password from a provider's message, in case a BMC
// echoes the request it refused.
func redact(msg string, ep Endpoint) string {
	if ep.Password == "" {
		return msg
	}
	return strings.ReplaceAll(msg, ep.Password, "***")
}
