package profiles

import (
	"fmt"
	"maps"
	"net/netip"
	"time"
)

// The document kinds of a profiles directory.
const (
	KindProfile = "Profile"
	KindMachine = "Machine"
	KindDefault = "Default"
	KindNetwork = "Network"
)

// kinds lists the document kinds for messages.
const kinds = KindProfile + ", " + KindMachine + ", " + KindNetwork + " or " + KindDefault

// Profile says how a class of machines boots and which config it is served.
//
// The example tags here and in the types below show an operator who wrote a
// field in the wrong shape what it should look like (see checkShape).
type Profile struct {
	Kind   string `yaml:"kind"`
	Name   string `yaml:"name"`
	Boot   Boot   `yaml:"boot" example:"{kernel: /assets/vmlinuz, initrd: [/assets/initrd.img]}"`
	Config Config `yaml:"config" example:"{butane: butane/worker.bu}"`
	// Once makes the install boot-once: after the machine reports installed it boots
	// from disk until it is reprovisioned.
	Once bool `yaml:"once"`
	// Inspect boots the machine with what the inspection agent (provisiond
	// agent) needs to report its hardware: provisiond.url=, provisiond.mac=
	// and provisiond.token= on the kernel command line.
	Inspect bool `yaml:"inspect"`

	Pos Pos `yaml:"-"`
	// loaderLine is the line of boot.loader, where a mode problem is reported.
	loaderLine int `yaml:"-"`
}

// Boot is the kernel, initrds and kernel arguments of a Profile, and the loader
// that boots them. Kernel, initrd and UKI are either a path under the assets
// directory ("/assets/...") or an http(s) URL.
type Boot struct {
	// Loader is what UEFI machines are given first; see LoaderIPXE, LoaderShim
	// and LoaderUKI. After Load it is one of those three: "ipxe", written or
	// left out, is kept as LoaderIPXE ("").
	Loader string   `yaml:"loader" example:"shim"`
	Kernel string   `yaml:"kernel" example:"/assets/vmlinuz"`
	Initrd []string `yaml:"initrd" example:"[/assets/initrd.img]"`
	Args   []string `yaml:"args" example:"[console=ttyS0, quiet]"`
	// UKI is the unified kernel image of loader uki, which carries its own
	// kernel, initrd and command line.
	UKI string `yaml:"uki" example:"/assets/talos/talos-uki.efi"`
}

// The boot loaders of boot.loader.
const (
	// LoaderIPXE (boot.loader ipxe, the default) chains the embedded iPXE,
	// which fetches the kernel, initrds and config over HTTP.
	LoaderIPXE = ""
	// LoaderShim boots under Secure Boot through the operator's signed shim
	// and GRUB (--shim-dir), which fetch kernel and initrds over TFTP.
	LoaderShim = "shim"
	// LoaderUKI hands UEFI HTTP Boot clients the profile's unified kernel
	// image directly.
	LoaderUKI = "uki"
)

// Config names at most one config source, a path relative to the profiles directory.
type Config struct {
	Butane   string `yaml:"butane"`
	Ignition string `yaml:"ignition"`
	Talos    string `yaml:"talos"`
	Template string `yaml:"template"`
}

// ConfigKind says how a config is produced and served.
type ConfigKind string

// The config kinds; ConfigNone means the profile serves no config.
const (
	ConfigNone     ConfigKind = ""
	ConfigButane   ConfigKind = "butane"
	ConfigIgnition ConfigKind = "ignition"
	ConfigTalos    ConfigKind = "talos"
	ConfigTemplate ConfigKind = "template"
)

// Source returns the config kind and its path; an error-free Profile has at most one.
func (c Config) Source() (ConfigKind, string) {
	switch {
	case c.Butane != "":
		return ConfigButane, c.Butane
	case c.Ignition != "":
		return ConfigIgnition, c.Ignition
	case c.Talos != "":
		return ConfigTalos, c.Talos
	case c.Template != "":
		return ConfigTemplate, c.Template
	}
	return ConfigNone, ""
}

// Ignition reports whether the config is served as Ignition JSON (at /ignition)
// rather than as text (at /config).
func (k ConfigKind) Ignition() bool { return k == ConfigButane || k == ConfigIgnition }

// Machine binds machines that match its selector to a Profile, with metadata for
// the Profile's templates.
type Machine struct {
	Kind     string         `yaml:"kind"`
	Name     string         `yaml:"name"`
	Match    Match          `yaml:"match" example:"{mac: \"52:54:00:00:00:01\"}"`
	Profile  string         `yaml:"profile"`
	Metadata map[string]any `yaml:"metadata" example:"{hostname: node1.lab}"`
	// Labels describe the machine to operators: bulk power actions and the
	// inventory select by them. Unlike match.labels they are not compared
	// with what a booting machine reports.
	Labels map[string]string `yaml:"labels" example:"{rack: r1}"`
	BMC    *BMC              `yaml:"bmc" example:"{address: ipmi://10.0.0.5, credentials: env:NODE1_BMC}"`
	// IP reserves an IPv4 address for the machine in authoritative DHCP mode:
	// it must lie in a Network's subnet and the Machine must match by MAC.
	// It may lie inside the Network's dynamic range: the allocator skips
	// reserved addresses.
	IP string `yaml:"ip" example:"10.99.0.50"`
	// IPAddr is IP parsed by Load; the zero Addr when IP is unset.
	IPAddr netip.Addr `yaml:"-"`

	Pos Pos `yaml:"-"`
	// ipLine is the line of ip, where reservation problems are reported.
	ipLine int `yaml:"-"`
}

// AllLabels is the machine's labels and its match labels together.
func (m *Machine) AllLabels() map[string]string {
	if len(m.Labels) == 0 {
		return m.Match.Labels
	}
	out := maps.Clone(m.Labels)
	maps.Copy(out, m.Match.Labels)
	return out
}

// Match selects machines. Every given criterion must match. MAC and UUID are kept
// in canonical form after Load, Serial trimmed (see MatchSerial).
type Match struct {
	MAC  string `yaml:"mac" example:"\"52:54:00:00:00:01\""`
	UUID string `yaml:"uuid" example:"4c4c4544-0042-3510-8057-b7c04f4e3732"`
	// Serial is the SMBIOS system serial the machine's inspection reported
	// (hardware.system.serial): an identity like MAC and UUID, which a NIC
	// swap does not change.
	Serial string            `yaml:"serial" example:"\"CZ1234ABCD\""`
	Labels map[string]string `yaml:"labels" example:"{rack: r1}"`
	// Hardware selects by facts of the machine's inspection, keyed as
	// hardwareKeys lists them ("system.product", "cpu.cores"), each compared
	// exactly with the reported value.
	Hardware map[string]string `yaml:"hardware" example:"{system.product: PowerEdge R640}"`
}

// identified reports whether the Match names one machine (by MAC, UUID or
// serial) rather than selecting any that shows its labels or hardware.
func (m Match) identified() bool { return m.MAC != "" || m.UUID != "" || m.Serial != "" }

// BMC locates a machine's baseboard management controller. Credentials are a
// reference (env:VAR or file:PATH), never the secret itself.
type BMC struct {
	Address     string `yaml:"address"`
	Credentials string `yaml:"credentials"`
}

// Default names the Profile for machines no Machine matches.
type Default struct {
	Kind    string `yaml:"kind"`
	Profile string `yaml:"profile"`

	Pos Pos `yaml:"-"`
}

// Network is an address plan for authoritative DHCP: the IPv4 subnet of a
// provisioning network, the dynamic range the allocator hands out, and the
// options its clients get. Load fills the parsed fields below the YAML ones,
// which the DHCP server and the allocator use; a Network never overlaps
// another's subnet, so an address (a relay's giaddr) picks at most one.
type Network struct {
	Kind   string `yaml:"kind"`
	Name   string `yaml:"name"`
	Subnet string `yaml:"subnet" example:"10.99.0.0/24"`
	// Range is [first, last], inclusive, inside Subnet.
	Range  []string `yaml:"range" example:"[10.99.0.100, 10.99.0.199]"`
	Router string   `yaml:"router" example:"10.99.0.1"`
	DNS    []string `yaml:"dns" example:"[10.99.0.1]"`
	// LeaseTime is a Go duration from 1m to 720h; 1h when unset.
	LeaseTime string `yaml:"leaseTime" example:"1h"`

	// Prefix is Subnet parsed: IPv4, host bits zero, /8 to /30.
	Prefix netip.Prefix `yaml:"-"`
	// First and Last bound the dynamic range; neither is the subnet's
	// network or broadcast address, and the router is outside them.
	First netip.Addr `yaml:"-"`
	Last  netip.Addr `yaml:"-"`
	// RouterAddr is Router parsed; the zero Addr when Router is unset.
	RouterAddr netip.Addr    `yaml:"-"`
	DNSAddrs   []netip.Addr  `yaml:"-"`
	Lease      time.Duration `yaml:"-"`

	Pos Pos `yaml:"-"`
	// Lines of subnet and range, where problems between Networks are reported.
	subnetLine, rangeLine int `yaml:"-"`
}

// Pos is where a document starts in the profiles directory.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }
