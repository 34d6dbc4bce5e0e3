package inspect

import (
	"path/filepath"
	"strings"

	"github.com/provisiond/provisiond/internal/store"
)

// readSystem reads the SMBIOS identity from /sys/class/dmi/id. Boards
// without SMBIOS have no such directory: every field is then empty. The
// serial files are readable by root alone; the agent runs as root.
func readSystem(root string) store.System {
	dmi := filepath.Join(root, "sys/class/dmi/id")
	v := func(name string) string { return smbiosValue(readValue(filepath.Join(dmi, name))) }
	return store.System{
		Vendor:          v("sys_vendor"),
		Product:         v("product_name"),
		Serial:          v("product_serial"),
		BoardVendor:     v("board_vendor"),
		BoardProduct:    v("board_name"),
		BoardSerial:     v("board_serial"),
		BIOSVendor:      v("bios_vendor"),
		BIOSVersion:     v("bios_version"),
		ChassisAssetTag: v("chassis_asset_tag"),
	}
}

// placeholders are the values firmware vendors leave in SMBIOS fields they
// did not fill in, lower-case. They are reported as empty: the serial is
// what Machines match on, and a placeholder shared by a rack of boards
// would make them all one machine.
var placeholders = map[string]bool{
	"to be filled by o.e.m.":   true,
	"to be filled by oem":      true,
	"default string":           true,
	"not specified":            true,
	"not applicable":           true,
	"not available":            true,
	"none":                     true,
	"n/a":                      true,
	"oem":                      true,
	"o.e.m.":                   true,
	"system manufacturer":      true,
	"system product name":      true,
	"system serial number":     true,
	"system version":           true,
	"chassis serial number":    true,
	"base board serial number": true,
	"asset-1234567890":         true,
	"no asset tag":             true,
	"0123456789":               true,
	"1234567890":               true,
}

// smbiosValue is v, or "" if v is a placeholder: one of placeholders, or
// one character repeated (all zeros, all spaces, all dots, 0xFF bytes).
func smbiosValue(v string) string {
	if v == "" || placeholders[strings.ToLower(v)] || strings.Count(v, v[:1]) == len(v) {
		return ""
	}
	return v
}
