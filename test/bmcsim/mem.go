package bmcsim

import (
	"fmt"
	"sync"
)

// MemChassis is a Chassis held in memory, safe for concurrent use. It records
// every boot so a test can assert what the machine would have booted from.
type MemChassis struct {
	mu       sync.Mutex
	on       bool
	override Boot
	boots    []Boot
}

var _ Chassis = (*MemChassis)(nil)

// NewMemChassis returns a machine powered on or off, with no boot override
// pending and no boots recorded.
func NewMemChassis(on bool) *MemChassis {
	return &MemChassis{on: on, override: Boot{Device: "none"}}
}

// Power reports whether the machine is on.
func (m *MemChassis) Power() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

// SetPower powers the machine on or off; powering on a machine that is off
// boots it.
func (m *MemChassis) SetPower(on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on && !m.on {
		m.boot()
	}
	m.on = on
	return nil
}

// Reset reboots a machine that is on; one that is off stays off.
func (m *MemChassis) Reset() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.on {
		m.boot()
	}
	return nil
}

// BootOverride returns the override the next boot honours.
func (m *MemChassis) BootOverride() (Boot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.override, nil
}

// SetBootOverride sets the override the next boot honours; Device "none"
// clears it.
func (m *MemChassis) SetBootOverride(b Boot) error {
	switch b.Device {
	case "none", "pxe", "disk", "cdrom", "bios":
	default:
		return fmt.Errorf("bmcsim: unknown boot device %q", b.Device)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.override = b
	return nil
}

// Boots returns the boots so far, oldest first: the override each honoured,
// or Device "disk" (the firmware's default) when none was pending.
func (m *MemChassis) Boots() []Boot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Boot(nil), m.boots...)
}

// boot records a boot and consumes a one-time override. m.mu must be held.
func (m *MemChassis) boot() {
	b := m.override
	if b.Device == "none" {
		b = Boot{Device: "disk"}
	}
	m.boots = append(m.boots, b)
	if m.override.Once {
		m.override = Boot{Device: "none"}
	}
}
