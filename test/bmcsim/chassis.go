// Package bmcsim gives tests real BMCs to drive: OpenIPMI's ipmi_sim behind a
// chassis-control script, and a Redfish service written to the DMTF schema
// that bmclib's gofish provider speaks. Both steer the same Chassis, so one
// lifecycle test covers both protocols.
package bmcsim

// Boot is a boot-source override as a BMC records it.
type Boot struct {
	Device string // "none", "pxe", "disk", "cdrom" or "bios"
	Once   bool   // the next power-on consumes it; false: persistent
	EFI    bool   // UEFI boot rather than legacy
}

// Chassis is the machine behind a simulated BMC: its power and the boot
// override its next power-on honours.
type Chassis interface {
	Power() (on bool, err error)
	SetPower(on bool) error
	// Reset is a hard reset: the machine restarts at once, honouring the
	// pending boot override as a power-on would. A powered-off machine stays off.
	Reset() error
	BootOverride() (Boot, error)
	SetBootOverride(b Boot) error
}
