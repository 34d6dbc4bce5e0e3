package boot

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/provisiond/provisiond/internal/store"
)

// The inspection agent's report (provisiond agent): a machine's hardware as
// it read it from inside, accepted under the phone-home's identity rules,
// and the queries the API and the dashboard select machines by it with.

// EventInspected is recorded when a machine's hardware report is stored.
const EventInspected = "inspected"

// Bounds of one hardware report. A real machine is far below them; past
// them the report is refused rather than cut, so nothing is silently lost.
const (
	MaxReportDisks = 64
	MaxReportNICs  = 64
	MaxReportByID  = 16  // /dev/disk/by-id paths per disk
	MaxReportText  = 256 // bytes of any one string
)

// byIDDir is where the stable disk paths a report may name live.
const byIDDir = "/dev/disk/by-id/"

// ReportHardware stores hw as machine id's hardware and records an
// inspected event. The session stays open: a discovery profile's agent
// reports, and the machine powers off or goes on installing. viaAPI is a
// caller holding the API token; anyone else must be the machine itself,
// asking from from (its address, see verify.go), with its open session's
// token, exactly as for Installed. A report past the bounds above, or with
// unprintable text, is ErrInvalid; ReportedAt is the server's clock.
func (d *Decider) ReportHardware(ctx context.Context, id, token string, hw store.Hardware, from string, viaAPI bool) (store.Machine, error) {
	if err := checkHardware(&hw); err != nil {
		return store.Machine{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeDeadline)
	defer cancel()
	key, err := d.sessionKey(ctx, whatReport, id, token, from, viaAPI)
	if err != nil {
		return store.Machine{}, err
	}
	hw.ReportedAt = time.Now().UTC()
	var denied bool
	m, _, err := d.store.Update(ctx, key, inspected(token, viaAPI, hw, &denied))
	if err != nil {
		return m, notFound(id, err)
	}
	if denied {
		return store.Machine{}, d.sessionDenied(ctx, whatReport, Request{MAC: m.MAC, IP: from}, m)
	}
	d.log.Info("hardware reported", append(machineID(m).Attrs(), "summary", Summary(m.Hardware))...)
	d.step(m.MAC, Step{Name: StepAgent, Outcome: "reported"}, false)
	return m, nil
}

// sessionKey returns the store key of machine id for a caller holding token
// at address from: an operator (viaAPI) by the id alone, anyone else only as
// the machine itself (verify.go) with its open session's token. It reads,
// never writes, so a storm of bad tokens costs no writes; refusals are
// recorded as phone-home ones. The caller's Change checks the token again,
// since the session may change before it runs.
func (d *Decider) sessionKey(ctx context.Context, what, id, token, from string, viaAPI bool) (string, error) {
	key, err := d.ids.key(ctx, id)
	if err != nil || viaAPI {
		return key, err
	}
	m, err := d.store.Machine(ctx, key)
	if err != nil {
		return "", notFound(id, err)
	}
	r := Request{MAC: m.MAC, IP: from}
	if _, err := d.authenticate(ctx, r, what); err != nil {
		return "", err
	}
	// A failed read is the store's failure, not a refusal of the token.
	p, err := d.store.Provisioning(ctx, key)
	if err != nil {
		return "", notFound(id, err)
	}
	if !tokenMatches(token, p.TokenHash) {
		return "", d.sessionDenied(ctx, what, r, m)
	}
	return m.MAC, nil
}

// inspected is the Change of a hardware report: hw becomes the machine's
// hardware, with an event saying what it is. A machine's own report must
// still hold its open session's token; a bad one is reported in *denied
// and changes nothing.
func inspected(token string, viaAPI bool, hw store.Hardware, denied *bool) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		actor, ok := sessionActor(token, viaAPI, *p)
		*denied = !ok
		if !ok {
			return nil, nil
		}
		stored := hw
		m.Hardware = &stored
		return []store.Event{{Type: EventInspected, Actor: actor, Message: "hardware reported: " + Summary(&stored),
			Fields: map[string]string{
				"vendor": hw.System.Vendor, "product": hw.System.Product, "serial": hw.System.Serial,
				"cpus": strconv.Itoa(cpus(hw.CPU)), "memory": Bytes(hw.Memory), "disks": strconv.Itoa(len(hw.Disks)),
			}}}, nil
	}
}

// checkHardware refuses a report that says nothing, one past the bounds,
// one with text unfit for a log line, a table or a template (control
// characters, invalid UTF-8), or with counts below zero. It normalises NIC
// MACs to lower-case colons, in a copy of the caller's NICs.
func checkHardware(hw *store.Hardware) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: hardware report: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if hw.System == (store.System{}) && hw.CPU == (store.CPU{}) && hw.Memory == 0 && len(hw.Disks) == 0 && len(hw.NICs) == 0 {
		return bad("it says nothing")
	}
	if len(hw.Disks) > MaxReportDisks {
		return bad("%d disks, at most %d", len(hw.Disks), MaxReportDisks)
	}
	if len(hw.NICs) > MaxReportNICs {
		return bad("%d NICs, at most %d", len(hw.NICs), MaxReportNICs)
	}
	s := hw.System
	texts := []fact{
		{"system.vendor", s.Vendor}, {"system.product", s.Product}, {"system.serial", s.Serial},
		{"system.board_vendor", s.BoardVendor}, {"system.board_product", s.BoardProduct}, {"system.board_serial", s.BoardSerial},
		{"system.bios_vendor", s.BIOSVendor}, {"system.bios_version", s.BIOSVersion}, {"system.chassis_asset_tag", s.ChassisAssetTag},
		{"cpu.model", hw.CPU.Model}, {"cpu.arch", hw.CPU.Arch},
	}
	for i, dk := range hw.Disks {
		p := fmt.Sprintf("disks[%d].", i)
		if dk.Name == "" || strings.Contains(dk.Name, "/") {
			return bad("%sname %q: want a kernel device name such as sda", p, dk.Name)
		}
		if len(dk.ByID) > MaxReportByID {
			return bad("%sby_id: %d paths, at most %d", p, len(dk.ByID), MaxReportByID)
		}
		texts = append(texts, fact{p + "name", dk.Name}, fact{p + "model", dk.Model}, fact{p + "serial", dk.Serial}, fact{p + "wwn", dk.WWN})
		for j, path := range dk.ByID {
			// Templates write these into install configs: a path, nothing else.
			name, ok := strings.CutPrefix(path, byIDDir)
			if !ok || name == "" || strings.ContainsAny(name, "/ ") || name == "." || name == ".." {
				return bad("%sby_id[%d] %q: want a path under %s", p, j, path, byIDDir)
			}
			texts = append(texts, fact{fmt.Sprintf("%sby_id[%d]", p, j), path})
		}
	}
	hw.NICs = slices.Clone(hw.NICs)
	for i := range hw.NICs {
		n := &hw.NICs[i]
		p := fmt.Sprintf("nics[%d].", i)
		if n.Name == "" {
			return bad("%sname is empty", p)
		}
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return bad("%smac %q: not a hardware address", p, n.MAC)
		}
		n.MAC = mac.String()
		if n.Speed < 0 {
			return bad("%sspeed_mbps %d: want 0 for unknown", p, n.Speed)
		}
		texts = append(texts, fact{p + "name", n.Name}, fact{p + "driver", n.Driver})
	}
	if c := hw.CPU; c.Sockets < 0 || c.Cores < 0 || c.Threads < 0 {
		return bad("cpu: negative count (sockets %d, cores %d, threads %d)", c.Sockets, c.Cores, c.Threads)
	}
	for _, t := range texts {
		if len(t.v) > MaxReportText {
			return bad("%s: %d bytes, at most %d", t.name, len(t.v), MaxReportText)
		}
		if !utf8.ValidString(t.v) || strings.ContainsFunc(t.v, unicode.IsControl) {
			return bad("%s %q: invalid UTF-8 or a control character", t.name, t.v)
		}
	}
	return nil
}

// fact is one text of a report, named by its JSON path for the refusal.
type fact struct{ name, v string }

// cpus is the machine's logical CPUs, or its cores when it did not say.
func cpus(c store.CPU) int {
	if c.Threads > 0 {
		return c.Threads
	}
	return c.Cores
}

// Summary is hardware in a few words for a table cell or a log line:
// "2×16c, 128 GiB, 4 disks"; "" for a machine never inspected.
func Summary(hw *store.Hardware) string {
	if hw == nil {
		return ""
	}
	var parts []string
	switch c := hw.CPU; {
	case c.Sockets > 0 && c.Cores >= c.Sockets: // fewer cores than sockets is no per-socket count
		parts = append(parts, fmt.Sprintf("%d×%dc", c.Sockets, c.Cores/c.Sockets))
	case cpus(c) > 0:
		parts = append(parts, fmt.Sprintf("%d CPUs", cpus(c)))
	}
	if hw.Memory > 0 {
		parts = append(parts, Bytes(hw.Memory))
	}
	switch n := len(hw.Disks); n {
	case 1:
		parts = append(parts, "1 disk")
	default:
		parts = append(parts, fmt.Sprintf("%d disks", n))
	}
	return strings.Join(parts, ", ")
}

// Bytes is n in binary units for people: "512 MiB", "1.5 GiB", "128 GiB".
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64)
	return strings.TrimSuffix(v, ".0") + " " + string("KMGTPE"[exp]) + "iB"
}

// HardwareQuery selects machines by their reported hardware. Its zero
// value selects every machine; any other selects only inspected ones.
type HardwareQuery struct {
	Serial    string // the SMBIOS system serial, whole, in any case
	Vendor    string // part of the system vendor, in any case
	Product   string // part of the system product, in any case
	Text      string // part of the vendor, product, serial or CPU model, in any case
	MinMemory uint64 // bytes
	MinCPUs   int    // logical CPUs
}

// IsZero reports whether q selects every machine.
func (q HardwareQuery) IsZero() bool { return q == HardwareQuery{} }

// Match reports whether hardware hw (nil: never inspected) passes q.
func (q HardwareQuery) Match(hw *store.Hardware) bool {
	if q.IsZero() {
		return true
	}
	if hw == nil {
		return false
	}
	s := hw.System
	contains := func(s, part string) bool { return strings.Contains(strings.ToLower(s), strings.ToLower(part)) }
	switch {
	case q.Serial != "" && !strings.EqualFold(s.Serial, q.Serial),
		q.Vendor != "" && !contains(s.Vendor, q.Vendor),
		q.Product != "" && !contains(s.Product, q.Product),
		hw.Memory < q.MinMemory,
		cpus(hw.CPU) < q.MinCPUs:
		return false
	}
	if q.Text == "" {
		return true
	}
	for _, v := range []string{s.Vendor, s.Product, s.Serial, hw.CPU.Model} {
		if contains(v, q.Text) {
			return true
		}
	}
	return false
}
