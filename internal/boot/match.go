package boot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Hardware in the boot decisions. A request names its machine by MAC and
// UUID only; what its inspection reported (hardware.go) is in the
// inventory. So when the live set has Machines that match on a serial or
// hardware facts, a match reads the machine's record first: one store read
// (a bbolt lookup; on etcd, one linearizable read round trip) per DHCP
// packet, /boot.ipxe, /ipxe and config fetch. Sets without such Machines
// read nothing more than before. A cache in this process would save the
// read but miss a report another instance stored.

// match is Live.Match with the stored hardware of r's machine, when the live
// set matches on hardware; a machine never seen or never inspected has none.
func (d *Decider) match(ctx context.Context, r Request) (profiles.Result, *profiles.Set, error) {
	set := d.live.Profiles()
	if set == nil || !set.MatchesHardware() || r.MAC == "" && r.UUID == "" {
		return d.live.Match(r)
	}
	hw, err := d.storedHardware(ctx, r)
	if err != nil {
		return profiles.Result{}, set, err
	}
	r.Hardware = hw
	return d.live.Match(r)
}

// storedHardware is what the inspection of r's machine last reported; nil
// when the machine was never seen or never inspected.
func (d *Decider) storedHardware(ctx context.Context, r Request) (*store.Hardware, error) {
	m, err := d.store.Machine(ctx, cmp.Or(r.MAC, r.UUID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the hardware of %s: %w", cmp.Or(r.MAC, r.UUID), err)
	}
	return m.Hardware, nil
}

// inspectArgs are the kernel arguments of a profile with inspect: true,
// which `provisiond agent` reads from /proc/cmdline: where to report, as
// which machine, and this boot's session token, which the report presents.
func (d *Decider) inspectArgs(r Request, token string) []string {
	args := []string{"provisiond.url=" + d.base}
	if r.MAC != "" {
		args = append(args, "provisiond.mac="+strings.ReplaceAll(r.MAC, ":", "-"))
	}
	return append(args, "provisiond.token="+token)
}
