package dhcp

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/ident"
)

// Client is what a PXE or HTTP-boot request says about the machine that sent it.
type Client struct {
	MAC  net.HardwareAddr
	UUID string    // SMBIOS UUID from option 97, canonical lower case; "" when absent or malformed
	Arch iana.Arch // client system architecture, RFC 4578 / IANA numbering
	// IPXE is true when the client already runs iPXE: it gets the HTTP script URL,
	// not another network boot program.
	IPXE bool
	// HTTP is true for UEFI HTTP Boot firmware (vendor class "HTTPClient"), false for PXE.
	HTTP        bool
	MessageType dhcpv4.MessageType
}

// Vendor class (option 60) prefixes. Compared as prefixes: PXE ROMs send
// "PXEClient:Arch:00000:UNDI:002001", while iPXE after a chainload sends a bare "PXEClient".
const (
	vendorPXE  = "PXEClient"
	vendorHTTP = "HTTPClient"
)

// Classify decides once whether req comes from a network boot client this package answers,
// and what kind. The error says why the packet is ignored.
func Classify(req *dhcpv4.DHCPv4) (Client, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return Client{}, fmt.Errorf("opcode %s is not a request", req.OpCode)
	}
	// PXE and UEFI HTTP Boot both run over Ethernet; anything else has no usable MAC.
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return Client{}, fmt.Errorf("hardware type %s with %d-byte address is not Ethernet", req.HWType, len(req.ClientHWAddr))
	}
	c := Client{
		MAC:         req.ClientHWAddr,
		MessageType: req.MessageType(),
	}
	switch c.MessageType {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest:
	default:
		return Client{}, fmt.Errorf("message type %s is not DISCOVER or REQUEST", c.MessageType)
	}

	vendor := req.ClassIdentifier()
	switch {
	case strings.HasPrefix(vendor, vendorPXE):
	case strings.HasPrefix(vendor, vendorHTTP):
		c.HTTP = true
	default:
		return Client{}, fmt.Errorf("vendor class %q is neither PXEClient nor HTTPClient", vendor)
	}

	arch, err := clientArch(req, vendor)
	if err != nil {
		return Client{}, err
	}
	c.Arch = arch
	c.UUID = clientUUID(req.GetOneOption(dhcpv4.OptionClientMachineIdentifier))
	// iPXE sends option 175 (its encapsulated options) and user class "iPXE"; ipxedust's
	// build replaces the user class with "Tinkerbell". Either marks the iPXE stage, which
	// must get the script URL: another NBP would chainload iPXE forever.
	c.IPXE = req.Options.Has(dhcpv4.OptionEtherboot) || isIPXEUserClass(req.GetOneOption(dhcpv4.OptionUserClassInformation))

	// iPXE is answered with a script URL whatever its architecture; anything else
	// needs a network boot program we ship.
	if !c.IPXE {
		if _, ok := bootProgram(c.Arch, c.HTTP); !ok {
			return Client{}, fmt.Errorf("no boot program for %s client arch %d (%s)", vendorOf(c.HTTP), c.Arch, c.Arch)
		}
	}
	return c, nil
}

// clientArch reads option 93, falling back to the "Arch:NNNNN" field of option 60:
// some PXE ROMs omit option 93 although RFC 4578 requires it.
func clientArch(req *dhcpv4.DHCPv4, vendor string) (iana.Arch, error) {
	// Option 93 is a list; firmware sends one entry, the architecture it runs now.
	if archs := req.ClientArch(); len(archs) > 0 {
		return archs[0], nil
	}
	fields := strings.Split(vendor, ":")
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] != "Arch" {
			continue
		}
		n, err := strconv.ParseUint(fields[i+1], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("vendor class %q: bad Arch field: %w", vendor, err)
		}
		return iana.Arch(n), nil
	}
	return 0, errors.New("no client architecture: option 93 missing or malformed and no Arch in option 60")
}

// clientUUID reads option 97 (RFC 4578: type 0 followed by a 16-byte GUID) into the
// canonical SMBIOS UUID that iPXE prints as ${uuid}, so one machine has one UUID in
// DHCP and HTTP requests. EDK2 and iPXE send the GUID in EFI byte order (iPXE's
// uuid_mangle): the first three fields little-endian, so they are swapped back.
// Firmware that sends a malformed or empty GUID is still booted, just without a UUID.
func clientUUID(opt []byte) string {
	if len(opt) != 17 || opt[0] != 0 {
		return ""
	}
	g := slices.Clone(opt[1:])
	slices.Reverse(g[0:4])
	slices.Reverse(g[4:6])
	slices.Reverse(g[6:8])
	uuid, err := ident.UUID(hex.EncodeToString(g))
	if err != nil {
		return ""
	}
	return uuid
}

// isIPXEUserClass accepts option 77 in both encodings seen on the wire: raw bytes
// (iPXE, ipxedust's "Tinkerbell") and RFC 3004 length-prefixed lists.
func isIPXEUserClass(opt []byte) bool {
	if len(opt) == 0 {
		return false
	}
	if isIPXEClass(string(opt)) {
		return true
	}
	var list dhcpv4.Strings
	if err := list.FromBytes(opt); err != nil {
		return false
	}
	for _, s := range list {
		if isIPXEClass(s) {
			return true
		}
	}
	return false
}

// isIPXEClass reports a user class that means "this is iPXE": stock iPXE sends "iPXE",
// the embedded script of tinkerbell/ipxedust sets "Tinkerbell".
func isIPXEClass(s string) bool {
	return s == "iPXE" || s == "Tinkerbell"
}

func vendorOf(http bool) string {
	if http {
		return vendorHTTP
	}
	return vendorPXE
}
