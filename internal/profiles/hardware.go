package profiles

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// A machine's hardware, as its inspection agent reported it (store.Hardware),
// is seen by Machines (match.serial, match.hardware) and by config templates
// (.hardware). Both read it in the JSON shape of the API, so that the names an
// operator sees in `provisiond machines show` are the ones to write.

// hardwareData is h as templates see it under .hardware: the JSON shape of
// store.Hardware (the API's names: .hardware.system.serial,
// .hardware.disks[i].by_id) with every key present, even those the machine
// did not report, so that a missingkey=error template reads any of them on
// any machine; numbers stay numbers, for lt and gt. A machine never inspected
// (nil) has the same shape with empty values: reported_at "", no disks.
func hardwareData(h *store.Hardware) map[string]any {
	if h == nil {
		h = &store.Hardware{}
	}
	return jsonShape(reflect.ValueOf(*h)).(map[string]any)
}

// jsonShape is v as encoding/json would spell it with its json field names,
// but keeping empty fields (omitempty), numbers and booleans as they are, and
// times as RFC 3339 strings ("" for the zero time).
func jsonShape(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return jsonShape(v.Elem())
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonShape(v.Index(i))
		}
		return out
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339)
		}
		out := make(map[string]any, v.NumField())
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			out[cmp.Or(name, f.Name)] = jsonShape(v.Field(i))
		}
		return out
	}
	return v.Interface()
}

// flattenFacts adds the scalar facts of data, a hardwareData map, to out
// under dotted keys ("system.serial", "cpu.cores", "memory_bytes"), as
// strings. Lists (disks, NICs) are not facts of the machine as a whole, and
// reported_at is not one of the hardware.
func flattenFacts(prefix string, data map[string]any, out map[string]string) {
	for k, v := range data {
		key := prefix + k
		switch v := v.(type) {
		case map[string]any:
			flattenFacts(key+".", v, out)
		case []any:
		default:
			if key != "reported_at" {
				out[key] = strings.TrimSpace(fmt.Sprint(v))
			}
		}
	}
}

// hardwareKeys are the facts match.hardware compares, sorted: all but the
// system serial, which match.serial compares as an identity.
func hardwareKeys() []string {
	facts := map[string]string{}
	flattenFacts("", hardwareData(nil), facts)
	keys := make([]string, 0, len(facts))
	for k := range facts {
		if k != "system.serial" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// hardwareFacts computes the facts of a query's hardware once, on the first
// Machine that asks: most sets match on none.
type hardwareFacts struct {
	h     *store.Hardware
	facts map[string]string
}

// get returns fact key of the machine; false when it was never inspected.
func (f *hardwareFacts) get(key string) (string, bool) {
	if f.h == nil {
		return "", false
	}
	if f.facts == nil {
		f.facts = map[string]string{}
		flattenFacts("", hardwareData(f.h), f.facts)
	}
	v, ok := f.facts[key]
	return v, ok
}

// placeholderSerials are SMBIOS system serials that boards ship on every unit
// (compared without case): matching on them would make all such machines one.
var placeholderSerials = map[string]bool{
	"to be filled by o.e.m.": true, "default string": true, "system serial number": true,
	"chassis serial number": true, "not specified": true, "not applicable": true, "not available": true,
	"none": true, "n/a": true, "0": true, "00000000": true, "0123456789": true, "123456789": true,
}

// MatchSerial is an SMBIOS system serial as match.serial compares it: without
// the blanks firmware pads it with, and "" for a placeholder that boards ship
// on every unit ("To Be Filled By O.E.M.", "Default string"...), which
// identifies no machine. The comparison is otherwise exact, case included.
func MatchSerial(serial string) string {
	s := strings.TrimSpace(serial)
	if placeholderSerials[strings.ToLower(s)] {
		return ""
	}
	return s
}

// serialOf is the machine serial of h for matching; "" when none.
func serialOf(h *store.Hardware) string {
	if h == nil {
		return ""
	}
	return MatchSerial(h.System.Serial)
}

// minInstallDisk is the smallest disk installDisk picks: smaller ones are
// the USB sticks and virtual media of a BMC, as in Ironic's default root
// device hint.
const minInstallDisk = 4 << 30

// installDisk is the template function installDisk: the disk to install to on
// the machine whose .hardware is hardware, by a path that stays the same
// from boot to boot, unlike /dev/sda: of the disks of at least 4 GiB, the
// smallest (the first reported among equals), named by its /dev/disk/by-id
// link, a wwn- one if it has one, else by /dev/<name>. fallback when the
// machine reported no such disk, as every machine before its inspection.
func installDisk(fallback string, hardware any) (string, error) {
	hw, ok := hardware.(map[string]any)
	if !ok {
		return "", fmt.Errorf("got %s; installDisk takes a fallback and .hardware, e.g. installDisk \"/dev/sda\" .hardware", kindName(reflect.ValueOf(hardware)))
	}
	disks, _ := hw["disks"].([]any)
	var best map[string]any
	var bestSize uint64
	for _, d := range disks {
		disk, _ := d.(map[string]any)
		size, _ := disk["size_bytes"].(uint64)
		name, _ := disk["name"].(string)
		if size < minInstallDisk || name == "" || best != nil && size >= bestSize {
			continue
		}
		best, bestSize = disk, size
	}
	if best == nil {
		return fallback, nil
	}
	return stablePath(best), nil
}

// byIDDir holds the links to a disk that name it the same on every boot.
const byIDDir = "/dev/disk/by-id/"

// stablePath names disk, one of .hardware.disks, by its first by-id link, a
// wwn- one (globally unique) before any other, else by its kernel name.
func stablePath(disk map[string]any) string {
	first := ""
	ids, _ := disk["by_id"].([]any)
	for _, id := range ids {
		s, _ := id.(string)
		switch {
		case strings.HasPrefix(s, byIDDir+"wwn-"):
			return s
		case first == "" && strings.HasPrefix(s, byIDDir):
			first = s
		}
	}
	if first != "" {
		return first
	}
	return "/dev/" + disk["name"].(string)
}
