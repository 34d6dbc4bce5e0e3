package boot

import (
	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Request identifies a machine asking for something. MAC and UUID are canonical
// (package ident); at least one must be set. Protocols build it with
// NewRequest, which normalises what they observed.
type Request struct {
	MAC    string
	UUID   string
	Arch   string            // "bios", "efi-x86_64", ...: see archName
	IP     string            // the requester's address, when known
	Labels map[string]string // extra selectors, e.g. from the query string
	Token  string            // the session token a config request presents
	// Hardware is the machine's stored inspection, which Machines may match
	// on and templates see; nil: never inspected, or not looked up.
	Hardware *store.Hardware
	// HTTPBoot says a DHCP request comes from UEFI HTTP Boot firmware,
	// which boots the file its answer names; see HTTPBootStage.
	HTTPBoot HTTPBootStage
	// proven is set by the identity check (verify.go) when the request's
	// source address showed it is the machine it acts as, rather than a
	// relaxed Policy taking it at its word. Unexported: no protocol can
	// claim it.
	proven bool
}

// HTTPBootStage is where a UEFI HTTP Boot firmware's DHCP exchange stands,
// as BootPXE needs it for a profile with boot.loader uki (uki.go).
type HTTPBootStage uint8

// The stages; the zero value is any other request.
const (
	NotHTTPBoot HTTPBootStage = iota
	// HTTPBootDiscover is the firmware's DISCOVER: it may still take
	// another server's offer, so it opens no session.
	HTTPBootDiscover
	// HTTPBootRequest is the firmware's REQUEST (in proxy mode, where that
	// goes to the site's server, the DISCOVER the proxy answers): the
	// firmware boots the file of this answer, so a machine of a loader uki
	// profile gets its provisioning session now.
	HTTPBootRequest
)

// NewRequest is what a boot protocol (DHCP, the HTTP boot path) observed of a
// machine, normalised the same way for all of them: mac and uuid canonical
// (package ident), either ""; a placeholder uuid counts as none (see
// machineUUID); platform and cpu name its firmware and CPU as archName takes them.
func NewRequest(mac, uuid, platform, cpu string) Request {
	return Request{MAC: mac, UUID: machineUUID(uuid), Arch: archName(platform, cpu)}
}

// machineUUID is a canonical SMBIOS uuid as the core uses it: "" for the
// placeholders cheap boards ship on every unit, which would make all such
// machines one (one machine's config handed to all of them).
func machineUUID(uuid string) string {
	if ident.PlaceholderUUID(uuid) {
		return ""
	}
	return uuid
}

func (r Request) query() profiles.Query {
	return profiles.Query{MAC: r.MAC, UUID: r.UUID, Labels: r.Labels, Hardware: r.Hardware}
}

// archName names the firmware and CPU a machine boots with, in one vocabulary for
// DHCP and iPXE requests alike: "bios", "efi-x86_64", "efi-arm64", "efi-i386",
// "efi-arm32". Power control picks legacy or EFI network boot from it. platform
// is iPXE's ${platform} ("pcbios" or "efi"), cpu its ${buildarch} or the DHCP
// client arch's CPU; unknown combinations pass cpu through.
func archName(platform, cpu string) string {
	switch platform {
	case "pcbios":
		return "bios" // undionly reports buildarch i386 even on x86_64 hardware
	case "efi":
		return "efi-" + cpu
	}
	return cpu
}
